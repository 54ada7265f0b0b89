"""The memory planner: one row per GPU class, each asserting the flags and that the breakdown fits.

Memory figures are MiB as nvidia-smi reports them (recorded machines where we have them). Every plan must
keep vLLM's budget (`utilisation x total`) inside the memory free at start-up minus the CUDA context margin,
and its parts must add up to that budget.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from serve_kit import PARAMS

from echopanel_setup import knowledge
from echopanel_setup.serve.planner import (
    MIB,
    Gpu,
    Plan,
    PlanRequest,
    Refusal,
    adjust,
    builtin_arch,
    capture_sizes,
    kv_per_stream_bytes,
    plan,
    read_arch,
)

ARCH = builtin_arch()
WEIGHTS = 8450
MARGIN = knowledge.load().serve.planner.margin_mib


def request(*gpus: Gpu, **kw: object) -> PlanRequest:
    """A request for `gpus`; a GPU whose display state is not given is one of vLLM's own (no display, no other
    user), as on a server. Tests of the other cases build their Gpu and PlanRequest themselves."""
    own = tuple(replace(g, display=False) if g.display is None else g for g in gpus)
    return PlanRequest(gpus=own, arch=ARCH, weights_mib=WEIGHTS, vllm_version=kw.pop("vllm_version", "0.20.0"), **kw)  # type: ignore[arg-type]


def fits(p: Plan) -> None:
    """The invariants every plan keeps."""
    b = p.breakdown
    assert sum(mib for _, mib in b.parts()) == b.budget
    assert b.budget <= b.usable <= b.free - MARGIN
    assert p.gpu_memory_utilization * b.total <= b.free - MARGIN + 1e-6
    assert p.gpu_memory_utilization <= 0.92
    assert b.headroom >= b.safety == knowledge.load().serve.planner.safety_mib
    assert b.kv == p.max_num_seqs * b.kv_per_stream
    assert p.max_num_batched_tokens >= p.max_num_seqs
    assert p.streams_fit >= p.max_num_seqs >= p.streams
    assert p.memory.allowed_streams == p.max_num_seqs and p.memory.note in p.notes
    if p.memory.choice == "sized":  # only what the plan needs: no more streams than planned
        assert p.max_num_seqs == p.streams


# name, GPUs, expected flags: (max_model_len, util, max_num_seqs, batched, tp, graphs, dtype, attention),
# streams that fit
TABLE = [
    (
        "16 GB RTX 4080",
        [Gpu("NVIDIA GeForce RTX 4080", 16376, 15780, "8.9", 0)],
        (49500, 0.91, 2, 512, 1, "PIECEWISE", None, None),  # vLLM 0.20 captures graphs beside the budget
        2,
    ),
    (
        "24 GB RTX 4090",
        [Gpu("NVIDIA GeForce RTX 4090", 24564, 24300, "8.9", 0)],
        (49500, 0.92, 5, 512, 1, "PIECEWISE", None, None),
        5,
    ),
    (
        "40 GB A100",
        [Gpu("NVIDIA A100-SXM4-40GB", 40960, 40400, "8.0", 0)],
        (49500, 0.92, 10, 1024, 1, "PIECEWISE", None, None),
        10,
    ),
    (
        "48 GB RTX 6000 Ada",
        [Gpu("NVIDIA RTX 6000 Ada Generation", 49140, 48600, "8.9", 0)],
        (49500, 0.92, 12, 1024, 1, "PIECEWISE", None, None),
        12,
    ),
    (
        "80 GB H100",
        [Gpu("NVIDIA H100 80GB HBM3", 81559, 81004, "9.0", 0)],
        (49500, 0.92, 23, 1024, 1, "PIECEWISE", None, None),
        23,
    ),
    (
        "141 GB H200",
        [Gpu("NVIDIA H200", 143771, 143200, "9.0", 0)],
        (49500, 0.92, 44, 1024, 1, "PIECEWISE", None, None),
        44,
    ),
    (
        "24 GB desktop, 6 GB in use",  # its display and desktop keep what the plan does not need
        [Gpu("NVIDIA GeForce RTX 4090", 24564, 18420, "8.9", 0, ("Xorg", "gnome-shell", "firefox"), True)],
        (49500, 0.5, 1, 512, 1, "PIECEWISE", None, None),
        1,
    ),
    (
        "24 GB desktop in a container",  # Xorg not listed, but the GPU drives a display
        [Gpu("NVIDIA GeForce RTX 4090", 24564, 18420, "8.9", 0, (), True)],
        (49500, 0.5, 1, 512, 1, "PIECEWISE", None, None),
        1,
    ),
    (
        "T4 (float16)",
        [Gpu("Tesla T4", 15360, 14923, "7.5", 0)],
        (49500, 0.91, 1, 512, 1, "PIECEWISE", "half", "TRITON_ATTN"),
        1,
    ),
]


@pytest.mark.parametrize(("name", "gpus", "flags", "streams_fit"), TABLE, ids=[row[0] for row in TABLE])
def test_plan_per_gpu(name: str, gpus: list[Gpu], flags: tuple, streams_fit: int) -> None:
    p = plan(request(*gpus))
    assert isinstance(p, Plan), p
    got = (
        p.max_model_len,
        p.gpu_memory_utilization,
        p.max_num_seqs,
        p.max_num_batched_tokens,
        p.tensor_parallel_size,
        p.cudagraph_mode,
        p.dtype,
        p.attention_backend,
    )
    assert got == flags
    assert p.streams_fit == streams_fit
    assert p.breakdown.weights == WEIGHTS
    fits(p)


H100 = Gpu("NVIDIA H100 80GB HBM3", 81559, 81004, "9.0", 0)


def test_a_gpu_of_its_own_runs_every_stream_its_share_holds_with_graphs_and_batch_recomputed() -> None:
    """Regression: on a GPU of its own the cache beyond --max-num-seqs (the planned streams) was never used.
    --max-num-seqs is now the most streams that fit the full share, counting the CUDA graphs captured for them."""
    p = plan(request(H100, streams=2, vllm_version="0.21.0"))
    assert isinstance(p, Plan) and p.gpu_memory_utilization == 0.92
    assert (p.streams, p.max_num_seqs, p.memory.choice, p.memory.why) == (2, 23, "all-streams", "own-gpu")
    k = knowledge.load().serve.planner
    assert p.breakdown.graphs == k.graph_base_mib + k.graph_per_capture_size_mib * capture_sizes(23, 1024)
    fits(p)
    # One more stream at the same batch budget and graphs does not fit: asked for, it costs a smaller batch budget,
    # the graphs or session length.
    more = plan(request(H100, streams=24, streams_given=True, vllm_version="0.21.0"))
    assert not isinstance(more, Plan) or (more.max_num_batched_tokens, more.cudagraph_mode, more.max_model_len) != (
        p.max_num_batched_tokens,
        p.cudagraph_mode,
        p.max_model_len,
    )


def test_streams_given_are_kept_and_only_their_memory_is_held() -> None:
    p = plan(request(H100, streams=2, streams_given=True))
    assert isinstance(p, Plan) and (p.max_num_seqs, p.memory.choice, p.memory.why) == (2, "sized", "streams-given")
    assert p.gpu_memory_utilization < 0.25 and "--streams 2 given" in p.memory.note
    fits(p)


def test_vllms_default_caps_the_streams_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    k = knowledge.load()
    capped = replace(k, serve=replace(k.serve, planner=replace(k.serve.planner, max_streams=4)))
    monkeypatch.setattr(knowledge, "load", lambda: capped)
    p = plan(request(H100, streams=2))
    assert isinstance(p, Plan) and p.max_num_seqs == 4 and p.streams_fit > 4
    assert "vLLM's own default cap" in p.memory.note
    fits(p)


@pytest.mark.parametrize(
    ("others", "display", "why"),
    [
        (("Xorg",), True, "shared"),
        ((), True, "display"),
        (("python3",), False, "shared"),
        ((), None, "display-unknown"),
    ],
)
def test_a_gpu_not_vllms_alone_holds_only_what_the_plan_needs(
    others: tuple[str, ...], display: bool | None, why: str
) -> None:
    """A display (listed or not), another process, or not knowing: the utilisation is sized to the planned streams,
    and one of two tensor-parallel GPUs is enough to decide it."""
    for gpus in (
        (replace(H100, others=others, display=display),),
        (H100, replace(H100, index=1, others=others, display=display)),
    ):
        req = PlanRequest(
            gpus=gpus, arch=ARCH, weights_mib=WEIGHTS, streams=2, vllm_version="0.21.0", tensor_parallel=len(gpus)
        )
        p = plan(req)
        assert isinstance(p, Plan) and (p.max_num_seqs, p.memory.choice, p.memory.why) == (2, "sized", why)
        assert p.gpu_memory_utilization < 0.92
        fits(p)


def test_another_machine_is_assumed_of_its_own_and_says_so() -> None:
    p = plan(request(replace(H100, free_mib=H100.total_mib), hypothetical=True))
    assert isinstance(p, Plan) and p.memory.why == "another-machine" and p.max_num_seqs > p.streams
    assert p.memory.note.startswith("Planned for another machine, its GPU assumed to have no display")


def test_two_24gb_cards_with_tensor_parallel_split_weights_and_cache() -> None:
    a10 = [Gpu("NVIDIA A10", 23028, 22502, "8.6", 0), Gpu("NVIDIA A10", 23028, 22502, "8.6", 1)]
    one, two = plan(request(*a10)), plan(request(*a10, tensor_parallel=2))
    assert isinstance(one, Plan) and isinstance(two, Plan)
    assert one.tensor_parallel_size == 1 and len(one.gpus) == 1
    assert two.tensor_parallel_size == 2 and [g.index for g in two.gpus] == [0, 1]
    assert two.breakdown.weights == WEIGHTS // 2 + WEIGHTS % 2
    assert two.breakdown.kv_per_stream * 2 == pytest.approx(one.breakdown.kv_per_stream, abs=2)
    assert two.breakdown.non_torch > one.breakdown.non_torch  # NCCL buffers
    assert two.streams_fit > 2 * one.streams_fit
    fits(one), fits(two)


def test_tensor_parallel_is_chosen_when_one_gpu_is_too_small() -> None:
    cards = [Gpu("small", 12288, 12000, "8.6", 0), Gpu("small", 12288, 12000, "8.6", 1)]
    p = plan(request(*cards))
    assert isinstance(p, Plan) and p.tensor_parallel_size == 2
    assert any("splits the model over 2 GPUs" in n for n in p.notes)
    fits(p)


def test_the_best_gpu_is_used_and_a_busy_one_is_left_alone() -> None:
    busy, idle = Gpu("NVIDIA A10", 23028, 1646, "8.6", 1), Gpu("NVIDIA A10", 23028, 22502, "8.6", 0)
    p = plan(request(busy, idle))
    assert isinstance(p, Plan) and [g.index for g in p.gpus] == [0]


def test_12_gb_is_refused_in_numbers() -> None:
    r = plan(request(Gpu("NVIDIA GeForce RTX 3060", 12288, 11893, "8.6", 0)))
    assert isinstance(r, Refusal) and r.kind == "memory"
    assert "1254 MiB are left for the KV cache" in r.reason and "needs 1698 MiB" in r.reason
    assert any("12288 MiB total" in d for d in r.details) and any("weights 8450" in d for d in r.details)


def test_v100_is_refused_for_its_compute_capability() -> None:
    r = plan(request(Gpu("Tesla V100-SXM2-16GB", 16384, 16036, "7.0", 0)))
    assert isinstance(r, Refusal) and r.kind == "compute-capability"
    assert "7.0, below 7.5" in r.reason


def test_no_gpu_is_refused() -> None:
    r = plan(request())
    assert isinstance(r, Refusal) and r.kind == "no-gpu"


@pytest.mark.parametrize(
    ("version", "backend"),
    [("0.16.0", "TRITON_ATTN"), ("0.20.0", "TRITON_ATTN"), ("0.33.0", None), (None, "TRITON_ATTN")],
)
def test_t4_attention_backend_follows_the_vllm_version(version: str | None, backend: str | None) -> None:
    p = plan(request(Gpu("Tesla T4", 15360, 14923, "7.5", 0), vllm_version=version))
    assert isinstance(p, Plan) and p.dtype == "half" and p.attention_backend == backend
    assert p.confidence == "low" and any("float16" in w for w in p.warnings)


def test_vllm_030_and_later_keep_their_default_graph_mode() -> None:
    old, new = (plan(request(Gpu("H100", 81559, 81004, "9.0", 0), vllm_version=v)) for v in ("0.29.1", "0.30.0"))
    assert isinstance(old, Plan) and isinstance(new, Plan)
    assert (old.cudagraph_mode, new.cudagraph_mode) == ("PIECEWISE", "FULL_AND_PIECEWISE")
    assert new.breakdown.graphs > old.breakdown.graphs


# A 13000 MiB card: one full-length stream fits only without CUDA graphs and with a shorter session.
TIGHT = Gpu("tight", 13000, 13000, "8.9")


def test_a_tight_card_drops_graphs_then_shortens_the_session() -> None:
    p = plan(request(TIGHT, vllm_version="0.21.0"))  # graphs inside the budget, where they compete with the cache
    assert isinstance(p, Plan)
    assert p.cudagraph_mode == "eager" and p.breakdown.graphs == 0
    assert 4096 <= p.max_model_len < 49500
    assert any("Sessions are capped" in w for w in p.warnings)
    assert p.longest_session_minutes == pytest.approx(p.session_minutes, abs=0.1)
    fits(p)


def test_an_explicit_session_length_is_refused_rather_than_shortened() -> None:
    r = plan(request(TIGHT, session_fixed=True))
    assert isinstance(r, Refusal) and r.kind == "session"
    assert "the longest that does is" in r.reason


def test_more_streams_than_fit_are_refused_with_the_number_that_fits() -> None:
    r = plan(request(Gpu("NVIDIA GeForce RTX 4080", 16376, 15780, "8.9", 0), streams=3))
    assert isinstance(r, Refusal) and r.kind == "streams" and "at most 2 do (--streams 2)" in r.reason
    p = plan(request(Gpu("NVIDIA GeForce RTX 4080", 16376, 15780, "8.9", 0), streams=2))
    assert isinstance(p, Plan) and p.max_num_seqs == 2
    fits(p)


def test_tensor_parallel_sizes_must_divide_the_kv_heads() -> None:
    r = plan(
        request(
            Gpu("a", 24564, 24000, "8.9", 0),
            Gpu("b", 24564, 24000, "8.9", 1),
            Gpu("c", 24564, 24000, "8.9", 2),
            tensor_parallel=3,
        )
    )
    assert isinstance(r, Refusal) and r.kind == "tensor-parallel" and "1, 2, 4, 8" in r.reason


def test_kv_per_stream_matches_the_reference_table() -> None:
    """download-and-memory.md B4: per-stream reservation at max_model_len 131072."""
    for batched, gib in ((8192, 10.4), (2048, 3.77), (1024, 2.67), (512, 2.12)):
        assert kv_per_stream_bytes(ARCH, batched, 131072) / 2**30 == pytest.approx(gib, abs=0.03)
    assert ARCH.decoder_bytes_per_token() == 106_496 and ARCH.encoder_bytes_per_token() == MIB


def test_capture_sizes_follow_vllms_default_list() -> None:
    assert [capture_sizes(n, 512) for n in (1, 2, 4, 8, 128, 512)] == [2, 3, 4, 5, 35, 51]


def test_architecture_is_read_from_params_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "params.json").write_text(json.dumps(PARAMS), encoding="utf-8")
    arch = read_arch(tmp_path / "params.json")
    assert replace(arch, source="") == replace(ARCH, source="")
    assert arch.source == str(tmp_path / "params.json")
    (tmp_path / "params.json").write_text('{"n_layers": "many"}', encoding="utf-8")
    assert read_arch(tmp_path / "params.json") == ARCH
    assert read_arch(tmp_path / "missing.json") == ARCH


def test_adjust_follows_vllms_estimate_then_free_memory_then_drops_graphs() -> None:
    req = request(Gpu("NVIDIA GeForce RTX 4080", 16376, 15780, "8.9", 0))
    first = plan(req)
    assert isinstance(first, Plan)
    capped = adjust(req, "max-model-len-too-long", {"estimated": "21337"}, first)
    assert capped is not None and capped.max_model_len_cap == 21328
    again = plan(capped)
    assert isinstance(again, Plan) and again.max_model_len == 21328
    assert adjust(req, "max-model-len-too-long", {"estimated": "2000"}, first) is None

    freed = adjust(req, "free-memory-startup", {"free_gib": "7.12", "total_gib": "15.99"}, first)
    assert freed is not None
    smaller = plan(freed)
    assert isinstance(smaller, Refusal)  # 7.12 GiB free cannot hold 8.45 GiB of weights: say so, no retry

    eager = adjust(req, "cuda-oom", {}, first)
    assert eager is not None and eager.force_eager and eager.max_utilization == 0.88
    third = plan(eager)
    assert isinstance(third, Plan) and third.cudagraph_mode == "eager" and third.gpu_memory_utilization == 0.88
    assert adjust(req, "tokenizer-kwargs", {}, first) is None


def test_unknown_free_memory_and_version_lower_the_confidence() -> None:
    p = plan(request(Gpu("NVIDIA GeForce RTX 4090", 24564, None, "8.9", 0), vllm_version=None))
    assert isinstance(p, Plan) and p.confidence == "low"
    assert any("version is unknown" in r for r in p.confidence_reasons)
    assert any("free GPU memory unknown" in r for r in p.confidence_reasons)


def test_every_plan_keeps_the_invariants_across_many_machines() -> None:
    """Random cards, free memory, streams, sessions and versions: whatever the planner returns fits."""
    import random

    rng = random.Random(10)
    plans = 0
    for _ in range(300):
        total = rng.randrange(12_000, 150_000)
        gpus = tuple(
            Gpu(
                "g",
                total,
                rng.randrange(total // 2, total + 1),
                rng.choice(["7.5", "8.0", "8.9", "9.0"]),
                i,
                rng.choice([(), (), ("Xorg",)]),
                rng.choice([True, False, False, None]),
            )
            for i in range(rng.choice([1, 1, 2, 4]))
        )
        req = request(
            *gpus,
            streams=rng.randrange(1, 12),
            session_minutes=rng.choice([5, 30, 60, 180]),
            vllm_version=rng.choice(["0.16.0", "0.20.0", "0.30.0", None]),
            session_fixed=rng.random() < 0.3,
            streams_given=rng.random() < 0.3,
        )
        p = plan(req)
        if isinstance(p, Plan):
            plans += 1
            fits(p)
            assert p.max_model_len <= ARCH.max_model_len
    assert plans > 100


# --- regressions found in review (issue 10) -------------------------------------------------------------------------


def test_a_busy_card_is_refused_as_busy_not_too_small() -> None:
    """The recorded RTX 4090 (tests/fixtures/nvidia-smi/rtx4090): a Stable Diffusion process holds 15 GB, 7291 MiB free.
    The card is big enough; the refusal must say what to free, and exactly how much free memory is enough."""
    r = plan(request(Gpu("NVIDIA GeForce RTX 4090", 24564, 7291, "8.9", 0)))
    assert isinstance(r, Refusal) and r.kind == "busy", r
    assert "too small" not in r.reason and "only 7291 of NVIDIA GeForce RTX 4090's 24564 MiB are free" in r.reason
    needed = int(r.reason.split("needs at least ")[1].split(" MiB")[0])
    assert isinstance(plan(request(Gpu("NVIDIA GeForce RTX 4090", 24564, needed, "8.9", 0))), Plan)
    assert isinstance(plan(request(Gpu("NVIDIA GeForce RTX 4090", 24564, needed - 1, "8.9", 0))), Refusal)
    small = plan(request(Gpu("NVIDIA GeForce RTX 3060", 12288, 11000, "8.6", 0)))
    assert isinstance(small, Refusal) and small.kind == "memory"  # even idle it would not fit: still "too small"


def test_more_streams_where_only_one_shorter_session_fits_suggest_one_stream() -> None:
    """It said 'too small: 1910 MiB left, one stream needs 1698 MiB' (contradicting itself) instead of --streams 1."""
    r = plan(request(TIGHT, streams=2))
    assert isinstance(r, Refusal) and r.kind == "streams", r
    assert "(--streams 1)" in r.reason and "too small" not in r.reason
    one = plan(request(TIGHT, streams=1))
    assert isinstance(one, Plan) and one.max_model_len < 49500


def test_the_suggested_session_length_fits() -> None:
    """--session-minutes N from the refusal used to ignore the 1.1 margin on --max-model-len, so it was refused
    again."""
    r = plan(request(TIGHT, session_fixed=True))
    assert isinstance(r, Refusal) and r.kind == "session"
    minutes = int(r.reason.split("--session-minutes ")[1].rstrip(")"))
    assert isinstance(plan(request(TIGHT, session_fixed=True, session_minutes=minutes)), Plan)
    assert isinstance(plan(request(TIGHT, session_fixed=True, session_minutes=minutes + 1)), Refusal)


def test_a_session_longer_than_the_models_context_is_warned_about() -> None:
    p = plan(request(Gpu("NVIDIA H100 80GB HBM3", 81559, 81004, "9.0", 0), session_minutes=600, session_fixed=True))
    assert isinstance(p, Plan) and p.max_model_len == ARCH.max_model_len
    assert any("context is 131072 tokens (175 min" in w and "600-minute sessions" in w for w in p.warnings)
    assert not any(
        "context is" in w for w in plan(request(Gpu("NVIDIA H100 80GB HBM3", 81559, 81004, "9.0", 0))).warnings
    )  # type: ignore[union-attr]


def test_the_batch_budget_never_falls_below_the_number_of_streams() -> None:
    """vLLM refuses --max-num-batched-tokens below --max-num-seqs; 600 streams on 8 x H200 got 512."""
    h200s = tuple(Gpu("NVIDIA H200", 143771, 143771, "9.0", i) for i in range(8))
    r = plan(request(*h200s, streams=600, tensor_parallel=8))
    if isinstance(r, Plan):
        assert r.max_num_batched_tokens >= r.max_num_seqs
    else:
        fit = int(r.reason.split("--streams ")[1].rstrip(")"))
        p = plan(request(*h200s, streams=fit, tensor_parallel=8))
        assert isinstance(p, Plan) and p.max_num_batched_tokens >= p.max_num_seqs == fit
        fits(p)


def test_every_refusal_suggests_something_that_plans() -> None:
    """Across cards, free memory, streams and session lengths: what a refusal tells the user to try works."""
    import re

    checked = 0
    for total in (13000, 14500, 16376, 24564, 40960):
        for free in (total, total * 4 // 5, total // 2):
            for streams in (1, 2, 5, 40):
                for minutes in (None, 60, 170):
                    req = request(
                        Gpu("g", total, free, "8.9", 0),
                        streams=streams,
                        session_minutes=minutes or 60,
                        session_fixed=minutes is not None,
                    )
                    r = plan(req)
                    if isinstance(r, Plan):
                        continue
                    checked += 1
                    if r.kind == "streams":
                        retry = replace(req, streams=int(re.search(r"--streams (\d+)", r.reason).group(1)))  # type: ignore[union-attr]
                    elif r.kind == "session":
                        retry = replace(
                            req,
                            session_minutes=float(re.search(r"--session-minutes (\d+)", r.reason).group(1)),  # type: ignore[union-attr]
                            streams=1 if "--streams 1" in r.reason else streams,
                        )
                    elif r.kind == "busy":
                        needed = int(re.search(r"at least (\d+) MiB free", r.reason).group(1))  # type: ignore[union-attr]
                        retry = replace(req, gpus=(Gpu("g", total, needed, "8.9", 0),), streams=1, session_fixed=False)
                    else:
                        assert r.kind == "memory" and not isinstance(
                            plan(
                                replace(req, gpus=(Gpu("g", total, total, "8.9", 0),), streams=1, session_fixed=False)
                            ),
                            Plan,
                        )
                        continue
                    assert isinstance(plan(retry), Plan), (r.kind, total, free, streams, minutes, r.reason)
    assert checked > 40
