"""From two samples to signals and verdicts: pure functions, no I/O (docs/metrics.md says why each holds).

A realtime session makes one decoder token per 80 ms of audio, one step at a time, so: the aggregate token
rate is bound by the audio arriving (12.5 tokens/s per stream that keeps up), and vLLM's time-to-first-token
histogram, observed once per 80 ms step, is the server's time per step. Everything labelled an estimate says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from echopanel_setup import knowledge
from echopanel_setup.metrics.sample import Hist, Sample

OK, WARN, FAIL, UNKNOWN = "ok", "warn", "fail", "unknown"
_RANK = {UNKNOWN: 0, OK: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True)
class Context:
    """What the verdicts need beyond the metrics: the plan, the model's limit, /health, session history."""

    planned_streams: int | None = None
    plan_source: str | None = None
    # --max-num-seqs where serve let vLLM run more streams than planned (a GPU of its own): up to it none queues
    allowed_streams: int | None = None
    max_model_len: int | None = None
    health: int | None = None  # /health status code; None when it did not answer
    open_since: float | None = None  # Unix time since which watch has seen sessions open without a break
    models_error: str | None = None  # why /v1/models gave no max_model_len: the API key it refused or wanted
    stream_mib: int | None = None  # one more stream's KV cache, as serve planned the recorded server (per GPU)


@dataclass
class Signal:
    id: str
    title: str
    status: str
    value: str  # short, for the table
    summary: str  # one sentence
    number: float | None = None  # for the trend
    fix: str | None = None
    formula: str | None = None  # shown with -v
    estimate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def said(self) -> str:
        """The summary as every human view shows it: an estimated figure says so, once (a summary never carries the
        word itself; JSON keeps `estimate` as its own field)."""
        return f"{self.summary} (estimate)" if self.estimate else self.summary


@dataclass
class Derived:
    signals: list[Signal] = field(default_factory=list)

    @property
    def worst(self) -> str:
        return worst([s.status for s in self.signals])

    def get(self, signal_id: str) -> Signal | None:
        return next((s for s in self.signals if s.id == signal_id), None)


@dataclass(frozen=True)
class _Limits:
    tokens_per_s: float
    step_s: float
    tolerance: float
    kv_warn: float
    session_warn_min: float
    per_meeting: int


@lru_cache(maxsize=1)
def limits() -> _Limits:
    k = knowledge.load()
    ms = float(k.serve.model_arch.ms_per_token)
    w = k.watch
    return _Limits(1000.0 / ms, ms / 1000.0, w.rate_tolerance, w.kv_warn, w.session_warn_minutes, w.streams_per_meeting)


def worst(statuses: list[str]) -> str:
    ranked = [s for s in statuses if s in (WARN, FAIL)]
    return max(ranked, key=_RANK.__getitem__) if ranked else OK


def derive(prev: Sample | None, cur: Sample, ctx: Context) -> Derived:
    """Every signal for `cur`; rates need `prev` (without it, counters are read as totals since the server began)."""
    streams, streams_signal = _streams(cur, ctx)
    out = [
        _health(ctx),
        streams_signal,
        _queue(cur, streams, ctx),
    ]
    step = _step(prev, cur)
    out += [
        _rate(prev, cur, step),
        step,
        _inter_token(prev, cur),
        _kv(cur),
        _session(cur, ctx, streams),
        _counter(prev, cur, "preemptions", "Preemptions", _PREEMPT),
        _counter(prev, cur, "errors", "Errors", _ERRORS),
    ]
    return Derived(out)


# --- each signal ---------------------------------------------------------------------------------------------


def _health(ctx: Context) -> Signal:
    if ctx.health == 200:
        return Signal("health", "Health", OK, "200", "/health answers 200: the engine is alive")
    if ctx.health is None:
        return Signal("health", "Health", UNKNOWN, "?", "/health did not answer")
    return Signal(
        "health",
        "Health",
        FAIL,
        str(ctx.health),
        f"/health answered {ctx.health}: the engine is dead or stuck, every stream has stopped",
        fix="read the server log (`echopanel-setup serve --logs`; `echopanel-setup explain LOG` names known failures) "
        "and restart it",
    )


def _streams(cur: Sample, ctx: Context) -> tuple[int | None, Signal]:
    lim = limits()
    if cur.sessions_active is not None:
        streams = round(cur.sessions_active)
        formula, estimate = "open /v1/realtime WebSockets (vllm:websocket_connections_active)", False
    elif cur.running is not None and cur.waiting is not None:
        streams = round(cur.running + cur.waiting)
        formula = (
            "running + waiting requests (this vLLM has no WebSocket gauge, which came in 0.18; "
            "it also counts queued requests)"
        )
        estimate = True
    else:
        return None, Signal("streams", "Streams", UNKNOWN, "?", "the page has no request gauges: not vLLM's /metrics?")
    planned = ctx.planned_streams
    allowed = ctx.allowed_streams if planned and ctx.allowed_streams and ctx.allowed_streams > planned else None
    plan = f" on a plan for {planned}" if planned else ""
    value = f"{streams}/{planned}" if planned else str(streams)
    # A meeting opens one stream per audio source (system audio, microphone): an odd count is a meeting with one.
    meetings, odd = divmod(streams, lim.per_meeting)
    least = meetings + (1 if odd else 0)
    said = []
    if streams:
        said.append(
            f"{'at least ' if odd else ''}{least} EchoPanel meeting{'s' if least != 1 else ''}, "
            f"{'up to ' if odd else ''}{lim.per_meeting} streams each"
        )
    if allowed:
        said.append(f"vLLM runs up to {allowed} at once")
    where = f" ({'; '.join(said)})" if said else ""
    if planned and streams > (allowed or planned):
        return streams, Signal(
            "streams",
            "Streams",
            WARN,
            value,
            f"{streams} streams{plan}{where}",
            number=streams,
            fix=f"{_more_streams(streams, ctx)}, or add a replica",
            formula=formula + (f"; plan from {ctx.plan_source}" if ctx.plan_source else ""),
            estimate=estimate,
        )
    return streams, Signal(
        "streams",
        "Streams",
        OK,
        value,
        f"{streams} stream{'s' if streams != 1 else ''} open{plan}{where}",
        number=streams,
        formula=formula + (f"; plan from {ctx.plan_source}" if ctx.plan_source else ""),
        estimate=estimate,
    )


def _more_streams(streams: int, ctx: Context) -> str:
    """The serve command for `streams`, with the memory the streams beyond serve's plan need where it says that."""
    serve = f"`echopanel-setup serve --streams {streams}`"
    stream_mib = ctx.stream_mib
    extra = streams - (ctx.allowed_streams or ctx.planned_streams or streams)
    if not stream_mib or extra <= 0:
        return f"{serve} re-plans memory for {streams} (it says if they fit)"
    return (
        f"{serve} needs ~{extra * stream_mib} MiB more GPU memory ({stream_mib} MiB of KV cache per stream, as serve "
        "plans it; it says if they fit)"
    )


def _queue(cur: Sample, streams: int | None, ctx: Context) -> Signal:
    if cur.queued is not None:
        queued, estimate = round(cur.queued), False
        formula = 'vllm:num_requests_waiting_by_reason{reason="capacity"}'
    elif cur.sessions_active is not None and cur.running is not None and cur.waiting is not None:
        queued, estimate = max(0, round(cur.running + cur.waiting - cur.sessions_active)), True
        formula = "running + waiting - open WebSockets (vLLM 0.18-0.19 counts a session waiting for audio as waiting)"
    else:
        return Signal(
            "queue",
            "Queue",
            UNKNOWN,
            "?",
            "cannot tell queued streams from streams waiting for audio on this vLLM (< 0.18)",
            formula="vLLM 0.16-0.17 counts a session between two 80 ms steps in vllm:num_requests_waiting",
        )
    if queued > 0:
        more = (streams or 0) + queued
        return Signal(
            "queue",
            "Queue",
            FAIL,
            str(queued),
            f"{queued} stream{'s' if queued != 1 else ''} waiting: capacity full, EchoPanel shows nothing for "
            f"{'them' if queued != 1 else 'it'}",
            number=queued,
            fix=f"{_more_streams(more, ctx)}, or add a replica",
            formula=formula,
            estimate=estimate,
        )
    return Signal("queue", "Queue", OK, "0", "no stream waiting for capacity", 0, formula=formula, estimate=estimate)


def _rate(prev: Sample | None, cur: Sample, step: Signal) -> Signal:
    lim = limits()
    title = "Decode rate"
    if prev is None:
        return Signal("rate", title, UNKNOWN, "?", "needs two samples (a rate over an interval)")
    if cur.generation_tokens is None or prev.generation_tokens is None:
        return Signal("rate", title, UNKNOWN, "?", "the page has no vllm:generation_tokens counter")
    delta, dt = cur.generation_tokens - prev.generation_tokens, cur.at - prev.at
    if delta < 0:
        return Signal("rate", title, UNKNOWN, "?", "the token counter went back: the server restarted between samples")
    if dt <= 0:
        return Signal("rate", title, UNKNOWN, "?", "no time between the samples")
    rate = delta / dt
    streams = _min_streams(prev, cur)
    value = f"{rate:.1f} tok/s"
    if not streams:
        return Signal("rate", title, OK, value, "no stream open", number=rate)
    expected = lim.tokens_per_s * streams
    formula = (
        f"rate = Δ vllm:generation_tokens / Δt = {delta:.0f} / {dt:.1f} s = {rate:.1f} tok/s; "
        f"expected = {lim.tokens_per_s:g} tok/s × {streams} stream{'s' if streams != 1 else ''} = {expected:.1f}"
    )
    value = f"{rate:.1f}/{expected:.1f} tok/s"
    if rate >= lim.tolerance * expected:
        return Signal(
            "rate",
            title,
            OK,
            value,
            f"keeping up: {rate:.1f} tokens/s for {streams} stream{'s' if streams != 1 else ''} "
            f"(input-bound: a stream that keeps up makes {lim.tokens_per_s:g} tokens/s, the pace of its audio)",
            number=rate,
            formula=formula,
        )
    behind = 60.0 * (streams - rate / lim.tokens_per_s) / streams
    formula += f"; behind = 60 × (streams − rate / {lim.tokens_per_s:g}) / streams = {behind:.1f} s per minute"
    if step.status == OK:
        return Signal(
            "rate",
            title,
            WARN,
            value,
            f"{streams} streams open but {rate:.1f} tokens/s while each step is fast: audio is arriving slower than "
            "real time (a paused source, or a client that stopped sending), not a slow server",
            number=rate,
            formula=formula,
        )
    return Signal(
        "rate",
        title,
        FAIL,
        value,
        f"falling behind by {behind:.0f} s per minute per stream: {rate:.1f} tokens/s for {streams} streams "
        f"needs {expected:.1f}",
        number=rate,
        fix="fewer streams on this GPU (each EchoPanel meeting is 2), a faster GPU, or another replica; "
        "`echopanel-setup smoke --streams N` measures what it carries",
        formula=formula,
    )


def _min_streams(prev: Sample, cur: Sample) -> int | None:
    """Streams open through the whole interval (the fewer of the two ends), so one that opened mid-way does
    not count as a shortfall."""

    def count(s: Sample) -> float | None:
        if s.sessions_active is not None:
            return s.sessions_active
        if s.running is not None and s.waiting is not None:
            return s.running + s.waiting
        return None

    a, b = count(prev), count(cur)
    return None if a is None or b is None else round(min(a, b))


def _delta_hist(prev: Sample | None, cur: Sample, attr: str) -> tuple[float, float, Hist | None, Hist | None]:
    """(Δsum, Δcount, prev, cur) of a histogram; from zero when there is no previous sample."""
    now: Hist | None = getattr(cur, attr)
    before: Hist | None = getattr(prev, attr) if prev is not None else None
    if now is None:
        return 0.0, 0.0, None, None
    if before is None or now.count < before.count:
        return now.sum, now.count, None, now
    return now.sum - before.sum, now.count - before.count, before, now


def _step(prev: Sample | None, cur: Sample) -> Signal:
    lim = limits()
    title = "Step latency"
    d_sum, d_count, before, now = _delta_hist(prev, cur, "step")
    if now is None:
        return Signal("step", title, UNKNOWN, "?", "the page has no vllm:time_to_first_token_seconds histogram")
    span = "in the interval" if before is not None or prev is not None else "since the server started"
    if d_count <= 0:
        return Signal("step", title, UNKNOWN, "–", f"no step {span}")
    mean = d_sum / d_count
    within = now.count_at_most(lim.step_s) - (before.count_at_most(lim.step_s) if before else 0.0)
    over = max(0.0, 1.0 - within / d_count)
    formula = (
        f"mean = Δ vllm:time_to_first_token_seconds_sum / Δ _count = {d_sum:.3f} / {d_count:.0f}; "
        f"over {lim.step_s * 1000:.0f} ms = 1 − Δ bucket(le={lim.step_s:g}) / Δ count = {over:.0%} "
        "(one observation per 80 ms step of a realtime session, docs/metrics.md)"
    )
    value = f"{mean * 1000:.0f} ms"
    if mean >= lim.step_s:
        return Signal(
            "step",
            title,
            FAIL,
            value,
            f"each 80 ms of audio takes {mean * 1000:.0f} ms to decode ({span}): every stream falls further behind",
            number=mean * 1000,
            fix="fewer streams on this GPU, or a GPU to itself (another process may share it: `nvidia-smi`)",
            formula=formula,
        )
    if over > 1 - lim.tolerance:
        return Signal(
            "step",
            title,
            WARN,
            value,
            f"{over:.0%} of steps took over 80 ms ({span}): streams fall behind at peaks",
            number=mean * 1000,
            formula=formula,
        )
    return Signal(
        "step",
        title,
        OK,
        value,
        f"{mean * 1000:.0f} ms per 80 ms of audio ({span}): room to spare",
        number=mean * 1000,
        formula=formula,
    )


def _inter_token(prev: Sample | None, cur: Sample) -> Signal:
    d_sum, d_count, _, now = _delta_hist(prev, cur, "inter_token")
    name = cur.names.get("inter_token_latency", "vllm:inter_token_latency_seconds")
    if now is None or d_count <= 0:
        return Signal(
            "itl",
            "Inter-token",
            UNKNOWN,
            "–",
            "not recorded for realtime sessions (one token per 80 ms step, counted as a first token)",
            formula=f"{name}: no observation",
        )
    mean = d_sum / d_count
    return Signal(
        "itl",
        "Inter-token",
        UNKNOWN,
        f"{mean * 1000:.0f} ms",
        f"{mean * 1000:.0f} ms between tokens of other requests (realtime sessions record none)",
        number=mean * 1000,
        formula=f"Δ {name}_sum / Δ _count = {d_sum:.3f} / {d_count:.0f}",
    )


def _kv(cur: Sample) -> Signal:
    lim = limits()
    if cur.kv_usage is None:
        return Signal("kv", "KV cache", UNKNOWN, "?", "the page has no KV cache gauge")
    name = cur.names.get("kv_usage", "vllm:kv_cache_usage_perc")
    pct = cur.kv_usage * 100
    if cur.kv_usage >= lim.kv_warn:
        return Signal(
            "kv",
            "KV cache",
            WARN,
            f"{pct:.0f}%",
            f"KV cache {pct:.0f}% full: the next stream, or longer sessions, will be preempted",
            number=pct,
            fix="fewer streams, or shorter sessions (`echopanel-setup serve --session-minutes N`)",
            formula=name,
        )
    return Signal("kv", "KV cache", OK, f"{pct:.0f}%", f"KV cache {pct:.0f}% in use", number=pct, formula=name)


def _session(cur: Sample, ctx: Context, streams: int | None) -> Signal:
    lim = limits()
    title = "Session limit"
    if not streams:
        return Signal("session", title, OK, "–", "no session open")
    if not ctx.max_model_len and ctx.models_error:  # a warning: the fix is ours to give, the verdict is blind
        return Signal(
            "session",
            title,
            WARN,
            "?",
            f"max_model_len unknown: {ctx.models_error}",
            fix="pass the server's key: --api-key KEY (- reads it from standard input) or VLLM_API_KEY",
        )
    if not ctx.max_model_len:
        return Signal("session", title, UNKNOWN, "?", "max_model_len unknown (/v1/models did not say)")
    limit_min = ctx.max_model_len * lim.step_s / 60
    bounds: list[tuple[float, str]] = []
    if cur.process_start:
        bounds.append(((cur.wall - cur.process_start) / 60, "the server's uptime"))
    if ctx.open_since is not None:
        bounds.append(((cur.wall - ctx.open_since) / 60, "the time sessions have been open without a break"))
    if not bounds:
        return Signal(
            "session",
            title,
            UNKNOWN,
            "?",
            f"sessions end after {limit_min:.0f} min (max-model-len {ctx.max_model_len}); their age is unknown",
        )
    age, why = min(bounds)
    left = limit_min - age
    formula = (
        f"limit = max_model_len × {lim.step_s:g} s = {ctx.max_model_len} × {lim.step_s:g} = {limit_min:.1f} min; "
        f"oldest session ≤ {age:.1f} min ({why}); left ≥ limit − age"
    )
    if left <= 0:
        return Signal(
            "session",
            title,
            UNKNOWN,
            "?",
            f"sessions have been open longer than one may last ({limit_min:.0f} min): cannot tell how long the "
            "oldest has left",
            formula=formula,
        )
    if left < lim.session_warn_min:
        longer = max(120, math.ceil(limit_min * 2 / 30) * 30)
        return Signal(
            "session",
            title,
            WARN,
            f"~{left:.0f} min",
            f"the oldest session may end in ~{left:.0f} min (max-model-len {ctx.max_model_len} = {limit_min:.0f} min "
            "of audio)",
            number=left,
            fix=f"EchoPanel should roll sessions over before {limit_min:.0f} min, or serve with --session-minutes "
            f"{longer}",
            formula=formula,
            estimate=True,
        )
    return Signal(
        "session",
        title,
        OK,
        f"≥{left:.0f} min",
        f"at least {left:.0f} min before the oldest session reaches max-model-len {ctx.max_model_len}",
        number=left,
        formula=formula,
        estimate=True,
    )


_PREEMPT = (
    "preemption",
    "those streams stalled and recomputed: a gap in their transcripts",
    "the KV cache ran full: fewer streams, or shorter sessions (`echopanel-setup serve --session-minutes N`)",
)
_ERRORS = (
    "failed request",
    "a session ended with an engine error",
    "read the server log (`echopanel-setup explain LOG` names known failures)",
)


def _counter(prev: Sample | None, cur: Sample, attr: str, title: str, words: tuple[str, str, str]) -> Signal:
    noun, meaning, fix = words
    now = getattr(cur, attr)
    if now is None:
        return Signal(attr, title, UNKNOWN, "?", f"the page has no {noun} counter")
    before = getattr(prev, attr) if prev is not None else None
    name = {
        "preemptions": "vllm:num_preemptions_total",
        "errors": 'vllm:request_success_total{finished_reason="error"}',
    }
    if before is None or now < before:
        if now > 0:
            return Signal(
                attr,
                title,
                WARN,
                f"{now:.0f} total",
                f"{now:.0f} {noun}{'s' if now != 1 else ''} since the server started ({meaning})",
                number=now,
                fix=fix,
                formula=name[attr],
            )
        return Signal(attr, title, OK, "0", f"no {noun} since the server started", 0, formula=name[attr])
    delta = now - before
    if delta > 0:
        return Signal(
            attr,
            title,
            FAIL,
            f"+{delta:.0f}",
            f"{delta:.0f} {noun}{'s' if delta != 1 else ''} since the last sample: {meaning}",
            number=delta,
            fix=fix,
            formula=f"Δ {name[attr]}",
        )
    return Signal(attr, title, OK, "0", f"no {noun} since the last sample", 0, formula=f"Δ {name[attr]}")
