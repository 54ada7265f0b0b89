"""`configure` writes where EchoPanel reads: `<checkout>/.env`, by EchoPanel's own rules, only the keys the checkout's
provider reads, never a provider variant that cannot work — merged in place (every other byte kept), atomic under kill
-9, locked against a concurrent configure, backed up in our state dir, and read back as EchoPanel's backend will see it.
Tested against stand-in checkouts (tests/echopanel_kit.py), whose own `.env` loader proves what EchoPanel reads."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, Cli, CliRun, run_cli
from echopanel_kit import PROVIDER_CHAT_PCM, make_checkout
from serve_kit import serving

from echopanel_setup import paths, provider
from echopanel_setup.configure import result as cfg
from echopanel_setup.configure import runner
from echopanel_setup.echopanel import dotenv
from echopanel_setup.errors import UsageError

FACTS = Path(__file__).parent / "fixtures" / "facts"
BASH = shutil.which("bash")
SELECTOR, URL, DELAY, MODE, API_KEY = (
    "ECHOPANEL_ASR_PROVIDER",
    "VOXTRAL_VLLM_URL",
    "VOXTRAL_STREAMING_DELAY_MS",
    "VOXTRAL_MODE",
    "VOXTRAL_MISTRAL_API_KEY",
)
OURS = {"provider_voxtral_official.py": provider.template_text()}  # the working variant (it has an API path)
# An unknown variant that reads only the URL: no delay, no mode, no API path.
URL_ONLY = """import os
from server.services.asr_providers import ASRProvider, ASRProviderRegistry


class VoxtralOfficialProvider(ASRProvider):
    def __init__(self, config):
        super().__init__(config)
        self.url = os.getenv("VOXTRAL_VLLM_URL", "http://localhost:8000")

    @property
    def name(self):
        return "voxtral_official"

    @property
    def is_available(self):
        return True

    async def transcribe_stream(self, pcm_stream, sample_rate=16000, source=None):
        if False:
            yield None


ASRProviderRegistry.register("voxtral_official", VoxtralOfficialProvider)
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A stand-in EchoPanel checkout whose voxtral_official is echopanel-setup's (a variant that works)."""
    return make_checkout(tmp_path / "EchoPanel", providers=OURS)


def configure(cli: Cli, where: Path | None, *args: str, facts: str = "linux-4090-desktop") -> CliRun:
    """`echopanel-setup configure [--echopanel WHERE] ARGS` in this process, on a replayed doctor snapshot."""
    named = ("--echopanel", str(where)) if where is not None else ()
    return cli("configure", "--facts", str(FACTS / f"{facts}.json"), *named, *args)


def values(path: Path) -> dict[str, str]:
    return dotenv.read(path).values


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def echopanel_sees(checkout: Path, *keys: str, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """What the stand-in backend's own `.env` loader puts in its environment (a subprocess, like EchoPanel's)."""
    code = (
        "import json, os, sys; sys.path.insert(0, sys.argv[1]); from server import main; main._read_dotenv_file(); "
        "print(json.dumps({k: os.environ.get(k) for k in sys.argv[2:]}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOXTRAL_", "ECHOPANEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkout), *keys],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


# --- where it writes --------------------------------------------------------------------------------------------------


def test_linux_with_a_gpu_writes_the_checkouts_env_and_reads_it_back(cli: Cli, checkout: Path) -> None:
    (checkout / ".env").write_text("# mine\nECHOPANEL_THEME=dark\n")
    code, out, err = configure(cli, checkout)
    assert code == 0, err
    assert values(checkout / ".env") == {
        "ECHOPANEL_THEME": "dark",
        SELECTOR: "voxtral_official",
        DELAY: "480",
        URL: "http://localhost:8001",  # vLLM's port here: EchoPanel's backend owns 8000
    }
    assert "EchoPanel will see" in out and "VOXTRAL_VLLM_URL='http://localhost:8001'" in out
    assert "1 other key in the file" in out and "doctor found Linux with an NVIDIA GPU" in out
    assert echopanel_sees(checkout, SELECTOR, URL) == {SELECTOR: "voxtral_official", URL: "http://localhost:8001"}
    assert not list(checkout.glob(".env?*")), "no backup or temp file in the checkout"


def test_without_a_checkout_it_says_so_and_offers_output_and_shell(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no usual place holds one
    code, _, err = configure(cli, None)
    assert code == 2 and "no EchoPanel checkout found" in err and "--output FILE" in err and "--shell" in err
    make_checkout(tmp_path / "EchoPanel")
    make_checkout(tmp_path / "src" / "EchoPanel")
    code, _, err = configure(cli, None, "--yes")
    assert code == 2 and "several EchoPanel checkouts found" in err and str(tmp_path / "src" / "EchoPanel") in err


def test_macos_says_the_app_adopts_a_running_backend(cli: Cli, checkout: Path) -> None:
    code, out, _ = configure(cli, checkout, "--mode", "remote", "--url", "http://gpu.lan:8001", facts="macos-arm64")
    assert code == 0 and "adopts a backend that already answers" in out and "reads .env" in out
    assert values(checkout / ".env")[URL] == "http://gpu.lan:8001"


def test_a_checkout_found_by_search_is_confirmed_first(
    cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(checkout / "server")
    code, _, err = configure(cli, None)
    assert code == 2 and "--yes" in err and str(checkout) in err and not (checkout / ".env").exists()
    code, _, err = configure(cli, None, "--yes")
    assert code == 0, err
    assert values(checkout / ".env")[SELECTOR] == "voxtral_official"


def test_output_writes_another_file_by_the_same_rules(cli: Cli, checkout: Path, tmp_path: Path) -> None:
    other = tmp_path / "ci.env"
    code, out, _ = configure(cli, checkout, "--output", str(other))
    assert code == 0 and str(other) in out
    assert values(other)[SELECTOR] == "voxtral_official" and not (checkout / ".env").exists()


# --- refusals ---------------------------------------------------------------------------------------------------------


def test_the_published_variant_is_refused_with_provider_fix_as_the_way_out(cli: Cli, tmp_path: Path) -> None:
    published = make_checkout(tmp_path / "ep", env="ECHOPANEL_ASR_PROVIDER=faster_whisper\n")
    code, _, err = configure(cli, published)
    assert code == 1 and "cannot transcribe" in err and "echopanel-setup provider fix" in err
    assert values(published / ".env") == {SELECTOR: "faster_whisper"}, "a working EchoPanel is not switched off"
    code, out, err = configure(cli, published, "--force")
    assert code == 0, err
    assert "--force" in out and values(published / ".env")[SELECTOR] == "voxtral_official"


def test_api_mode_is_refused_for_a_provider_without_an_api_path(cli: Cli, tmp_path: Path) -> None:
    bare = make_checkout(tmp_path / "ep", providers={"provider_voxtral_official.py": URL_ONLY})
    code, _, err = configure(cli, bare, "--mode", "api")
    assert code == 1 and "has no Mistral API path" in err and not (bare / ".env").exists()


def test_api_mode_without_a_checkout_says_the_provider_is_unknown_in_one_clear_sentence(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: with no checkout to read, `configure --mode api --shell` said "voxtral_official has no Mistral API
    path (voxtral_official (not read: no checkout); it reads no VOXTRAL_MODE)": nested, and a claim about a file
    nobody read. The provider is unknown: said so, with the ways on."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = configure(cli, None, "--mode", "api", "--shell")
    assert code == 1, err
    assert "no EchoPanel checkout to read" in err and "--echopanel PATH" in err, err
    assert "not read: no checkout" not in err and "it reads no VOXTRAL_MODE" not in err


def test_only_the_keys_the_provider_reads_are_written(cli: Cli, tmp_path: Path) -> None:
    bare = make_checkout(tmp_path / "ep", providers={"provider_voxtral_official.py": URL_ONLY})
    code, out, err = configure(cli, bare, "--delay-ms", "960")
    assert code == 0, err
    assert values(bare / ".env") == {SELECTOR: "voxtral_official", URL: "http://localhost:8001"}
    assert "does not read VOXTRAL_STREAMING_DELAY_MS" in out and "whether it works is not known" in out


def test_api_mode_writes_voxtral_mode_where_the_provider_reads_it(
    cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = checkout / ".env"
    env.write_text("ECHOPANEL_THEME=dark\n")
    env.chmod(0o644)
    monkeypatch.setattr(sys, "stdin", _Stdin("sk-live-123\n"))
    code, out, err = configure(cli, checkout, "--mode", "api", "--api-key", "-")
    assert code == 0, err
    assert values(env)[MODE] == "api" and values(env)[API_KEY] == "sk-live-123" and mode_of(env) == 0o600
    assert "sk-live-123" not in out + err
    code, out, _ = configure(cli, checkout, "--mode", "local")
    assert code == 0 and "VOXTRAL_MODE removed" in out and MODE not in values(env)


def test_a_url_at_echopanels_own_port_is_refused(cli: Cli, checkout: Path) -> None:
    code, _, err = configure(cli, checkout, "--url", "http://localhost:8000")
    assert code == 2 and "EchoPanel's own backend" in err and "8001" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--delay-ms", "500"), "nearest: 480"),
        (("--provider", "whisper"), "use one of voxtral_official"),
        (("--url", "http://gpu.example"), "has no port"),
        (("--url", "http://gpu:8001/api"), "/api"),
        (("--url", "ws://gpu:8001", "--mode", "remote"), "ws"),
        (("--mode", "remote"), "--mode remote needs --url"),
        (("--mode", "local", "--url", "http://gpu.example:8001"), "use --mode remote"),
        (("--provider", "mlx_whisper", "--mode", "api"), "--mode is for the Voxtral provider"),
    ],
)
def test_bad_values_are_usage_errors(cli: Cli, checkout: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = configure(cli, checkout, *args)
    assert code == 2 and message in err, err
    assert not (checkout / ".env").exists()


def test_a_url_with_v1_is_normalised_with_a_note(cli: Cli, checkout: Path) -> None:
    code, out, _ = configure(cli, checkout, "--mode", "remote", "--url", "http://gpu.lan:8001/v1/")
    assert code == 0 and "dropped '/v1/'" in out
    assert values(checkout / ".env")[URL] == "http://gpu.lan:8001"


@pytest.mark.parametrize("given", [(), ("--mode", "remote", "--url", "http://ep:p%40ss@gpu.lan:8001/v1")])
def test_a_password_in_the_url_is_kept_in_the_file_and_never_shown(cli: Cli, checkout: Path, given) -> None:
    """A server behind Basic auth: the user's credentials stay in .env (kept from the file, or as --url gave them),
    while every output shows the URL without them."""
    env = checkout / ".env"
    env.write_text("VOXTRAL_VLLM_URL=http://ep:p%40ss@gpu.lan:8001\n")
    outputs = []
    for extra in ((), ("--json",), ("--dry-run",)):
        code, out, err = configure(cli, checkout, "--yes", "--delay-ms", "960", *given, *extra)
        assert code == 0, err
        outputs.append(out + err)
    assert values(env)[URL] == "http://ep:p%40ss@gpu.lan:8001"
    assert all("p%40ss" not in text and "p@ss" not in text for text in outputs)
    assert "http://***@gpu.lan:8001" in outputs[0]
    code, out, err = configure(cli, checkout, "--shell", *given)
    assert code == 0 and "p%40ss" not in out + err and f"export {URL}" not in out
    assert f"{URL} carries a user and password, so --shell does not print it" in err


# --- the file: EchoPanel's rules, every other byte kept ---------------------------------------------------------------

HOSTILE = (
    "\ufeffECHOPANEL_THEME=dark\r\n"
    "# a comment with = and 'quotes'\r\n"
    "export VOXTRAL_VLLM_URL=http://localhost:8000\r\n"
    'QUOTED="a # not a comment"\r\n'
    "SINGLE='x=y'\r\n"
    "SPACES =  padded value  \r\n"
    'EMPTY_STRING=""\r\n'
    "UNSET=\r\n"
    "export\tTABBED=1\r\n"
    "VOXTRAL_VLLM_URL=http://second:9\r\n"
    "VOXTRAL_STREAMING_DELAY_MS=960  # inline, EchoPanel keeps it in the value\r\n"
    "LAST_NO_NEWLINE=#hash"
)


def test_hostile_env_round_trips_through_echopanels_own_loader(cli: Cli, checkout: Path) -> None:
    env = checkout / ".env"
    env.write_bytes(HOSTILE.encode())
    others = ["\ufeffECHOPANEL_THEME", "QUOTED", "SINGLE", "SPACES", "EMPTY_STRING", "UNSET", "export\tTABBED"]
    before = echopanel_sees(checkout, *others, "LAST_NO_NEWLINE")
    code, out, err = configure(cli, checkout, "--mode", "remote", "--url", "http://gpu.lan:8001", "--yes")
    assert code == 0, err
    text = env.read_bytes().decode()
    assert text.startswith("\ufeffECHOPANEL_THEME=dark\r\n# a comment with = and 'quotes'\r\n")
    assert "export VOXTRAL_VLLM_URL=http://gpu.lan:8001\r\n" in text and "second:9" not in text  # first wins, dupes go
    # `960  # inline…` is not a number for EchoPanel (its provider would fail to load): replaced, the comment kept
    assert "# inline, EchoPanel keeps it in the value\r\nVOXTRAL_STREAMING_DELAY_MS=480\r\n" in text
    assert text.endswith("LAST_NO_NEWLINE=#hash\r\nECHOPANEL_ASR_PROVIDER=voxtral_official\r\n")
    assert echopanel_sees(checkout, *others, "LAST_NO_NEWLINE") == before, "other keys read exactly as before"
    assert echopanel_sees(checkout, SELECTOR, URL, DELAY) == {
        SELECTOR: "voxtral_official",
        URL: "http://gpu.lan:8001",
        DELAY: "480",
    }
    assert "EMPTY_STRING" not in out and "dark" not in out  # counted, never shown
    assert "other keys in the file" in out


def test_environment_overrides_are_named(cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL, "http://elsewhere:8001")
    monkeypatch.setenv(SELECTOR, "faster_whisper")
    code, out, _ = configure(cli, checkout, "--mode", "local", "--json")
    doc = json.loads(out)
    assert code == 0 and sorted(doc["overridden_by_environment"]) == [SELECTOR, URL]
    assert doc["echopanel_sees"][SELECTOR] == {"value": "faster_whisper", "source": "environment"}
    assert values(checkout / ".env")[SELECTOR] == "voxtral_official"
    code, out, _ = configure(cli, checkout, "--mode", "local")
    assert "win over .env" in out and "ECHOPANEL_ASR_PROVIDER, VOXTRAL_VLLM_URL" in out


def test_unchanged_settings_are_not_rewritten(cli: Cli, checkout: Path) -> None:
    assert configure(cli, checkout)[0] == 0
    before = (checkout / ".env").stat().st_mtime_ns
    code, out, _ = configure(cli, checkout)
    assert code == 0 and "already up to date" in out and (checkout / ".env").stat().st_mtime_ns == before


def test_backups_live_in_our_state_dir_private(cli: Cli, checkout: Path) -> None:
    env = checkout / ".env"
    env.write_text("ECHOPANEL_TOKEN=tok-123\n")
    env.chmod(0o644)
    code, out, _ = configure(cli, checkout)
    assert code == 0
    (backup,) = (paths.state_dir() / "backups").iterdir()
    assert backup.read_text() == "ECHOPANEL_TOKEN=tok-123\n" and mode_of(backup) == 0o600
    assert mode_of(env) == 0o644 and str(backup) in out
    assert sorted(p.name for p in checkout.iterdir() if p.name.startswith(".env")) == [".env"]


def test_a_read_only_file_is_replaced_and_said_so(cli: Cli, checkout: Path) -> None:
    env = checkout / ".env"
    env.write_text("A=1\n")
    env.chmod(0o444)
    code, out, _ = configure(cli, checkout)
    assert code == 0 and "read-only (0444)" in out
    assert mode_of(env) == 0o444 and values(env)["A"] == "1" and values(env)[SELECTOR] == "voxtral_official"


def test_a_fifo_is_refused_without_blocking(cli: Cli, checkout: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo)
    code, _, err = configure(cli, checkout, "--output", str(fifo))
    assert code == 2 and "named pipe (FIFO), not a regular file" in err and stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_device_or_directory_is_never_replaced(cli: Cli, checkout: Path, tmp_path: Path) -> None:
    code, _, err = configure(cli, checkout, "--output", os.devnull)
    assert code == 2 and "character device" in err and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    code, _, err = configure(cli, checkout, "--output", str(tmp_path))
    assert code == 2 and "a directory" in err


def test_a_symlinked_env_is_written_through_the_link(cli: Cli, checkout: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles.env"
    real.write_text("# from my dotfiles\n")
    (checkout / ".env").symlink_to(real)
    assert configure(cli, checkout)[0] == 0
    assert (checkout / ".env").is_symlink() and real.read_text().startswith("# from my dotfiles\nECHOPANEL_ASR_")


def test_a_full_disk_is_an_external_failure_and_keeps_the_old_file(
    cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = checkout / ".env"
    env.write_text("ECHOPANEL_THEME=dark\n")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        real_fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = configure(cli, checkout, "--yes")
    assert code == 3 and "No space left on device" in err and "previous file is untouched" in err
    assert env.read_text() == "ECHOPANEL_THEME=dark\n" and not list(checkout.glob("..env.*.tmp"))


def test_dry_run_masks_every_secret_and_writes_nothing(cli: Cli, checkout: Path) -> None:
    env = checkout / ".env"
    env.write_text("THEME=dark\nOPENAI_API_KEY=sk-openai-secret\nHF_TOKEN='hf_secret'\n")
    code, out, _ = configure(cli, checkout, "--mode", "remote", "--url", "http://gpu.lan:8001", "--dry-run")
    assert code == 0 and "Dry run: nothing written." in out
    assert "sk-openai-secret" not in out and "hf_secret" not in out and " OPENAI_API_KEY=****" in out
    assert env.read_text() == "THEME=dark\nOPENAI_API_KEY=sk-openai-secret\nHF_TOKEN='hf_secret'\n"


# --- --shell: references, never literals ------------------------------------------------------------------------------


def test_shell_prints_a_reference_never_the_key(cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (checkout / ".env").write_text("VOXTRAL_MISTRAL_API_KEY=sk-in-file\n")
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-env-456")
    code, out, err = configure(cli, checkout, "--mode", "api", "--shell")
    assert code == 0, err
    assert 'export VOXTRAL_MISTRAL_API_KEY="${MISTRAL_API_KEY}"' in out and "export VOXTRAL_MODE=api" in out
    assert "sk-in-file" not in out + err and "sk-env-456" not in out + err
    assert (checkout / ".env").read_text() == "VOXTRAL_MISTRAL_API_KEY=sk-in-file\n", "--shell writes nothing"
    code, _, err = configure(cli, checkout, "--mode", "api", "--shell", "--api-key", "sk-x")
    assert code == 2 and "never prints a key" in err and "sk-x" not in err


def test_shell_leaves_the_files_key_alone_where_the_reference_would_be_empty(
    cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the key in .env and no MISTRAL_API_KEY in the shell, `export VOXTRAL_MISTRAL_API_KEY="${MISTRAL_API_KEY}"`
    set it to "": EchoPanel's .env never overrides the environment, so the file's key was hidden (api mode had none)."""
    (checkout / ".env").write_text("VOXTRAL_MISTRAL_API_KEY=sk-in-file\n")
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    code, out, err = configure(cli, checkout, "--mode", "api", "--shell")
    assert code == 0, err
    assert "VOXTRAL_MISTRAL_API_KEY" not in out and "export VOXTRAL_MODE=api" in out
    assert "VOXTRAL_MISTRAL_API_KEY stays in .env" in err and "sk-in-file" not in out + err


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_shell_output_evals_in_bash(cli: Cli, tmp_path: Path) -> None:
    code, out, _ = configure(cli, None, "--shell", "--mode", "remote", "--url", "http://gpu.lan:8001", "--force")
    assert code == 0
    script = 'export VOXTRAL_MODE=stale; eval "$EXPORTS"; printf "%s|%s" "$VOXTRAL_VLLM_URL" "$ECHOPANEL_ASR_PROVIDER"'
    done = subprocess.run(
        [BASH, "-c", script], env={"EXPORTS": out, "PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert done.stdout == "http://gpu.lan:8001|voxtral_official", done.stderr


# --- the serve record, the retired echopanel.env ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "written"),
    [("http://127.0.0.1:8123", "http://localhost:8123"), ("http://[::1]:8123", "http://[::1]:8123")],
    ids=["ipv4", "ipv6-loopback"],
)
def test_the_port_of_a_detached_server_is_written(cli: Cli, checkout: Path, served: str, written: str) -> None:
    """Issue 18: after `serve --detach --port P`, configure writes that port (the record in our state dir). A server
    on `--host ::1` listens on the IPv6 loopback only: "localhost" (127.0.0.1 where /etc/hosts says only that) would
    not reach it, so its own address is written."""
    serving(served)
    (checkout / ".env").write_text("VOXTRAL_VLLM_URL=http://localhost:8001\n")
    code, out, _ = configure(cli, checkout)
    assert code == 0 and values(checkout / ".env")[URL] == written
    assert "`echopanel-setup serve` started here" in out


def tunnel_record(local_port: int = 8011) -> None:
    """A running tunnel of ours (this process stands in for its supervisor): 127.0.0.1:8011 -> gpu-box:8001."""
    import psutil

    from echopanel_setup.tunnel import records

    me = psutil.Process()
    records.TunnelRecord(
        pid=me.pid,
        create_time=me.create_time(),
        host="gpu-box",
        local_port=local_port,
        remote_port=8001,
        argv=["ssh"],
        log="tunnel.log",
        started_at="now",
        state="up",
    ).write()


def test_a_running_tunnel_is_the_default_url(cli: Cli, checkout: Path) -> None:
    """Issue 15 item 4: after `tunnel start HOST`, configure writes http://127.0.0.1:LOCAL (the tunnel's record)."""
    tunnel_record()
    code, out, err = configure(cli, checkout, facts="macos-arm64")
    assert code == 0, err
    assert values(checkout / ".env")[URL] == "http://127.0.0.1:8011"
    assert "Mode:     remote (the running tunnel to gpu-box" in out and "tunnel to gpu-box:8001" in out


def test_the_tunnels_loopback_url_stays_remote_mode(cli: Cli, checkout: Path) -> None:
    """Issue 18: the tunnel's end is a loopback URL, in the file or given as --url: still remote mode, on a GPU box
    too (a loopback URL alone would read as a server on this machine)."""
    tunnel_record()
    (checkout / ".env").write_text("VOXTRAL_VLLM_URL=http://127.0.0.1:8011\n")
    code, out, _ = configure(cli, checkout, "--yes", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["mode"] == "remote" and "the running tunnel to gpu-box" in doc["reasons"]["mode"]
    code, out, _ = configure(cli, checkout, "--url", "http://127.0.0.1:8011", "--yes", "--json")
    assert code == 0 and json.loads(out)["reasons"]["mode"] == "--url is the tunnel to gpu-box"


def test_the_retired_echopanel_env_is_migrated_with_consent(cli: Cli, checkout: Path) -> None:
    legacy = paths.legacy_echopanel_env()
    legacy.parent.mkdir(parents=True)
    legacy.write_text(
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_VLLM_URL=http://gpu.lan:8001\n"
        "VOXTRAL_STREAMING_DELAY_MS=720\nVOXTRAL_MISTRAL_API_KEY=${MISTRAL_API_KEY}\nNOT_READ=1\n"
    )
    code, out, _ = configure(cli, checkout)  # nobody to ask: left alone
    assert code == 0 and legacy.exists() and values(checkout / ".env")[URL] == "http://localhost:8001"
    (checkout / ".env").unlink()
    code, out, err = configure(cli, checkout, "--yes")
    assert code == 0, err
    assert values(checkout / ".env") == {SELECTOR: "voxtral_official", URL: "http://gpu.lan:8001", DELAY: "720"}
    assert not legacy.exists() and legacy.with_name("echopanel.env.migrated").is_file()
    assert "echopanel.env.migrated" in out and "carried from the retired echopanel.env" in out


# --- provider fix, offered --------------------------------------------------------------------------------------------


@dataclass
class FakeUi:
    """configure.result.PlanUi answering every question with `answer`, recording the questions."""

    answer: bool
    interactive: bool = True
    questions: list[str] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)

    def show(self, plan: cfg.Plan) -> None:
        pass

    def confirm(self, plan: cfg.Plan) -> bool:
        return True

    def ask(self, question: str) -> bool:
        self.questions.append(question)
        return self.answer

    def preview(self, text: str) -> None:
        self.previews.append(text)


def _published(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "ep", providers={"provider_voxtral_official.py": PROVIDER_CHAT_PCM.format()})


def test_configure_offers_provider_fix_and_declining_changes_nothing(tmp_path: Path) -> None:
    ep = _published(tmp_path)
    source = (ep / "server/services/provider_voxtral_official.py").read_bytes()
    opts = cfg.ConfigureOptions(echopanel=str(ep), echopanel_python=sys.executable, yes=True)
    facts = _facts()
    ui = FakeUi(answer=False)
    with pytest.raises(cfg.Fixable, match="cannot transcribe"):
        runner.run(opts, ui, facts=facts, environ={})
    assert len(ui.questions) == 1 and "provider fix" in ui.questions[0]
    assert (ep / "server/services/provider_voxtral_official.py").read_bytes() == source
    assert not (ep / ".env").exists()
    with pytest.raises(cfg.Fixable):  # --yes is not consent to change EchoPanel's code
        runner.run(opts, FakeUi(answer=True, interactive=False), facts=facts, environ={})


@pytest.mark.slow
def test_configure_applies_provider_fix_with_consent(tmp_path: Path) -> None:
    ep = _published(tmp_path)
    opts = cfg.ConfigureOptions(echopanel=str(ep), echopanel_python=sys.executable, yes=True)
    ui = FakeUi(answer=True)
    result = runner.run(opts, ui, facts=_facts(), environ={})
    assert result.action == "written" and result.fixed_provider is not None and result.fixed_provider.is_file()
    assert ui.previews and "/v1/realtime" in ui.previews[0]
    assert values(ep / ".env")[SELECTOR] == "voxtral_official"


def _facts():  # type: ignore[no-untyped-def]
    from echopanel_setup import doctor

    return doctor.load_facts(str(FACTS / "linux-4090-desktop.json"))


def test_a_searched_checkout_needs_someone_to_confirm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ep = make_checkout(tmp_path / "ep", providers=OURS)
    monkeypatch.chdir(ep)
    opts = cfg.ConfigureOptions()
    ui = FakeUi(answer=False)
    assert runner.run(opts, ui, facts=_facts(), environ={}).action == "declined"
    assert ui.questions == [f"Write EchoPanel's settings into {ep.resolve() / '.env'}?"] and not (ep / ".env").exists()
    with pytest.raises(UsageError, match="--yes"):
        runner.run(opts, FakeUi(answer=True, interactive=False), facts=_facts(), environ={})


# --- two writers at once, and kill -9 ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_concurrent_configures_lose_nothing(checkout: Path) -> None:
    env = checkout / ".env"
    env.write_text("# keep me\nECHOPANEL_THEME=dark\n")
    argv = [sys.executable, "-m", "echopanel_setup", "configure", "--echopanel", str(checkout), "--yes", "--facts"]
    procs = [
        subprocess.Popen(
            [*argv, str(FACTS / "linux-4090-desktop.json"), "--delay-ms", delay, "--mode", "local"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for delay in ("720", "960")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    text = env.read_text()
    assert text.startswith("# keep me\nECHOPANEL_THEME=dark\n") and text.count(DELAY) == 1 and text.count(SELECTOR) == 1
    assert values(env)[DELAY] in ("720", "960")
    assert len(list((paths.state_dir() / "backups").iterdir())) == 2  # each writer backed up what it replaced


_KILL_AT = """
import os, signal, sys
real_replace, real_fsync = os.replace, os.fsync
where = sys.argv[1]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "before-rename":
    def replace(src, dst):
        if str(dst).endswith("/.env"):
            die()
        return real_replace(src, dst)
    os.replace = replace
elif where == "mid-write":
    os.fsync = die  # the temp file holds bytes not yet synced, the rename never happens
sys.argv = ["echopanel-setup", "configure", "--yes", "--delay-ms", "960", "--mode", "local"] + sys.argv[2:]
from echopanel_setup import cli
cli.main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_kill_9_mid_write_leaves_the_old_file_intact(checkout: Path, where: str) -> None:
    env = checkout / ".env"
    original = "# precious\nECHOPANEL_THEME=dark\nVOXTRAL_STREAMING_DELAY_MS=480\n"
    env.write_text(original)
    args = ["--facts", str(FACTS / "linux-4090-desktop.json"), "--echopanel", str(checkout)]
    done = subprocess.run(
        [sys.executable, "-c", _KILL_AT, where, *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == -9, done.stderr
    assert env.read_text() == original
    temps = [*checkout.glob("..env.*.tmp"), *(paths.state_dir() / "backups").glob(".*.tmp")]
    assert temps, "the killed writer's temp file (beside .env or its backup) is the only trace"
    again = run_cli("configure", "--yes", "--delay-ms", "960", "--mode", "local", *args)
    assert again.returncode == 0, again.stderr
    assert values(env)[DELAY] == "960" and values(env)["ECHOPANEL_THEME"] == "dark"
    assert not [t for t in temps if t.exists()], "the next configure sweeps it (under the lock)"


class _Stdin:
    """A stdin that is not a terminal, holding `text`."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


def test_doctor_reads_the_checkouts_env_and_config_names_another(cli: Cli, checkout: Path, tmp_path: Path) -> None:
    """`--config` now names an EchoPanel .env; by default doctor reads the checkout's own, by EchoPanel's rules."""
    (checkout / ".env").write_text("VOXTRAL_VLLM_URL=http://gpu.lan:8001\nVOXTRAL_VLLM_URL=http://second:1\n")
    code, out, _ = cli("doctor", "--offline", "--json", "--echopanel", str(checkout), "--only", "config.values")
    config = json.loads(out)["facts"]["config"]
    assert config["path"] == str(checkout.resolve() / ".env") and config["values"] == {URL: "http://gpu.lan:8001"}
    other = tmp_path / "staging.env"
    other.write_text("VOXTRAL_VLLM_URL=http://staging:8001\n")
    code, out, _ = cli("doctor", "--offline", "--json", "--config", str(other), "--only", "config.values")
    assert json.loads(out)["facts"]["config"]["values"] == {URL: "http://staging:8001"}


def test_doctor_names_a_leftover_echopanel_env(cli: Cli, tmp_path: Path) -> None:
    """Someone upgrading sees why their old settings do nothing, and what carries them over."""
    legacy = paths.legacy_echopanel_env()
    legacy.parent.mkdir(parents=True)
    legacy.write_text("VOXTRAL_VLLM_URL=http://gpu.lan:8001\n")
    none = str(tmp_path / "none.env")
    code, out, _ = cli("doctor", "--offline", "--json", "--config", none, "--only", "config.values")
    (check,) = json.loads(out)["checks"]
    assert any("EchoPanel never read it" in d and str(legacy) in d for d in check["details"]), check
