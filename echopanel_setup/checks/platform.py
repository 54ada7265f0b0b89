"""Platform checks: can this machine run vLLM for Voxtral at all, and is a container set up for it.

Signals: OS (Linux / macOS / native Windows / WSL), NVIDIA GPU presence, CUDA_VISIBLE_DEVICES, container
kind and /dev/shm size. Confidence: high (vLLM has no Metal or native Windows path; vLLM docs).
"""

from __future__ import annotations

from echopanel_setup import knowledge
from echopanel_setup.checks import REQUIRED, Fix, Outcome, Status, check
from echopanel_setup.facts.model import Facts


@check("platform.verdict", "Platform", "platform", ("platform", "gpu"), local=REQUIRED)
def verdict(facts: Facts, mode: str) -> Outcome:
    """Linux + NVIDIA → local vLLM. macOS → no Metal path. Native Windows → WSL2. No GPU → remote or API."""
    p = facts.platform
    where = ", ".join(
        x for x in (p.distro, p.arch, "WSL2" if p.is_wsl else None, p.container and f"in {p.container}") if x
    )
    alt_fix = Fix(
        "Pick one of these for EchoPanel (`echopanel-setup configure --mode remote|api` writes it):",
        knowledge.load().alternatives(p.system),
    )
    if p.system == "Darwin":
        details = [
            "vLLM has no Metal (Apple GPU) backend, and its CPU build on macOS is experimental, "
            "FP32/FP16 only and from source: Voxtral Realtime would be far slower than real time.",
        ]
        if p.rosetta:
            details.append(
                "This Python runs under Rosetta (x86_64 on Apple Silicon): install a native arm64 Python for MLX."
            )
        return Outcome(Status.FAIL, f"macOS ({where}): vLLM cannot serve Voxtral on the Apple GPU", details, alt_fix)
    if p.system == "Windows":
        return Outcome(
            Status.FAIL,
            f"native Windows ({where}): vLLM does not run here; use WSL2 with the NVIDIA driver",
            [
                "Install WSL2 with Ubuntu, then run echopanel-setup inside it: the Windows NVIDIA driver exposes the "
                "GPU to WSL."
            ],
            Fix(
                "Install WSL2, or pick an alternative:",
                ["wsl --install -d Ubuntu", *knowledge.load().alternatives(p.system)],
            ),
        )
    if p.system != "Linux":
        return Outcome(Status.FAIL, f"{p.system} is not supported by vLLM's CUDA builds", [], alt_fix)
    if not facts.gpu.devices:
        details = [f"GPU probe: {facts.gpu.error}"] if facts.gpu.error else []
        return Outcome(Status.FAIL, f"Linux without an NVIDIA GPU ({where}): run Voxtral elsewhere", details, alt_fix)
    if not facts.gpu.visible():
        return Outcome(
            Status.FAIL,
            f"CUDA_VISIBLE_DEVICES={facts.gpu.cuda_visible_devices!r} hides every GPU from vLLM",
            [],
            Fix("Unset it or name a GPU index:", ["unset CUDA_VISIBLE_DEVICES", "export CUDA_VISIBLE_DEVICES=0"]),
        )
    return Outcome(Status.OK, f"Linux + NVIDIA ({where}): local vLLM is the right path")


@check("platform.shm", "Shared memory", "platform", ("platform",), local=REQUIRED, after=("platform.verdict",))
def shm(facts: Facts, mode: str) -> Outcome:
    """In a container, /dev/shm must hold vLLM's inter-process buffers (Docker's default is 64 MiB)."""
    p = facts.platform
    minimum = knowledge.load().container.min_shm_mib
    if p.system != "Linux" or p.shm_total_mib is None:
        return Outcome(Status.SKIP, "no /dev/shm on this platform")
    if p.shm_total_mib >= minimum:
        return Outcome(Status.OK, f"/dev/shm {p.shm_total_mib} MiB")
    status = Status.FAIL if p.container else Status.WARN
    return Outcome(
        status,
        f"/dev/shm is {p.shm_total_mib} MiB{' in ' + p.container if p.container else ''}; vLLM needs at least "
        f"{minimum} MiB",
        [
            "vLLM's engine and PyTorch pass tensors between processes through /dev/shm; too little gives 'Bus error' "
            "crashes."
        ],
        Fix(
            "Start the container with the host's IPC namespace or a larger /dev/shm:",
            [
                "docker run --ipc=host …",
                "docker run --shm-size=2g …",
                "Kubernetes: mount an emptyDir {medium: Memory} at /dev/shm",
            ],
        ),
    )
