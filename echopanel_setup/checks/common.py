"""Helpers shared by the check modules: the GPU vLLM would use, alternatives, mode choice (versions: `versions`)."""

from __future__ import annotations

from echopanel_setup import envconfig
from echopanel_setup.facts.model import Facts, GpuDevice
from echopanel_setup.url import ServerURL, is_loopback
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


def pick_mode(facts: Facts, explicit: str | None, url: ServerURL | None = None) -> tuple[str, str]:
    """(mode, why): --mode, else --url (the user named a server: check it, where it is required), else the
    EchoPanel config, else the hardware."""
    if explicit:
        return explicit, "--mode"
    if url is not None:
        return "remote", f"--url {url.display}; --mode local checks this machine too"
    values = facts.config.values
    if values.get(envconfig.MODE) == "api":
        return "api", f"{envconfig.MODE}=api in the EchoPanel config"
    configured = values.get(envconfig.URL)
    if configured:
        kind = "local" if is_loopback(configured) else "remote"
        return kind, f"{envconfig.URL}={configured}"
    if facts.gpu.devices and facts.platform.system == "Linux":
        return "local", "an NVIDIA GPU is present"
    return "local", "no EchoPanel config yet; --mode remote|api checks the alternatives"
