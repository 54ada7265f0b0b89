"""`setup`'s voxtral.c path, from facts snapshots (Macs included): offered first on an Apple Silicon Mac with enough
memory; taken where EchoPanel selects voxtral_realtime or with --provider voxtral_realtime; each step a command."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import facts_kit
import pytest
from echopanel_kit import make_checkout

from echopanel_setup.setup_flow import Flow, SetupOptions
from echopanel_setup.setup_render import SetupUi

OFFER = "First choice on this Mac: Voxtral on the Apple GPU with voxtral.c (Metal, real time):"


def snapshot(tmp_path: Path, name: str, **changes: Any) -> str:
    """`name` with `section__field=value` changes, written to a file for --facts."""
    return str(facts_kit.write(facts_kit.changed(facts_kit.raw(name), **changes), tmp_path / f"facts-{name}"))


def flow(opts: SetupOptions, answers: dict[str, int] | None = None) -> tuple[int, str, list[list[str]]]:
    """Run the flow with our commands answered by `answers` (first words of the command → exit code, default 0)."""
    asked: list[list[str]] = []

    def runner(argv: list[str]) -> int:
        args = argv[3:]
        asked.append(args)
        return next((code for prefix, code in (answers or {}).items() if " ".join(args).startswith(prefix)), 0)

    out = io.StringIO()
    return Flow(opts, SetupUi(out=out), runner=runner).run().exit_code, out.getvalue(), asked


def test_an_apple_silicon_mac_is_offered_voxtral_c_first(cli: Any) -> None:
    code, out, _ = cli("setup", "--facts", str(facts_kit.FACTS_DIR / "macos-arm64.json"), "--mode", "local")
    assert code == 1
    assert out.index(OFFER) < out.index("MLX Whisper") < out.index("setup --mode remote")
    assert "echopanel-setup setup --provider voxtral_realtime" in out


@pytest.mark.parametrize(
    "changes",
    [
        {"platform__ram_total_mib": 8192},  # too little unified memory for the f16 weights
        {"platform__rosetta": True},
        {"platform__apple_silicon": False, "platform__arch": "x86_64"},  # an Intel Mac: BLAS, not real time
    ],
)
def test_no_offer_where_voxtral_c_cannot_keep_up(cli: Any, tmp_path: Path, changes: dict[str, Any]) -> None:
    code, out, _ = cli("setup", "--facts", snapshot(tmp_path, "macos-arm64.json", **changes), "--mode", "local")
    assert code == 1 and OFFER not in out and "setup --mode api" in out


def test_echopanel_on_voxtral_realtime_takes_the_voxtral_c_path(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel")
    opts = SetupOptions(facts=str(facts_kit.FACTS_DIR / "macos-arm64-voxtral-c.json"), echopanel=str(checkout))
    code, out, asked = flow(opts)
    assert code == 0, out
    assert "real time" in out and "install voxtral-c already done" in out and "install voxtral  already done" in out
    assert asked == [
        ["provider", "check", "--provider", "voxtral_realtime", "--echopanel", str(checkout)],
        ["configure", "--provider", "voxtral_realtime", "--echopanel", str(checkout)],
        ["smoke", "--client", "voxtral-c"],
    ]
    assert not any(a[:2] == ["install", "vllm"] or a[:1] == ["serve"] for a in asked)  # no vLLM on this path


def test_an_explicit_mode_takes_the_vllm_path(tmp_path: Path) -> None:
    opts = SetupOptions(facts=str(facts_kit.FACTS_DIR / "macos-arm64-voxtral-c.json"), mode="remote")
    _, out, asked = flow(opts)
    assert "install voxtral-c" not in out and "Apple Silicon + Metal" not in out
    assert not any(a[:1] == ["provider"] for a in asked)


def test_provider_voxtral_realtime_builds_fixes_and_configures(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel")
    facts = snapshot(tmp_path, "macos-arm64.json", model__verified=True, model__manifest="present")
    opts = SetupOptions(facts=facts, echopanel=str(checkout), provider="voxtral_realtime", yes=True)
    code, out, asked = flow(opts, {"provider check": 1})
    assert code == 0, out
    assert [a[:2] for a in asked] == [
        ["install", "voxtral-c"],
        ["provider", "check"],
        ["provider", "fix"],
        ["configure", "--provider"],
        ["smoke", "--client"],
    ]
    assert asked[2][-1] == "--yes" and asked[3][-1] == "--yes"


def test_a_failed_build_stops_with_its_step(tmp_path: Path) -> None:
    opts = SetupOptions(facts=str(facts_kit.FACTS_DIR / "macos-arm64.json"), provider="voxtral_realtime")
    code, out, asked = flow(opts, {"install voxtral-c": 3})
    assert code == 1 and asked == [["install", "voxtral-c"]]
    assert "`echopanel-setup install voxtral-c` exited with 3" in out


def test_rosetta_stops_before_building(tmp_path: Path) -> None:
    opts = SetupOptions(
        facts=snapshot(tmp_path, "macos-arm64.json", platform__rosetta=True), provider="voxtral_realtime"
    )
    code, out, asked = flow(opts)
    assert code == 1 and asked == [] and "Rosetta" in out and "arch -arm64 /bin/zsh" in out


def test_on_linux_it_says_not_real_time_and_goes_on(tmp_path: Path) -> None:
    opts = SetupOptions(facts=str(facts_kit.FACTS_DIR / "linux-4090-desktop.json"), provider="voxtral_realtime")
    code, out, asked = flow(opts)
    assert "not in real time on Linux" in out and asked[0] == ["install", "voxtral-c"]


def test_the_json_document_lists_the_voxtral_c_steps(cli: Any, tmp_path: Path) -> None:
    from test_json_envelope import envelope

    checkout = make_checkout(tmp_path / "EchoPanel")
    facts = str(facts_kit.FACTS_DIR / "macos-arm64-voxtral-c.json")
    run = cli("setup", "--json", "--dry-run", "--facts", facts, "--echopanel", str(checkout))
    doc = envelope(run, "setup")
    assert doc["status"] == "dry-run"
    assert [s["step"] for s in doc["steps"]][1:4] == ["path", "voxtral.c", "voxtral.c"]
    assert doc["steps"][-1]["text"] == "dry run: would run `echopanel-setup smoke --client voxtral-c`"
