"""Helpers shared by the check modules: the GPU vLLM would use, alternatives, mode choice (versions: `versions`)."""

from __future__ import annotations

from echopanel_setup import envconfig
from echopanel_setup.facts.model import Facts, GpuDevice
from echopanel_setup.url import is_loopback
from echopanel_setup.versions import compute_capability


def best_gpu(facts: Facts) -> GpuDevice | None:
    """The visible GPU with the most memory among those of the highest compute capability."""
    devices = facts.gpu.visible()
    if not devices:
        return None
    return max(devices, key=lambda d: (compute_capability(d.compute_capability) or (0, 0), d.memory_total_mib or 0))


def gib(mib: float | int | None) -> str:
    return "?" if mib is None else f"{mib / 1024:.1f} GiB"


def target_python(facts: Facts) -> str:
    return facts.pyenv.python or "python"


def pick_mode(facts: Facts, explicit: str | None) -> tuple[str, str]:
    """(mode, why): --mode, else the EchoPanel config, else the hardware."""
    if explicit:
        return explicit, "--mode"
    values = facts.config.values
    if values.get(envconfig.MODE) == "api":
        return "api", f"{envconfig.MODE}=api in the EchoPanel config"
    url = values.get(envconfig.URL)
    if url:
        kind = "local" if is_loopback(url) else "remote"
        return kind, f"{envconfig.URL}={url}"
    if facts.gpu.devices and facts.platform.system == "Linux":
        return "local", "an NVIDIA GPU is present"
    return "local", "no EchoPanel config yet; --mode remote|api checks the alternatives"
