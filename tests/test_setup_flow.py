"""`setup`: doctor decides which steps run; blockers stop with their fix; install/serve run as their own
commands (a stub prints the manual equivalent); smoke and configure run against real loopback servers."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli, without_socks_extra
from smoke_kit import VllmBehaviour, VllmStandIn, exact

from echopanel_setup.setup_flow import Flow, SetupOptions, SetupResult, run_command
from echopanel_setup.setup_render import SetupUi
from echopanel_setup.smoke import audio
from echopanel_setup.url import ServerURL

FACTS = Path(__file__).parent / "fixtures" / "facts"
CLIP = audio.bundled()


def flow(opts: SetupOptions, script: str) -> tuple[int, str, list[list[str]]]:
    """Run the flow with install/serve answered by a real subprocess running `script`; returns the
    exit code, the output and the commands the flow asked for."""
    asked: list[list[str]] = []

    def runner(argv: list[str]) -> int:
        asked.append(argv[3:])
        return run_command([sys.executable, "-c", script])

    out = io.StringIO()
    return Flow(opts, SetupUi(out=out), runner=runner).run().exit_code, out.getvalue(), asked


def live(opts: SetupOptions, spawn) -> tuple[SetupResult, str]:  # type: ignore[no-untyped-def]
    """Run the flow with `serve --exec` started by `spawn` (no other command may run); the result and output."""
    out = io.StringIO()
    return Flow(opts, SetupUi(out=out), runner=lambda argv: 1, spawn=spawn).run(), out.getvalue()


@pytest.fixture
def env_file(isolated_home: Path) -> Path:
    return isolated_home / "config" / "echopanel" / "echopanel.env"


def test_a_machine_without_a_gpu_is_pointed_to_remote_or_api(cli: Cli) -> None:
    code, out, _ = cli("setup", "--facts", str(FACTS / "linux-nogpu.json"))
    assert code == 1
    assert "Linux without an NVIDIA GPU" in out
    assert (
        "echopanel-setup setup --mode remote --url http://GPU-HOST:8001" in out
        and "echopanel-setup setup --mode api" in out
    )


def test_macos_cannot_take_the_local_path(cli: Cli) -> None:
    code, out, _ = cli("setup", "--facts", str(FACTS / "macos-arm64.json"), "--mode", "local")
    assert code == 1 and "macOS" in out and "--mode api" in out


def test_dry_run_skips_what_is_done(cli: Cli, env_file: Path) -> None:
    code, out, _ = cli("setup", "--facts", str(FACTS / "linux-4090-desktop.json"), "--dry-run")
    assert code == 0
    assert "skip  install vllm     already done (vLLM 0.20.0" in out
    assert "skip  install voxtral  already done (verified" in out
    assert "dry run: would start vLLM" in out and not env_file.exists()


def test_an_old_vllm_sends_setup_to_install_vllm(cli: Cli) -> None:
    code, out, _ = cli("setup", "--facts", str(FACTS / "linux-4090-vllm073-tf455.json"), "--dry-run", "--yes")
    assert code == 0 and "would run `echopanel-setup install vllm --yes`" in out


def test_a_step_that_does_not_fix_its_check_stops_the_flow() -> None:
    opts = SetupOptions(facts=str(FACTS / "linux-4090-vllm073-tf455.json"))
    code, out, _ = flow(opts, "print('installed')")
    assert code == 1 and "still fails" in out


def test_without_exec_or_detach_setup_prints_the_serve_command_and_stops(env_file: Path) -> None:
    code, out, asked = flow(SetupOptions(facts=str(FACTS / "linux-4090-desktop.json")), "print('vllm serve …')")
    assert code == 1 and asked == [["serve"]]
    assert "echopanel-setup setup --detach" in out and not env_file.exists()


def test_local_flow_waits_for_the_detached_server_then_smokes_and_configures(env_file: Path) -> None:
    with VllmStandIn(exact(CLIP.pcm)) as server:
        opts = SetupOptions(
            facts=str(FACTS / "linux-4090-desktop.json"), url=ServerURL.parse(server.url), detach=True, yes=True
        )
        code, out, asked = flow(opts, "print('vLLM started in the background')")
    assert code == 0, out
    assert asked == [["serve", "--detach"]]
    assert "serves mistralai/Voxtral-Mini-4B-Realtime-2602" in out and "WER 0%" in out
    assert "skip  configure        no EchoPanel checkout here" in out and "configure --shell" in out
    assert not env_file.exists(), "EchoPanel never read the per-user file: nothing is written there"


def test_exec_keeps_vllm_in_the_foreground_after_setup(env_file: Path) -> None:
    started: list[list[str]] = []

    def spawn(argv: list[str]) -> subprocess.Popen:  # type: ignore[type-arg]
        started.append(argv[3:])
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])

    with VllmStandIn(exact(CLIP.pcm)) as server:
        opts = SetupOptions(
            facts=str(FACTS / "linux-4090-desktop.json"),
            url=ServerURL.parse(server.url),
            exec_=True,
            yes=True,
            delay_ms=960,
        )
        result, out = live(opts, spawn)
    assert result.exit_code == 0, out
    assert started == [["serve", "--exec", "--delay-ms", "960"]]
    assert "keeps running in the foreground" in out
    assert "serve --delay-ms" not in out  # the server was just started with that delay
    assert "no EchoPanel checkout here" in out


def test_a_server_that_dies_while_starting_stops_the_flow(env_file: Path) -> None:
    opts = SetupOptions(
        facts=str(FACTS / "linux-4090-desktop.json"),
        url=ServerURL.parse(f"http://127.0.0.1:{_free_port()}"),
        exec_=True,
    )
    result, out = live(opts, lambda argv: subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    assert result.exit_code == 1 and "vLLM exited with 3 before it was ready" in out
    assert result.steps[-1].step == "serve" and result.steps[-1].state == "stop"
    assert not env_file.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_flow_end_to_end(cli: Cli, env_file: Path) -> None:
    with VllmStandIn(exact(CLIP.pcm)) as server:
        code, out, err = cli("setup", "--mode", "remote", "--url", server.url, "--yes")
    assert code == 0, out + err
    assert "✓ done  smoke" in out and "Voxtral is set up for EchoPanel." in out
    assert "no EchoPanel checkout here" in out and not env_file.exists()
    # The ways it names carry the server: on a machine that cannot serve vLLM a bare configure stops (exit 2).
    shell = f"echopanel-setup configure --mode remote --url {server.url} --shell"
    assert f"echopanel-setup configure --mode remote --url {server.url} --echopanel PATH" in out and shell in out
    code, out, err = cli(*shell.split()[1:], "--facts", str(FACTS / "linux-nogpu.json"))
    assert code == 0 and f"export VOXTRAL_VLLM_URL={server.url}" in out, err


def test_a_rerun_resumes_the_mode_setup_was_told_not_the_one_a_loopback_url_suggests(cli: Cli) -> None:
    """A remote server through a tunnel has a loopback URL: a plain rerun must not take it for local (issue 18)."""
    with VllmStandIn(exact(CLIP.pcm)) as server:
        assert cli("setup", "--mode", "remote", "--url", server.url, "--yes").code == 0
        code, out, err = cli("setup", "--yes")
        assert code == 0, out + err
        assert "remote mode (resumed: the last `setup --mode remote` chose it on " in out
        assert f"for {server.url}; --mode to choose again)" in out and "Voxtral is set up for EchoPanel." in out
        code, out, _ = cli("setup", "--mode", "local", "--dry-run", "--yes")  # an explicit --mode always wins
        assert "local mode (--mode)" in out


def test_a_failing_smoke_stops_before_configure(cli: Cli, env_file: Path) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(transcript="nothing like it")) as server:
        code, out, _ = cli("setup", "--mode", "remote", "--url", server.url, "--yes")
    assert code == 1 and "stop  smoke" in out and "over the 30% limit" in out
    assert not env_file.exists()


@pytest.mark.slow
def test_api_flow_end_to_end(cli: Cli, env_file: Path) -> None:
    pytest.importorskip("mistralai.extra.realtime", reason="mistralai[realtime] is an optional extra")
    from smoke_kit import MistralStandIn

    with MistralStandIn(exact(CLIP.pcm)) as api:
        code, out, err = cli("setup", "--mode", "api", "--url", api.url, "--api-key", "test-key", "--yes")
    assert code == 0, out + err
    assert "no EchoPanel checkout here" in out and not env_file.exists() and "test-key" not in out + err


def test_run_command_returns_the_exit_code() -> None:
    assert run_command([sys.executable, "-c", "import sys; sys.exit(2)"]) == 2


def test_flag_conflicts_are_usage_errors(cli: Cli) -> None:
    assert cli("setup", "--exec", "--detach")[0] == 2
    code, _, err = cli("setup", "--delay-ms", "500")
    assert code == 2 and "nearest: 480" in err


def test_remote_with_a_server_key_given_to_setup(cli: Cli, env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `setup --api-key` reached smoke but not doctor, whose 401 stopped the flow."""
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(api_key="server-key")) as server, monkeypatch.context() as m:
        m.setattr(type(os.environ), "__setitem__", _no_writes)  # the key travels in options, not the environment
        code, out, err = cli("setup", "--mode", "remote", "--url", server.url, "--api-key", "server-key", "--yes")
        assert server.seen.auth and all(a == "Bearer server-key" for a in server.seen.auth)
    assert code == 0, out + err
    assert "every required check passes" in out and "server-key" not in out + err
    assert "VLLM_API_KEY" not in os.environ


def test_remote_with_the_server_key_in_vllm_api_key(cli: Cli, env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VLLM_API_KEY, read once by cli, reaches doctor, the readiness wait and smoke."""
    monkeypatch.setenv("VLLM_API_KEY", "env-key")
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(api_key="env-key")) as server:
        code, out, err = cli("setup", "--mode", "remote", "--url", server.url, "--yes")
        assert server.seen.auth and all(a == "Bearer env-key" for a in server.seen.auth)
    assert code == 0, out + err
    assert "every required check passes" in out and "env-key" not in out + err


def _no_writes(self: object, key: str, value: str) -> None:
    raise AssertionError(f"os.environ[{key!r}] written")


def test_the_doctor_line_counts_only_what_stops_setup(cli: Cli, env_file: Path) -> None:
    """Regression: with the Mistral key given as --api-key, doctor's line said a required check failed,
    then setup went on as if nothing had."""
    pytest.importorskip("mistralai.extra.realtime", reason="mistralai[realtime] is an optional extra")
    from smoke_kit import MistralStandIn

    with MistralStandIn(exact(CLIP.pcm)) as api:
        code, out, _ = cli("setup", "--mode", "api", "--url", api.url, "--api-key", "test-key", "--yes")
    assert code == 0 and "api mode (--mode): every required check passes" in out


@without_socks_extra
def test_an_unusable_proxy_stops_the_wait_at_once(monkeypatch, env_file: Path) -> None:
    """Regression: waiting for the server retried every error for 15 minutes, even one no retry can fix."""
    from echopanel_setup.errors import UsageError

    monkeypatch.setenv("ALL_PROXY", f"socks5://127.0.0.1:{_free_port()}")
    spawned: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def spawn(argv: list[str]) -> subprocess.Popen:  # type: ignore[type-arg]
        spawned.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return spawned[-1]

    opts = SetupOptions(
        facts=str(FACTS / "linux-4090-desktop.json"), url=ServerURL.parse("http://gpu.example:8000"), exec_=True
    )
    with pytest.raises(UsageError, match="proxy"):
        live(opts, spawn)
    assert spawned and spawned[0].poll() is not None  # the vLLM it started is stopped


def test_setup_stops_when_configure_refuses_api_mode_for_a_provider_without_one(tmp_path: Path) -> None:
    """Issue 15: setup applies configure's refusals (here --mode api where the provider has no API path): a stop step
    with the way out, never "set up", and EchoPanel's .env untouched."""
    from echopanel_kit import make_checkout
    from test_configure import URL_ONLY

    from echopanel_setup import doctor

    checkout = make_checkout(tmp_path / "ep", providers={"provider_voxtral_official.py": URL_ONLY})
    facts = doctor.load_facts(str(FACTS / "linux-4090-desktop.json"))
    out = io.StringIO()
    flow = Flow(SetupOptions(mode="api", yes=True), SetupUi(out=out), runner=lambda argv: 1)
    run = doctor.DoctorRun(
        facts=facts, mode="api", mode_reason="--mode", results=[], exit_code=0, strict=False, duration_ms=0
    )
    assert flow._configure("api", run, checkout) is False
    assert flow.steps[-1].state == "stop" and "has no Mistral API path" in flow.steps[-1].text
    assert "echopanel-setup provider fix" in out.getvalue() and not (checkout / ".env").exists()


def test_a_key_on_stdin_is_read_once_and_sent_as_itself(cli: Cli, env_file: Path) -> None:
    """Regression: `setup --api-key -` sent "-" as the key to doctor, the readiness wait and smoke."""
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(api_key="piped-key")) as server:
        code, out, err = cli(
            "setup", "--mode", "remote", "--url", server.url, "--api-key", "-", "--yes", stdin="piped-key\n"
        )
        assert server.seen.auth and all(a == "Bearer piped-key" for a in server.seen.auth)
    assert code == 0, out + err
    assert "piped-key" not in out + err


def test_an_empty_stdin_for_the_key_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("setup", "--mode", "remote", "--url", "http://127.0.0.1:9", "--api-key", "-", stdin="")
    assert code == 2 and "--api-key -" in err and "standard input" in err


def test_api_mode_piped_key_is_written_as_read_from_stdin(tmp_path: Path) -> None:
    """configure gets the piped key as a piped key: written, without the 'stays in your shell history' advice."""
    from echopanel_kit import make_checkout

    from echopanel_setup import doctor, provider
    from echopanel_setup.echopanel import dotenv
    from echopanel_setup.facts.collect import Options

    checkout = make_checkout(
        tmp_path / "EchoPanel", providers={"provider_voxtral_official.py": provider.template_text()}
    )
    out = io.StringIO()
    flow_ = Flow(SetupOptions(mode="api", api_key="sk-piped", key_from_stdin=True, yes=True), SetupUi(out=out))
    flow_._configure("api", doctor.run(Options(offline=True), mode="api"), checkout)
    assert dotenv.read(checkout / ".env").values["VOXTRAL_MISTRAL_API_KEY"] == "sk-piped"
    assert "standard input" in out.getvalue() and "shell history" not in out.getvalue()


def test_offline_setup_asks_no_outside_host(cli: Cli, outside) -> None:  # type: ignore[no-untyped-def]
    """Regression: setup had no --offline; its doctor asked huggingface.co whatever the user wanted."""
    cli("setup", "--mode", "local", "--dry-run")
    assert outside.paths  # the Hub is asked where a model would be downloaded ...
    outside.paths.clear()
    code, out, err = cli("setup", "--mode", "local", "--dry-run", "--offline")
    assert code in (0, 1), out + err
    assert outside.paths == []  # ... and not with --offline


def test_offline_setup_downloads_nothing(cli: Cli) -> None:
    code, out, err = cli("setup", "--offline", "--yes", "--facts", str(FACTS / "linux-4090-vllm073-tf455.json"))
    assert code == 1, out + err
    assert "--offline forbids it" in out and "echopanel-setup install vllm" in out


def test_offline_and_api_mode_exclude_each_other(cli: Cli) -> None:
    code, _, err = cli("setup", "--offline", "--mode", "api")
    assert code == 2 and "--offline" in err
