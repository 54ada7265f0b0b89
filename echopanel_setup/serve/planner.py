"""The memory planner: which `vllm serve` memory flags fit Voxtral Realtime on these GPUs.

A pure function of data (`plan(PlanRequest) -> Plan | Refusal`): no probing, no I/O. It models what vLLM does at
start-up (vLLM `v1/worker/gpu_worker.py` `determine_available_memory`, `v1/kv_cache_interface.py`): vLLM checks
`utilisation x total` against the memory free *after* it created its CUDA context, then fills `utilisation x total` with
weights, the activation peak of a dummy batch of `--max-num-batched-tokens`, non-torch memory, CUDA graphs and, last,
the KV cache. This model's KV cache has two sliding-window groups, and the audio encoder's (1 MiB per decoder token of
the batch budget) dwarfs the decoder's (104 KiB per token), so the batch budget, not the session length, decides how
many streams fit. All figures are MiB per GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from echopanel_setup import knowledge
from echopanel_setup.knowledge import ModelArch
from echopanel_setup.versions import compute_capability, in_range, known_compute_capability

MIB = 1024 * 1024

RefusalKind = Literal[
    "platform",
    "no-gpu",
    "compute-capability",
    "vllm-version",
    "memory",
    "busy",
    "streams",
    "session",
    "tensor-parallel",
]
GraphMode = Literal["PIECEWISE", "FULL_AND_PIECEWISE", "eager"]


@dataclass(frozen=True)
class Gpu:
    """One GPU as the planner sees it. `index` is nvidia-smi's (PCI order); None for a GPU planned by name."""

    name: str
    total_mib: int
    free_mib: int | None = None
    compute_capability: str | None = None
    index: int | None = None
    others: tuple[str, ...] = ()  # processes besides vLLM that hold its memory (a desktop's Xorg, another job)
    display: bool | None = None  # it drives a display (nvidia-smi display_active); None: unknown

    @property
    def cc(self) -> tuple[int, int] | None:
        return compute_capability(self.compute_capability)


def builtin_arch() -> ModelArch:
    a = knowledge.load().serve.model_arch
    return replace(a, source=f"built-in: {a.source}")


def read_arch(params_json: Path) -> ModelArch:
    """The architecture from the model's params.json; any missing or odd field keeps its built-in value."""
    base = builtin_arch()
    try:
        p = json.loads(params_json.read_text(encoding="utf-8"))
        enc = p["multimodal"]["whisper_model_args"]["encoder_args"]
        down = p["multimodal"]["whisper_model_args"].get("downsample_args", {})
        frame_rate = float(enc.get("audio_encoding_args", {}).get("frame_rate") or 1000 / base.ms_per_token)
        values: dict[str, Any] = {
            "decoder_layers": p["n_layers"],
            "decoder_kv_heads": p["n_kv_heads"],
            "decoder_head_dim": p.get("head_dim") or p["dim"] // p["n_heads"],
            "decoder_sliding_window": p.get("sliding_window") or base.decoder_sliding_window,
            "encoder_layers": enc["n_layers"],
            "encoder_kv_heads": enc.get("n_kv_heads") or enc["n_heads"],
            "encoder_head_dim": enc.get("head_dim") or enc["dim"] // enc["n_heads"],
            "encoder_sliding_window": enc.get("sliding_window") or base.encoder_sliding_window,
            "block_pool_size": down.get("downsample_factor") or base.block_pool_size,
            "ms_per_token": round(1000 / frame_rate),
            "max_model_len": p.get("model_max_length") or p.get("max_seq_len") or base.max_model_len,
        }
        if not all(isinstance(v, int) and v > 0 for v in values.values()):
            raise ValueError("a field is not a positive integer")
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return base
    return replace(base, **values, source=f"{params_json}")


@dataclass(frozen=True)
class PlanRequest:
    """What to plan for. `gpus` are the candidates, best first is not required (the planner sorts)."""

    gpus: tuple[Gpu, ...]
    arch: ModelArch
    weights_mib: int
    session_minutes: float = 60.0
    streams: int = 1
    vllm_version: str | None = None
    tensor_parallel: int | None = None  # None: the fewest GPUs that fit
    session_fixed: bool = False  # the user asked for this length: refuse rather than shorten
    streams_given: bool = False  # the user asked for these streams: hold only what they need, allow no more
    hypothetical: bool = False  # planning for another machine (--gpu / --gpu-memory)
    # Adjustments after a failed start (see adjust()):
    force_eager: bool = False
    max_model_len_cap: int | None = None
    max_utilization: float | None = None


@dataclass
class Breakdown:
    """Where the memory of one GPU goes. weights + activations + non_torch + graphs + kv + headroom == budget
    <= usable = min(free - margin, total x max utilisation)."""

    total: int
    free: int
    margin: int
    usable: int
    budget: int
    weights: int
    activations: int
    non_torch: int
    graphs: int
    kv: int
    kv_per_stream: int
    headroom: int  # spare KV cache (more streams) plus `safety`
    safety: int
    graphs_outside: int = 0  # CUDA graphs vLLM < 0.21 captures beyond the budget, kept free beside it

    def parts(self) -> list[tuple[str, int]]:
        return [
            ("weights", self.weights),
            ("activations", self.activations),
            ("non-torch", self.non_torch),
            ("CUDA graphs", self.graphs),
            (
                f"KV cache ({self.kv // self.kv_per_stream if self.kv_per_stream else 0} x {self.kv_per_stream})",
                self.kv,
            ),
            ("headroom", self.headroom),
        ]


# Why the memory goes the way it does (Plan.memory.why). On a GPU of its own vLLM takes its full share and may run
# every stream that share holds; anywhere else it holds only what the planned streams need.
Why = Literal["own-gpu", "another-machine", "shared", "display", "streams-given", "display-unknown"]
WHOLE_GPU: tuple[Why, ...] = ("own-gpu", "another-machine")


@dataclass(frozen=True)
class Memory:
    """The choice between "the GPU's full share, every stream it holds" and "only what the plan needs", and why."""

    choice: Literal["all-streams", "sized"]
    why: Why
    allowed_streams: int  # --max-num-seqs: what vLLM may run at once (the planned streams, or all that fit)
    note: str  # the sentence printed with the plan


@dataclass
class Plan:
    max_model_len: int
    gpu_memory_utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int
    tensor_parallel_size: int
    cudagraph_mode: GraphMode
    dtype: str | None  # "half" on compute capability 7.5, else vLLM's auto (bfloat16)
    attention_backend: str | None
    gpus: tuple[Gpu, ...]
    breakdown: Breakdown
    streams: int
    streams_fit: int
    session_minutes: float
    longest_session_minutes: float
    confidence: str  # high | medium | low
    confidence_reasons: list[str]
    memory: Memory
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Plain data for JSON output and the state file."""
        return {
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "tensor_parallel_size": self.tensor_parallel_size,
            "cudagraph_mode": self.cudagraph_mode,
            "dtype": self.dtype,
            "attention_backend": self.attention_backend,
            "gpus": [asdict(g) for g in self.gpus],
            "breakdown_mib": asdict(self.breakdown),
            "streams": self.streams,
            "streams_fit": self.streams_fit,
            "session_minutes": round(self.session_minutes, 1),
            "longest_session_minutes": round(self.longest_session_minutes, 1),
            "confidence": self.confidence,
            "confidence_reasons": self.confidence_reasons,
            "memory": asdict(self.memory),
            "warnings": self.warnings,
            "notes": self.notes,
        }


@dataclass
class Refusal:
    """No command: why, in numbers."""

    kind: RefusalKind
    reason: str
    details: list[str] = field(default_factory=list)


def _k() -> knowledge.Planner:
    return knowledge.load().serve.planner


def kv_per_stream_bytes(arch: ModelArch, batched_tokens: int, max_model_len: int, tp: int = 1) -> int:
    """What vLLM reserves for one request (SlidingWindowSpec.max_memory_usage_bytes, per KV group):
    min(window - 1 + batch budget, max_model_len) tokens rounded up to blocks, plus one block."""
    block = _k().block_size
    total = 0
    for window, per_token in (
        (arch.decoder_sliding_window, arch.decoder_bytes_per_token(tp)),
        (arch.encoder_sliding_window, arch.encoder_bytes_per_token(tp)),
    ):
        tokens = min(window - 1 + batched_tokens, max_model_len)
        total += (math.ceil(tokens / block) + 1) * block * per_token
    return total


def stream_mib(arch: ModelArch, batched_tokens: int, max_model_len: int, tp: int = 1) -> int:
    """One stream's reservation per GPU in whole MiB (rounded up, so the parts never exceed the budget)."""
    return math.ceil(kv_per_stream_bytes(arch, batched_tokens, max_model_len, tp) / MIB)


def batch_budget(tier: int, streams: int) -> int:
    """--max-num-batched-tokens for `streams`: the tier's value, or more when there are more streams (vLLM refuses
    a batch budget below --max-num-seqs), rounded up to whole KV blocks."""
    block = _k().block_size
    return max(tier, math.ceil(streams / block) * block)


def max_streams(arch: ModelArch, tier: int, tokens: int, tp: int, room_mib: int) -> int:
    """The most streams of `tokens` whose reservations fit `room_mib` (the batch budget grows with them)."""

    def fits(n: int) -> bool:
        return n * stream_mib(arch, batch_budget(tier, n), tokens, tp) <= room_mib

    if room_mib <= 0 or not fits(1):
        return 0
    lo, hi = 1, max(1, room_mib // stream_mib(arch, tier, tokens, tp))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def session_minutes_arg(tokens: int, arch: ModelArch) -> int:
    """The largest whole --session-minutes whose --max-model-len (minutes x 1.1 margin) stays within `tokens`."""
    minutes = math.floor(_minutes(tokens, arch) / _k().model_len_margin)
    while minutes > 1 and _tokens_for(minutes, arch) > tokens:
        minutes -= 1
    return minutes


def capture_sizes(max_num_seqs: int, batched_tokens: int) -> int:
    """How many batch sizes vLLM captures by default: 1, 2, 4, then steps of 8 (16 above 256) up to
    min(2 x max_num_seqs, 512, batched_tokens)."""
    top = min(2 * max_num_seqs, 512, batched_tokens)
    sizes = [s for s in (1, 2, 4) if s <= top] + list(range(8, min(top, 256) + 1, 8)) + list(range(272, top + 1, 16))
    return len(sizes)


def _graph_mode(version: str | None, eager: bool) -> GraphMode:
    if eager:
        return "eager"
    needs = in_range(version, knowledge.load().serve.flags.piecewise_flag_for)
    return "PIECEWISE" if needs in (True, None) else "FULL_AND_PIECEWISE"


@dataclass(frozen=True)
class _Fixed:
    weights: int
    activations: int
    non_torch: int
    graphs: int  # CUDA graphs inside vLLM's budget (vLLM >= 0.21 profiles them)
    safety: int
    outside: int = 0  # CUDA graphs vLLM < 0.21 captures beyond its budget: kept free beside it

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.non_torch + self.graphs + self.safety


def _fixed(req: PlanRequest, tp: int, batched: int, streams: int, mode: GraphMode) -> _Fixed:
    k = _k()
    graphs = 0
    if mode != "eager":
        graphs = k.graph_base_mib + k.graph_per_capture_size_mib * capture_sizes(streams, batched)
        if mode == "FULL_AND_PIECEWISE":
            graphs = math.ceil(graphs * k.graph_full_and_piecewise_factor)
    # Unknown version: booked on both sides, which is safe whichever way vLLM counts them.
    counted = in_range(req.vllm_version, k.graphs_in_budget_for)
    return _Fixed(
        weights=math.ceil(req.weights_mib / tp),
        activations=math.ceil(k.activation_base_mib + k.activation_per_batched_token_mib * batched),
        non_torch=k.non_torch_mib + (k.nccl_mib if tp > 1 else 0),
        graphs=graphs if counted is not False else 0,
        safety=k.safety_mib,
        outside=graphs if counted is not True else 0,
    )


def _tokens_for(minutes: float, arch: ModelArch) -> int:
    """--max-model-len for sessions of `minutes` (with the margin), before the model's and the floor's limits."""
    return math.ceil(round(minutes * 60_000 / arch.ms_per_token * _k().model_len_margin, 6))


def _session_tokens(req: PlanRequest) -> int:
    tokens = max(_k().min_max_model_len, min(_tokens_for(req.session_minutes, req.arch), req.arch.max_model_len))
    return min(tokens, req.max_model_len_cap) if req.max_model_len_cap else tokens


def _minutes(tokens: int, arch: ModelArch) -> float:
    return tokens * arch.ms_per_token / 60_000


def _budget(gpus: tuple[Gpu, ...], req: PlanRequest, outside: int = 0) -> tuple[int, int, int, int, float]:
    """(total, free, usable, budget, utilisation) per GPU for a tensor-parallel group; `outside` MiB (CUDA graphs
    that vLLM < 0.21 captures beyond its budget) must stay free beside it.

    vLLM applies one utilisation to each GPU's own total and checks it against that GPU's free memory, so the
    utilisation is the smallest (free_i - margin - outside) / total_i: the smallest total with the busiest card's
    free memory would ask the busy card for more than it has. The budget is that share of the smallest card."""
    k = _k()
    total = min(g.total_mib for g in gpus)
    free = min(_free(g) for g in gpus)
    cap = min(k.max_utilization, req.max_utilization or 1.0)
    util = max(
        0.0,
        min(cap, *(math.floor((_free(g) - k.margin_mib - outside) / g.total_mib * 100 + 1e-9) / 100 for g in gpus)),
    )
    usable = max(0, min(min(_free(g) - k.margin_mib - outside for g in gpus), math.floor(total * cap)))
    return total, free, usable, math.floor(total * util), util


def _free(g: Gpu) -> int:
    return g.free_mib if g.free_mib is not None else g.total_mib


def _longest(arch: ModelArch, batched: int, tp: int, streams: int, room_mib: int) -> int:
    """The largest max_model_len (tokens) whose reservation for `streams` fits `room_mib`; 0 if none."""
    lo, hi = _k().min_max_model_len, arch.max_model_len

    def fits(tokens: int) -> bool:
        return streams * stream_mib(arch, batched, tokens, tp) <= room_mib

    if not fits(lo):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def plan(req: PlanRequest) -> Plan | Refusal:
    """The flags and breakdown for `req`, or why nothing fits."""
    gpus = sorted(req.gpus, key=lambda g: (g.cc or (0, 0), g.total_mib, g.free_mib or 0), reverse=True)
    if not gpus:
        return Refusal(
            "no-gpu",
            "no NVIDIA GPU is visible: vLLM serves Voxtral Realtime on NVIDIA GPUs only (its CPU backend "
            "is far slower than real time)",
        )
    floor = known_compute_capability(knowledge.load().gpu.min_compute_capability)
    if gpus[0].cc is not None and gpus[0].cc < floor:
        g = gpus[0]
        return Refusal(
            "compute-capability",
            f"{g.name} has compute capability {g.compute_capability}, below {floor[0]}.{floor[1]}: "
            "the vLLM and PyTorch wheels ship no kernels for it",
            [f"Source: {knowledge.load().gpu.sm_source}"],
        )
    full = known_compute_capability(knowledge.load().gpu.full_compute_capability)
    # bfloat16-capable first, then the most free memory: an idle card before a bigger busy one.
    usable_gpus = sorted(
        (g for g in gpus if g.cc is None or g.cc >= floor),
        key=lambda g: (g.cc is None or g.cc >= full, _free(g), g.total_mib),
        reverse=True,
    )
    tp_sizes = tensor_parallel_sizes(req.arch)
    if req.tensor_parallel is not None:
        if req.tensor_parallel not in tp_sizes:
            return Refusal(
                "tensor-parallel",
                f"{req.tensor_parallel} GPUs: tensor parallelism must divide the model's "
                f"{req.arch.decoder_kv_heads} KV heads; use {', '.join(map(str, tp_sizes))}",
            )
        if req.tensor_parallel > len(usable_gpus):
            return Refusal("tensor-parallel", f"{req.tensor_parallel} GPUs asked for, {len(usable_gpus)} usable here")
        sizes = [req.tensor_parallel]
    else:
        sizes = [n for n in tp_sizes if n <= len(usable_gpus)]
    first: Plan | Refusal | None = None
    for tp in sizes:
        # One GPU: any card that fits alone beats splitting the model over a busy one.
        groups = [(g,) for g in usable_gpus] if tp == 1 else [tuple(usable_gpus[:tp])]
        attempts = [_plan_group(req, group) for group in groups]
        result = next((r for r in attempts if isinstance(r, Plan)), attempts[0])
        if isinstance(result, Plan):
            if tp > 1 and req.tensor_parallel is None:
                result.notes.append(
                    f"One GPU is not enough: the plan splits the model over {tp} GPUs (tensor parallel)."
                )
            return result
        first = first or result
    assert first is not None
    return first


def tensor_parallel_sizes(arch: ModelArch) -> list[int]:
    """GPU counts that split both attention stacks evenly: powers of two dividing every KV-head count."""
    return [n for n in (1, 2, 4, 8, 16) if arch.decoder_kv_heads % n == 0 and arch.encoder_kv_heads % n == 0]


def _plan_group(req: PlanRequest, gpus: tuple[Gpu, ...]) -> Plan | Refusal:
    k = _k()
    arch, tp, streams = req.arch, len(gpus), req.streams
    total, free, usable, budget, util = _budget(gpus, req)
    small, large = k.batched_tokens_small, k.batched_tokens_large
    tier = large if total >= k.large_card_from_mib else small
    wanted = _session_tokens(req)
    # (the tier's batch budget, before batch_budget() raises it for many streams; no CUDA graphs)
    candidates = [(b, req.force_eager) for b in dict.fromkeys((tier, small))]
    if not req.force_eager:
        candidates.append((small, True))

    chosen = None
    for base, eager in candidates:  # full session first, with the fewest sacrifices
        batched = batch_budget(base, streams)
        fixed = _fixed(req, tp, batched, streams, _graph_mode(req.vllm_version, eager))
        shares = _budget(gpus, req, fixed.outside)
        if streams * stream_mib(arch, batched, wanted, tp) <= shares[3] - fixed.total:
            chosen = (base, eager, wanted, fixed, shares)
            break
    if chosen is None and not req.session_fixed:
        for base, eager in candidates:  # then a shorter session
            batched = batch_budget(base, streams)
            fixed = _fixed(req, tp, batched, streams, _graph_mode(req.vllm_version, eager))
            shares = _budget(gpus, req, fixed.outside)
            tokens = _longest(arch, batched, tp, streams, shares[3] - fixed.total)
            if tokens:
                chosen = (base, eager, tokens, fixed, shares)
                break
    if chosen is None:
        return _refuse(req, gpus, budget, usable, total, free, wanted)

    base, eager, tokens, fixed, shares = chosen
    why, users = _sharing(req, gpus)
    seqs = streams
    if why in WHOLE_GPU:  # vLLM keeps its full share: let it run every stream the cache holds
        seqs, fixed, shares = _most_streams(req, gpus, base, _graph_mode(req.vllm_version, eager), tokens)
    batched = batch_budget(base, seqs)
    total, free, usable, budget, util = shares
    per_stream = stream_mib(arch, batched, tokens, tp)
    kv = seqs * per_stream
    full = util
    if why not in WHOLE_GPU:
        # The KV cache beyond --max-num-seqs would never be used, while a desktop or another job can run out.
        util = min(util, math.ceil((fixed.total + kv + 1) / total * 100) / 100)
        budget = math.floor(total * util)
    room = budget - fixed.total
    breakdown = Breakdown(
        total=total,
        free=free,
        margin=k.margin_mib,
        usable=usable,
        budget=budget,
        weights=fixed.weights,
        activations=fixed.activations,
        non_torch=fixed.non_torch,
        graphs=fixed.graphs,
        kv=kv,
        kv_per_stream=per_stream,
        headroom=budget - fixed.weights - fixed.activations - fixed.non_torch - fixed.graphs - kv,
        safety=fixed.safety,
        graphs_outside=fixed.outside,
    )
    fp16 = any(
        g.cc is not None and g.cc < known_compute_capability(knowledge.load().gpu.full_compute_capability) for g in gpus
    )
    result = Plan(
        max_model_len=tokens,
        gpu_memory_utilization=util,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        tensor_parallel_size=tp,
        cudagraph_mode=_graph_mode(req.vllm_version, eager),
        dtype="half" if fp16 else None,
        attention_backend=_attention_backend(req.vllm_version) if fp16 else None,
        gpus=gpus,
        breakdown=breakdown,
        streams=streams,
        # all that fit is --max-num-seqs itself, unless vLLM's default capped it
        streams_fit=seqs if why in WHOLE_GPU and seqs < k.max_streams else max(seqs, room // per_stream),
        session_minutes=_minutes(tokens, arch),
        longest_session_minutes=_minutes(_longest(arch, batch_budget(base, streams), tp, streams, room), arch),
        confidence="medium",
        confidence_reasons=[],
        memory=_memory(req, gpus, why, users, (full, util, total, seqs)),
    )
    result.notes.append(result.memory.note)
    _explain(req, result, wanted, eager)
    return result


def _sharing(req: PlanRequest, gpus: tuple[Gpu, ...]) -> tuple[Why, list[str]]:
    """Whether these GPUs are vLLM's alone, with the other users by name where they have one.

    A display counts as a user even when no process is listed: a container does not see the desktop's Xorg."""
    users = sorted({name for g in gpus for name in g.others})
    if req.hypothetical:
        return ("streams-given" if req.streams_given else "another-machine"), []
    if users:
        return "shared", users
    if any(g.display for g in gpus):
        return "display", []
    if req.streams_given:
        return "streams-given", []
    if any(g.display is None for g in gpus):
        return "display-unknown", []
    return "own-gpu", []


def _most_streams(
    req: PlanRequest, gpus: tuple[Gpu, ...], base: int, mode: GraphMode, tokens: int
) -> tuple[int, _Fixed, tuple[int, int, int, int, float]]:
    """The most streams (--max-num-seqs) of `tokens` that fit the GPUs' full share, at least the planned ones and
    at most vLLM's own default, with what depends on them: the batch budget (never below --max-num-seqs) and the
    CUDA graphs captured for batch sizes up to 2 x --max-num-seqs."""
    tp = len(gpus)

    def attempt(n: int) -> tuple[bool, _Fixed, tuple[int, int, int, int, float]]:
        batched = batch_budget(base, n)
        fixed = _fixed(req, tp, batched, n, mode)
        shares = _budget(gpus, req, fixed.outside)
        return n * stream_mib(req.arch, batched, tokens, tp) <= shares[3] - fixed.total, fixed, shares

    lo, hi = req.streams, max(req.streams, _k().max_streams)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if attempt(mid)[0] else (lo, mid - 1)
    _, fixed, shares = attempt(lo)
    return lo, fixed, shares


def _memory(
    req: PlanRequest, gpus: tuple[Gpu, ...], why: Why, users: list[str], shares: tuple[float, float, int, int]
) -> Memory:
    """Which way the memory goes and why, in one sentence a user can act on. `shares`: (vLLM's full share, the
    utilisation planned, the total per GPU, --max-num-seqs). With tensor parallelism the sentence names the GPUs."""
    k = _k()
    full, util, total, seqs = shares
    planned = f"{req.streams} planned"
    several = len(gpus) > 1
    these, its = (f"These {len(gpus)} GPUs have", "its GPUs") if several else ("This GPU has", "its GPU")
    if why in WHOLE_GPU:
        whose = (
            f"Planned for another machine, {its} assumed to have no display and no other users"
            if why == "another-machine"
            else f"{these} no display and no other users"
        )
        more = (
            f"may run up to {seqs} streams at once (--max-num-seqs {seqs}; {planned})"
            if seqs > req.streams
            else f"runs the {planned} streams: its cache holds no more"
        )
        cap = ", vLLM's own default cap" if seqs >= k.max_streams else ""
        return Memory(
            "all-streams",
            why,
            seqs,
            f"{whose}: vLLM takes its full share (--gpu-memory-utilization {full:.2f}) and {more}{cap}; "
            "--streams K reserves only what K streams need.",
        )
    if why == "streams-given":
        reason = f"--streams {req.streams} given"
    elif why == "shared":
        reason = f"GPU shared with {', '.join(users[:3])}{' …' if len(users) > 3 else ''}"
    elif why == "display":
        which = f"GPU {', '.join(str(g.index) for g in gpus if g.display)}" if several else "This GPU"
        reason = f"{which} drives a display (its desktop is not listed, as in a container)"
    else:
        drive = "these GPUs drive" if several else "this GPU drives"
        reason = f"Whether {drive} a display is unknown (the facts do not say)"
    if util < full:
        left = f"{math.floor(total * (full - util))} MiB of vLLM's full share ({full:.2f}) stay free"
        held = f"--gpu-memory-utilization sized to the {planned} streams ({util:.2f}), so {left}"
    else:
        held = f"the {planned} streams need vLLM's full share ({full:.2f})"
    after = (
        "leave --streams out to let vLLM use a GPU of its own for every stream it holds"
        if why == "streams-given"
        else "--streams N to plan for more"
    )
    return Memory(
        "sized", why, seqs, f"{reason}: {held}; vLLM runs at most {seqs} streams (--max-num-seqs {seqs}); {after}."
    )


def _attention_backend(version: str | None) -> str | None:
    s = knowledge.load().vllm.sm75
    picks = in_range(version, s.flashinfer_picked)
    return s.attention_flag.split()[-1] if picks in (True, None) else None


def _explain(req: PlanRequest, p: Plan, wanted: int, eager: bool) -> None:
    """Warnings, notes and the confidence label, all in words a user can act on."""
    reasons = ["the KV formula is read from vLLM's code (voxtral_realtime.py), not yet measured on a GPU"]
    low = False
    if p.dtype == "half":
        low = True
        reasons.append("float16 on compute capability 7.5: vLLM's own behaviour here is read from its code, not run")
        p.warnings.append(
            "This GPU has no bfloat16: the model runs in float16 (--dtype half); accuracy in float16 is not validated "
            "for this bfloat16-trained model. Check it with `echopanel-setup smoke`."
        )
        if p.attention_backend:
            p.notes.append(
                f"--attention-backend {p.attention_backend}: vLLM {req.vllm_version or 'of these versions'} would pick "
                "FlashInfer on compute capability 7.5, which Voxtral's audio encoder rejects."
            )
    if req.vllm_version is None:
        low = True
        reasons.append("the vLLM version is unknown: flags and the graph mode assume a current release")
    if req.arch.source.startswith("built-in"):
        reasons.append("model shape: built-in values (params.json not read)")
    if any(g.free_mib is None for g in p.gpus) and not req.hypothetical:
        low = True
        reasons.append("free GPU memory unknown: assumed all free")
    if req.hypothetical:
        reasons.append("planned for another machine: its GPU assumed otherwise idle")
    outside = p.breakdown.graphs_outside
    if outside and p.breakdown.graphs:
        p.notes.append(
            f"CUDA graphs ({outside} MiB) are booked both inside and beside vLLM's budget: the vLLM version is "
            "unknown, and only 0.21+ counts them inside."
        )
    elif outside:
        p.notes.append(
            f"vLLM {req.vllm_version} captures CUDA graphs beyond --gpu-memory-utilization (0.21+ counts them inside): "
            f"{outside} MiB of them are kept free beside the budget."
        )
    if eager and not req.force_eager:
        p.notes.append(
            "CUDA graphs are off (--enforce-eager): their memory is needed for the cache. Decoding is a little slower."
        )
    if _tokens_for(req.session_minutes, req.arch) > req.arch.max_model_len:
        p.warnings.append(
            f"Voxtral Realtime's context is {req.arch.max_model_len} tokens "
            f"({_minutes(req.arch.max_model_len, req.arch):.0f} min of audio): {req.session_minutes:g}-minute sessions "
            "cannot be served whatever the memory. EchoPanel must restart sessions before that."
        )
    if p.max_model_len < wanted:
        p.warnings.append(
            f"Sessions are capped at {p.session_minutes:.0f} min (--max-model-len {p.max_model_len}; 1 token = "
            f"{req.arch.ms_per_token} ms): {req.session_minutes:g} min does not fit. EchoPanel must restart sessions "
            "before that."
        )
    p.confidence = "low" if low else "medium"
    p.confidence_reasons = reasons


def _refuse(
    req: PlanRequest, gpus: tuple[Gpu, ...], budget: int, usable: int, total: int, free: int, wanted: int
) -> Refusal:
    """Explain, in MiB, why the smallest configuration does not fit, and what would: fewer streams, a shorter
    session, or freeing the memory other processes hold."""
    k = _k()
    arch, tp, margin = req.arch, len(gpus), k.margin_mib
    small = k.batched_tokens_small
    fixed = _fixed(req, tp, small, 1, "eager")
    shortest = k.min_max_model_len
    need = stream_mib(arch, small, shortest, tp)
    room = budget - fixed.total
    names = " + ".join(g.name for g in gpus)
    numbers = [
        f"{names}: {total} MiB total, {free} MiB free; usable {usable} MiB = min(free - {margin} MiB for the CUDA "
        f"context, total x {k.max_utilization}); vLLM's budget at --gpu-memory-utilization {budget / total:.2f}: "
        f"{budget} MiB",
        f"weights {fixed.weights} + activations {fixed.activations} + non-torch {fixed.non_torch} + safety "
        f"{fixed.safety} (no CUDA graphs, --max-num-batched-tokens {small}) = {fixed.total} MiB, leaving {room} MiB "
        "for the KV cache",
    ]
    held = total - free
    if held > margin:
        numbers.append(
            f"other processes and the driver hold {held} MiB of it (`nvidia-smi` lists them); freeing memory leaves "
            "room for more"
        )
    one = stream_mib(arch, batch_budget(small, 1), wanted, tp)
    if req.streams > 1:
        fit = max_streams(arch, small, wanted, tp, room)
        if fit >= 1:
            return Refusal(
                "streams",
                f"{req.streams} streams of {req.session_minutes:g} min do not fit; at most {fit} "
                f"do{'es' if fit == 1 else ''} (--streams {fit})",
                [*numbers, f"one stream's KV cache needs {one} MiB"],
            )
        fit = max_streams(arch, small, shortest, tp, room) if not req.session_fixed else 0
        if fit >= 1:
            minutes = _minutes(_longest(arch, batch_budget(small, fit), tp, fit, room), arch)
            return Refusal(
                "streams",
                f"{req.streams} streams do not fit, even with shorter sessions; at most {fit} "
                f"do{'es' if fit == 1 else ''}, with sessions up to {minutes:.0f} min (--streams {fit})",
                [
                    *numbers,
                    f"one {req.session_minutes:g}-minute stream's KV cache needs {one} MiB; a "
                    f"{_minutes(shortest, arch):.1f}-minute one {need} MiB",
                ],
            )
    longest = _longest(arch, small, tp, 1, room)
    if req.session_fixed and longest:
        minutes = session_minutes_arg(longest, arch)
        fewer = " --streams 1" if req.streams > 1 else ""
        return Refusal(
            "session",
            f"{'a' if req.streams == 1 else f'{req.streams} streams of'} {req.session_minutes:g}-minute "
            f"session{'s do' if req.streams > 1 else ' does'} not fit; the longest that "
            f"does{' (one stream)' if fewer else ''} is {minutes} min (--session-minutes {minutes}{fewer})",
            [*numbers, f"one {req.session_minutes:g}-minute stream's KV cache needs {one} MiB"],
        )
    idle_budget = math.floor(total * min(k.max_utilization, math.floor((total - margin) / total * 100 + 1e-9) / 100))
    if held > 0 and idle_budget - fixed.total >= need:
        percent = math.ceil((fixed.total + need) * 100 / total)
        free_needed = margin + math.ceil(percent * total / 100)
        return Refusal(
            "busy",
            f"only {free} of {names}'s {total} MiB are free (other processes and the driver hold {held} MiB); Voxtral "
            f"Realtime needs at least {free_needed} MiB free on it (one stream of "
            f"{_minutes(shortest, arch):.1f}-minute sessions)",
            [
                *numbers[:2],
                "Stop the processes holding GPU memory (`nvidia-smi` lists them), then run `echopanel-setup serve` "
                "again.",
            ],
        )
    return Refusal(
        "memory",
        f"{names} is too small for Voxtral Realtime: {room} MiB are left for the KV cache, and one stream of the "
        f"shortest useful session ({_minutes(shortest, arch):.1f} min, --max-model-len {shortest}) needs {need} MiB",
        numbers,
    )


def adjust(req: PlanRequest, failure_id: str, groups: dict[str, str], previous: Plan) -> PlanRequest | None:
    """The request to retry with after vLLM refused to start for lack of memory, or None when no retry helps.

    - "estimated maximum model length is E": cap --max-model-len at E;
    - "Free memory on device (F/T GiB)": plan with the free memory vLLM saw;
    - no memory for the cache, or CUDA OOM (usually during graph capture): no CUDA graphs, 0.03 less utilisation.
    """
    if failure_id == "max-model-len-too-long" and groups.get("estimated"):
        estimate = int(groups["estimated"]) // _k().block_size * _k().block_size
        if estimate < _k().min_max_model_len or estimate >= previous.max_model_len:
            return None
        return replace(req, max_model_len_cap=estimate, session_fixed=False)
    if failure_id == "free-memory-startup" and groups.get("free_gib"):
        seen = int(float(groups["free_gib"]) * 1024)
        return replace(req, gpus=tuple(replace(g, free_mib=min(seen, g.free_mib or seen)) for g in req.gpus))
    if failure_id in ("no-cache-memory", "cuda-oom"):
        if req.force_eager and previous.cudagraph_mode == "eager" and previous.gpu_memory_utilization <= 0.5:
            return None
        return replace(req, force_eager=True, max_utilization=round(previous.gpu_memory_utilization - 0.03, 2))
    return None
