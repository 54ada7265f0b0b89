"""OS, distro, kernel, arch, WSL, container, Apple Silicon vs Rosetta, RAM and /dev/shm."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from echopanel_setup import proc
from echopanel_setup.facts.model import PlatformFacts

MIB = 1024 * 1024


def probe() -> PlatformFacts:
    system = platform.system()
    facts = PlatformFacts(
        system=system,
        release=platform.release(),
        kernel=platform.version() if system != "Linux" else platform.release(),
        arch=platform.machine().lower(),
        python=platform.python_version(),
        ram_total_mib=_ram_mib(),
    )
    if system == "Linux":
        facts.distro = _os_release()
        facts.is_wsl = "microsoft" in platform.release().lower() or "WSL_DISTRO_NAME" in os.environ
        facts.container = _container()
        facts.shm_total_mib = _shm_mib()
        facts.cpu = _linux_cpu()
    elif system == "Darwin":
        facts.distro = f"macOS {platform.mac_ver()[0]}".strip()
        facts.apple_silicon = sysctl("hw.optional.arm64") == "1"
        facts.rosetta = sysctl("sysctl.proc_translated") == "1"
        facts.cpu = sysctl("machdep.cpu.brand_string")
    elif system == "Windows":
        facts.distro = f"Windows {platform.win32_ver()[0]}".strip()
        facts.cpu = platform.processor() or None
    return facts


def _ram_mib() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    except (AttributeError, ValueError, OSError):
        import psutil  # Windows has no sysconf

        return psutil.virtual_memory().total // MIB


def _os_release() -> str | None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
        except OSError:
            continue
    return None


def _container() -> str | None:
    """Best-effort container kind: these markers are what the runtimes themselves leave behind."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    marker = os.environ.get("container")  # noqa: SIM112 (lower case: systemd's and podman's name for it)
    if marker:
        return marker
    try:
        cgroup = Path("/proc/1/cgroup").read_text(encoding="utf-8")
    except OSError:
        return None
    for key, name in (("kubepods", "kubernetes"), ("docker", "docker"), ("containerd", "containerd"), ("lxc", "lxc")):
        if key in cgroup:
            return name
    return None


def _shm_mib() -> int | None:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return st.f_blocks * st.f_frsize // MIB


def _linux_cpu() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def sysctl(name: str) -> str | None:
    try:
        out = proc.run(["sysctl", "-n", name], timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
