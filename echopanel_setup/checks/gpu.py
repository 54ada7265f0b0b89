"""GPU checks: compute capability, memory (total and free), other processes, MIG, and the driver.

Signals: NVML or nvidia-smi facts for the visible GPUs; the installed vLLM and torch versions.
Confidence: compute-capability floors and messages are read from the vLLM 0.20.0 and 0.33.0 wheels (not
run on the hardware); memory thresholds come from the model card (>= 16 GB) and the weights' size.
"""

from __future__ import annotations

from echopanel_setup import knowledge
from echopanel_setup.checks import REQUIRED, Fix, Outcome, Status, check
from echopanel_setup.checks.common import best_gpu, gib
from echopanel_setup.echopanel import concurrency
from echopanel_setup.facts.model import Facts
from echopanel_setup.versions import compute_capability, in_range, known_compute_capability, older

NO_GPU = Outcome(Status.SKIP, "no NVIDIA GPU visible")


def _describe(facts: Facts) -> list[str]:
    return [
        f"GPU {d.index}: {d.name}, {d.memory_total_mib} MiB total, {d.memory_free_mib} MiB free, "
        f"compute capability {d.compute_capability or '?'}"
        for d in facts.gpu.visible()
    ]


@check("gpu.compute", "GPU compute capability", "gpu", ("gpu", "pyenv"), local=REQUIRED, after=("platform.verdict",))
def compute(facts: Facts, mode: str) -> Outcome:
    """≥ 8.0 passes; 7.5 (T4) warns: float16 only, and FlashInfer breaks the encoder on some versions; < 7.5 fails."""
    g = knowledge.load().gpu
    dev = best_gpu(facts)
    if dev is None:
        return NO_GPU
    cc = compute_capability(dev.compute_capability)
    full, floor = (
        known_compute_capability(g.full_compute_capability),
        known_compute_capability(g.min_compute_capability),
    )
    name = f"{dev.name} (compute capability {dev.compute_capability})"
    if cc is None:
        return Outcome(
            Status.WARN, f"{dev.name}: compute capability unknown (driver too old to report it?)", _describe(facts)
        )
    if cc >= full:
        return Outcome(Status.OK, f"{name}: bfloat16 and FlashAttention", _describe(facts))
    if cc < floor:
        return Outcome(
            Status.FAIL,
            f"{name}: below {g.min_compute_capability}, the vLLM wheels ship no kernels for it",
            [*_describe(facts), f"Source: {g.sm_source}"],
            Fix(
                "Use a newer GPU (compute capability 8.0+), a remote vLLM server, or the Mistral API:",
                knowledge.load().alternatives("Linux"),
            ),
        )
    return Outcome(
        Status.WARN,
        f"{name}: no bfloat16, vLLM falls back to float16 (accuracy not validated)",
        _sm75_details(facts),
        _sm75_fix(),
    )


def _sm75_details(facts: Facts) -> list[str]:
    s = knowledge.load().vllm.sm75
    installed = facts.pyenv.packages.get("vllm")
    picks = in_range(installed, s.flashinfer_picked)
    lines = _describe(facts)
    lines.append(f"Serve with `{s.dtype_flag}`: the weights are bfloat16, which this GPU lacks.")
    if installed is None:
        lines.append(
            f"Attention: vLLM versions {s.flashinfer_picked} may pick FlashInfer on this GPU, which Voxtral's audio "
            f"encoder rejects; pass `{s.attention_flag}` (0.24+ picks Triton itself)."
        )
    elif picks:
        lines.append(
            f"Attention: vLLM {installed} picks FlashInfer on compute capability 7.5; the audio encoder "
            f"rejects it, so pass `{s.attention_flag}`."
        )
    else:
        lines.append(f"Attention: vLLM {installed} picks Triton attention on this GPU by itself; no flag needed.")
    lines.append(f"Source: {s.source}")
    return lines


def _sm75_fix() -> Fix:
    s = knowledge.load().vllm.sm75
    return Fix(
        f"`echopanel-setup serve` adds {s.dtype_flag} and, where needed, {s.attention_flag}:",
        ["echopanel-setup serve"],
    )


@check("gpu.memory", "GPU memory", "gpu", ("gpu",), local=REQUIRED, after=("platform.verdict",))
def memory(facts: Facts, mode: str) -> Outcome:
    """Total memory of the GPU vLLM will use, against the thresholds in compat.toml (MiB)."""
    g = knowledge.load().gpu
    weights = knowledge.load().model.weights_mib
    dev = best_gpu(facts)
    if dev is None:
        return NO_GPU
    total = dev.memory_total_mib
    if total is None:
        return Outcome(
            Status.WARN,
            f"{dev.name}: total memory not reported (unified memory?); cannot check the {g.fail_below_total_mib} MiB "
            "floor",
            _describe(facts),
        )
    fail_below, comfortable = g.fail_below_total_mib, g.comfortable_total_mib
    if total < fail_below:
        return Outcome(
            Status.FAIL,
            f"{dev.name}: {total} MiB total; the model needs at least {fail_below} MiB ({weights} MiB of weights "
            f"plus activations and cache)",
            _describe(facts),
            Fix(
                "Use a GPU with 16 GB or more, a remote vLLM server, or the Mistral API:",
                knowledge.load().alternatives("Linux"),
            ),
        )
    streams = concurrency.of(facts.echopanel)  # the streams `serve` plans for: the same figure
    if total < comfortable:
        left = int(total * knowledge.load().vllm.default_gpu_memory_utilization) - weights
        return Outcome(
            Status.WARN,
            f"{dev.name}: {total} MiB total fits the model, but EchoPanel's {streams.streams} streams get short "
            "sessions (reduced --max-model-len) or fewer streams",
            [
                *_describe(facts),
                f"{streams.why}.",
                f"After {weights} MiB of weights about {left} MiB remain for activations, CUDA graphs and the cache; "
                f"cards of {comfortable} MiB or more (24 GB class) have room for {_default_streams()} hour-long "
                "sessions.",
            ],
            Fix(
                "`echopanel-setup serve` sizes --max-model-len, the streams and the memory share for this card.",
                ["echopanel-setup serve"],
            ),
        )
    if streams.streams <= _default_streams():
        room = f"room for EchoPanel's {streams.streams} streams of hour-long sessions ({streams.why})."
    else:  # the threshold is known to hold for EchoPanel's default; for more, the planner says
        room = f"{streams.why}: `echopanel-setup serve` says whether {streams.streams} hour-long sessions fit here."
    mig = "; a MIG instance: vLLM gets this slice, not the whole GPU" if dev.mig_profile else ""
    return Outcome(Status.OK, f"{dev.name}: {total} MiB total ({gib(total)}){mig}", [*_describe(facts), room])


def _default_streams() -> int:
    """The streams `comfortable_total_mib` is known to hold hour-long sessions for (tests/test_checks.py plans it)."""
    return knowledge.load().echopanel.concurrency.default


@check("gpu.free", "Free GPU memory", "gpu", ("gpu",), local=REQUIRED, after=("platform.verdict",))
def free(facts: Facts, mode: str) -> Outcome:
    """Memory other processes hold: vLLM checks utilisation × total against *free* memory at start-up."""
    g = knowledge.load().gpu
    dev = best_gpu(facts)
    if dev is None:
        return NO_GPU
    if dev.memory_free_mib is None or dev.memory_total_mib is None:
        return Outcome(Status.WARN, f"{dev.name}: free memory unknown")
    others = [p for p in dev.processes if "vllm" not in p.name.lower()]
    holders = [
        f"pid {p.pid} {p.name or '?'}: {p.used_mib if p.used_mib is not None else '?'} MiB" for p in dev.processes
    ]
    details = [f"Processes on GPU {dev.index}: " + "; ".join(holders)] if holders else []
    if dev.display_active:
        details.append(
            f"GPU {dev.index} drives a display: `echopanel-setup serve` gives vLLM only what its plan needs and leaves "
            "the desktop the rest."
        )
    if dev.mig_mode == "Enabled":
        details.append(
            "MIG is enabled: vLLM sees MIG slices; pick one with 16 GB or more via CUDA_VISIBLE_DEVICES=MIG-<uuid>."
        )
    need = g.min_free_mib
    used = dev.memory_total_mib - dev.memory_free_mib
    if dev.memory_free_mib < need:
        vllm_running = any("vllm" in p.name.lower() for p in dev.processes)
        if vllm_running and not others:
            return Outcome(Status.OK, f"{dev.name}: a vLLM server already holds {used} MiB", details)
        return Outcome(
            Status.FAIL,
            f"{dev.name}: only {dev.memory_free_mib} MiB free of {dev.memory_total_mib}; vLLM needs about {need} MiB "
            "free to start",
            details,
            Fix(
                "Stop the processes holding GPU memory (see `nvidia-smi`), then check again:",
                ["nvidia-smi", "echopanel-setup doctor --only gpu"],
            ),
        )
    if used > g.cuda_context_mib * 2:
        util = (dev.memory_free_mib - g.cuda_context_mib) / dev.memory_total_mib
        return Outcome(
            Status.WARN,
            f"{dev.name}: {used} MiB already in use; --gpu-memory-utilization must stay at or below {util:.2f}",
            [
                *details,
                "vLLM compares utilisation × total with the memory free at start-up, so the default 0.92 would fail.",
            ],
            Fix(
                "`echopanel-setup serve` computes the utilisation from free memory; or free the GPU:",
                ["echopanel-setup serve"],
            ),
        )
    return Outcome(Status.OK, f"{dev.name}: {dev.memory_free_mib} MiB free", details)


@check("gpu.driver", "NVIDIA driver", "gpu", ("gpu", "pyenv"), local=REQUIRED, after=("platform.verdict",))
def driver(facts: Facts, mode: str) -> Outcome:
    """The driver must support the CUDA version torch was built with (NVIDIA's minor-version compatibility table)."""
    if not facts.gpu.devices:
        return NO_GPU
    d = knowledge.load().driver
    installed = facts.gpu.driver_version
    supports = facts.gpu.cuda_driver_version
    torch_cuda = facts.pyenv.torch_cuda
    desc = f"driver {installed or '?'} (supports CUDA {supports or '?'})"
    mins = d.min_for_cuda_major
    if torch_cuda is None:
        floor = mins["12"]
        if older(installed, floor):
            return Outcome(
                Status.FAIL,
                f"{desc}: older than {floor}, the minimum for CUDA 12 builds of PyTorch that current vLLM uses",
                [f"Source: {d.source}"],
                Fix("Upgrade the NVIDIA driver (your distribution's packages or nvidia.com/drivers).", ["nvidia-smi"]),
            )
        return Outcome(Status.OK, f"{desc}; torch is not installed yet to compare with")
    major = torch_cuda.split(".")[0]
    needed = mins.get(major)
    if needed and older(installed, needed):
        return Outcome(
            Status.FAIL,
            f"{desc} is too old for torch built with CUDA {torch_cuda} (needs driver {needed} or newer)",
            [f"Source: {d.source}"],
            Fix(
                "Upgrade the NVIDIA driver, or install a torch/vLLM build for the CUDA your driver supports.",
                ["nvidia-smi"],
            ),
        )
    if older(supports, torch_cuda):
        return Outcome(
            Status.WARN,
            f"{desc} is older than torch's CUDA {torch_cuda}: works through minor-version compatibility, except PTX "
            "JIT",
            [f"Source: {d.source}"],
        )
    return Outcome(Status.OK, f"{desc}; torch built with CUDA {torch_cuda}")
