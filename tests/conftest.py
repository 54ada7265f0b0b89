"""Shared test setup: every test runs with its own config/data/state dirs and a clean environment."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent

# Variables that change what doctor finds; tests start without any of them.
_CLEARED = (
    "ECHOPANEL_ASR_PROVIDER",
    "ECHOPANEL_VOXTRAL_BIN",
    "ECHOPANEL_VOXTRAL_MODEL",
    "ECHOPANEL_VOXTRAL_STREAMING_DELAY",
    "VOXTRAL_VLLM_URL",
    "VOXTRAL_STREAMING_DELAY_MS",
    "VOXTRAL_MODE",
    "VOXTRAL_MISTRAL_API_KEY",
    "MISTRAL_API_KEY",
    "ECHOPANEL_HOME",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "VLLM_API_KEY",
    "CUDA_VISIBLE_DEVICES",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "NO_COLOR",
    "FORCE_COLOR",
)


def pytest_configure(config: pytest.Config) -> None:
    """Tests signal the CLI as a terminal or `kill` would: Ctrl-C, SIGTERM, SIGHUP. A run started in the background by
    a non-interactive shell or under `nohup` ignores SIGINT or SIGHUP, and children inherit an ignored signal (the
    CLI rightly keeps it ignored), so those tests would hang. A handler instead of SIG_IGN keeps pytest itself
    ignoring the signal while every child starts with the default again (exec resets handled signals)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _ignore)


def _ignore(_signum: int, _frame: object) -> None:
    """What SIG_IGN did for pytest itself; see pytest_configure."""


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point platformdirs (XDG_*) and HF_HOME at a temp dir so no test reads or writes the real home."""
    home = tmp_path / "home"
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_STATE_HOME", "state"),
        ("HF_HOME", "hf"),
    ):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    for var in _CLEARED:
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m echopanel_setup ARGS` as a user would, with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "echopanel_setup", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=stdin,
        cwd=REPO,
    )


def start_cli(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[Any]:
    """Start `python -m echopanel_setup ARGS` as a user would (the test's environment, stdout and stderr piped), for
    a test that talks to it or signals it while it runs; `popen` overrides (text=True, stdin=..., stdout=...)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "cwd": REPO, **popen}
    return subprocess.Popen(
        [sys.executable, "-m", "echopanel_setup", *args], env={**os.environ, **(env or {})}, **options
    )


class CliRun(NamedTuple):
    """What one in-process run of the command line left: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`echopanel-setup ARGV` through cli.main in this process: fast, and the stand-ins can run in threads.

    Exactly what the console script runs (main's error handling and exit codes included); `run_cli` is for
    what needs a real process (signals, a fresh interpreter, a terminal).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, *argv: str, stdin: str | None = None) -> CliRun:
        from echopanel_setup import cli

        self._monkeypatch.setattr(sys, "argv", ["echopanel-setup", *argv])
        if stdin is not None:
            self._monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as exc:
            cli.main()
        captured = self._capsys.readouterr()
        return CliRun(int(exc.value.code or 0), captured.out, captured.err)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


# Tests of a SOCKS proxy that cannot be used: they need httpx's socks extra (socksio) to be absent.
without_socks_extra = pytest.mark.skipif(
    importlib.util.find_spec("socksio") is not None, reason="httpx's socks extra is installed: the proxy would be used"
)


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """HF_ENDPOINT and the knowledge's Mistral endpoint both pointed at one recording loopback server
    (probe_kit.OutsideHosts): `outside.paths` is what was asked of "the internet"."""
    import dataclasses

    from probe_kit import OutsideHosts

    from echopanel_setup import knowledge

    recorder = OutsideHosts()
    loaded = knowledge.load()
    patched = dataclasses.replace(loaded, network=dataclasses.replace(loaded.network, mistral_endpoint=recorder.url))
    monkeypatch.setattr(knowledge, "load", lambda: patched)
    monkeypatch.setenv("HF_ENDPOINT", recorder.url)
    yield recorder
    recorder.close()


@pytest.fixture
def vllm() -> Iterator[Callable[..., tuple[Any, str]]]:
    """Factory: start a loopback vLLM stand-in (probe_kit.FakeVllm with the given behaviour) and return it with its
    URL; all are shut down afterwards."""
    from probe_kit import FakeVllm, serve_vllm

    servers = []

    def start(**kwargs: Any) -> tuple[FakeVllm, str]:
        behaviour = FakeVllm(**kwargs)
        server, url = serve_vllm(behaviour)
        servers.append(server)
        return behaviour, url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
