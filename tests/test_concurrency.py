"""EchoPanel's concurrency (sources per meeting, each its own stream) is the one figure serve plans for and doctor's
GPU memory check judges by: EchoPanel's default 2, or ECHOPANEL_MAX_ACTIVE_SOURCES_PER_SESSION from its checkout's
`.env` or its environment (which wins, as in EchoPanel), with the reason in the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli
from echopanel_kit import make_checkout
from facts_kit import evaluate, load, text_of

from echopanel_setup import knowledge
from echopanel_setup.echopanel import concurrency
from echopanel_setup.facts.model import EchoPanelFacts
from echopanel_setup.serve import planner

KEY = "ECHOPANEL_MAX_ACTIVE_SOURCES_PER_SESSION"


def serve_doc(cli: Cli, *args: str) -> dict:  # type: ignore[type-arg]
    run = cli("serve", "--json", *args)
    assert run.code == 0, run.out + run.err
    return json.loads(run.out)  # type: ignore[no-any-return]


def test_serve_plans_echopanels_two_streams_by_default_and_says_why(cli: Cli) -> None:
    doc = serve_doc(cli, "--gpu-memory", "24")
    assert doc["plan"]["streams"] == 2
    # planned for another machine, assumed of its own: vLLM may run every stream its share holds, 2 of them planned
    assert doc["plan"]["memory"]["why"] == "another-machine" and doc["plan"]["max_num_seqs"] == 5
    assert doc["argv"][doc["argv"].index("--max-num-seqs") + 1] == "5"
    assert any(
        n.startswith("2 streams planned") and "system audio and microphone" in n and f"{KEY}, EchoPanel's default" in n
        for n in doc["notes"]
    )


def test_an_explicit_streams_wins_without_the_note(cli: Cli) -> None:
    doc = serve_doc(cli, "--gpu-memory", "24", "--streams", "1")
    assert doc["plan"]["streams"] == 1 and not any("streams planned" in n for n in doc["notes"])


def test_the_checkouts_env_sets_the_figure_and_the_environment_wins(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", env=f"{KEY}=3\n")
    monkeypatch.setenv("ECHOPANEL_HOME", str(checkout))
    doc = serve_doc(cli, "--gpu-memory", "40")
    assert doc["plan"]["streams"] == 3
    assert any(f"{KEY}=3 in {checkout / '.env'}" in n for n in doc["notes"])
    monkeypatch.setenv(KEY, "1")
    doc = serve_doc(cli, "--gpu-memory", "40")
    assert doc["plan"]["streams"] == 1 and any(f"{KEY}=1 in the environment" in n for n in doc["notes"])


def test_a_value_echopanel_cannot_read_is_named_and_the_default_used(tmp_path: Path) -> None:
    facts = EchoPanelFacts(checkout=str(tmp_path))
    facts.env.values = {KEY: "two"}
    figure = concurrency.of(facts)
    assert figure.streams == 2 and figure.note and "is not a whole number" in figure.note
    facts.env.values = {KEY: "0"}
    assert concurrency.of(facts).note == f"{KEY}=0 in .env refuses every source"


def test_without_a_checkout_its_files_are_not_read() -> None:
    facts = EchoPanelFacts(checkout=None)
    facts.env.values = {KEY: "5"}  # never: a snapshot without a checkout
    assert concurrency.of(facts).streams == knowledge.load().echopanel.concurrency.default


def test_where_echopanels_streams_do_not_fit_serve_plans_fewer_and_says_what_that_costs(cli: Cli) -> None:
    doc = serve_doc(cli, "--gpu-memory", "14")
    assert doc["plan"]["streams"] == 1
    assert any(n.startswith("only 1 of EchoPanel's 2 streams fit on a 14 GiB GPU") for n in doc["notes"])
    refused = cli("serve", "--json", "--gpu-memory", "14", "--streams", "2")  # asked for: never lowered
    assert refused.code == 1 and "at most 1 does" in refused.out


def test_doctors_gpu_memory_check_judges_by_the_same_figure() -> None:
    results, _ = evaluate(load("linux-4090-desktop.json"), "local")
    assert "room for EchoPanel's 2 streams of hour-long sessions" in text_of(results["gpu.memory"])
    results, _ = evaluate(load("linux-4080.json"), "local")
    assert "EchoPanel's 2 streams get short sessions" in text_of(results["gpu.memory"])
    assert "system audio and microphone" in text_of(results["gpu.memory"])


def test_the_comfortable_threshold_holds_echopanels_default_streams_for_an_hour() -> None:
    """gpu.memory's OK ("room for EchoPanel's 2 streams of hour-long sessions") is what the planner says."""
    k = knowledge.load()
    request = planner.PlanRequest(
        gpus=(planner.Gpu("24 GB class", k.gpu.comfortable_total_mib, k.gpu.comfortable_total_mib, "8.9"),),
        arch=planner.builtin_arch(),
        weights_mib=k.model.weights_mib,
        session_minutes=60.0,
        streams=k.echopanel.concurrency.default,
        session_fixed=True,
    )
    assert isinstance(planner.plan(request), planner.Plan)
