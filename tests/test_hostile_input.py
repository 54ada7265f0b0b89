"""Hostile input that crashed commands (exit 4): unusable proxy settings, a --facts file nested too deeply or
holding a lone surrogate. Each must end with one line and its exit code, or a verdict, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, without_socks_extra

BAD_PROXIES = [
    pytest.param("http://proxy:abc", "not a usable proxy URL", id="port-not-a-number"),
    pytest.param("socks5://127.0.0.1:9", "needs SOCKS support", id="socks", marks=without_socks_extra),
]


@pytest.mark.parametrize(("proxy", "said"), BAD_PROXIES)
@pytest.mark.parametrize("command", [["smoke", "--client", "realtime"], ["watch", "--once"]])
def test_unusable_proxy_is_a_usage_error(cli: Cli, monkeypatch, command: list[str], proxy: str, said: str):
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, proxy)
    run = cli(*command, "--url", "http://gpu.invalid:8001")
    assert run.code == 2 and "internal error" not in run.err
    assert said in run.err and "ALL_PROXY" in run.err


@pytest.mark.parametrize(("proxy", "said"), BAD_PROXIES)
def test_doctor_reports_an_unusable_proxy_instead_of_crashing_its_checks(cli: Cli, monkeypatch, proxy, said):
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    doc = cli("doctor", "--json").json()
    assert [c["id"] for c in doc["checks"] if c["status"] == "crashed"] == []
    assert said in doc["facts"]["network"]["hf"]["error"] and "HTTPS_PROXY" in doc["facts"]["network"]["hf"]["error"]


def test_facts_nested_too_deeply_is_bad_input(cli: Cli, tmp_path: Path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    run = cli("doctor", "--facts", str(deep))
    expected = f"echopanel-setup: error: --facts {deep}: nested too deeply to be a facts snapshot"
    assert (run.code, run.err.strip()) == (2, expected)


@pytest.mark.parametrize("json_out", [False, True])
def test_a_lone_surrogate_in_replayed_facts_prints_as_a_question_mark(cli: Cli, fixtures: Path, tmp_path, json_out):
    """A snapshot may hold one (a non-UTF-8 path read by Python elsewhere); printing it must not crash."""
    facts = json.loads((fixtures / "facts" / "linux-4090-desktop.json").read_text())
    facts["platform"]["distro"] = "Ubuntu \ud800"
    replay = tmp_path / "facts.json"
    replay.write_text(json.dumps(facts))
    run = cli("doctor", "--facts", str(replay), *(["--json"] if json_out else []))
    assert run.code == 0, run.err
    assert "Ubuntu ?" in run.out


def test_an_hf_endpoint_with_a_port_that_is_not_a_number_is_named_not_blamed_on_the_proxy(cli: Cli, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://hub:pw@127.0.0.1:abc")
    doc = cli("doctor", "--json").json()
    error = doc["facts"]["network"]["hf"]["error"]
    assert "check HF_ENDPOINT" in error and "proxy" not in error and "pw" not in error
    assert [c["id"] for c in doc["checks"] if c["status"] == "crashed"] == []
