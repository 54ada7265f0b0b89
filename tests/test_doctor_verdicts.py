"""Doctor's overall verdict: what --strict counts, what "ready" needs, and which mode --url picks.

Each test replays a recorded machine (tests/fixtures/facts) through the command line, as a user or a CI job
runs it.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from conftest import Cli
from facts_kit import FACTS_DIR, load, schema, write

from echopanel_setup import checks, doctor
from echopanel_setup.checks import Check, Outcome, Status
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.collect import Options
from echopanel_setup.facts.model import ConfigFacts

H100 = str(FACTS_DIR / "linux-h100-vllm020.json")


def _runner(tmp_path: Path) -> str:
    """A ready GPU CI runner: the H100 box, with no EchoPanel config and no server started (nothing to configure)."""
    facts = load("linux-h100-vllm020.json")
    facts.config = ConfigFacts(path="/home/runner/.config/echopanel/echopanel.env")
    facts.network.server_url = None
    return str(write(facts, tmp_path / "runner.json"))


def test_the_readme_ci_recipe_passes_on_a_ready_runner(cli: Cli, tmp_path: Path) -> None:
    """Regression: `doctor --mode local --json --strict` exited 1 on every ready machine (advisory warnings)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "echopanel-setup doctor --mode local --json --strict" in readme
    run = cli("doctor", "--mode", "local", "--json", "--strict", "--facts", _runner(tmp_path))
    doc = run.json()
    jsonschema.validate(doc, schema())
    assert run.code == 0, [c for c in doc["checks"] if c["status"] != "ok"]
    warned = {c["id"]: c["required"] for c in doc["checks"] if c["status"] == "warn"}
    assert warned == {"server": False, "config.values": False}  # next steps, not faults of the machine


def test_strict_still_fails_a_warning_of_a_required_check(cli: Cli) -> None:
    run = cli("doctor", "--mode", "local", "--strict", "--facts", str(FACTS_DIR / "linux-4080.json"))
    assert run.code == 1 and "Required checks warned (--strict)" in run.out
    assert cli("doctor", "--mode", "local", "--facts", str(FACTS_DIR / "linux-4080.json")).code == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--only", "gpu", "--skip", "gpu"],
        ["--skip", ",".join(sorted({c.id.split(".")[0] for c in checks.all_checks()}))],
        ["--mode", "api", "--only", "gpu"],  # none of them runs in api mode
    ],
)
def test_a_selection_that_checks_nothing_is_a_usage_error(cli: Cli, argv: list[str]) -> None:
    """Regression: these printed "Ready for … mode" with exit 0, having checked nothing."""
    run = cli("doctor", "--facts", H100, *argv)
    assert run.code == 2, run.out
    assert "Ready" not in run.out + run.err


def test_remote_mode_offline_is_not_ready(cli: Cli) -> None:
    """Regression: `--mode remote --offline` skipped the one required check (the server) and said "Ready"."""
    run = cli("doctor", "--mode", "remote", "--offline", "--facts", H100)
    assert run.code == 1
    assert "Not verified for remote mode" in run.out and "server" in run.out and "Ready" not in run.out
    doc = cli("doctor", "--mode", "remote", "--offline", "--json", "--facts", H100).json()
    server = next(c for c in doc["checks"] if c["id"] == "server")
    assert server["status"] == "skip" and server["required"] and doc["exit_code"] == 1


def test_only_advisory_checks_is_no_readiness_verdict() -> None:
    probe = Check("zz_test.soft", "Soft", "config", {"local": "advisory"}, (), lambda f, m: Outcome(Status.OK, "x"))
    checks.all_checks().append(probe)
    try:
        run = doctor.run(Options(), mode="local", only=["zz_test"], facts_file=H100)
    finally:
        checks.REGISTRY.remove(probe)
    assert run.exit_code == 1


def test_url_alone_checks_that_server_in_remote_mode(cli: Cli) -> None:
    """Regression: `doctor --url http://gpu-host:8001` kept local mode, where the named server is only advisory."""
    doc = cli("doctor", "--url", "http://gpu-host:8001", "--json", "--facts", H100).json()
    assert doc["mode"] == "remote" and doc["mode_reason"].startswith("--url http://gpu-host:8001")
    server = next(c for c in doc["checks"] if c["id"] == "server")
    assert server["required"]
    explicit = cli("doctor", "--url", "http://gpu-host:8001", "--mode", "local", "--json", "--facts", H100).json()
    assert explicit["mode"] == "local"


def test_select_rejects_an_empty_selection() -> None:
    with pytest.raises(ValueError, match="leaves no check"):
        checks.select(checks.all_checks(), ["gpu"], ["gpu"])
    with pytest.raises(UsageError, match="runs in api mode"):
        doctor.run(Options(), mode="api", only=["gpu"], facts_file=H100)


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a2f0c9e1b3a5d7f9e1c3b5a7d9f1e3c5b7a9d1f3e5c7b9a1d3f5e7c9b1a3d\n"
    "size 8859462744\n"
)


@pytest.mark.parametrize("weights", [LFS_POINTER.encode(), b"{}"])
def test_a_pointer_or_a_stub_weights_file_is_not_ready(tmp_path: Path, weights: bytes) -> None:
    """Regression: a git-LFS pointer (~130 bytes) or a 2-byte consolidated.safetensors passed as a present model."""
    from serve_kit import make_model

    from echopanel_setup.facts import local

    model = make_model(tmp_path / "Voxtral-Mini-4B-Realtime-2602", weights=weights)
    facts = load("linux-h100-vllm020.json")
    facts.model = local.probe_model(model, None)
    assert facts.model.manifest == "absent"
    result = {r.id: r for r in checks.run(facts, "local", checks.all_checks())}["model.files"]
    assert result.status is Status.FAIL and result.required
    assert "consolidated.safetensors" in result.summary and f"{len(weights)} bytes" in result.summary
    assert "git-LFS pointer" in " ".join(result.details)
    assert result.fix is not None and result.fix.commands[0].startswith("echopanel-setup install voxtral")
