"""One default port (8001) everywhere, and EchoPanel's own backend port never taken for vLLM where EchoPanel runs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import run_cli
from facts_kit import raw, write

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


def test_serve_listens_on_8001_by_default(tmp_path: Path) -> None:
    out = run_cli("serve", "--facts", _unconfigured(tmp_path))
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout.replace("\\\n", ""))
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
