"""`smoke --streams N`: prove the capacity `serve` planned by running N realtime sessions at once.

Each session is paced like a live microphone and sends the bundled clip looped for `--duration` seconds. For each
stream it measures the lag from a word's audio being sent to its text arriving, whether the stream kept up, and
its word error rate; the verdict compares how many streams the server carried in real time with serve's plan.

What the lag can and cannot say: Voxtral Realtime makes one token per 80 ms of audio and releases a word once the
audio its streaming delay past the word has arrived, so a stream that keeps up shows a steady lag (delay + step
time) and one the server cannot keep up with shows a lag that grows. Where each word ends in the clip is estimated
from the clip's voiced time (its words spread over the 10 ms frames with sound) — an estimate, labelled so — which
is why "kept up" is judged on the lag's growth, not on its absolute value.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from echopanel_setup import knowledge
from echopanel_setup.errors import ExternalError, SetupError, UsageError
from echopanel_setup.smoke import audio
from echopanel_setup.smoke.result import Transcript
from echopanel_setup.smoke.runner import SmokeOptions, Target, load_clip, resolve
from echopanel_setup.smoke.scoring import WerResult, normalize, wer

_FRAME = audio.RATE // 100  # 10 ms
_VOICED = 0.05  # a frame has sound when its peak reaches 5 % of the clip's


@dataclass
class StreamRun:
    """One of the N sessions: its transcript (or why it failed), its per-word lag in seconds of audio time."""

    index: int
    transcript: Transcript | None = None
    error: str | None = None
    lags_s: list[float] = field(default_factory=list)
    growth_s: float | None = None  # median lag of the last third of the words minus that of the first third
    drain_s: float | None = None  # end of audio → complete transcript, in audio time
    score: WerResult | None = None
    max_growth_s: float = 1.0

    @property
    def kept_up(self) -> bool:
        """The transcript came back, and neither its lag nor its final drain grew past the limit."""
        if self.error is not None or self.transcript is None:
            return False
        baseline = self.lags_s[0] if self.lags_s else 0.0
        grew = self.growth_s is not None and self.growth_s > self.max_growth_s
        drained_late = self.drain_s is not None and self.drain_s - baseline > self.max_growth_s
        return not (grew or drained_late)

    def lag(self, q: float) -> float | None:
        return _quantile(self.lags_s, q)


@dataclass
class StreamsResult:
    target: Target
    model: str
    server_version: str | None
    clip: audio.Clip
    loops: int
    runs: list[StreamRun]
    planned: int | None
    plan_source: str | None
    max_wer: float
    wall_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def audio_s(self) -> float:
        return self.clip.duration_s * self.loops

    @property
    def carried(self) -> int:
        """Streams that kept up in real time and transcribed within --max-wer."""
        return sum(1 for r in self.runs if r.kept_up and r.score is not None and r.score.wer <= self.max_wer)

    @property
    def passed(self) -> bool:
        return self.carried == len(self.runs)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def lag(self, q: float) -> float | None:
        return _quantile([lag for r in self.runs for lag in r.lags_s], q)

    @property
    def summary(self) -> str:
        """`planned 3, carried 3, lag p99 0.61 s`."""
        p99 = self.lag(0.99)
        parts = [f"planned {self.planned}" if self.planned else "no serve plan for this server"]
        parts.append(f"carried {self.carried} of {len(self.runs)}")
        if p99 is not None:
            parts.append(f"lag p99 {p99:.2f} s")
        return ", ".join(parts)


def _quantile(values: list[float], q: float) -> float | None:
    """The q-quantile by the nearest-rank rule (p99 of 14 lags is the largest, not an interpolation past it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def word_ends(pcm: bytes | audio.Clip, words: int) -> list[int]:
    """Estimated sample offsets where each of `words` words ends: the words spread evenly over the voiced time.
    A clip is read in blocks; what is kept is one peak per 10 ms frame (2 bytes: 1.4 MB for 2 hours)."""
    peaks = array("H")
    n_samples = 0
    for frame in audio.chunks(pcm.blocks() if isinstance(pcm, audio.Clip) else (pcm,), 2 * _FRAME):
        samples = array("h")
        samples.frombytes(frame[: len(frame) - len(frame) % 2])
        if samples:
            peaks.append(min(32767, max(map(abs, samples))))
        n_samples += len(samples)
    floor = max(peaks, default=0) * _VOICED
    voiced = array("I", (n for n, peak in enumerate(peaks) if peak > floor and peak > 0))
    if not voiced or words <= 0:
        return [n_samples] * max(words, 0)
    return [min(n_samples, (voiced[(k + 1) * len(voiced) // words - 1] + 1) * _FRAME) for k in range(words)]


def measure(
    run: StreamRun, trace_sent: list[tuple[float, int]], texts: list[tuple[float, str]], ends: list[int], speed: float
) -> None:
    """Fill `run.lags_s` and `run.growth_s` from when audio went out and text came in (audio time = wall × speed)."""
    heard = 0
    arrivals: list[float] = []
    text = ""
    for at, delta in texts:
        text += delta
        count = len(normalize(text))
        while heard < min(count, len(ends)):
            arrivals.append(at)
            heard += 1
    sent_index = 0
    for k, at in enumerate(arrivals):
        needed = ends[k] * 2
        while sent_index < len(trace_sent) - 1 and trace_sent[sent_index][1] < needed:
            sent_index += 1
        if not trace_sent:
            break
        run.lags_s.append(max(0.0, (at - trace_sent[sent_index][0]) * speed))
    third = len(run.lags_s) // 3
    if third >= 2:
        run.growth_s = statistics.median(run.lags_s[-third:]) - statistics.median(run.lags_s[:third])


def run(
    opts: SmokeOptions,
    streams: int,
    duration_s: float | None = None,
    status: Callable[[str], None] | None = None,
    *,
    speed: float = 1.0,
) -> StreamsResult:
    """N concurrent realtime sessions against the server `opts` names. `speed` runs the microphone's clock faster
    (tests); every figure is reported in audio time."""
    say = status or (lambda message: None)
    k = knowledge.load().smoke
    if not 1 <= streams <= k.streams.max_streams:
        raise UsageError(f"--streams {streams}: give 1 to {k.streams.max_streams} streams")
    duration = k.streams.default_duration_s if duration_s is None else duration_s
    if not (math.isfinite(duration) and duration > 0):
        raise UsageError(f"--duration {duration:g}: give seconds of audio per stream, more than 0 (e.g. 30)")
    if opts.http or opts.fast:
        raise UsageError("--streams runs realtime sessions paced like live microphones: drop --http and --fast")
    target = resolve(opts)
    if target.mode == "api":
        raise UsageError(
            "--streams proves a vLLM server's capacity; Mistral's API is not one (use --mode local|remote)"
        )
    from echopanel_setup.smoke import client, server
    from echopanel_setup.smoke.runner import _start_hint

    if opts.audio and opts.expect is None:
        raise UsageError("--streams scores each stream: pass --expect TEXT with --audio")
    if opts.audio:
        audio.probe(opts.audio)
    started = time.monotonic()
    limits = client.Limits.defaults(opts.timeout)
    info = server.discover(target.url, target.api_key, _start_hint(target.mode), limits.connect_s, opts.tls)
    model = server.choose_model(target.url.http_base, info.models, opts.model)
    clip = load_clip(opts)  # the header only: a WAV's length is known before it is converted
    if opts.audio and duration_s is not None and clip.duration_s > duration_s:
        # --expect is the whole recording's text, so it cannot be cut: each stream sends all of it.
        raise UsageError(
            f"--duration {duration_s:g}: {opts.audio} holds {clip.duration_s:.0f} s and each stream sends all of it "
            f"(--expect is its whole text): pass --duration {math.ceil(clip.duration_s)} or more, or leave it out"
        )
    # After the server answered; converted once into a temporary file that every stream reads on its own.
    clip = clip.spool()
    assert clip.reference is not None  # the bundled clip's, or --expect
    loops = max(1, math.ceil(duration / clip.duration_s))
    pcm = clip.looped(loops)  # read block by block by each stream, never `loops` copies in memory
    reference = " ".join([clip.reference] * loops)
    ends = word_ends(clip, len(normalize(clip.reference)))
    per_loop = clip.n_bytes // 2
    all_ends = [loop * per_loop + end for loop in range(loops) for end in ends]
    from echopanel_setup.watch.runner import serve_plan

    plan = serve_plan(target.url)
    say(
        f"{streams} streams of {clip.duration_s * loops:.0f} s each to {target.url.ws_url}, paced like live microphones"
    )
    runs = [StreamRun(n + 1, max_growth_s=k.streams.max_lag_growth_s) for n in range(streams)]

    async def one(r: StreamRun) -> None:
        trace = client.Trace()
        try:
            r.transcript = await client.stream(
                target.url,
                model,
                pcm,
                api_key=target.api_key,
                fast=False,
                limits=limits,
                speed=speed,
                trace=trace,
                tls=opts.tls,
            )
        except SetupError as exc:
            r.error = str(exc)
            return
        measure(r, trace.sent, trace.texts, all_ends, speed)
        done = r.transcript.timings.final_to_done_s
        r.drain_s = None if done is None else done * speed
        r.score = wer(reference, r.transcript.text)

    async def everyone() -> None:
        bound = pcm.duration_s / speed + limits.connect_s + limits.session_s + limits.done_s
        try:
            await asyncio.wait_for(asyncio.gather(*(one(r) for r in runs)), timeout=bound)
        except asyncio.TimeoutError:
            for r in runs:
                if r.transcript is None and r.error is None:
                    r.error = f"no complete transcript within {bound:.0f} s"

    asyncio.run(everyone())
    if all(r.error is not None for r in runs):
        raise ExternalError(f"no stream got a transcript: {runs[0].error}")
    notes = ["lag: from a word's audio sent to its text, word ends estimated from the clip's voiced time"]
    return StreamsResult(
        target,
        model,
        info.version,
        clip,
        loops,
        runs,
        plan.streams,
        plan.source,
        float(opts.max_wer if opts.max_wer is not None else k.max_wer),
        time.monotonic() - started,
        notes,
    )
