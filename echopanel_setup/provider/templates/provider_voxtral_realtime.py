# echopanel-setup provider voxtral_realtime voxtral.c v1
"""EchoPanel's `voxtral_realtime` ASR provider: antirez/voxtral.c on this machine, one resident process per source.

Installed by `echopanel-setup provider fix --provider voxtral_realtime`, which keeps the file it replaced beside it
as `provider_voxtral_realtime.py.orig`; `echopanel-setup provider revert --provider voxtral_realtime` puts that one
back. The module path, the class name and the registered name are the original's, so EchoPanel loads it unchanged.

Why it works the way it does (voxtral.c's `main.c`, `voxtral.c`):
- voxtral.c loads the model (about 9 GB) when it starts and then transcribes raw PCM16 16 kHz mono from its stdin
  for as long as stdin stays open. EchoPanel calls `transcribe_stream` once per VAD window (2 s by default) and
  never calls `flush` or `stop_session`, so one process per audio source (system, mic) is kept across calls; each
  window's audio is written to it as it arrives. A process is closed after `idle_close_s` without audio and is
  started again (after a backoff of 1 s, doubling up to 30 s) when it has died.
- Under `--silent` voxtral.c prints nothing but the transcript, so no load banner is awaited: the process counts as
  started while it is alive, and as ready at its first output. Audio written while it loads waits in a queue; a
  call that ends before that first output waits for it (at most `first_output_wait_s`, the model load), so the
  first words come out in their own window.
- voxtral.c writes each token as it is decoded, without a newline (one newline only when stdin ends), so stdout is
  read as bytes arrive and decoded incrementally, never by line.
- ECHOPANEL_VOXTRAL_STREAMING_DELAY is voxtral.c's `-I`: the encoder processing interval in seconds (voxtral.c's
  default 2.0; its README advises 1.0-2.0 for live use, and below 0.5 wastes most of the GPU time). Unset, 1.0 is
  used. It is not the model's delay, which voxtral.c fixes at 480 ms.
- The text of the last audio comes out only once the encoder has run past it and the model's 480 ms delay has
  passed. When a call ends on a pause (its last 240 ms quiet) or is shorter than a full window (the last one before
  EchoPanel's VAD skips silence), `-I` + 0.8 s of silence is written and the text awaited (until no output came
  for `settle_s`, at most `flush_max_s`); text later than that shows at the start of the next call. When a window
  ends mid-speech the next one normally follows at once; if none comes within `chunk_seconds` + 1 s the same
  silence is written in the background.
- Partials carry the whole text of the current utterance (the Mac app replaces its partial on every update). An
  utterance becomes final at end punctuation followed by a new word, at a pause (the end of a call that ended on
  one, or `-I` + 1.2 s of quiet audio in a continuous stream), or after 12 s of text.
- t0/t1 are the audio position when the text arrived minus the model's delay, relative to the call's first sample
  (EchoPanel's VAD wrapper adds the window's start). `language` is EchoPanel's configured language.
- Failures never raise (an exception during EchoPanel's warm-up would turn its `/health` into 503). Each kind
  (binary or weights missing, cannot start, exited, not keeping up, ...) shows once per source as a bracketed
  final segment of confidence 0.5 and is logged once at WARNING.

Settings, read once from EchoPanel's environment (its `.env` included):
- ECHOPANEL_VOXTRAL_BIN: the voxtral binary (default `<checkout>/../voxtral.c/voxtral`).
- ECHOPANEL_VOXTRAL_MODEL: the weights directory holding consolidated.safetensors and tekken.json (default
  `<checkout>/../voxtral.c/voxtral-model`).
- ECHOPANEL_VOXTRAL_STREAMING_DELAY: `-I`, seconds, a positive number (default 1.0).

Dependencies: the standard library only.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
import sys
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .asr_providers import ASRConfig, ASRProvider, ASRProviderRegistry, ASRSegment, AudioSource

logger = logging.getLogger(__name__)

VARIANT = "echopanel-setup provider voxtral_realtime voxtral.c v1"  # how echopanel-setup recognises this file
NAME = "voxtral_realtime"
RATE = 16000
MODEL_DELAY_S = 0.48  # voxtral.c fixes the model's delay at 6 tokens of 80 ms
DEFAULT_INTERVAL_S = 1.0
STATUS_CONFIDENCE = 0.5  # the Mac app drops finals under 0.3 with fewer than two words
TEXT_CONFIDENCE = 0.9  # voxtral.c reports no confidence
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_TERMINAL = (".", "!", "?", "…", "。", "！", "？")
_ROOT = Path(__file__).resolve().parents[2]  # the checkout: server/services/<this file>


class _Settings:
    """Everything read from the environment, once; problems are kept to be logged, never raised."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.binary = Path(os.getenv("ECHOPANEL_VOXTRAL_BIN", str(_ROOT.parent / "voxtral.c" / "voxtral")))
        self.model = Path(os.getenv("ECHOPANEL_VOXTRAL_MODEL", str(_ROOT.parent / "voxtral.c" / "voxtral-model")))
        raw = os.getenv("ECHOPANEL_VOXTRAL_STREAMING_DELAY", "").strip()
        self.interval_s = DEFAULT_INTERVAL_S
        if raw:
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if value > 0 and value == value and value != float("inf"):
                self.interval_s = value
            else:
                self.problems.append(
                    f"ECHOPANEL_VOXTRAL_STREAMING_DELAY={raw!r} is not a positive number of seconds (voxtral.c's -I); "
                    f"using {DEFAULT_INTERVAL_S}"
                )
        if self.interval_s < 0.5:
            self.problems.append(
                f"ECHOPANEL_VOXTRAL_STREAMING_DELAY={self.interval_s} s: voxtral.c's README says an encoder interval "
                "below 0.5 s wastes most of the GPU time; 1.0-2.0 suits live use"
            )

    def command(self) -> list[str]:
        return [str(self.binary), "-d", str(self.model), "--stdin", "-I", f"{self.interval_s:g}", "--silent"]

    def missing(self) -> str | None:
        """Why voxtral.c cannot run here (binary or weights missing), else None."""
        if not self.binary.is_file():
            return (
                f"no voxtral.c binary at {self.binary}: build it (echopanel-setup install voxtral-c) or fix "
                "ECHOPANEL_VOXTRAL_BIN"
            )
        if not os.access(self.binary, os.X_OK):
            return f"{self.binary} is not executable: fix ECHOPANEL_VOXTRAL_BIN"
        if not (self.model / "consolidated.safetensors").is_file():
            return (
                f"no consolidated.safetensors in {self.model}: download the weights (echopanel-setup install voxtral) "
                "or fix ECHOPANEL_VOXTRAL_MODEL"
            )
        return None


def _quiet_profile(pcm: bytes, threshold: int, frame: int = 320) -> tuple[bool, int, int]:
    """(any loud 20 ms frame, samples from the end of the last loud frame to the end, sample count)."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    n = len(samples)
    for end in range(n, 0, -frame):
        window = samples[max(0, end - frame) : end]
        if max(window) > threshold or -min(window) > threshold:
            return True, n - end, n
    return False, n, n


class _Proc:
    """One voxtral.c process: a writer draining a queue into its stdin, readers of its stdout and stderr."""

    def __init__(self, source: _Source, ident: int, process: asyncio.subprocess.Process) -> None:
        self.source = source
        self.ident = ident
        self.process = process
        self.started = time.monotonic()
        self.first_output: float | None = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queued = 0  # bytes handed to the writer
        self.written = 0  # bytes the pipe took
        self.clock = source.clock  # the source's clock after the last caller audio queued here
        self.pad_pending = 0  # samples of silence queued since that audio
        self.alive = True
        self.closing = False
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def backlog_s(self) -> float:
        return (self.queued - self.written) / 2 / RATE

    def send(self, pcm: bytes) -> None:
        self.queue.put_nowait(pcm)
        self.queued += len(pcm)

    def text_position(self) -> int:
        return self.clock - max(0, int(MODEL_DELAY_S * RATE) - self.pad_pending)

    async def write(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while True:
                pcm = await self.queue.get()
                if pcm is None:
                    break
                stdin.write(pcm)
                await stdin.drain()
                self.written += len(pcm)
        except asyncio.CancelledError:
            return
        except (BrokenPipeError, ConnectionResetError, OSError, RuntimeError):
            self.alive = False  # the stdout reader reports how the process ended
            return
        with contextlib.suppress(Exception):
            stdin.close()

    async def read(self) -> None:
        """Stdout as it comes: tokens without newlines, decoded across chunk edges."""
        stdout = self.process.stdout
        assert stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        src = self.source
        try:
            while True:
                data = await stdout.read(4096)
                if not data:
                    break
                if self.first_output is None:
                    self.first_output = time.monotonic()
                    loaded = self.first_output - self.started
                    src.provider.log(f"voxtral.c {self.ident} ({src.key}) is ready: first output after {loaded:.1f} s")
                text = decoder.decode(data)
                if text:
                    src.push(("text", self, text, self.text_position()))
            text = decoder.decode(b"", final=True)
            if text:
                src.push(("text", self, text, self.text_position()))
            code = await self.process.wait()
        except asyncio.CancelledError:
            return
        self.alive = False
        if not self.closing:
            last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
            src.push(("exited", self, f"voxtral.c exited with code {code}" + (f": {last}" if last else ""), 0))
        else:
            src.wake.set()

    async def read_stderr(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        with contextlib.suppress(asyncio.CancelledError, Exception):
            while line := await stderr.readline():
                self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    async def close(self, timeout: float) -> None:
        """End its input (voxtral.c then prints what is left and exits), then terminate it if it does not."""
        self.closing = True
        self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), timeout)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 1.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.process.wait(), 1.0)
        self.alive = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 1.0)
        for task in self.tasks:
            task.cancel()

    def kill_now(self) -> None:
        """From another event loop: the process cannot be awaited there, only signalled."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(self.process.pid, signal.SIGKILL)


class _Source:
    """Everything kept for one audio source (system or mic) between calls."""

    def __init__(self, provider: VoxtralRealtimeProvider, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self.provider = provider
        self.key = key
        self.loop = loop
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.events: list[tuple[str, _Proc, str, int]] = []
        self.proc: _Proc | None = None
        self.clock = 0  # caller samples consumed (sent, or dropped while voxtral.c was away)
        self.call_origin = 0
        self.last_loud = 0
        self.quiet_run = 0
        self.tail_quiet = True
        self.odd = b""  # the first byte of a sample split between two chunks
        self.utt_text = ""
        self.utt_t0 = 0
        self.utt_t1 = 0
        self.utt_changed = False
        self.out: list[tuple[str, int, int, bool, float]] = []
        self.reported: set[str] = set()
        self.failures = 0
        self.retry_at = 0.0
        self.needs_flush = False
        self.timer: asyncio.Task[None] | None = None

    def push(self, event: tuple[str, _Proc, str, int]) -> None:
        self.events.append(event)
        self.wake.set()


class VoxtralRealtimeProvider(ASRProvider):
    """Voxtral Mini 4B Realtime through voxtral.c, one resident process per source: see the module docstring."""

    # Timings in seconds; stated here so they can be read (and, in tests, scaled).
    settle_s = 0.6  # no output for this long after the padding was written: voxtral.c has caught up
    flush_max_s = 3.0  # longest wait for the text of a call's last audio
    first_output_wait_s = 90.0  # longest wait, once per process, for the model to load and print its first text
    continue_grace_s = 1.0  # after a window that ended mid-speech, wait chunk_seconds + this for the next
    idle_close_s = 120.0  # a process without audio for this long is closed (its model memory freed)
    close_timeout_s = 3.0
    final_pause_extra_s = 1.2  # quiet audio past -I before an utterance ends in a continuous stream
    max_utterance_s = 12.0
    max_backlog_s = 60.0  # audio waiting for voxtral.c beyond this is dropped (it cannot keep up)
    quiet_peak = 1000  # 20 ms frames peaking below this (-30 dBFS) are quiet
    quiet_tail_s = 0.24
    pad_extra_s = 0.8  # silence past -I that releases the last text: the model's delay plus one stdin block
    time_scale = 1.0  # multiplies the waits between calls (tests run EchoPanel's 2 s windows faster)

    def __init__(self, config: ASRConfig):
        super().__init__(config)
        self.settings = _Settings()
        self._sources: dict[str, _Source] = {}
        self._warned: set[str] = set()
        self._seq = 0
        self._stats: dict[str, Any] = {
            "chunks_processed": 0,
            "audio_s": 0.0,
            "padding_samples": 0,
            "processes_started": 0,
            "dropped_audio_s": 0.0,
        }
        self._last_error: str | None = None
        for problem in self.settings.problems:
            logger.warning("[voxtral_realtime] %s", problem)

    @property
    def name(self) -> str:
        return NAME

    @property
    def is_available(self) -> bool:
        """The binary and the weights are there (EchoPanel falls back to another provider otherwise)."""
        return self.settings.missing() is None

    @property
    def capabilities(self) -> Any:
        from . import asr_providers

        caps = getattr(asr_providers, "ProviderCapabilities", None)
        if caps is None:  # an EchoPanel without capabilities: keep the base class's answer
            return getattr(super(), "capabilities", None)
        return caps(
            supports_streaming=True,
            supports_batch=False,
            supports_gpu=True,
            supports_metal=sys.platform == "darwin",
            supports_cuda=False,
            supports_vad=False,
            supports_diarization=False,
            supports_multilanguage=True,
            min_ram_gb=16.0,  # the 8.9 GB weights are mmap'd, and under Metal converted to f16 on the GPU as well
            recommended_ram_gb=32.0,
        )

    # --- EchoPanel's entry point ------------------------------------------------------------------------------

    async def transcribe_stream(
        self,
        pcm_stream: AsyncIterator[bytes],
        sample_rate: int = 16000,
        source: AudioSource | None = None,
    ) -> AsyncIterator[ASRSegment]:
        """Write the audio to this source's voxtral.c and yield its text; never raises (see the module docstring)."""
        try:
            async for segment in self._transcribe(pcm_stream, sample_rate, source):
                yield segment
        except Exception as exc:  # noqa: BLE001 - EchoPanel turns an exception into a dead pipeline
            logger.debug("[voxtral_realtime] internal error", exc_info=True)
            first = "internal" not in self._warned
            text = self._note_failure("internal", f"internal error {type(exc).__name__}: {exc}")
            if first:
                yield self._segment(text, 0, 0, True, STATUS_CONFIDENCE, source, 0)
            with contextlib.suppress(Exception):
                async for _ in pcm_stream:
                    pass

    async def _transcribe(
        self, pcm_stream: AsyncIterator[bytes], sample_rate: int, source: AudioSource | None
    ) -> AsyncIterator[ASRSegment]:
        src = self._source(source)
        blocker = self._blocker(sample_rate)
        if blocker is not None:
            kind, message = blocker
            if self._report(src, kind, message):
                yield self._segment(self._status_text(message), 0, 0, True, STATUS_CONFIDENCE, source, 0)
            async for _ in pcm_stream:
                pass
            return
        async with src.lock:
            if src.timer is not None:
                src.timer.cancel()
                src.timer = None
            try:
                src.call_origin = src.clock
                for segment in self._take(src, source):
                    yield segment
                window_bytes = int(sample_rate * self.config.chunk_seconds) * 2
                chunks = size = 0
                async for chunk in pcm_stream:
                    if not chunk:
                        continue
                    chunks += 1
                    size += len(chunk)
                    await self._feed(src, bytes(chunk))
                    for segment in self._take(src, source):
                        yield segment
                if size and src.proc is not None and src.proc.alive:
                    full_window = chunks == 1 and size == window_bytes
                    if src.tail_quiet or not full_window:
                        await self._flush(src)
                    else:
                        src.needs_flush = True
                for segment in self._take(src, source):
                    yield segment
            finally:  # also when EchoPanel cancels the call: the process must still be closed when idle
                if src.proc is not None and src.timer is None:
                    src.timer = asyncio.ensure_future(self._after_call(src, float(self.config.chunk_seconds)))

    # --- audio in ---------------------------------------------------------------------------------------------

    async def _feed(self, src: _Source, chunk: bytes) -> None:
        chunk, src.odd = (src.odd + chunk, b"") if src.odd else (chunk, b"")
        if len(chunk) % 2:  # a sample split between chunks: keep its first byte for the next one
            chunk, src.odd = chunk[:-1], chunk[-1:]
        if not chunk:
            return
        loud, quiet_tail, samples = _quiet_profile(chunk, self.quiet_peak)
        self._stats["chunks_processed"] += 1
        self._stats["audio_s"] += samples / RATE
        src.quiet_run = quiet_tail if loud else src.quiet_run + samples
        src.tail_quiet = src.quiet_run >= int(self.quiet_tail_s * RATE)
        if loud:
            src.last_loud = src.clock + samples - quiet_tail
        if (src.proc is None or not src.proc.alive) and not await self._start(src):
            src.clock += samples
            self._stats["dropped_audio_s"] += samples / RATE
            return
        proc = src.proc
        assert proc is not None
        if proc.backlog_s > self.max_backlog_s:
            self._fail(
                src,
                "backlog",
                f"voxtral.c is not keeping up ({proc.backlog_s:.0f} s of audio waiting): audio is being dropped; "
                "it needs Apple Silicon with Metal (make mps) to run in real time",
            )
            src.clock += samples
            self._stats["dropped_audio_s"] += samples / RATE
            return
        proc.send(chunk)
        src.clock += samples
        proc.clock = src.clock
        proc.pad_pending = 0
        src.needs_flush = False

    async def _flush(self, src: _Source) -> None:
        """Write -I plus the delay of silence, wait for the text it releases, end the utterance."""
        proc = src.proc
        if proc is None or not proc.alive:
            return
        pad = int((self.settings.interval_s + self.pad_extra_s) * RATE)
        proc.send(bytes(pad * 2))
        proc.pad_pending += pad
        self._stats["padding_samples"] += pad
        src.needs_flush = False
        await self._settle(src, proc)
        self._pump(src)
        self._finalize(src)

    async def _settle(self, src: _Source, proc: _Proc) -> None:
        """Wait until the padding is in voxtral.c's pipe and no output came for `settle_s`, at most `flush_max_s`
        (or, while it loads, until its first output, at most `first_output_wait_s`)."""
        if proc.first_output is None:
            deadline = proc.started + self.first_output_wait_s
            while proc.alive and proc.first_output is None and time.monotonic() < deadline:
                src.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(src.wake.wait(), max(0.0, deadline - time.monotonic()))
        deadline = time.monotonic() + self.flush_max_s
        while proc.alive and proc.written < proc.queued and time.monotonic() < deadline:
            src.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(src.wake.wait(), 0.02)
        while proc.alive:
            src.wake.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(src.wake.wait(), min(self.settle_s, left))
            except asyncio.TimeoutError:
                return

    async def _after_call(self, src: _Source, chunk_seconds: float) -> None:
        """Between calls: flush a window that ended mid-speech if no next window came; close when idle."""
        with contextlib.suppress(asyncio.CancelledError):
            waited = 0.0
            if src.needs_flush:
                waited = (chunk_seconds + self.continue_grace_s) * self.time_scale
                await asyncio.sleep(waited)
                async with src.lock:
                    if src.needs_flush:
                        await self._flush(src)
            await asyncio.sleep(max(0.0, self.idle_close_s * self.time_scale - waited))
            async with src.lock:
                proc, src.proc = src.proc, None
                if proc is not None:
                    self.log(f"closing the idle voxtral.c of {src.key} (pid {proc.process.pid})")
                    await proc.close(self.close_timeout_s)
                    self._pump(src)
                    self._finalize(src)
                src.timer = None

    # --- processes --------------------------------------------------------------------------------------------

    async def _start(self, src: _Source) -> bool:
        """Start voxtral.c for `src` (it loads while its audio queues), unless a backoff still runs."""
        if time.monotonic() < src.retry_at:
            return False
        old, src.proc = src.proc, None
        if old is not None:  # a dead process: let go of its pipes
            asyncio.ensure_future(old.close(0.1))
        cmd = self.settings.command()
        try:
            process = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self._fail(src, "start", f"cannot start {self.settings.binary}: {exc.strerror or exc}")
            return False
        self._seq += 1
        proc = src.proc = _Proc(src, self._seq, process)
        proc.tasks = [asyncio.ensure_future(t) for t in (proc.write(), proc.read(), proc.read_stderr())]
        self._stats["processes_started"] += 1
        self.log(f"started voxtral.c {proc.ident} for {src.key} (pid {process.pid}): {' '.join(cmd)}")
        return True

    # --- text out ---------------------------------------------------------------------------------------------

    def _pump(self, src: _Source) -> None:
        """Turn what the processes printed so far into partial and final segments (on the source's audio clock)."""
        events, src.events = src.events, []
        for kind, proc, text, at in events:
            if kind == "text":
                if src.reported or src.failures:
                    src.reported.clear()
                    self._warned.clear()
                    src.failures = 0
                self._add_text(src, text.replace("\r", " ").replace("\n", " "), at)
            elif kind == "exited" and proc is src.proc:
                proc.alive = False
                self._finalize(src)
                self._fail(src, "exited", f"{text}; it is started again with the next audio")
        pause = int((self.settings.interval_s + self.final_pause_extra_s) * RATE)
        if src.utt_text and src.clock - src.last_loud >= pause:
            self._finalize(src)
        if src.utt_changed and src.utt_text.strip():
            src.out.append((src.utt_text.strip(), src.utt_t0, src.utt_t1, False, TEXT_CONFIDENCE))
        src.utt_changed = False

    def _add_text(self, src: _Source, delta: str, at: int) -> None:
        if src.utt_text and delta[:1].isspace():
            ended = src.utt_text.rstrip().endswith(_TERMINAL)
            if ended or at - src.utt_t0 >= self.max_utterance_s * RATE:
                self._finalize(src)
        if not src.utt_text:
            delta = delta.lstrip()
            if not delta:
                return
            src.utt_t0 = at
        src.utt_text += delta
        src.utt_t1 = max(at, src.utt_t0)
        src.utt_changed = True

    def _finalize(self, src: _Source) -> None:
        if src.utt_text.strip():
            src.out.append((" ".join(src.utt_text.split()), src.utt_t0, src.utt_t1, True, TEXT_CONFIDENCE))
        src.utt_text, src.utt_changed = "", False

    def _take(self, src: _Source, source: AudioSource | None) -> list[ASRSegment]:
        self._pump(src)
        out, src.out = src.out, []
        return [self._segment(text, t0, t1, final, conf, source, src.call_origin) for text, t0, t1, final, conf in out]

    def _segment(
        self, text: str, t0: int, t1: int, final: bool, confidence: float, source: AudioSource | None, origin: int
    ) -> ASRSegment:
        start = (t0 - origin) / RATE
        return ASRSegment(
            text=text,
            t0=start,
            t1=max(start, (t1 - origin) / RATE),
            confidence=confidence,
            is_final=final,
            source=source,
            language=self.config.language,
        )

    # --- failures ---------------------------------------------------------------------------------------------

    def _blocker(self, sample_rate: int) -> tuple[str, str] | None:
        """A problem that stops every call before any audio is written."""
        if sample_rate != RATE:
            return "sample_rate", f"voxtral.c needs 16 kHz audio, got {sample_rate} Hz"
        missing = self.settings.missing()
        if missing is not None:
            return "missing", missing
        return None

    def _fail(self, src: _Source, kind: str, message: str) -> None:
        src.failures += 1
        src.retry_at = time.monotonic() + BACKOFF_S[min(src.failures, len(BACKOFF_S)) - 1] * self.time_scale
        if self._report(src, kind, message):
            src.out.append((self._status_text(message), src.clock, src.clock, True, STATUS_CONFIDENCE))

    def _report(self, src: _Source, kind: str, message: str) -> bool:
        """Log a failure kind once at WARNING; True the first time this source meets it (show it once)."""
        self._note_failure(kind, message)
        if kind in src.reported:
            return False
        src.reported.add(kind)
        return True

    def _note_failure(self, kind: str, message: str) -> str:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning("[voxtral_realtime] %s", message)
        self._last_error = message
        return self._status_text(message)

    @staticmethod
    def _status_text(message: str) -> str:
        return f"[voxtral_realtime: {message}]"

    def _source(self, source: AudioSource | None) -> _Source:
        key = str(getattr(source, "value", source) or "default")
        loop = asyncio.get_running_loop()
        src = self._sources.get(key)
        if src is None or src.loop is not loop:  # a new event loop: the old one's process cannot be awaited here
            if src is not None and src.proc is not None:
                src.proc.kill_now()
            src = self._sources[key] = _Source(self, key, loop)
        return src

    # --- EchoPanel's optional hooks ---------------------------------------------------------------------------

    async def flush(self, source: AudioSource | None = None) -> list[ASRSegment]:
        """Release the text of the source's audio so far and return its final segments."""
        key = str(getattr(source, "value", source) or "default")
        src = self._sources.get(key)
        if src is None or src.loop is not asyncio.get_running_loop():
            return []
        async with src.lock:
            await self._flush(src)
            return [s for s in self._take(src, source) if s.is_final]

    async def stop_session(self) -> None:
        await self._close_all()
        parent = getattr(super(), "stop_session", None)
        if parent is not None:
            await parent()

    async def unload(self) -> None:
        await self._close_all()
        parent = getattr(super(), "unload", None)
        if parent is not None:
            await parent()

    async def _close_all(self) -> None:
        """End every process within EchoPanel's stop budget (< 5 s)."""
        loop = asyncio.get_running_loop()
        closing = []
        for src in self._sources.values():
            if src.timer is not None:
                src.timer.cancel()
                src.timer = None
            if src.proc is not None:
                if src.loop is loop:
                    closing.append(src.proc.close(self.close_timeout_s))
                else:
                    src.proc.kill_now()
            src.proc = None
        if closing:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 4.5)

    async def health(self) -> dict[str, Any]:
        """A dict (EchoPanel's VAD wrapper spreads it into its own): the processes, their readiness, the settings."""
        now = time.monotonic()
        processes = {}
        for key, src in self._sources.items():
            proc = src.proc
            if proc is None:
                continue
            processes[key] = {
                "pid": proc.process.pid,
                "alive": proc.alive and proc.process.returncode is None,
                "ready": proc.first_output is not None,
                "uptime_s": round(now - proc.started, 3),
                "first_output_s": None if proc.first_output is None else round(proc.first_output - proc.started, 3),
                "backlog_s": round(proc.backlog_s, 3),
            }
        alive = [p for p in processes.values() if p["alive"]]
        missing = self.settings.missing()
        status = "unavailable" if missing else ("active" if alive else "ready")
        if any(not p["ready"] for p in alive) and status == "active":
            status = "loading"
        chunks = self._stats["chunks_processed"]
        return {
            "status": status,
            "provider": NAME,
            "backend": "voxtral.c",
            "binary": str(self.settings.binary),
            "model": str(self.settings.model),
            "available": missing is None,
            "unavailable_reason": missing,
            "interval_s": self.settings.interval_s,
            "processes": processes,
            "processes_started": self._stats["processes_started"],
            "chunks_processed": chunks,
            "audio_s": round(self._stats["audio_s"], 3),
            "padding_s": round(self._stats["padding_samples"] / RATE, 3),
            "dropped_audio_s": round(self._stats["dropped_audio_s"], 3),
            "realtime_factor": 0.0,
            "last_error": self._last_error,
            "consecutive_errors": max((s.failures for s in self._sources.values()), default=0),
            "problems": list(self.settings.problems),
        }


ASRProviderRegistry.register("voxtral_realtime", VoxtralRealtimeProvider)
