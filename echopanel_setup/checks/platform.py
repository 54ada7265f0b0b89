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
    if facts.gpu.jetson:
        return _jetson(facts, alt_fix)
    if not facts.gpu.devices:
        return _no_device(facts, where, alt_fix)
    bare = [d for d in facts.gpu.devices if d.mig_mode == "Enabled" and d.mig_devices == []]
    if bare and not facts.gpu.visible():
        d = bare[0]
        return Outcome(
            Status.FAIL,
            f"MIG is enabled on GPU {d.index} ({d.name}) but it has no MIG instance: CUDA sees no device",
            ["With MIG on, CUDA runs only on a MIG instance; Voxtral needs one of 16 GB or more (e.g. 3g.40gb)."],
            Fix(
                "Create an instance (list the profiles first), or turn MIG off (needs a GPU reset):",
                [
                    "sudo nvidia-smi mig -lgip",
                    "sudo nvidia-smi mig -cgi 3g.40gb -C",
                    f"sudo nvidia-smi -i {d.index} -mig 0",
                ],
            ),
        )
    if not facts.gpu.visible():
        return Outcome(
            Status.FAIL,
            f"CUDA_VISIBLE_DEVICES={facts.gpu.cuda_visible_devices!r} hides every GPU from vLLM",
            [],
            Fix("Unset it or name a GPU index:", ["unset CUDA_VISIBLE_DEVICES", "export CUDA_VISIBLE_DEVICES=0"]),
        )
    return Outcome(Status.OK, f"Linux + NVIDIA ({where}): local vLLM is the right path")


def _no_device(facts: Facts, where: str, alt_fix: Fix) -> Outcome:
    """No GPU from NVML or nvidia-smi: tell "no NVIDIA GPU" from "an NVIDIA GPU the driver cannot reach" (the PCI
    bus and /proc/driver/nvidia say which), and recognise an AMD GPU."""
    g, hw = facts.gpu, knowledge.load().hardware
    probe = [f"GPU probe: {g.error}"] if g.error else []
    nvidia = [x for x in g.pci_gpus or [] if x.startswith(hw.nvidia_vendor + ":")]
    amd = [x for x in g.pci_gpus or [] if x.startswith(hw.amd_vendor + ":")]
    if nvidia or g.driver_loaded:
        # The NVIDIA kernel module does not load without a GPU: loaded, it says there is one even where the PCI bus
        # this process sees (a sandboxed container's sysfs) lists none.
        ids = ", ".join(nvidia)
        if not g.driver_loaded and facts.platform.container:
            return Outcome(
                Status.FAIL,
                f"an NVIDIA GPU ({ids}) but this {facts.platform.container} container was started without GPU access",
                [*probe, f"Source: {hw.container_source}"],
                Fix(
                    "Start the container with the GPU (NVIDIA Container Toolkit on the host):", [*hw.container_commands]
                ),
            )
        if not g.driver_loaded:
            return Outcome(
                Status.FAIL,
                f"an NVIDIA GPU ({ids}) but the NVIDIA driver is not loaded ({where})",
                [
                    *probe,
                    "/proc/driver/nvidia is missing: no NVIDIA kernel module is running.",
                    f"Source: {hw.driver_source}",
                ],
                Fix("Install (or load) the NVIDIA driver, reboot, then check again:", [*hw.driver_commands]),
            )
        loaded = f"an NVIDIA GPU ({ids}) and its driver" if nvidia else "a loaded NVIDIA driver (/proc/driver/nvidia)"
        if g.smi_raw is not None:
            return Outcome(
                Status.FAIL,
                f"{loaded}, but nvidia-smi printed output this tool cannot read",
                [*probe, "Its output is kept in `echopanel-setup doctor --report`."],
                Fix(
                    "Reinstall the driver's utilities (nvidia-utils) or reboot, then check again:",
                    [*hw.mismatch_commands],
                ),
            )
        return Outcome(
            Status.FAIL,
            f"{f'an NVIDIA GPU ({ids}) and a loaded driver' if nvidia else loaded} that does not answer ({where}): a "
            "broken or mismatched driver",
            [
                *probe,
                "The kernel module and the user-space library usually disagree after a driver upgrade without a "
                "reboot.",
                f"Source: {hw.mismatch_source}",
            ],
            Fix(
                "Reboot; if it persists, the kernel log names the cause (reinstall the driver):",
                [*hw.mismatch_commands],
            ),
        )
    if amd:
        return Outcome(
            Status.FAIL,
            f"an AMD GPU ({', '.join(amd)}), no NVIDIA GPU ({where}): echopanel-setup installs and serves CUDA "
            "builds only",
            [
                *probe,
                f"vLLM's ROCm builds support {hw.rocm_gpus}; Voxtral's audio encoder has a ROCm attention path, but "
                "this tool has not verified Voxtral on ROCm: run vLLM's ROCm image yourself, or use an alternative.",
                f"ROCm image and steps: {hw.rocm_image}",
                f"Source: {hw.rocm_source}",
            ],
            alt_fix,
        )
    return Outcome(Status.FAIL, f"Linux without an NVIDIA GPU ({where}): run Voxtral elsewhere", probe, alt_fix)


def _jetson(facts: Facts, alt_fix: Fix) -> Outcome:
    """A Jetson (L4T) has an integrated GPU sharing memory with the CPU: this tool's install and serve target vLLM's
    PyPI wheels for discrete GPUs, which do not cover it."""
    hw = knowledge.load().hardware
    return Outcome(
        Status.FAIL,
        f"NVIDIA Jetson ({facts.gpu.jetson}): echopanel-setup's install and serve do not cover Jetson",
        [
            f"vLLM on Jetson: {hw.jetson_route}. Voxtral needs 16 GB or more of the shared memory (Orin 32/64 GB); "
            "untested here.",
            f"Source: {hw.jetson_source}",
        ],
        alt_fix,
    )


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
