"""No secret in any output, snapshot or report: a password in a server or Hub URL, and the unrelated secrets an
EchoPanel `.env` holds beside the keys this tool uses (issue 18, "Secrets")."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Cli
from echopanel_kit import make_checkout
from probe_kit import FakeVllm, closed_port, serve_vllm

from echopanel_setup import knowledge

# Every one of these must stay out of everything doctor prints or writes.
SECRETS = ("EP-PW-1", "hf_SECRET2", "DB-PW-3", "SENTRY-KEY-4", "WEBHOOK-5", "ENV-PW-6", "HF-PW-7")
UNRELATED = ("ECHOPANEL_HF_TOKEN", "DATABASE_URL", "SENTRY_DSN", "SLACK_WEBHOOK_URL")


@pytest.fixture
def server() -> Iterator[tuple[FakeVllm, str]]:
    behaviour = FakeVllm()
    httpd, url = serve_vllm(behaviour)
    yield behaviour, url
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server) -> tuple[Path, FakeVllm]:
    """A checkout whose `.env` holds a password URL and four unrelated secrets; the same URL (another password)
    in the environment; a Hub mirror with a password; the Mistral API on a closed loopback port."""
    behaviour, url = server
    port = url.rsplit(":", 1)[1]
    env = (
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\n"
        f"VOXTRAL_VLLM_URL=http://ep:EP-PW-1@127.0.0.1:{port}\n"
        "ECHOPANEL_HF_TOKEN=hf_SECRET2\n"
        "DATABASE_URL=postgres://app:DB-PW-3@db.internal/echopanel\n"
        "SENTRY_DSN=https://SENTRY-KEY-4@o1.ingest.sentry.io/5\n"
        "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/WEBHOOK-5\n"
    )
    checkout = make_checkout(tmp_path / "EchoPanel", env=env)
    monkeypatch.setenv("VOXTRAL_VLLM_URL", f"http://alice:ENV-PW-6@127.0.0.1:{port}")
    monkeypatch.setenv("HF_ENDPOINT", f"http://hub:HF-PW-7@127.0.0.1:{closed_port()}")
    k = knowledge.load()
    offline_mistral = replace(k, network=replace(k.network, mistral_endpoint=f"http://127.0.0.1:{closed_port()}"))
    monkeypatch.setattr(knowledge, "load", lambda: offline_mistral)
    return checkout, behaviour


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.parametrize("mode", ["local", "remote"])
@pytest.mark.parametrize("output", [["-v"], ["--json"], ["--report"]])
def test_doctor_shows_and_saves_no_secret(cli: Cli, hostile, tmp_path: Path, mode: str, output: list[str]):
    checkout, behaviour = hostile
    saved = tmp_path / "facts.json"
    run = cli("doctor", "--mode", mode, "--echopanel", str(checkout), "--save-facts", str(saved), *output)
    assert run.code in (0, 1), run.err
    assert _leaks(run.out + run.err) == [] and _leaks(saved.read_text()) == []
    # The password stays usable where it belongs: the server was asked with it (a reverse proxy's Basic auth).
    basic = "Basic " + base64.b64encode(b"alice:ENV-PW-6").decode()
    assert ("/health", basic) in behaviour.requests


def test_snapshots_keep_only_the_keys_this_tool_uses(cli: Cli, hostile, tmp_path: Path):
    """EchoPanel's `.env` is read as EchoPanel reads it, but a snapshot keeps only the keys we use; the others are
    counted, never copied (their names included)."""
    checkout, _ = hostile
    saved = tmp_path / "facts.json"
    cli("doctor", "--echopanel", str(checkout), "--save-facts", str(saved), "--offline")
    env = json.loads(saved.read_text())["echopanel"]["env"]
    assert set(env["values"]) == {"ECHOPANEL_ASR_PROVIDER", "VOXTRAL_VLLM_URL"}
    assert env["values"]["VOXTRAL_VLLM_URL"].startswith("http://***@127.0.0.1:")
    assert env["other_keys"] == len(UNRELATED)
    report = cli("doctor", "--echopanel", str(checkout), "--report", "--offline").out
    assert [k for k in UNRELATED if k in saved.read_text() + report] == []
