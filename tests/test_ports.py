"""One default port (8001) everywhere, and EchoPanel's own backend port never taken for vLLM where EchoPanel runs."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from facts_kit import FACTS_DIR, raw, write

from echopanel_setup import envconfig, ports


def test_the_default_port_is_8001_and_not_echopanels() -> None:
    assert ports.default_port() == 8001 != ports.echopanel_backend_port() == 8000
    assert ports.local_url() == "http://localhost:8001"
    assert ports.example_url() == "http://GPU-HOST:8001"
    assert ports.echopanel_default_url() == "http://localhost:8000"  # an unset VOXTRAL_VLLM_URL: EchoPanel itself


@pytest.mark.parametrize(
    ("explicit", "url", "echopanel_port", "port", "reason", "noted"),
    [
        (None, None, None, 8001, "the default", False),
        (None, None, 8000, 8001, "the default", False),
        (9000, "http://localhost:8011", 8000, 9000, "--port", False),
        (None, "http://localhost:8011", 8000, 8011, "the config's URL", False),
        (None, "http://127.0.0.1:8011/", None, 8011, "the config's URL", False),
        # EchoPanel's own port on a machine running EchoPanel: the config points EchoPanel at itself.
        (None, "http://localhost:8000", 8000, 8001, "the default", True),
        (None, "http://localhost:9100", 9100, 8001, "the default", True),  # the port read from its checkout
        # No EchoPanel here (a GPU host, a CI runner): 8000 is a port like any other.
        (None, "http://localhost:8000", None, 8000, "the config's URL", False),
        # Another machine's port, or a URL EchoPanel cannot use, says nothing about this machine's port.
        (None, "http://gpu-box:8011", 8000, 8001, "the default", False),
        (None, "http://localhost:8011/v1", 8000, 8001, "the default", False),
        (None, "http://localhost", 8000, 8001, "the default", False),
        (None, "not a url", 8000, 8001, "the default", False),
    ],
)
def test_vllm_port(
    explicit: int | None, url: str | None, echopanel_port: int | None, port: int, reason: str, noted: bool
) -> None:
    configured = envconfig.configured_url({envconfig.URL: url} if url else {})
    choice = ports.vllm_port(explicit, configured, echopanel_port=echopanel_port)
    assert (choice.port, choice.reason, choice.note is not None) == (port, reason, noted)
    if noted:
        assert (
            choice.note
            and "EchoPanel's own backend port" in choice.note
            and "--url http://localhost:8001" in (choice.note)
        )


def _unconfigured(tmp_path: Path) -> str:
    """A machine whose EchoPanel config names no vLLM URL."""
    snapshot = raw("linux-4080.json")
    del snapshot["config"]["values"]["VOXTRAL_VLLM_URL"]
    return str(write(snapshot, tmp_path / "facts.json"))


def _serve(facts: str, *args: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """`serve` on a replayed machine: the command it prints as words (line continuations joined), and the run."""
    out = run_cli("serve", "--facts", facts, *args)
    assert out.returncode == 0, out.stderr
    return shlex.split(out.stdout.replace("\\\n", "")), out


def test_serve_listens_on_8001_by_default(tmp_path: Path) -> None:
    words, _ = _serve(_unconfigured(tmp_path))
    assert words[words.index("--port") + 1] == "8001"


@pytest.mark.parametrize(
    ("fmt", "published", "inside"),
    [("docker", "-p 127.0.0.1:8001:8000", "--port 8000"), ("compose", '- "127.0.0.1:8001:8000"', '- "8000"')],
)
def test_container_formats_publish_host_8001_to_the_containers_8000(
    tmp_path: Path, fmt: str, published: str, inside: str
) -> None:
    out = run_cli("serve", "--facts", _unconfigured(tmp_path), "--format", fmt)
    assert out.returncode == 0, out.stderr
    assert published in out.stdout and inside in out.stdout


def test_doctor_checks_port_8001_by_default() -> None:
    out = run_cli("doctor", "--only", "port", "--json", "--offline")
    port = next(c for c in json.loads(out.stdout)["checks"] if c["id"] == "port")
    assert "8001" in port["summary"]


def _with_checkout(tmp_path: Path, url: str | None = "http://localhost:8000") -> str:
    """A replayed machine running EchoPanel (its checkout found), whose config points at `url`."""
    snapshot = raw("linux-4080.json")
    if url is None:
        del snapshot["config"]["values"]["VOXTRAL_VLLM_URL"]
    else:
        snapshot["config"]["values"]["VOXTRAL_VLLM_URL"] = url
    snapshot["echopanel"] = {"checkout": "/home/alice/EchoPanel", "how": "usual place"}
    return str(write(snapshot, tmp_path / "facts.json"))


def test_serve_never_takes_echopanels_port_where_echopanel_runs(tmp_path: Path) -> None:
    words, out = _serve(_with_checkout(tmp_path))
    assert words[words.index("--port") + 1] == "8001"
    assert "EchoPanel's own backend port" in out.stderr and "configure --url http://localhost:8001" in out.stderr
    # Without EchoPanel on the machine, the config's 8000 is a port like any other.
    assert "--port 8000" in run_cli("serve", "--facts", str(FACTS_DIR / "linux-4080.json")).stdout.replace("\\\n", "")


def test_serve_answers_to_echopanels_name_first_then_the_hub_id(tmp_path: Path) -> None:
    words, _ = _serve(_unconfigured(tmp_path))
    at = words.index("--served-model-name")
    assert words[at + 1 : at + 3] == [
        "voxtral-mini-transcribe-realtime-2602",
        "mistralai/Voxtral-Mini-4B-Realtime-2602",
    ]
    assert words[at + 3].startswith("--")


def test_an_explicit_served_name_wins_with_a_warning_when_echopanels_is_missing(tmp_path: Path) -> None:
    words, out = _serve(_unconfigured(tmp_path), "--served-model-name", "my-voxtral")
    at = words.index("--served-model-name")
    assert words[at + 1] == "my-voxtral" and words[at + 2].startswith("--")
    assert "EchoPanel asks for 'voxtral-mini-transcribe-realtime-2602'" in out.stderr and "404" in out.stderr
    same = run_cli(
        "serve", "--facts", _unconfigured(tmp_path), "--served-model-name", "voxtral-mini-transcribe-realtime-2602"
    )
    assert "404" not in same.stderr


def test_an_api_key_is_served_but_warned_about(tmp_path: Path) -> None:
    out = run_cli(
        "serve", "--facts", _unconfigured(tmp_path), "--api-key", "k-1", "--json", env={"VLLM_API_KEY": "k-1"}
    )
    doc = json.loads(out.stdout)
    assert any("EchoPanel sends no API key" in n and "tunnel start" in n for n in doc["notes"])
