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

from echopanel_setup.facts.model import GpuDevice, GpuFacts, GpuProcess
from echopanel_setup.facts.platform import sysctl

MIB = 1024 * 1024
SMI_TIMEOUT_S = 4.0
QUERY_FIELDS = "index,name,memory.total,memory.free,memory.used,compute_cap,driver_version,mig.mode.current,pci.bus_id"
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
    facts.cuda_visible_devices = cvd
    return facts


def _nvml() -> tuple[GpuFacts | None, str | None]:
    if platform.system() == "Linux" and not os.path.exists("/proc/driver/nvidia") and not os.path.exists("/dev/dxg"):
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
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {SMI_TIMEOUT_S:.0f} s (driver busy or wedged)"
    except OSError as exc:
        return None, str(exc)
    if out.returncode != 0:
        return None, (out.stdout + out.stderr).strip().splitlines()[0] if (
            out.stdout + out.stderr
        ).strip() else f"exit {out.returncode}"
    return out.stdout, None


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


def _value(raw: str) -> str | None:
    raw = raw.strip()
    return None if raw.startswith("[") or raw in ("", "N/A") else raw


def parse_query_gpu(text: str) -> tuple[GpuFacts, dict[str, GpuDevice]]:
    """Parse `nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits`; also map PCI bus id -> GPU."""
    facts = GpuFacts(source="nvidia-smi")
    by_bus: dict[str, GpuDevice] = {}
    for line in text.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 9:
            continue
        index, name, total, free, used, cc, driver, mig, bus = cols[:9]
        facts.driver_version = _value(driver) or facts.driver_version
        dev = GpuDevice(
            index=int(index),
            name=name,
            memory_total_mib=_int(total),  # None on unified-memory parts that report [N/A]
            memory_free_mib=_int(free),
            memory_used_mib=_int(used),
            compute_capability=_value(cc),
            mig_mode=_value(mig),
        )
        if _value(bus):
            by_bus[bus.lower()] = dev
        facts.devices.append(dev)
    return facts, by_bus


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
