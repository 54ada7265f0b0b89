"""NVIDIA GPUs through NVML (nvidia-ml-py), else a timed `nvidia-smi` CSV query; Apple GPU on macOS.

NVML answers in microseconds and needs no subprocess; `nvidia-smi` can take seconds on a host without
persistence mode, or hang on a wedged driver, so every call has a timeout and the three calls run at once.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from echopanel_setup import proc
from echopanel_setup.facts.model import GpuDevice, GpuFacts, GpuProcess, MigDevice
from echopanel_setup.facts.platform import sysctl

MIB = 1024 * 1024
SMI_TIMEOUT_S = 4.0
# Where /sys, /proc and /etc are read from: tests point it at a written tree (a GPU the driver cannot reach).
ROOT = Path("/")
RAW_KEPT = 4000  # characters of unreadable nvidia-smi output kept for --report
# display_active: "Enabled" while a display is initialised on the GPU (memory allocated for it, a monitor attached or
# not; nvidia-smi(1), "Display Active"). Last, so output recorded before it was asked for still parses.
QUERY_FIELDS = (
    "index,name,memory.total,memory.free,memory.used,compute_cap,driver_version,mig.mode.current,pci.bus_id,"
    "display_active"
)
APPS_FIELDS = "gpu_bus_id,pid,process_name,used_memory"


def probe() -> GpuFacts:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if platform.system() == "Darwin":
        return _apple(cvd)
    facts, nvml_error = _nvml()
    if facts is None:
        facts = _nvidia_smi()
        if facts.source == "none" and nvml_error:
            facts.error = f"NVML: {nvml_error}; nvidia-smi: {facts.error}"
    if any(d.mig_mode == "Enabled" for d in facts.devices):
        _attach_mig(facts)
    facts.cuda_visible_devices = cvd
    if platform.system() == "Linux":
        facts.pci_gpus, facts.driver_loaded, facts.jetson = hardware(ROOT)
    return facts


# PCI class 0x03xxxx is a display controller (VGA 0x0300, 3D 0x0302); a GPU's HDMI audio function (0x0403) is not.
_DISPLAY_CLASS = "0x03"


def hardware(root: Path) -> tuple[list[str] | None, bool, str | None]:
    """(display-class PCI devices as "vendor:device", NVIDIA kernel module loaded, Jetson release line).

    Read from sysfs and procfs, not from the driver: they say whether a GPU is there when the driver cannot answer.
    """
    pci: list[str] | None = None
    with contextlib.suppress(OSError):
        devices = sorted((root / "sys/bus/pci/devices").iterdir())  # no tree to read: unknown (None), not "none"
        pci = []
        for dev in devices:
            try:
                if not (dev / "class").read_text().strip().startswith(_DISPLAY_CLASS):
                    continue
                vendor = (dev / "vendor").read_text().strip().removeprefix("0x")
                device = (dev / "device").read_text().strip().removeprefix("0x")
            except OSError:
                continue
            pci.append(f"{vendor}:{device}")
    jetson = None
    with contextlib.suppress(OSError):
        lines = (root / "etc/nv_tegra_release").read_text(errors="replace").splitlines()
        jetson = lines[0].strip() if lines else "L4T"
    return pci, (root / "proc/driver/nvidia").exists(), jetson


def _nvml() -> tuple[GpuFacts | None, str | None]:
    if platform.system() == "Linux" and not (ROOT / "proc/driver/nvidia").exists() and not os.path.exists("/dev/dxg"):
        # No NVIDIA kernel driver (and not WSL2, whose GPU is /dev/dxg): NVML cannot answer; skip its import.
        return None, "no NVIDIA kernel driver loaded (/proc/driver/nvidia is missing)"
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, str(exc)
    try:
        facts = GpuFacts(source="nvml", driver_version=_s(pynvml.nvmlSystemGetDriverVersion()))
        try:
            v = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            facts.cuda_driver_version = f"{v // 1000}.{(v % 1000) // 10}"
        except pynvml.NVMLError:
            pass
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            dev = GpuDevice(
                index=i,
                name=_s(pynvml.nvmlDeviceGetName(h)),
                memory_total_mib=mem.total // MIB,
                memory_free_mib=mem.free // MIB,
                memory_used_mib=mem.used // MIB,
            )
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                dev.compute_capability = f"{major}.{minor}"
            except pynvml.NVMLError:
                pass
            with contextlib.suppress(pynvml.NVMLError):
                dev.display_active = pynvml.nvmlDeviceGetDisplayActive(h) == pynvml.NVML_FEATURE_ENABLED
            try:
                current, _pending = pynvml.nvmlDeviceGetMigMode(h)
                dev.mig_mode = "Enabled" if current else "Disabled"
            except pynvml.NVMLError:
                dev.mig_mode = None
            dev.processes = _nvml_processes(pynvml, h)
            facts.devices.append(dev)
        return facts, None
    except pynvml.NVMLError as exc:
        return None, str(exc)
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _nvml_processes(pynvml, handle) -> list[GpuProcess]:
    seen: dict[int, GpuProcess] = {}
    for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
        try:
            procs = getter(handle)
        except pynvml.NVMLError:
            continue
        for p in procs:
            used = p.usedGpuMemory // MIB if isinstance(p.usedGpuMemory, int) else None
            seen.setdefault(p.pid, GpuProcess(pid=p.pid, name=_process_name(p.pid), used_mib=used))
    return list(seen.values())


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001 - gone, or another user's process: the pid is still useful
        return ""


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _run_smi(args: list[str], exe: str) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, why). Bytes that are not UTF-8 are replaced, never a crash: a damaged driver or a
    wrong binary prints anything."""
    try:
        out = proc.run([exe, *args], timeout=SMI_TIMEOUT_S, text=False)  # its whole group dies on a timeout
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {SMI_TIMEOUT_S:.0f} s (driver busy or wedged)"
    except OSError as exc:
        return None, str(exc)
    stdout = out.stdout.decode("utf-8", errors="replace")
    said = (stdout + out.stderr.decode("utf-8", errors="replace")).strip()
    if out.returncode != 0:
        return None, f"{said.splitlines()[0]} (exit {out.returncode})" if said else f"exit {out.returncode}"
    return stdout, None


def _nvidia_smi() -> GpuFacts:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return GpuFacts(source="none", error="nvidia-smi is not on PATH")
    from concurrent.futures import ThreadPoolExecutor

    calls = {
        "gpus": [f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits"],
        "apps": [f"--query-compute-apps={APPS_FIELDS}", "--format=csv,noheader,nounits"],
        "banner": [],
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {k: pool.submit(_run_smi, args, exe) for k, args in calls.items()}
        results = {k: f.result() for k, f in futures.items()}
    text, error = results["gpus"]
    if text is None:
        return GpuFacts(source="none", error=error)
    facts, by_bus = parse_query_gpu(text)
    if not facts.devices and text.strip():
        # Output, but no GPU line in it: keep what it said for --report instead of calling it "no GPU".
        facts.source, facts.smi_raw = "none", text[:RAW_KEPT]
        facts.error = "nvidia-smi printed output this tool cannot read (kept in `doctor --report`)"
        return facts
    apps, _ = results["apps"]
    if apps:
        attach_processes(facts, by_bus, apps)
    banner, _ = results["banner"]
    if banner:
        match = re.search(r"CUDA Version:\s*([\d.]+)", banner)
        facts.cuda_driver_version = match.group(1) if match else None
        attach_banner_processes(facts, banner)
    return facts


# A row of the banner's process table: GPU, GI, CI, PID, Type (C, G or C+G), name, memory ("1204MiB").
_BANNER_PROCESS = re.compile(r"^\|\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s+(C\+G|C|G)\s+(.+?)\s+(\d+)MiB\s*\|$", re.M)


def attach_banner_processes(facts: GpuFacts, banner: str) -> None:
    """Add the graphics (type G) processes that `--query-compute-apps` never lists, from the banner's table.

    A desktop's Xorg and compositor hold VRAM too, and vLLM's free-memory check counts them.
    """
    by_index = {d.index: d for d in facts.devices}
    for gpu, pid, _kind, name, used in _BANNER_PROCESS.findall(banner):
        dev = by_index.get(int(gpu))
        if dev is not None and all(p.pid != int(pid) for p in dev.processes):
            dev.processes.append(GpuProcess(pid=int(pid), name=name.strip(), used_mib=int(used)))


# `nvidia-smi -L`: "GPU 0: NAME (UUID: GPU-…)" then, with MIG, "  MIG 3g.40gb     Device  0: (UUID: MIG-…)".
_LIST_GPU = re.compile(r"^GPU\s+(\d+):")
_LIST_MIG = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s+\(UUID:\s*(MIG-[^)\s]+)\)")
# The banner's "MIG devices" table: | GPU GI CI MIG-dev | used MiB / total MiB | …
_BANNER_MIG = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\|\s+(\d+)MiB\s*/\s*(\d+)MiB", re.M)
_PROFILE_GB = re.compile(r"\.(\d+)gb$")


def _attach_mig(facts: GpuFacts) -> None:
    """List the MIG instances of MIG-enabled GPUs (`nvidia-smi -L`) with their memory (the banner's table)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return
    listing, _ = _run_smi(["-L"], exe)
    if listing is not None:
        banner, _ = _run_smi([], exe)
        attach_mig(facts, listing, banner or "")


def attach_mig(facts: GpuFacts, listing: str, banner: str) -> None:
    """Fill `mig_devices` of each MIG-enabled GPU from `nvidia-smi -L` and the banner (pure, for tests)."""
    by_index = {d.index: d for d in facts.devices}
    current: GpuDevice | None = None
    for line in listing.splitlines():
        if gpu := _LIST_GPU.match(line):
            current = by_index.get(int(gpu.group(1)))
            if current is not None and current.mig_mode == "Enabled":
                current.mig_devices = []
        elif (mig := _LIST_MIG.match(line)) and current is not None and current.mig_devices is not None:
            nominal = _PROFILE_GB.search(mig.group(1))  # "3g.40gb": 40 GB, until the banner gives the real figure
            current.mig_devices.append(
                MigDevice(
                    index=int(mig.group(2)),
                    profile=mig.group(1),
                    uuid=mig.group(3),
                    memory_total_mib=int(int(nominal.group(1)) * 1000**3 / MIB) if nominal else None,
                )
            )
    for gpu_index, _gi, _ci, mig_index, used, total in _BANNER_MIG.findall(banner):
        dev = by_index.get(int(gpu_index))
        for m in (dev.mig_devices or []) if dev else []:
            if m.index == int(mig_index):
                m.memory_total_mib, m.memory_used_mib = int(total), int(used)


def _value(raw: str) -> str | None:
    raw = raw.strip()
    return None if raw.startswith("[") or raw in ("", "N/A") else raw


def parse_query_gpu(text: str) -> tuple[GpuFacts, dict[str, GpuDevice]]:
    """Parse `nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits`; also map PCI bus id -> GPU.

    A line without the last field (display_active: output recorded before it was queried) leaves it unknown."""
    facts = GpuFacts(source="nvidia-smi")
    by_bus: dict[str, GpuDevice] = {}
    for line in text.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 9:
            continue
        index, name, total, free, used, cc, driver, mig, bus = cols[:9]
        if not index.isdigit():
            continue  # not a GPU line (garbage, or a message)
        facts.driver_version = _value(driver) or facts.driver_version
        dev = GpuDevice(
            index=int(index),
            name=name,
            memory_total_mib=_int(total),  # None on unified-memory parts that report [N/A]
            memory_free_mib=_int(free),
            memory_used_mib=_int(used),
            compute_capability=_value(cc),
            mig_mode=_value(mig),
            display_active=_enabled(cols[9]) if len(cols) > 9 else None,
        )
        if _value(bus):
            by_bus[bus.lower()] = dev
        facts.devices.append(dev)
    return facts, by_bus


def _enabled(raw: str) -> bool | None:
    """nvidia-smi's "Enabled"/"Disabled" as a boolean; None for "[N/A]" or anything else."""
    return {"enabled": True, "disabled": False}.get((_value(raw) or "").lower())


def attach_processes(facts: GpuFacts, by_bus: dict[str, GpuDevice], text: str) -> None:
    """Parse `--query-compute-apps=APPS_FIELDS` and attach each process to its GPU by PCI bus id."""
    for line in text.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 4 or not cols[1].isdigit():
            continue
        dev = by_bus.get(cols[0].lower()) or (facts.devices[0] if len(facts.devices) == 1 else None)
        if dev is not None:
            dev.processes.append(GpuProcess(pid=int(cols[1]), name=cols[2], used_mib=_int(cols[3])))


def _int(raw: str) -> int | None:
    v = _value(raw)
    try:
        return int(float(v)) if v is not None else None
    except ValueError:
        return None


def _apple(cvd: str | None) -> GpuFacts:
    """Apple Silicon has an integrated GPU with Metal; vLLM has no Metal backend for this model."""
    if platform.machine() == "arm64" or sysctl("hw.optional.arm64") == "1":
        return GpuFacts(source="metal", metal=True, apple_gpu="Apple Silicon GPU", cuda_visible_devices=cvd)
    return GpuFacts(source="none", error="no NVIDIA GPU on macOS", cuda_visible_devices=cvd)
