"""What the GPU is when the NVIDIA driver is not the whole story: MIG instances, a GPU on the PCI bus that the
driver cannot reach, an AMD GPU, a Jetson, and an nvidia-smi that prints garbage.

The probe runs for real against a scripted `nvidia-smi` on PATH (tests/probe_kit.py) and a written /sys, /proc and
/etc tree (`facts.gpu.ROOT`), as on the machines these stand for.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Cli
from facts_kit import evaluate, load
from probe_kit import install_smi, path_with

from echopanel_setup.facts import gpu

pytestmark = pytest.mark.skipif(
    os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/dxg"),
    reason="a real NVIDIA driver is present: gpu.probe() would read NVML, not the scripted nvidia-smi",
)

MIG_B = "MIG-7e6f5a4b-3c2d-5e1f-9a8b-7c6d5e4f3a2b"


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A machine: a scripted nvidia-smi (`smi`, or none) and a root with PCI devices `pci` ("vendor:device:class")."""

    def make(
        smi: str | None, mode: str = "replay", pci: tuple[str, ...] = (), driver: bool = False, **etc: str
    ) -> Path:
        root = tmp_path / "root"
        for slot, spec in enumerate(pci):
            vendor, device, klass = spec.split(":")
            dev = root / f"sys/bus/pci/devices/0000:0{slot + 1}:00.0"
            dev.mkdir(parents=True)
            for name, value in (("vendor", vendor), ("device", device), ("class", klass)):
                (dev / name).write_text(f"0x{value}\n")
        (root / "sys/bus/pci/devices").mkdir(parents=True, exist_ok=True)
        if driver:
            (root / "proc/driver/nvidia").mkdir(parents=True)
        for rel, text in etc.items():
            (root / "etc" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "etc" / rel).write_text(text)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        if smi is not None:
            install_smi(bin_dir, smi, mode)
        monkeypatch.setenv("PATH", path_with(bin_dir) if smi is not None else str(bin_dir))
        monkeypatch.setattr(gpu, "ROOT", root)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        return root

    return make


def _doctor(cli: Cli, *extra: str) -> dict:  # type: ignore[type-arg]
    doc = cli("doctor", "--offline", "--json", "--mode", "local", "--only", "platform,gpu", *extra).json()
    return {c["id"]: c for c in doc["checks"]} | {"_facts": doc["facts"]}


# --- MIG ------------------------------------------------------------------------------------------------------------


def test_mig_instances_are_listed_with_their_memory(machine) -> None:  # type: ignore[no-untyped-def]
    machine("a100-mig")
    facts = gpu.probe()
    (a100,) = facts.devices
    assert a100.mig_mode == "Enabled" and a100.memory_total_mib == 81920
    assert [(m.profile, m.index, m.memory_total_mib, m.memory_used_mib) for m in a100.mig_devices or []] == [
        ("3g.40gb", 0, 40192, 37),
        ("3g.40gb", 1, 40192, 12500),
    ]
    (seen,) = facts.visible()  # CUDA uses one instance: the first, unless CUDA_VISIBLE_DEVICES names one
    assert (seen.name, seen.memory_total_mib, seen.memory_free_mib) == (
        "NVIDIA A100 80GB PCIe MIG 3g.40gb",
        40192,
        40155,
    )
    facts.cuda_visible_devices = MIG_B
    (seen,) = facts.visible()
    assert seen.memory_free_mib == 40192 - 12500


def test_a_mig_a100_is_judged_by_its_slice_without_verbose(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    """Regression: a MIG-enabled A100 counted as one 80 GB GPU."""
    machine("a100-mig")
    checks = _doctor(cli)
    memory = checks["gpu.memory"]
    assert "MIG 3g.40gb" in memory["summary"] and "40192 MiB" in memory["summary"] and "81920" not in memory["summary"]
    human = cli("doctor", "--offline", "--mode", "local", "--only", "gpu").out
    assert "MIG 3g.40gb: 40192 MiB total" in human and "not the whole GPU" in human


def test_mig_without_an_instance_says_cuda_sees_nothing(machine) -> None:  # type: ignore[no-untyped-def]
    machine("a100-mig")
    facts = load("linux-h100-vllm020.json")
    facts.gpu = gpu.probe()
    gpu.attach_mig(facts.gpu, "GPU 0: NVIDIA A100 80GB PCIe (UUID: GPU-5ad8b4f5-2ac2-7bd4-3c4e-1e7b0e1d8f2a)\n", "")
    assert facts.gpu.devices[0].mig_devices == [] and facts.gpu.visible() == []
    verdict = evaluate(facts, "local")[0]["platform.verdict"]
    assert "MIG is enabled on GPU 0" in verdict.summary and "no MIG instance" in verdict.summary


# --- no GPU from the driver: why ------------------------------------------------------------------------------------

NVIDIA_4090 = ("10de:2684:030000", "10de:22ba:040300")  # the GPU and its HDMI audio function


def _verdict_on_desktop(container: str | None = None):  # type: ignore[no-untyped-def]
    """platform.verdict for this probe's GPU facts on a recorded desktop (its platform: host or a container)."""
    facts = load("linux-4090-desktop.json")
    facts.gpu = gpu.probe()
    facts.platform.container = container
    results, _ = evaluate(facts, "local")
    return results["platform.verdict"]


def test_a_gpu_without_a_loaded_driver_is_not_no_gpu(machine) -> None:  # type: ignore[no-untyped-def]
    """Regression: nvidia-smi exiting 9 was reported as "Linux without an NVIDIA GPU: run Voxtral elsewhere"."""
    machine("h100", mode="fail", pci=NVIDIA_4090)
    verdict = _verdict_on_desktop()
    assert verdict.status.value == "fail"
    assert "an NVIDIA GPU (10de:2684) but the NVIDIA driver is not loaded" in verdict.summary
    assert "without an NVIDIA GPU" not in verdict.summary
    assert verdict.fix is not None and "sudo ubuntu-drivers install" in verdict.fix.commands
    in_docker = _verdict_on_desktop("docker")
    assert "docker container was started without GPU access" in in_docker.summary
    assert in_docker.fix is not None and "docker run --gpus all …" in in_docker.fix.commands


def test_a_loaded_driver_that_fails_is_a_broken_driver(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    machine("h100", mode="fail", pci=NVIDIA_4090, driver=True)
    verdict = _doctor(cli)["platform.verdict"]
    assert "a loaded driver that does not answer" in verdict["summary"] and "mismatched" in verdict["summary"]
    assert any("couldn't communicate with the NVIDIA driver" in d for d in verdict["details"])
    assert "sudo reboot" in verdict["fix"]["commands"]


def test_no_nvidia_device_on_the_bus_is_still_no_gpu(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    machine("h100", mode="fail", pci=("8086:46a6:030000",))
    verdict = _doctor(cli)["platform.verdict"]
    assert "Linux without an NVIDIA GPU" in verdict["summary"]


def test_a_loaded_driver_with_no_gpu_on_the_bus_it_shows_is_a_broken_driver(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    """Regression: where the PCI bus shows no NVIDIA device (a sandboxed container's sysfs) but the NVIDIA kernel
    module is loaded (it does not load without a GPU) and nvidia-smi fails, the verdict was "Linux without an
    NVIDIA GPU: run Voxtral elsewhere" instead of the driver fix."""
    machine("h100", mode="fail", driver=True)
    verdict = _doctor(cli)["platform.verdict"]
    assert "without an NVIDIA GPU" not in verdict["summary"]
    assert "a loaded NVIDIA driver (/proc/driver/nvidia) that does not answer" in verdict["summary"]
    assert "sudo reboot" in verdict["fix"]["commands"]


def test_a_pci_bus_that_cannot_be_read_is_unknown_not_empty(tmp_path: Path) -> None:
    """No sysfs PCI tree to read says nothing about the GPUs: None (unknown), never "no display device"."""
    assert gpu.hardware(tmp_path) == (None, False, None)
    (tmp_path / "sys/bus/pci/devices").mkdir(parents=True)
    assert gpu.hardware(tmp_path) == ([], False, None)


def test_an_amd_gpu_is_named_with_what_vllm_supports(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    machine(None, pci=("1002:744c:030000",))
    verdict = _doctor(cli)["platform.verdict"]
    assert "an AMD GPU (1002:744c)" in verdict["summary"] and "CUDA builds only" in verdict["summary"]
    assert any("gfx1100" in d for d in verdict["details"])
    assert any(d.startswith("Source: vLLM docs") for d in verdict["details"])


def test_a_jetson_is_recognised(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    release = (
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC "
        "2025\n"
    )
    machine(None, **{"nv_tegra_release": release})
    verdict = _doctor(cli)["platform.verdict"]
    assert verdict["summary"].startswith("NVIDIA Jetson (# R36 (release), REVISION: 4.3")
    assert any("nvidia-ai-iot/vllm" in d for d in verdict["details"])


# --- nvidia-smi garbage ---------------------------------------------------------------------------------------------


def test_garbage_from_nvidia_smi_is_kept_not_crashed(machine, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    """Regression: non-UTF-8 output crashed the gpu probe ("crashed" checks) and kept nothing to report."""
    machine("h100", mode="garbage", pci=NVIDIA_4090, driver=True)
    facts = gpu.probe()
    assert facts.devices == [] and facts.smi_raw is not None and "\ufffd" in facts.smi_raw
    checks = _doctor(cli)
    assert checks["platform.verdict"]["status"] == "fail"
    assert "cannot read" in checks["platform.verdict"]["summary"]
    assert all(c["status"] != "crashed" for k, c in checks.items() if k != "_facts")
    report = cli("doctor", "--offline", "--report", "--mode", "local", "--only", "platform").out
    assert "nvidia-smi printed" in report and "\\ufffd" in report and "PNG" in report


def test_a_hanging_nvidia_smi_on_a_gpu_is_a_driver_problem(machine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Regression: a wedged driver (nvidia-smi hangs) was reported as a machine without an NVIDIA GPU."""
    machine("h100", mode="hang", pci=NVIDIA_4090, driver=True)
    monkeypatch.setattr(gpu, "SMI_TIMEOUT_S", 0.5)
    verdict = _verdict_on_desktop()
    assert "a loaded driver that does not answer" in verdict.summary
    assert any("did not answer" in d for d in verdict.details)
