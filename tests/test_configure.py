"""`configure`: values validated against the grid, defaults from doctor's facts, and a write that never
loses the user's file: merged in place, atomic even under kill -9, backed up, private when it holds a key,
and a `--shell` output that is safe to eval with hostile values."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Cli, CliRun, run_cli

from echopanel_setup import envconfig

FACTS = Path(__file__).parent / "fixtures" / "facts"
BASH = shutil.which("bash")


@pytest.fixture
def env_file(isolated_home: Path) -> Path:
    return isolated_home / "config" / "echopanel" / "echopanel.env"


def configure(cli: Cli, *args: str, facts: str = "linux-4090-desktop") -> CliRun:
    """`echopanel-setup configure ARGS` in this process, on a replayed doctor snapshot."""
    return cli("configure", "--facts", str(FACTS / f"{facts}.json"), *args)


def values(path: Path) -> dict[str, str]:
    return envconfig.read(path).values


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("delay", "nearest"), [("500", "480"), ("1300", "1200"), ("160", "240"), ("2000", "2400"), ("280", "240 or 320")]
)
def test_off_grid_delays_are_refused_with_the_nearest(cli: Cli, env_file: Path, delay: str, nearest: str) -> None:
    code, _, err = configure(cli, "--delay-ms", delay)
    assert code == 2 and f"nearest: {nearest}" in err
    assert not env_file.exists()


@pytest.mark.parametrize("delay", ["240", "480", "1200", "2400"])
def test_grid_delays_are_written(cli: Cli, env_file: Path, delay: str) -> None:
    code, _, err = configure(cli, "--delay-ms", delay, "--mode", "local")
    assert code == 0, err
    assert values(env_file)[envconfig.DELAY] == delay


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--provider", "whisper"), "use one of voxtral_official, mlx_whisper, whisper_cpp"),
        (("--url", "http://gpu.example"), "has no port"),
        (("--url", "http://gpu:8000/api"), "must have no path"),
        (("--url", "http://$(touch x):8000", "--mode", "remote"), "is not a host name"),
        (("--mode", "remote"), "--mode remote needs --url"),
        (("--mode", "local", "--url", "http://gpu.example:8000"), "use --mode remote"),
        (("--provider", "mlx_whisper", "--mode", "api"), "--mode is for the Voxtral provider"),
    ],
)
def test_bad_values_are_usage_errors(cli: Cli, env_file: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = configure(cli, *args)
    assert code == 2 and message in err, err
    assert not env_file.exists()


def test_linux_with_a_gpu_defaults_to_local_voxtral(cli: Cli, env_file: Path) -> None:
    code, out, _ = configure(cli)
    assert code == 0
    assert values(env_file) == {
        envconfig.PROVIDER: "voxtral_official",
        envconfig.DELAY: "480",
        envconfig.URL: "http://localhost:8001",  # vLLM's port here: EchoPanel's backend owns 8000
    }
    assert str(env_file) in out and "doctor found Linux with an NVIDIA GPU" in out


def test_macos_defaults_to_mlx_whisper_with_the_reason(cli: Cli, env_file: Path, tmp_path: Path) -> None:
    doc = json.loads((FACTS / "macos-arm64.json").read_text())  # the same Mac before anything was configured
    doc["config"] = {"path": str(env_file), "exists": False, "values": {}, "errors": [], "from_environment": []}
    (tmp_path / "mac.json").write_text(json.dumps(doc))
    code, out, _ = cli("configure", "--facts", str(tmp_path / "mac.json"))
    assert code == 0
    assert values(env_file) == {envconfig.PROVIDER: "mlx_whisper"}
    assert "macOS: vLLM cannot serve Voxtral on the Apple GPU" in out and "--mode api" in out


def test_local_delay_that_the_model_dir_does_not_serve_says_which_serve_fixes_it(cli: Cli, env_file: Path) -> None:
    code, out, _ = configure(cli, "--delay-ms", "960")  # the snapshot's model serves 480
    assert code == 0
    assert "the model dir serves 480 ms" in out and "echopanel-setup serve --delay-ms 960" in out


def test_merge_keeps_unknown_lines_comments_and_order(cli: Cli, env_file: Path) -> None:
    original = (
        "# my EchoPanel settings\n"
        "ECHOPANEL_THEME=dark   # not ours\n"
        "\n"
        "export VOXTRAL_VLLM_URL=http://localhost:8000\n"
        "VOXTRAL_MODE=api\n"
        "  # indented comment\n"
        "WEIRD LINE WITHOUT EQUALS\n"
        "ECHOPANEL_HOTKEY='cmd+shift+space'\n"
    )
    env_file.parent.mkdir(parents=True)
    env_file.write_text(original)
    code, _, err = configure(
        cli, "--mode", "remote", "--url", "ws://gpu.lan:8000/v1/realtime", "--delay-ms", "720", "--yes"
    )
    assert code == 0, err
    assert env_file.read_text() == (
        "# my EchoPanel settings\n"
        "ECHOPANEL_THEME=dark   # not ours\n"
        "\n"
        "export VOXTRAL_VLLM_URL=http://gpu.lan:8000\n"
        "  # indented comment\n"
        "WEIRD LINE WITHOUT EQUALS\n"
        "ECHOPANEL_HOTKEY='cmd+shift+space'\n"
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\n"
        "VOXTRAL_STREAMING_DELAY_MS=720\n"
    )
    backup = env_file.with_name("echopanel.env.bak")
    assert backup.read_text() == original


def test_unchanged_config_is_not_rewritten(cli: Cli, env_file: Path) -> None:
    assert configure(cli)[0] == 0
    before = env_file.stat().st_mtime_ns
    code, out, _ = configure(cli)
    assert code == 0 and "already up to date" in out
    assert env_file.stat().st_mtime_ns == before and not env_file.with_name("echopanel.env.bak").exists()


def test_a_literal_key_makes_the_file_private_and_the_backup_keeps_the_old_mode(
    cli: Cli, monkeypatch, env_file: Path
) -> None:
    env_file.parent.mkdir(parents=True)
    env_file.write_text("ECHOPANEL_THEME=dark\n")
    env_file.chmod(0o644)
    monkeypatch.setattr(sys, "stdin", _Stdin("sk-live-123\n"))
    code, out, err = configure(cli, "--mode", "api", "--api-key", "-")
    assert code == 0, err
    assert mode_of(env_file) == 0o600
    assert values(env_file)[envconfig.API_KEY] == "sk-live-123"
    assert "sk-live-123" not in out
    assert mode_of(env_file.with_name("echopanel.env.bak")) == 0o644


def test_a_key_in_the_environment_is_referenced_not_copied(cli: Cli, monkeypatch, env_file: Path) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-env-456")
    code, _, _ = configure(cli, "--mode", "api")
    assert code == 0
    text = env_file.read_text()
    assert "VOXTRAL_MISTRAL_API_KEY=${MISTRAL_API_KEY}" in text and "sk-env-456" not in text
    assert mode_of(env_file) & 0o077 == 0o044 & ~_umask()
    assert envconfig.effective(env_file, {"MISTRAL_API_KEY": "sk-env-456"})[envconfig.API_KEY] == "sk-env-456"


def test_api_mode_without_any_key_warns_how_to_provide_one(cli: Cli, env_file: Path) -> None:
    code, out, _ = configure(cli, "--mode", "api")
    assert code == 0 and "No Mistral API key" in out and "--api-key -" in out
    assert envconfig.API_KEY not in values(env_file)


def test_switching_back_to_local_removes_the_api_mode(cli: Cli, env_file: Path) -> None:
    env_file.parent.mkdir(parents=True)
    env_file.write_text("VOXTRAL_MODE=api\nVOXTRAL_MISTRAL_API_KEY=sk-1\n")
    env_file.chmod(0o600)
    code, out, _ = configure(cli, "--mode", "local")
    assert code == 0 and "VOXTRAL_MODE removed" in out
    assert envconfig.MODE not in values(env_file)
    assert mode_of(env_file) == 0o600  # the key is still inside
    assert mode_of(env_file.with_name("echopanel.env.bak")) == 0o600


def test_dry_run_shows_a_masked_diff_and_writes_nothing(cli: Cli, monkeypatch, env_file: Path) -> None:
    env_file.parent.mkdir(parents=True)
    env_file.write_text("VOXTRAL_MISTRAL_API_KEY=sk-old\n")
    monkeypatch.setattr(sys, "stdin", _Stdin("sk-new\n"))
    code, out, _ = configure(cli, "--mode", "api", "--api-key", "-", "--dry-run")
    assert code == 0 and "Dry run: nothing written." in out
    assert "+VOXTRAL_MODE=api" in out and "VOXTRAL_MISTRAL_API_KEY=****" in out
    assert "sk-old" not in out and "sk-new" not in out
    assert env_file.read_text() == "VOXTRAL_MISTRAL_API_KEY=sk-old\n"


def test_symlinked_config_is_written_through_the_link(cli: Cli, env_file: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "echopanel.env"
    real.parent.mkdir()
    real.write_text("# from my dotfiles\n")
    env_file.parent.mkdir(parents=True)
    env_file.symlink_to(real)
    assert configure(cli)[0] == 0
    assert env_file.is_symlink() and real.read_text().startswith("# from my dotfiles\nECHOPANEL_ASR_PROVIDER=")


def test_unwritable_destination_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/echopanel.env")  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "echopanel.env"
    code, _, err = configure(cli, "--output", str(target))
    assert code == 2 and "cannot write it" in err


def test_output_writes_another_file(cli: Cli, env_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "ci.env"
    code, out, _ = configure(cli, "--output", str(other))
    assert code == 0 and str(other) in out
    assert values(other)[envconfig.PROVIDER] == "voxtral_official" and not env_file.exists()


# --- atomicity: a writer killed at the worst moments leaves the old file whole ------------------

_KILL_AT = """
import os, signal, sys
from echopanel_setup import envconfig
real_replace, real_fsync = os.replace, os.fsync
where = sys.argv[1]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "before-rename":
    def replace(src, dst):
        if str(dst).endswith("echopanel.env"):
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
def test_kill_9_mid_write_leaves_the_old_file_intact(env_file: Path, where: str) -> None:
    env_file.parent.mkdir(parents=True)
    original = "# precious\nECHOPANEL_THEME=dark\nVOXTRAL_STREAMING_DELAY_MS=480\n"
    env_file.write_text(original)
    done = subprocess.run(
        [sys.executable, "-c", _KILL_AT, where, "--facts", str(FACTS / "linux-4090-desktop.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    assert env_file.read_text() == original
    leftovers = list(env_file.parent.glob(".echopanel.env.*.tmp"))
    assert leftovers, "the killed writer's temp file is the only trace"
    # a later run finishes the job and sweeps a stale temp file away
    old = time.time() - 3600
    for tmp in leftovers:
        os.utime(tmp, (old, old))
    again = run_cli(
        "configure", "--yes", "--delay-ms", "960", "--mode", "local", "--facts", str(FACTS / "linux-4090-desktop.json")
    )
    assert again.returncode == 0, again.stderr
    assert values(env_file)[envconfig.DELAY] == "960" and values(env_file)["ECHOPANEL_THEME"] == "dark"
    assert not list(env_file.parent.glob(".echopanel.env.*.tmp"))


# --- --shell: safe to eval ------------------------------------------------------------------------

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a b; touch PWNED",
    '"; touch PWNED; echo "',
    "it's ${HOME} $$ \\ | & > PWNED",
    "line1\nline2 $(touch PWNED)",
    "--version",
    "",
]


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("value", HOSTILE)
def test_shell_exports_survive_eval_of_hostile_values(tmp_path: Path, value: str) -> None:
    exports = envconfig.shell_exports(
        {"VOXTRAL_MISTRAL_API_KEY": value, "VOXTRAL_MODE": None, "VOXTRAL_VLLM_URL": "${SOURCE}"}
    )
    script = (
        'export VOXTRAL_MODE=stale\neval "$EXPORTS"\nprintf "%s" "$VOXTRAL_MISTRAL_API_KEY" > got\nprintf '
        '"%s|%s" "${VOXTRAL_MODE-unset}" "$VOXTRAL_VLLM_URL" > rest\n'
    )
    done = subprocess.run(
        [BASH, "-c", script],
        cwd=tmp_path,
        env={"EXPORTS": exports, "PATH": os.environ["PATH"], "SOURCE": "http://h:1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got").read_text() == value
    assert (tmp_path / "rest").read_text() == "unset|http://h:1"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_configure_shell_output_evals_with_a_hostile_key_from_stdin(env_file: Path, tmp_path: Path) -> None:
    hostile = "$(touch PWNED)`touch PWNED`;touch PWNED"
    done = run_cli(
        "configure",
        "--shell",
        "--mode",
        "api",
        "--api-key",
        "-",
        "--facts",
        str(FACTS / "linux-4090-desktop.json"),
        stdin=hostile + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert not env_file.exists(), "--shell writes nothing"
    script = (
        f'eval "$(cat {tmp_path / "out.sh"})"; printf "%s" '
        '"$VOXTRAL_MISTRAL_API_KEY|$VOXTRAL_MODE|$ECHOPANEL_ASR_PROVIDER"'
    )
    (tmp_path / "out.sh").write_text(done.stdout)
    evaluated = subprocess.run(
        [BASH, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert evaluated.stdout == f"{hostile}|api|voxtral_official"
    assert not (tmp_path / "PWNED").exists()


def test_values_that_cannot_go_in_a_dotenv_file_are_refused(cli: Cli, monkeypatch, env_file: Path) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin("it's\n"))
    code, _, err = configure(cli, "--mode", "api", "--api-key", "-")
    assert code == 2 and "single quote" in err and not env_file.exists()


def test_written_values_read_back_identically() -> None:
    for value in ["plain", "with space", "a#b", "http://h:8000", "${REF}", "$not_ref", "x=y"]:
        line = envconfig.format_line("K", value)
        assert envconfig.parse(line).values["K"] == value, line


class _Stdin:
    """A stdin that is not a terminal, holding `text`."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_merge_rewrites_the_last_duplicate_and_keeps_crlf() -> None:
    text = "VOXTRAL_VLLM_URL=http://a:1\r\n# note\r\nVOXTRAL_VLLM_URL=http://b:2\r\nVOXTRAL_MODE=api\r\n"
    merged = envconfig.merge(text, {"VOXTRAL_VLLM_URL": "http://c:3", "VOXTRAL_MODE": None, "NEW": "x"})
    assert merged == "VOXTRAL_VLLM_URL=http://a:1\r\n# note\r\nVOXTRAL_VLLM_URL=http://c:3\r\nNEW=x\r\n"
    assert envconfig.parse(merged).values["VOXTRAL_VLLM_URL"] == "http://c:3"
    unchanged = "VOXTRAL_STREAMING_DELAY_MS='480'  # quoted by hand\n"
    assert envconfig.merge(unchanged, {"VOXTRAL_STREAMING_DELAY_MS": "480"}) == unchanged


def test_dry_run_masks_every_secret_in_the_users_file(cli: Cli, env_file: Path) -> None:
    """Regression: the diff's context lines showed the user's other secrets (OPENAI_API_KEY, HF_TOKEN…)."""
    env_file.parent.mkdir(parents=True)
    env_file.write_text(
        "THEME=dark\nOPENAI_API_KEY=sk-openai-secret\nHF_TOKEN='hf_secret'\nVAULT_TOKEN=${FROM_VAULT}\n"
    )
    code, out, _ = configure(cli, "--mode", "remote", "--url", "http://gpu.lan:8000", "--dry-run")
    assert code == 0
    assert "sk-openai-secret" not in out and "hf_secret" not in out
    assert " OPENAI_API_KEY=****" in out and " HF_TOKEN=****" in out
    assert " VAULT_TOKEN=${FROM_VAULT}" in out  # a reference is not a secret: shown as it is


def test_a_key_left_in_the_environment_says_why_nothing_is_written(cli: Cli, monkeypatch, env_file: Path) -> None:
    """Regression: the reason for not writing VOXTRAL_MISTRAL_API_KEY was decided but never shown."""
    monkeypatch.setenv("VOXTRAL_MISTRAL_API_KEY", "sk-env-789")
    code, out, _ = configure(cli, "--mode", "api")
    assert code == 0
    assert "VOXTRAL_MISTRAL_API_KEY not written" in out and "from the environment" in out
    assert envconfig.API_KEY not in values(env_file) and "sk-env-789" not in out


def test_a_comment_after_a_rewritten_value_is_kept(cli: Cli, env_file: Path) -> None:
    """Regression: rewriting `KEY=value  # comment` dropped the user's comment."""
    env_file.parent.mkdir(parents=True)
    env_file.write_text(
        "export VOXTRAL_VLLM_URL=http://old:8000   # the lab box\nVOXTRAL_STREAMING_DELAY_MS='480' # ask Ana first\n"
    )
    code, _, err = configure(cli, "--mode", "remote", "--url", "http://gpu.lan:8000", "--delay-ms", "960", "--yes")
    assert code == 0, err
    assert env_file.read_text().splitlines()[:2] == [
        "export VOXTRAL_VLLM_URL=http://gpu.lan:8000  # the lab box",
        "VOXTRAL_STREAMING_DELAY_MS=960  # ask Ana first",
    ]
    assert values(env_file)[envconfig.URL] == "http://gpu.lan:8000" and values(env_file)[envconfig.DELAY] == "960"


def test_local_mode_on_a_machine_without_a_gpu_warns(cli: Cli, env_file: Path) -> None:
    """Regression: `--mode local` on a machine that cannot run vLLM was written without a word."""
    code, out, _ = configure(cli, "--mode", "local", facts="linux-nogpu")
    assert code == 0 and "without an NVIDIA GPU" in out and "--mode remote --url http://GPU-HOST:8001" in out
    assert values(env_file)[envconfig.URL] == "http://localhost:8001"  # still written: it may be a tunnel


def test_a_full_disk_is_an_external_failure_and_keeps_the_old_file(cli: Cli, monkeypatch, env_file: Path) -> None:
    """Regression: a full disk was reported as bad input (exit 2); DEVELOPERS.md makes it exit 3."""
    env_file.parent.mkdir(parents=True)
    env_file.write_text("ECHOPANEL_THEME=dark\n")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        real_fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = configure(cli, "--mode", "local", "--yes")
    assert code == 3 and "No space left on device" in err and "previous file is untouched" in err
    assert env_file.read_text() == "ECHOPANEL_THEME=dark\n"
    assert not list(env_file.parent.glob(".echopanel.env.*.tmp"))
