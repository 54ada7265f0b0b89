"""doctor's "voxtral.c" category and the provider axis, from facts snapshots (Macs included), and the probe against the
voxtral.c stand-in and a stand-in EchoPanel checkout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import facts_kit
import pytest
import voxtralc_kit as kit
from echopanel_kit import make_checkout

from echopanel_setup.checks import Status
from echopanel_setup.facts import voxtral_c as probe
from echopanel_setup.facts.model import Facts

MAC = "macos-arm64-voxtral-c.json"  # a Mac's platform facts; EchoPanel and voxtral.c probed against stand-ins


def mac(**platform: Any) -> Facts:
    facts = facts_kit.load(MAC)
    for key, value in platform.items():
        setattr(facts.platform, key, value)
    return facts


def linux() -> Facts:
    """The same EchoPanel and voxtral.c facts on a Linux box with an NVIDIA GPU."""
    facts = mac()
    other = facts_kit.load("linux-4090-desktop.json")
    facts.platform, facts.gpu = other.platform, other.gpu
    return facts


def results(facts: Facts) -> dict[str, Any]:
    from echopanel_setup import checks, doctor

    return {r.id: r for r in checks.run(facts, "local", checks.all_checks(), moot=doctor.provider_axis(facts))}


def test_apple_silicon_with_metal_is_real_time_and_vllm_checks_are_skipped() -> None:
    r = results(mac())
    assert r["voxtral_c.speed"].status is Status.OK and "real time" in r["voxtral_c.speed"].summary
    assert all(r[i].status is Status.OK for i in ("voxtral_c.memory", "voxtral_c.binary", "voxtral_c.weights"))
    assert r["platform.verdict"].status is Status.SKIP and "runs voxtral.c" in r["platform.verdict"].summary
    assert r["gpu.memory"].status is Status.SKIP and r["stack.vllm"].status is Status.SKIP
    assert r["echopanel.provider"].status is Status.FAIL  # the published voxtral_realtime cannot work


def test_without_the_provider_the_vllm_path_is_judged_as_before() -> None:
    facts = mac()
    facts.echopanel.env.values["ECHOPANEL_ASR_PROVIDER"] = "voxtral_official"
    r = results(facts)
    assert r["platform.verdict"].status is Status.FAIL  # vLLM on a Mac: unchanged


def test_rosetta_fails_with_the_native_shell_fix() -> None:
    r = results(mac(rosetta=True))
    speed = r["voxtral_c.speed"]
    assert speed.status is Status.FAIL and "arch -arm64 /bin/zsh" in facts_kit.text_of(speed)
    assert r["voxtral_c.memory"].status is Status.SKIP


def test_blas_on_linux_runs_but_not_in_real_time_ranked_below_remote_and_api() -> None:
    r = results(linux())["voxtral_c.speed"]
    assert r.status is Status.WARN
    assert "not in real time" in r.summary and "335 ms per token" in r.summary and "80 ms budget" in r.summary
    text = facts_kit.text_of(r)
    assert text.index("(remote)") < text.index("(api)") < text.index("voxtral.c on BLAS")
    assert "line 324" in text  # the README line the figure comes from


def test_an_intel_mac_is_blas_too() -> None:
    r = results(mac(apple_silicon=False, arch="x86_64"))["voxtral_c.speed"]
    assert r.status is Status.WARN and "Intel Mac" in r.summary


@pytest.mark.parametrize(("gib", "status"), [(8, Status.FAIL), (16, Status.WARN), (24, Status.OK)])
def test_memory_under_metal_cites_the_f16_conversion(gib: int, status: Status) -> None:
    r = results(mac(ram_total_mib=gib * 1024))["voxtral_c.memory"]
    assert r.status is status
    assert "pre-converted to f16 on GPU at load time" in facts_kit.text_of(r) or status is Status.OK


def test_a_blas_build_on_apple_silicon_is_a_warning() -> None:
    facts = mac()
    assert facts.voxtral_c.build is not None
    facts.voxtral_c.build.backend = "blas"
    r = results(facts)["voxtral_c.speed"]
    assert r.status is Status.WARN and "--backend mps" in facts_kit.text_of(r)


def test_binary_missing_or_broken_fails_with_the_install_command() -> None:
    facts = mac()
    assert facts.voxtral_c.binary is not None
    facts.voxtral_c.binary.exists = False
    r = results(facts)["voxtral_c.binary"]
    assert r.status is Status.FAIL and "echopanel-setup install voxtral-c" in facts_kit.text_of(r)
    facts.voxtral_c.binary.exists, facts.voxtral_c.binary.runs = True, False
    facts.voxtral_c.binary.error = "`--help` exit 126: cannot execute binary file"
    assert "cannot execute" in results(facts)["voxtral_c.binary"].summary


def test_a_missing_binary_names_what_the_build_lacks_first() -> None:
    facts = linux()
    assert facts.voxtral_c.binary is not None
    facts.voxtral_c.binary.exists = False
    facts.voxtral_c.blas, facts.voxtral_c.blas_error = False, "cblas.h: No such file or directory"
    r = results(facts)["voxtral_c.binary"]
    assert r.status is Status.FAIL and any("libopenblas-dev" in d for d in r.details)
    assert r.fix is not None and r.fix.commands[0] == "sudo apt install libopenblas-dev"


def test_missing_build_tools_name_the_installer_of_each_system() -> None:
    from echopanel_setup.checks.voxtral_c import build_needs

    for facts, backend in ((linux(), "blas"), (mac(), "mps")):
        facts.voxtral_c.make = facts.voxtral_c.git = None
        unmet = {p.name: p for p in build_needs(facts, backend) if not p.ok}
        assert unmet["make"].detail == "make not found" and unmet["git"].detail == "git not found"
        if backend == "mps":  # Xcode's command-line tools bring both
            assert unmet["make"].fix == unmet["git"].fix == ("xcode-select --install",)
        else:
            assert unmet["make"].fix == ("sudo apt install make",) and unmet["git"].fix == ("sudo apt install git",)


@pytest.mark.parametrize(
    ("verified", "missing", "status", "needle"),
    [
        (True, False, Status.OK, "verified by install voxtral"),
        (None, False, Status.WARN, "not verified"),
        (False, False, Status.FAIL, "install voxtral --verify"),
        (True, True, Status.FAIL, "lacks tekken.json"),
    ],
)
def test_weights(verified: bool | None, missing: bool, status: Status, needle: str) -> None:
    facts = mac()
    facts.voxtral_c.model_verified = verified
    if missing:
        facts.voxtral_c.model_files["tekken.json"] = None
    r = results(facts)["voxtral_c.weights"]
    assert r.status is status and needle in facts_kit.text_of(r)


def test_everything_skips_when_nobody_uses_voxtral_c() -> None:
    r = results(facts_kit.load("linux-4090-desktop.json"))
    assert {r[i].status for i in r if i.startswith("voxtral_c.")} == {Status.SKIP}
    assert r["platform.verdict"].status is Status.OK


def test_doctor_replays_the_mac_snapshot(cli: Any) -> None:
    import jsonschema

    run = cli("doctor", "--json", "--facts", str(facts_kit.FACTS_DIR / MAC))
    doc = run.json()
    jsonschema.validate(doc, facts_kit.schema())
    by_id = {c["id"]: c for c in doc["checks"]}
    assert by_id["voxtral_c.speed"]["status"] == "ok" and by_id["platform.verdict"]["status"] == "skip"
    assert "voxtral.c" in doc["mode_reason"]


@pytest.mark.skipif(not kit.compiler_available(), reason="needs make and gcc")
def test_probe_reads_what_echopanel_will_run(tmp_path: Path) -> None:
    binary = kit.build(kit.make_repo(tmp_path / "vc"), "blas")
    model = kit.make_model(tmp_path / "model", "hi")
    env = f"ECHOPANEL_ASR_PROVIDER=voxtral_realtime\nECHOPANEL_VOXTRAL_BIN={binary}\nECHOPANEL_VOXTRAL_MODEL={model}\n"
    checkout = make_checkout(tmp_path / "work" / "EchoPanel", env=env)
    theirs = kit.make_repo(tmp_path / "work" / "voxtral.c")
    from echopanel_setup.echopanel import probe as echopanel_probe

    found = echopanel_probe.locate(str(checkout), {}, tmp_path, tmp_path)
    ep = echopanel_probe.probe(found, python=None, env_file=None, environ={})
    vc = probe.probe("Linux", ep)
    assert vc.probed and vc.binary is not None and vc.binary.runs and vc.binary.source.endswith(".env")
    assert vc.model == str(model) and vc.model_files["consolidated.safetensors"] and vc.model_verified is None
    assert (vc.user_clone, vc.user_clone_commit) == (str(theirs), kit.head(theirs))
    assert vc.compiler and vc.make and vc.git
    json.dumps(Facts(voxtral_c=vc).to_dict())  # snapshot-able


def test_weights_in_another_dir_make_the_download_checks_moot() -> None:
    """voxtral.c's own download (ECHOPANEL_VOXTRAL_MODEL elsewhere): no failing "not downloaded yet" for the empty
    default dir, no 8.9 GB download suggested; the weights are judged where EchoPanel points voxtral.c."""
    facts = mac()
    facts.voxtral_c.model = "/Users/alice/voxtral.c/voxtral-model"
    facts.model.exists, facts.model.files = False, dict.fromkeys(facts.model.files)
    r = results(facts)
    assert r["model.files"].status is Status.SKIP and "ECHOPANEL_VOXTRAL_MODEL" in r["model.files"].summary
    assert r["disk.space"].status is Status.SKIP and r["voxtral_c.weights"].status is not Status.SKIP
    facts.voxtral_c.model = facts.model.path  # the same dir: the download checks judge it as before
    assert results(facts)["model.files"].status is Status.FAIL
