"""configure and the vLLM server: it never guesses one (or another provider) where this machine cannot serve vLLM and
nothing names a server, and it asks `/health` at the URL it writes — vLLM, EchoPanel's own backend, something else,
or nothing — without ever holding the write back. The servers are real loopback HTTP stand-ins."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest
from conftest import Cli
from echopanel_kit import make_checkout
from facts_kit import FACTS_DIR, evaluate, load
from loopback_kit import HttpStandIn, QuietHandler
from probe_kit import closed_port
from test_configure import OURS, SELECTOR, URL, configure, tunnel_record, values

from echopanel_setup.configure import vllm_url
from echopanel_setup.facts.model import ConfigFacts

ECHOPANEL_HEALTH = {"status": "ok", "service": "echopanel", "version": "0.1.0"}  # echopanel-contract.md §5


def health(status: int, body: dict | bytes = b"") -> HttpStandIn:
    """A loopback server answering GET /health with `status` and `body` (vLLM's is an empty 200)."""

    class Health(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if isinstance(body, dict):
                self._send(status, body)
            else:
                self._reply(status, body, "text/html")

    return HttpStandIn(Health)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "EchoPanel", providers=OURS)


# --- no guess where vLLM cannot run ---------------------------------------------------------------------------------


def test_a_gpu_less_machine_with_no_server_named_gets_the_ways_not_a_whisper_provider(cli: Cli, checkout: Path) -> None:
    (checkout / ".env").write_text("ECHOPANEL_ASR_PROVIDER=faster_whisper\n")
    run = configure(cli, checkout, "--yes", facts="linux-nogpu")
    assert run.code == 2, run.out
    message = run.err.strip()
    assert message.count("\n") == 0 and message.startswith("echopanel-setup: error: nothing written:")
    assert "Linux without an NVIDIA GPU" in message
    assert "EchoPanel keeps ECHOPANEL_ASR_PROVIDER=faster_whisper" in message
    for way in (
        "configure --mode remote --url http://GPU-HOST:8001",
        "tunnel start [user@]GPU-HOST",
        "configure --mode api",  # our provider has an API path
    ):
        assert way in message
    assert values(checkout / ".env") == {SELECTOR: "faster_whisper"}


def test_no_api_way_for_a_provider_without_one_and_voxtral_c_on_an_apple_silicon_mac(cli: Cli, tmp_path: Path) -> None:
    published = make_checkout(tmp_path / "EchoPanel")  # its voxtral_official has no Mistral API path
    run = configure(cli, published, "--yes", "--json", facts="macos-arm64")
    error = run.json()["error"]
    assert run.code == 2 and error["kind"] == "usage"
    assert "--mode api" not in error["message"] and "stays unset" in error["message"]
    assert "configure --provider voxtral_realtime" in error["message"]  # voxtral.c runs on the Apple GPU
    assert not (published / ".env").exists()


def test_asking_for_voxtral_official_without_a_server_is_the_same_advice(cli: Cli, checkout: Path) -> None:
    run = configure(cli, checkout, "--provider", "voxtral_official", facts="windows-native")
    assert run.code == 2 and "native Windows" in run.err and "tunnel start" in run.err
    assert not (checkout / ".env").exists()


def test_a_named_server_is_still_written_on_a_gpu_less_machine(cli: Cli, checkout: Path) -> None:
    run = configure(cli, checkout, "--url", "http://gpu.lan:8001", "--yes", facts="linux-nogpu")
    assert run.code == 0, run.err
    assert values(checkout / ".env")[URL] == "http://gpu.lan:8001"


def test_a_url_in_this_environment_is_a_known_server(cli: Cli, checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EchoPanel's backend started from here reads VOXTRAL_VLLM_URL from its environment before .env: configure uses
    it rather than stopping, and says so."""
    monkeypatch.setenv(URL, "http://gpu.lan:8001/v1")
    run = configure(cli, checkout, "--yes", "--json", facts="linux-nogpu")
    doc = run.json()
    assert run.code == 0 and doc["mode"] == "remote" and values(checkout / ".env")[URL] == "http://gpu.lan:8001"
    assert doc["reasons"][URL] == "from this environment: a backend started here reads it first"
    assert doc["reasons"]["mode"] == f"{URL} in this environment"


# --- what answers at the URL ----------------------------------------------------------------------------------------


def test_a_vllm_answering_there_is_a_note(cli: Cli, checkout: Path) -> None:
    with health(200) as server:
        run = configure(cli, checkout, "--url", server.url, "--yes", "--json")
    doc = run.json()
    assert run.code == 0 and doc["action"] == "written"
    assert doc["server"] == {"url": server.url, "answers": "vllm", "status": 200, "detail": ""}
    assert f"a vLLM server answers at {server.url} (GET /health: 200)" in doc["notes"] and not doc["advice"]


def test_a_vllm_not_ready_is_a_warning(cli: Cli, checkout: Path) -> None:
    with health(503) as server:
        run = configure(cli, checkout, "--url", server.url, "--yes")
    assert run.code == 0 and "but is not ready (GET /health: 503" in run.out
    assert f"echopanel-setup doctor --mode remote --url {server.url}" in run.out


def test_echopanels_own_backend_answering_there_is_named(cli: Cli, checkout: Path) -> None:
    with health(200, ECHOPANEL_HEALTH) as backend:
        run = configure(cli, checkout, "--url", backend.url, "--yes", "--json")
    doc = run.json()
    assert run.code == 0 and doc["server"]["answers"] == "echopanel"
    (warning,) = doc["advice"]
    assert warning["text"].startswith(f"EchoPanel's own backend answers at {backend.url}, not vLLM")
    assert warning["commands"] == ["echopanel-setup configure --url http://localhost:8001"]


def test_something_else_answering_there_is_named(cli: Cli, checkout: Path) -> None:
    with health(404, b"<html>not found</html>") as other:
        run = configure(cli, checkout, "--url", other.url, "--yes", "--json")
    doc = run.json()
    assert doc["server"]["answers"] == "other"
    assert "not as vLLM does (GET /health: HTTP 404)" in doc["advice"][0]["text"]


def test_nothing_answering_on_a_gpu_machine_says_start_one(cli: Cli, checkout: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    run = configure(cli, checkout, "--url", url, "--yes", "--json")
    doc = run.json()
    assert run.code == 0 and doc["action"] == "written" and values(checkout / ".env")[URL] == url  # never blocks
    assert doc["server"]["answers"] == "nothing" and "Connection refused" in doc["server"]["detail"]
    (warning,) = doc["advice"]
    assert warning["text"].startswith(f"nothing answers at {url} yet") and "'vLLM not running'" in warning["text"]
    assert warning["commands"] == ["echopanel-setup serve --detach"]


def test_nothing_answering_on_a_gpu_less_machine_names_the_other_ways(cli: Cli, checkout: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    run = configure(cli, checkout, "--mode", "local", "--url", url, "--yes")
    assert run.code == 0
    run = configure(cli, checkout, "--mode", "local", "--url", url, "--yes", "--json", facts="linux-nogpu")
    (warning,) = run.json()["advice"]
    assert "Linux without an NVIDIA GPU" in warning["text"]
    assert warning["commands"] == [
        "echopanel-setup configure --mode remote --url http://GPU-HOST:8001",
        "echopanel-setup tunnel start [user@]GPU-HOST",
        "echopanel-setup configure --mode api",
    ]


def test_nothing_answering_at_a_loopback_url_given_as_remote_on_a_gpu_less_machine_never_says_serve(
    cli: Cli, checkout: Path
) -> None:
    """`--mode remote --url http://127.0.0.1:P` (a tunnel the user runs) on a box that cannot serve vLLM: starting
    a server here is no way on; forwarding one (or pointing elsewhere) is."""
    url = f"http://127.0.0.1:{closed_port()}"
    run = configure(cli, checkout, "--mode", "remote", "--url", url, "--yes", "--json", facts="linux-nogpu")
    (warning,) = run.json()["advice"]
    assert run.code == 0 and "Linux without an NVIDIA GPU" in warning["text"]
    assert "echopanel-setup serve --detach" not in warning["commands"]
    assert "echopanel-setup tunnel start [user@]GPU-HOST" in warning["commands"]


def test_nothing_answering_through_our_tunnel_names_the_tunnel(cli: Cli, checkout: Path) -> None:
    port = closed_port()
    tunnel_record(local_port=port)
    run = configure(cli, checkout, "--yes", "--json", facts="macos-arm64")
    (warning,) = run.json()["advice"]
    assert run.code == 0 and values(checkout / ".env")[URL] == f"http://127.0.0.1:{port}"
    assert warning["text"].startswith(f"nothing answers at http://127.0.0.1:{port}, the tunnel to gpu-box")
    assert warning["commands"][0] == "echopanel-setup tunnel status"


def test_a_server_that_never_answers_does_not_hold_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepted but never answered: the probe gives up after PROBE_S (here shortened) and says so."""
    monkeypatch.setattr(vllm_url, "PROBE_S", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        heard = vllm_url.probe(f"http://127.0.0.1:{silent.getsockname()[1]}")
    assert heard.answers == "nothing" and heard.detail == "no answer in time"


@pytest.mark.parametrize(
    ("snapshot", "mode", "server"),
    [
        ("linux-nogpu", "local", None),
        ("linux-h100-vllm020", "remote", "http://gpu-box:8001"),
        ("linux-h100-vllm020", "local", None),
    ],
)
def test_doctors_ways_to_write_the_config_without_a_checkout_are_commands_configure_runs(
    cli: Cli, snapshot: str, mode: str, server: str | None
) -> None:
    """doctor with no checkout here names configure commands; the `--shell` one (no checkout needed) must run as
    printed: a bare `configure --shell` stops where vLLM cannot run here, and --mode remote needs the URL."""
    facts = load(f"{snapshot}.json")
    facts.config, facts.network.server_url = ConfigFacts(), server
    fix = evaluate(facts, mode)[0]["config.values"].fix
    assert fix is not None
    (shell,) = [command for command in fix.commands if command.endswith(" --shell")]
    if server:
        assert all(f"--url {server}" in command for command in fix.commands)
    run = cli(*shlex.split(shell)[1:], "--facts", str(FACTS_DIR / f"{snapshot}.json"))
    assert run.code == 0, run.err
    assert "export ECHOPANEL_ASR_PROVIDER=voxtral_official" in run.out


def test_doctor_suggests_no_shell_exports_for_api_mode_without_a_checkout() -> None:
    """Without a checkout configure cannot tell whether the provider has an API path (it refuses --mode api)."""
    facts = load("linux-nogpu.json")
    facts.config = ConfigFacts()
    fix = evaluate(facts, "api")[0]["config.values"].fix
    assert fix is not None and fix.commands == ["echopanel-setup configure --mode api --echopanel PATH"]
