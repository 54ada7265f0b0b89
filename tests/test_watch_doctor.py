"""doctor's `server.live`: one /metrics sample in the facts, judged by a pure check (as `watch` judges it)."""

from __future__ import annotations

import time

from conftest import Cli
from facts_kit import evaluate, load
from metrics_kit import VOXTRAL, MetricsStandIn, Scenario, page, render, values_for

from echopanel_setup.facts.model import ServerFacts
from echopanel_setup.metrics import sample


def _live(cli: Cli, scenario: Scenario) -> tuple[dict, dict]:  # type: ignore[type-arg]
    with MetricsStandIn(scenario) as server:
        run = cli("doctor", "--json", "--offline", "--mode", "remote", "--url", server.url)
    doc = run.json()
    return {c["id"]: c for c in doc["checks"]}["server.live"], doc["facts"]["network"]["server"]


def test_doctor_samples_metrics_and_judges_them(cli: Cli) -> None:
    check, server = _live(cli, Scenario(streams=2, queued=1))
    assert server["metrics"]["queued"] == 1 and server["metrics"]["sessions_active"] == 2
    assert check["status"] == "fail" and "1 stream waiting: capacity full" in check["summary"]
    assert check["required"] is False  # advisory: a busy server is not a broken setup


def test_a_healthy_server_shows_its_figures(cli: Cli) -> None:
    check, _ = _live(cli, Scenario(streams=2))
    assert check["status"] == "ok" and "streams 2" in check["summary"] and "kv cache 20%" in check["summary"]


def test_the_check_is_pure_over_replayed_facts() -> None:
    text = page("0.33.0")
    s = sample.from_text(render(text, values_for(text, Scenario(streams=1, kv=0.95), 60, time.time(), "0.33.0")), 0, 0)
    assert sample.from_facts(sample.to_facts(s)) == s
    facts = load("linux-4090-desktop.json")
    facts.network.server_url = "http://gpu:8001"
    facts.network.server = ServerFacts(
        url="http://gpu:8001", health=200, version="0.33.0", models=[VOXTRAL], metrics=sample.to_facts(s)
    )
    results, _ = evaluate(facts, "remote")
    assert results["server"].status.value == "ok", results["server"]
    assert results["server.live"].status.value == "warn" and "95% full" in results["server.live"].summary
    facts.network.server.metrics = None
    results, _ = evaluate(facts, "remote")
    assert results["server.live"].status.value == "skip"
