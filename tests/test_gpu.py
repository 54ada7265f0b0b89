"""The nvidia-smi fallback of the GPU probe, against a scripted `nvidia-smi` on PATH that replays the
real tool's recorded output (tests/fixtures/nvidia-smi/<machine>/).

This machine has no NVIDIA kernel driver (/proc/driver/nvidia is missing), so gpu.probe() skips NVML and
runs nvidia-smi, exactly as on a host where NVML cannot load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from probe_kit import SMI_FIXTURES, install_smi, path_with

from echopanel_setup.facts import gpu
from echopanel_setup.facts.model import GpuFacts

pytestmark = pytest.mark.skipif(
    os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/dxg"),
    reason="a real NVIDIA driver is present: gpu.probe() would read NVML, not the scripted nvidia-smi",
)


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put a scripted nvidia-smi for `machine` first on PATH."""

    def use(machine: str, mode: str = "replay") -> Path:
        bin_dir = tmp_path / "smi-bin"
        exe = install_smi(bin_dir, machine, mode)
        monkeypatch.setenv("PATH", path_with(bin_dir))
        return exe

    return use


def _recorded(machine: str, name: str) -> str:
    return (SMI_FIXTURES / machine / name).read_text(encoding="utf-8")


# --- the whole probe through the scripted executable ----------------------------------------------------------


def test_h100(smi) -> None:
    smi("h100")
    facts = gpu.probe()
    assert facts.source == "nvidia-smi"
    assert facts.error is None
    assert facts.driver_version == "550.54.15"
    assert facts.cuda_driver_version == "12.4"
    (dev,) = facts.devices
    assert (dev.index, dev.name) == (0, "NVIDIA H100 80GB HBM3")
    assert (dev.memory_total_mib, dev.memory_free_mib, dev.memory_used_mib) == (81559, 81004, 1)
    assert dev.compute_capability == "9.0"
    assert dev.mig_mode == "Disabled"
    assert dev.processes == []


def test_rtx4090_compute_process_attached(smi) -> None:
    smi("rtx4090")
    facts = gpu.probe()
    assert facts.driver_version == "550.120"
    assert facts.cuda_driver_version == "12.4"
    (dev,) = facts.devices
    assert dev.name == "NVIDIA GeForce RTX 4090"
    assert (dev.memory_total_mib, dev.memory_free_mib, dev.memory_used_mib) == (24564, 7291, 16885)
    assert dev.compute_capability == "8.9"
    assert dev.mig_mode is None  # "[N/A]": GeForce cards have no MIG
    compute = [(p.pid, p.name, p.used_mib) for p in dev.processes if p.pid == 48213]
    assert compute == [(48213, "/home/ana/miniconda3/envs/sd/bin/python", 15332)]


def test_rtx4090_xorg_is_reported_as_holding_memory(smi) -> None:
    smi("rtx4090")
    (dev,) = gpu.probe().devices
    names = {p.name for p in dev.processes}
    assert "/usr/lib/xorg/Xorg" in names


def test_two_a10_processes_attach_by_bus_id(smi) -> None:
    smi("2xa10")
    facts = gpu.probe()
    assert facts.driver_version == "535.129.03"
    assert facts.cuda_driver_version == "12.2"
    assert [(d.index, d.name, d.memory_total_mib, d.memory_free_mib, d.compute_capability) for d in facts.devices] == [
        (0, "NVIDIA A10", 23028, 22502, "8.6"),
        (1, "NVIDIA A10", 23028, 1646, "8.6"),
    ]
    # The bus id is upper-case hex ("CA") in both queries; the engine core runs on GPU 1 only.
    assert facts.devices[0].processes == []
    assert [(p.pid, p.name, p.used_mib) for p in facts.devices[1].processes] == [(31337, "VLLM::EngineCore", 20852)]
    assert all(d.mig_mode is None for d in facts.devices)


def test_t4_not_available_fields_become_none(smi) -> None:
    smi("t4")
    facts = gpu.probe()
    assert facts.error is None
    (dev,) = facts.devices
    assert (dev.name, dev.memory_total_mib, dev.memory_free_mib) == ("Tesla T4", 15360, 14923)
    assert dev.memory_used_mib is None  # "[N/A]"
    assert dev.mig_mode is None  # "[N/A]"
    assert dev.compute_capability == "7.5"
    assert facts.driver_version == "535.183.01"
    assert facts.cuda_driver_version == "12.2"
    assert [(p.pid, p.name, p.used_mib) for p in dev.processes] == [(4121, "python3", None)]  # "[Not Supported]"


def test_cuda_visible_devices_recorded(smi, monkeypatch: pytest.MonkeyPatch) -> None:
    smi("2xa10")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    facts = gpu.probe()
    assert facts.cuda_visible_devices == "1"
    assert len(facts.devices) == 2  # the probe records every GPU; checks apply the mask


def test_driver_not_loaded_error_carries_the_line(smi) -> None:
    smi("h100", mode="fail")
    facts = gpu.probe()
    assert facts.devices == []
    assert facts.source == "none"
    assert "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver" in (facts.error or "")
    assert "/proc/driver/nvidia is missing" in facts.error  # why NVML was not tried, too


def test_no_nvidia_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    facts = gpu.probe()
    assert facts.devices == [] and facts.source == "none"
    assert "nvidia-smi is not on PATH" in (facts.error or "")


def test_hanging_nvidia_smi_times_out(smi, monkeypatch: pytest.MonkeyPatch) -> None:
    smi("h100", mode="hang")
    monkeypatch.setattr(gpu, "SMI_TIMEOUT_S", 0.5)
    facts = gpu.probe()
    assert facts.devices == []
    assert "nvidia-smi did not answer" in (facts.error or "")


# --- doctor end to end ------------------------------------------------------------------------------------------


def test_doctor_with_scripted_h100(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_smi(bin_dir, "h100")
    res = run_cli("doctor", "--offline", "--json", "--mode", "local", env={"PATH": path_with(bin_dir)}, timeout=30)
    doc = json.loads(res.stdout)
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["platform.verdict"]["status"] == "ok"
    assert checks["gpu.compute"]["status"] == "ok"
    assert checks["gpu.memory"]["status"] == "ok"
    assert doc["facts"]["gpu"]["devices"][0]["memory_total_mib"] == 81559
    assert doc["facts"]["gpu"]["cuda_driver_version"] == "12.4"


@pytest.mark.slow
def test_doctor_with_scripted_rtx4090_warns_about_used_memory(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_smi(bin_dir, "rtx4090")
    res = run_cli(
        "doctor",
        "--offline",
        "--json",
        "--mode",
        "local",
        "--only",
        "gpu",
        env={"PATH": path_with(bin_dir)},
        timeout=30,
    )
    checks = {c["id"]: c for c in json.loads(res.stdout)["checks"]}
    free = checks["gpu.free"]
    assert free["status"] == "fail"  # 7291 MiB free is under the 11264 MiB start-up need
    assert "7291" in free["summary"]
    assert any("48213" in line for line in free["details"])
    (dev,) = json.loads(res.stdout)["facts"]["gpu"]["devices"]
    assert dev["display_active"] is True  # the banner's "Disp.A On": this card drives the desktop


@pytest.mark.slow
def test_doctor_reports_the_driver_failure_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_smi(bin_dir, "h100", mode="fail")
    res = run_cli("doctor", "--offline", "--json", "--mode", "local", env={"PATH": path_with(bin_dir)}, timeout=30)
    doc = json.loads(res.stdout)
    verdict = {c["id"]: c for c in doc["checks"]}["platform.verdict"]
    assert verdict["status"] == "fail"
    assert any("couldn't communicate with the NVIDIA driver" in line for line in verdict["details"])


# --- the parsers on their own -----------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", ["h100", "rtx4090", "2xa10", "t4"])
def test_recorded_outputs_parse(machine: str) -> None:
    facts, by_bus = gpu.parse_query_gpu(_recorded(machine, "query-gpu.csv"))
    lines = _recorded(machine, "query-gpu.csv").strip().splitlines()
    assert len(facts.devices) == len(lines) == len(by_bus)
    assert facts.source == "nvidia-smi"
    assert all(d.memory_total_mib > 0 and d.compute_capability for d in facts.devices)
    assert all(key == key.lower() for key in by_bus)


def test_parse_query_gpu_fields() -> None:
    text = "0, NVIDIA L4, 23034, 22546, 0, 8.9, 570.86.15, [N/A], 00000000:3B:00.0\n"
    facts, by_bus = gpu.parse_query_gpu(text)
    (dev,) = facts.devices
    assert (dev.index, dev.name, dev.memory_total_mib, dev.memory_free_mib, dev.memory_used_mib) == (
        0,
        "NVIDIA L4",
        23034,
        22546,
        0,
    )
    assert dev.compute_capability == "8.9" and dev.mig_mode is None
    assert facts.driver_version == "570.86.15"
    assert by_bus == {"00000000:3b:00.0": dev}


@pytest.mark.parametrize(("machine", "display"), [("rtx4090", True), ("h100", False), ("2xa10", False)])
def test_recorded_outputs_say_whether_a_display_is_active(machine: str, display: bool) -> None:
    facts, _ = gpu.parse_query_gpu(_recorded(machine, "query-gpu.csv"))
    assert {d.display_active for d in facts.devices} == {display}


@pytest.mark.parametrize(
    "line",
    [
        "0, NVIDIA L4, 23034, 22546, 0, 8.9, 570.86.15, [N/A], 00000000:3B:00.0",  # recorded before it was asked
        "0, NVIDIA L4, 23034, 22546, 0, 8.9, 570.86.15, [N/A], 00000000:3B:00.0, [N/A]",
        "0, NVIDIA L4, 23034, 22546, 0, 8.9, 570.86.15, [N/A], 00000000:3B:00.0, [Not Supported]",
    ],
)
def test_an_unknown_display_state_is_none(line: str) -> None:
    facts, _ = gpu.parse_query_gpu(line + "\n")
    (dev,) = facts.devices
    assert dev.display_active is None and dev.memory_total_mib == 23034


def test_parse_query_gpu_skips_short_and_blank_lines() -> None:
    facts, by_bus = gpu.parse_query_gpu(
        "\n\n0, NVIDIA A100-SXM4-80GB, 81920\n1, NVIDIA A100-SXM4-80GB, 81920, 81000, 920, 8.0, 550.90.07, Enabled, "
        "00000000:07:00.0\n"
    )
    assert [d.index for d in facts.devices] == [1]
    assert facts.devices[0].mig_mode == "Enabled"


def test_parse_query_gpu_mig_and_not_supported() -> None:
    text = "0, NVIDIA H100 PCIe, 81559, [Not Supported], [Not Supported], 9.0, 550.54.15, Enabled, 00000000:C1:00.0\n"
    facts, _ = gpu.parse_query_gpu(text)
    (dev,) = facts.devices
    assert dev.memory_free_mib is None and dev.memory_used_mib is None
    assert dev.mig_mode == "Enabled"


def test_parse_query_gpu_total_not_available_does_not_crash() -> None:
    facts, _ = gpu.parse_query_gpu("0, NVIDIA GB10, [N/A], [N/A], [N/A], 12.1, 580.95.05, [N/A], 0000000F:01:00.0\n")
    (dev,) = facts.devices
    assert dev.name == "NVIDIA GB10" and dev.compute_capability == "12.1"


def test_attach_processes_by_bus_id() -> None:
    facts, by_bus = gpu.parse_query_gpu(_recorded("2xa10", "query-gpu.csv"))
    gpu.attach_processes(
        facts,
        by_bus,
        "00000000:17:00.0, 100, /usr/bin/python3, 512\n"
        "00000000:ca:00.0, 200, VLLM::EngineCore, 20000\n"
        "00000000:99:00.0, 300, elsewhere, 1\n",
    )
    assert [(p.pid, p.used_mib) for p in facts.devices[0].processes] == [(100, 512)]
    assert [(p.pid, p.name) for p in facts.devices[1].processes] == [(200, "VLLM::EngineCore")]


def test_attach_processes_single_gpu_falls_back_to_it() -> None:
    facts, by_bus = gpu.parse_query_gpu(_recorded("h100", "query-gpu.csv"))
    gpu.attach_processes(facts, by_bus, "00000000:00:00.0, 7, python, [N/A]\n")
    assert [(p.pid, p.name, p.used_mib) for p in facts.devices[0].processes] == [(7, "python", None)]


def test_attach_processes_ignores_noise() -> None:
    facts, by_bus = gpu.parse_query_gpu(_recorded("h100", "query-gpu.csv"))
    gpu.attach_processes(facts, by_bus, "\nNo running processes found\n00000000:18:00.0, [N/A], python, 5\n")
    assert facts.devices[0].processes == []


def test_empty_facts_when_nothing_parses() -> None:
    facts, by_bus = gpu.parse_query_gpu("")
    assert isinstance(facts, GpuFacts) and facts.devices == [] and by_bus == {}


def test_gb10_unknown_memory_keeps_the_json_schema(smi, cli) -> None:  # type: ignore[no-untyped-def]
    """Regression: a GPU printing [N/A] for memory (DGX Spark's GB10, unified memory) broke the published schema."""
    import jsonschema
    from facts_kit import schema

    smi("gb10")
    run = cli("doctor", "--offline", "--json", "--mode", "local", "--only", "platform,gpu")
    doc = run.json()
    jsonschema.validate(doc, schema())
    (dev,) = doc["facts"]["gpu"]["devices"]
    assert dev["name"] == "NVIDIA GB10" and dev["memory_total_mib"] is None
    memory = next(c for c in doc["checks"] if c["id"] == "gpu.memory")
    assert memory["status"] == "warn" and "not reported" in memory["summary"]
