# echopanel-setup provider voxtral_official realtime v1
"""EchoPanel's `voxtral_official` ASR provider, speaking vLLM's realtime WebSocket (`/v1/realtime`).

Installed by `echopanel-setup provider fix`, which keeps the file it replaced beside it as
`provider_voxtral_official.py.orig`; `echopanel-setup provider revert` puts that one back. The module path, the
class name and the registered name are the original's, so EchoPanel loads it unchanged.

Why it works the way it does:
- EchoPanel calls `transcribe_stream` once per VAD window (2 s by default) and never calls `flush` or
  `stop_session`. One realtime session per audio source (system, mic) therefore lives across calls, and each
  window's audio is appended to it as it arrives: the model keeps its context, so no word is cut at a window edge.
- The model writes text about `VOXTRAL_STREAMING_DELAY_MS` after the audio. When a call ends on a pause (its last
  240 ms quiet), or is shorter than a full window (the last one before EchoPanel's VAD skips silence), the delay
  plus 160 ms of silence is appended and the text is awaited, so it comes out within that call. When a window ends
  mid-speech the next window normally follows at once; if none comes within `chunk_seconds` + 1 s the same
  silence is appended in the background and the text is shown at the start of the next call.
- Partials carry the whole text of the current utterance (the Mac app replaces its partial on every update).
  An utterance becomes final at end punctuation followed by a new word, at a pause (the end of a call that ended
  on one, or 0.7 s of quiet audio in a continuous stream), or after 12 s of text.
- t0/t1 are the audio position when the text arrived minus the delay, relative to the call's first sample
  (EchoPanel's VAD wrapper adds the window's start). `language` is EchoPanel's configured language.
- A session closes after 60 s without audio, and rolls over to a new one before the server's `max_model_len`
  (from `/v1/models`, else the echopanel-setup serve record, else 4096 positions; one position per 80 ms): at a
  pause after 75 % of it, at 90 % in any case. The old session is flushed first; no audio is lost.
- Failures never raise (an exception during EchoPanel's warm-up would turn its `/health` into 503). Each kind
  (unreachable, refused key, name not served, no realtime route, server error, dropped connection, ...) shows
  once per source as a bracketed final segment of confidence 0.5 and is logged once at WARNING; reconnects back
  off from 0.5 s to 30 s.

Settings, read once from EchoPanel's environment (its `.env` included):
- VOXTRAL_VLLM_URL: the vLLM server (default http://127.0.0.1:8001); a trailing `/` or `/v1` is accepted.
- VOXTRAL_STREAMING_DELAY_MS: the delay the server was started with (default 480). With vLLM it is fixed when
  the server starts and only tells this provider how much silence flushes the text; in API mode it is the
  session's `target_streaming_delay_ms`.
- VOXTRAL_VLLM_API_KEY: optional bearer key for a server started with `--api-key`.
- VOXTRAL_MODE=api: Mistral's hosted API instead (audio then leaves this machine), with VOXTRAL_MISTRAL_API_KEY
  (else MISTRAL_API_KEY); needs `mistralai[realtime]` in this Python. VOXTRAL_MISTRAL_SERVER_URL overrides its
  endpoint.

Dependencies: the standard library, `websockets` (EchoPanel pins 14.1; 13 or newer works) and, in API mode only,
`mistralai[realtime]`; all imported lazily, so importing this module never fails for want of them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .asr_providers import ASRConfig, ASRProvider, ASRProviderRegistry, ASRSegment, AudioSource

logger = logging.getLogger(__name__)

VARIANT = "echopanel-setup provider voxtral_official realtime v1"  # how echopanel-setup recognises this file
MODEL_NAME = "voxtral-mini-transcribe-realtime-2602"
RATE = 16000
FRAME_SAMPLES = 1280  # one model position: 80 ms of audio
PROMPT_POSITIONS = 64  # reserved for the session's prompt and padding
DEFAULT_MAX_MODEL_LEN = 4096
STATUS_CONFIDENCE = 0.5  # the Mac app drops finals under 0.3 with fewer than two words
TEXT_CONFIDENCE = 0.9  # vLLM reports no confidence
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_TERMINAL = (".", "!", "?", "…", "。", "！", "？")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _masked(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _base_url(raw: str) -> tuple[str, str | None]:
    """(http base without `/v1` or a trailing `/`, problem) for VOXTRAL_VLLM_URL."""
    url = raw.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3].rstrip("/")
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        return url, f"VOXTRAL_VLLM_URL={_masked(raw)!r} is not an http:// or https:// URL"
    return urlunsplit(parts._replace(scheme=scheme)), None


def _ws_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(scheme="wss" if parts.scheme == "https" else "ws", path=parts.path + path))


class _Settings:
    """Everything read from the environment, once; problems are kept to be shown, never raised."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.url, problem = _base_url(os.getenv("VOXTRAL_VLLM_URL", "http://127.0.0.1:8001"))
        self.url_problem = problem
        raw_delay = os.getenv("VOXTRAL_STREAMING_DELAY_MS", "480")
        try:
            delay = int(raw_delay.strip())
        except ValueError:
            self.problems.append(f"VOXTRAL_STREAMING_DELAY_MS={raw_delay!r} is not a whole number; using 480")
            delay = 480
        self.delay_ms = max(80, min(2400, delay))
        mode = os.getenv("VOXTRAL_MODE", "vllm").strip().lower() or "vllm"
        if mode not in ("vllm", "api"):
            self.problems.append(f"VOXTRAL_MODE={mode!r} is neither vllm nor api; using vllm")
            mode = "vllm"
        self.mode = mode
        self.vllm_key = os.getenv("VOXTRAL_VLLM_API_KEY") or None
        self.api_key = os.getenv("VOXTRAL_MISTRAL_API_KEY") or os.getenv("MISTRAL_API_KEY") or None
        self.api_url = os.getenv("VOXTRAL_MISTRAL_SERVER_URL") or None

    @property
    def delay_samples(self) -> int:
        return self.delay_ms * RATE // 1000


class _Failure(Exception):
    """A failure of one kind, with the sentence the user reads."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class _Event:
    __slots__ = ("kind", "text", "code", "at", "conn")

    def __init__(self, kind: str, conn: Any, text: str = "", code: str | None = None, at: int = 0) -> None:
        self.kind, self.conn, self.text, self.code, self.at = kind, conn, text, code, at


def _quiet_profile(pcm: bytes, threshold: int, frame: int = 320) -> tuple[bool, int, int]:
    """(any loud 20 ms frame, samples from the end of the last loud frame to the end, sample count).

    A frame is loud when its peak exceeds `threshold`; peaks, unlike RMS, cost one C-level pass per frame."""
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


class _Conn:
    """One realtime session. Text positions are kept on the source's audio clock (caller samples)."""

    def __init__(self, source: _Source, ident: int, max_positions: int) -> None:
        self.source = source
        self.ident = ident
        self.sent = 0  # samples sent, padding included
        self.clock = source.clock  # the source's clock after the last caller audio sent here
        self.pad_pending = 0  # silence appended since that audio
        self.alive = True
        self.closing = False
        self.receiver: asyncio.Task | None = None
        budget = max(16, max_positions - PROMPT_POSITIONS)
        self.soft_samples = int(budget * 0.75) * FRAME_SAMPLES
        self.hard_samples = int(budget * 0.90) * FRAME_SAMPLES

    def text_position(self, delay_samples: int) -> int:
        return self.clock - max(0, delay_samples - self.pad_pending)

    async def append(self, pcm: bytes) -> None:
        raise NotImplementedError

    async def pad(self, samples: int) -> int:
        """Make the server release the text of the audio sent so far; the samples of silence it took."""
        raise NotImplementedError

    async def finish(self, timeout: float) -> None:
        """End the audio, wait up to `timeout` for the last text, close."""
        raise NotImplementedError

    async def receive(self, provider: VoxtralOfficialProvider) -> None:
        """Turn the server's events into the source's events until the session ends."""
        raise NotImplementedError


class _VllmConn(_Conn):
    def __init__(self, source: _Source, ident: int, max_positions: int, ws: Any) -> None:
        super().__init__(source, ident, max_positions)
        self.ws = ws
        self.done = asyncio.Event()

    async def append(self, pcm: bytes) -> None:
        await self.ws.send('{"type": "input_audio_buffer.append", "audio": "' + base64.b64encode(pcm).decode() + '"}')
        self.sent += len(pcm) // 2

    async def pad(self, samples: int) -> int:
        await self.append(bytes(samples * 2))
        self.pad_pending += samples
        return samples

    async def finish(self, timeout: float) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            if self.alive:
                await self.ws.send(json.dumps({"type": "input_audio_buffer.commit", "final": True}))
                await asyncio.wait_for(self.done.wait(), timeout)
        self.alive = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        if self.receiver is not None:
            self.receiver.cancel()

    async def receive(self, provider: VoxtralOfficialProvider) -> None:
        from websockets.exceptions import ConnectionClosed

        src = self.source
        why = "no close frame"
        try:
            async for raw in self.ws:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == "transcription.delta":
                    delta = str(event.get("delta") or "")
                    if delta:
                        src.push(_Event("text", self, delta, at=self.text_position(provider.settings.delay_samples)))
                    else:
                        src.wake.set()  # vLLM sends an empty delta per step: the server is still working
                elif kind == "transcription.done":
                    self.done.set()
                    src.wake.set()
                elif kind == "error":
                    err = event.get("error")
                    message = str(err.get("message") if isinstance(err, dict) else err or "(no message)")
                    src.push(_Event("error", self, message, code=event.get("code")))
            why = "closed by the server"
        except ConnectionClosed as exc:
            rcvd = getattr(exc, "rcvd", None)
            why = f"close code {rcvd.code}" if rcvd is not None else "no close frame"
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - any transport failure is a dropped connection
            why = f"{type(exc).__name__}: {exc}"
        self.done.set()
        if not self.closing:
            src.push(_Event("closed", self, why))


class _MistralConn(_Conn):
    """Mistral's hosted realtime transcription through its SDK (its protocol is not vLLM's)."""

    def __init__(self, source: _Source, ident: int, connection: Any) -> None:
        super().__init__(source, ident, 10**9)
        self.connection = connection
        self.done = asyncio.Event()

    async def append(self, pcm: bytes) -> None:
        await self.connection.send_audio(pcm)
        self.sent += len(pcm) // 2

    async def pad(self, samples: int) -> int:
        await self.connection.flush_audio()  # the API's own way to get the pending text now
        return 0

    async def finish(self, timeout: float) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            if self.alive:
                await self.connection.end_audio()
                await asyncio.wait_for(self.done.wait(), timeout)
        self.alive = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 2.0)
        if self.receiver is not None:
            self.receiver.cancel()

    async def receive(self, provider: VoxtralOfficialProvider) -> None:
        src = self.source
        why = "closed by the server"
        try:
            async for event in self.connection.events():
                kind = getattr(event, "type", None)
                if kind == "transcription.text.delta":
                    text = str(getattr(event, "text", "") or "")
                    if text:
                        src.push(_Event("text", self, text, at=self.text_position(provider.settings.delay_samples)))
                elif kind == "transcription.done":
                    self.done.set()
                    src.wake.set()
                elif kind == "error":
                    detail = getattr(event, "error", None)
                    message = str(getattr(detail, "message", None) or detail)
                    src.push(_Event("error", self, message, code=str(getattr(detail, "code", "") or "")))
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            why = f"{type(exc).__name__}: {exc}"
        self.done.set()
        if not self.closing:
            src.push(_Event("closed", self, why))


class _Source:
    """Everything kept for one audio source (system or mic) between calls."""

    def __init__(self, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.events: list[_Event] = []
        self.conn: _Conn | None = None
        self.clock = 0  # caller samples consumed (sent, or dropped while the server was away)
        self.call_origin = 0
        self.last_loud = 0
        self.quiet_run = 0  # samples of quiet audio at the end of what was received
        self.tail_quiet = True
        self.preroll = b""
        self.odd = b""  # the first byte of a sample split between two chunks
        self.utt_text = ""
        self.utt_t0 = 0
        self.utt_t1 = 0
        self.utt_changed = False
        self.out: list[tuple[str, int, int, bool, float]] = []
        self.reported: set = set()
        self.failures = 0
        self.retry_at = 0.0
        self.needs_flush = False
        self.timer: asyncio.Task | None = None

    def push(self, event: _Event) -> None:
        self.events.append(event)
        self.wake.set()


class VoxtralOfficialProvider(ASRProvider):
    """Voxtral Mini 4B Realtime through vLLM's `/v1/realtime` (or Mistral's API): see the module docstring."""

    # Timings in seconds; stated here so they can be read (and, in tests, scaled).
    connect_timeout_s = 5.0
    settle_s = 0.25  # no event for this long after the last audio: the server has caught up
    flush_max_s = 2.0  # longest wait for the text of a call's last audio
    continue_grace_s = 1.0  # after a window that ended mid-speech, wait chunk_seconds + this for the next
    idle_close_s = 60.0
    final_pause_s = 0.7
    max_utterance_s = 12.0
    quiet_peak = 1000  # 20 ms frames peaking below this (-30 dBFS) are quiet
    quiet_tail_s = 0.24
    pad_extra_ms = 160
    preroll_s = 0.5
    health_cache_s = 5.0
    time_scale = 1.0  # multiplies the waits between calls (tests run EchoPanel's 2 s windows faster)

    def __init__(self, config: ASRConfig):
        super().__init__(config)
        self.settings = _Settings()
        self._sources: dict[str, _Source] = {}
        self._warned: set = set()
        self._conn_seq = 0
        self._stats: dict[str, Any] = {
            "chunks_processed": 0,
            "audio_s": 0.0,
            "padding_samples": 0,
            "rollovers": 0,
            "sessions_opened": 0,
            "dropped_audio_s": 0.0,
            "text_events": 0,
            "append_ms_total": 0.0,
        }
        self._last_error: str | None = None
        self._max_model_len: int | None = None
        self._health_cache: tuple[float, bool | None] = (0.0, None)
        for problem in self.settings.problems:
            logger.warning("[voxtral_official] %s", problem)

    @property
    def name(self) -> str:
        return "voxtral_official"

    @property
    def is_available(self) -> bool:
        """True when this Python can open the connection; API mode reports a missing SDK in the transcript."""
        if self.settings.mode == "api":
            return True
        try:
            import websockets.asyncio.client  # noqa: F401
        except ImportError:
            return False
        return True

    # --- EchoPanel's entry point ------------------------------------------------------------------------------

    async def transcribe_stream(
        self,
        pcm_stream: AsyncIterator[bytes],
        sample_rate: int = 16000,
        source: AudioSource | None = None,
    ) -> AsyncIterator[ASRSegment]:
        """Append the audio to this source's session and yield its text; never raises (see the module docstring)."""
        try:
            async for segment in self._transcribe(pcm_stream, sample_rate, source):
                yield segment
        except Exception as exc:  # noqa: BLE001 - EchoPanel turns an exception into a dead pipeline
            logger.debug("[voxtral_official] internal error", exc_info=True)
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
            if size and src.conn is not None and src.conn.alive:
                full_window = chunks == 1 and size == window_bytes
                if src.tail_quiet or not full_window:
                    await self._flush(src)
                else:
                    await self._settle(src, self.settle_s, 4 * self.settle_s)
                    src.needs_flush = True
            for segment in self._take(src, source):
                yield segment
            if src.conn is not None:
                src.timer = asyncio.ensure_future(self._after_call(src, float(self.config.chunk_seconds)))

    # --- audio in ---------------------------------------------------------------------------------------------

    async def _feed(self, src: _Source, chunk: bytes) -> None:
        started = time.perf_counter()
        chunk, src.odd = (src.odd + chunk, b"") if src.odd else (chunk, b"")
        if len(chunk) % 2:  # a sample split between chunks: keep its first byte for the next one
            chunk, src.odd = chunk[:-1], chunk[-1:]
        if not chunk:
            return
        loud, quiet_tail, samples = _quiet_profile(chunk, self.quiet_peak)
        self._stats["chunks_processed"] += 1
        self._stats["audio_s"] += samples / RATE
        was_quiet = src.tail_quiet
        src.quiet_run = quiet_tail if loud else src.quiet_run + samples
        src.tail_quiet = src.quiet_run >= int(self.quiet_tail_s * RATE)
        if loud:
            src.last_loud = src.clock + samples - quiet_tail
        if src.conn is None or not src.conn.alive:
            if src.conn is None and not loud:
                # Nothing said yet: keep a little pre-roll instead of opening a session for silence.
                src.preroll = (src.preroll + chunk)[-int(self.preroll_s * RATE) * 2 :]
                src.clock += samples
                return
            if not await self._open(src):
                src.clock += samples
                src.preroll = b""
                self._stats["dropped_audio_s"] += samples / RATE
                return
        conn = src.conn
        assert conn is not None
        if conn.sent + samples > conn.hard_samples or (conn.sent + samples > conn.soft_samples and was_quiet):
            await self._rollover(src)
            conn = src.conn
            if conn is None:
                src.clock += samples
                self._stats["dropped_audio_s"] += samples / RATE
                return
        try:
            if src.preroll:
                await conn.append(src.preroll)
                src.preroll = b""
            await conn.append(chunk)
        except Exception as exc:  # noqa: BLE001 - the receiver reports the drop; resend this chunk once
            conn.alive = False
            logger.debug("[voxtral_official] append failed: %s", exc)
            self._pump(src)
            if await self._open(src) and src.conn is not None:
                with contextlib.suppress(Exception):
                    await src.conn.append(chunk)
        src.clock += samples
        if src.conn is not None:
            src.conn.clock = src.clock
            src.conn.pad_pending = 0
        src.needs_flush = False
        self._stats["append_ms_total"] += (time.perf_counter() - started) * 1000

    async def _flush(self, src: _Source) -> None:
        """Append the delay plus a margin of silence, wait for the text it releases, end the utterance."""
        conn = src.conn
        if conn is None or not conn.alive:
            return
        pad = self.settings.delay_samples + self.pad_extra_ms * RATE // 1000
        try:
            self._stats["padding_samples"] += await conn.pad(pad)
        except Exception:  # noqa: BLE001 - reported by the receiver
            conn.alive = False
            return
        src.needs_flush = False
        await self._settle(src, self.settle_s, self.flush_max_s)
        self._pump(src)
        self._finalize(src)

    async def _settle(self, src: _Source, quiet_s: float, max_s: float) -> None:
        """Wait until the server has sent nothing for `quiet_s` (it has caught up), at most `max_s`."""
        deadline = time.monotonic() + max_s
        while True:
            src.wake.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(src.wake.wait(), min(quiet_s, left))
            except asyncio.TimeoutError:
                return

    async def _rollover(self, src: _Source) -> None:
        """Flush and end the session before the server's max_model_len, then open the next one."""
        old = src.conn
        if old is None:
            return
        self.log(f"rolling over the {src.key} session after {old.sent / RATE:.1f} s of audio")
        await self._flush(src)
        await old.finish(self.flush_max_s)
        self._pump(src)
        src.conn = None
        self._stats["rollovers"] += 1
        await self._open(src)

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
                conn, src.conn = src.conn, None
                if conn is not None:
                    self.log(f"closing the idle {src.key} session")
                    await conn.finish(self.flush_max_s)
                    self._pump(src)
                    self._finalize(src)
                src.timer = None

    # --- sessions ---------------------------------------------------------------------------------------------

    async def _open(self, src: _Source) -> bool:
        """A new session for `src`, unless the last failure's backoff still runs; failures become status text."""
        if time.monotonic() < src.retry_at:
            return False
        old, src.conn = src.conn, None
        if old is not None:  # a dead session: let go of its socket
            asyncio.ensure_future(old.finish(0.1))
        try:
            if self.settings.mode == "api":
                conn: _Conn = await self._open_api(src)
            else:
                conn = await self._open_vllm(src)
        except _Failure as failure:
            self._fail(src, failure.kind, failure.message)
            return False
        except Exception as exc:  # noqa: BLE001
            kind, message = self._classify(exc)
            self._fail(src, kind, message)
            return False
        src.conn = conn
        conn.receiver = asyncio.ensure_future(conn.receive(self))
        self._stats["sessions_opened"] += 1
        self.log(f"opened realtime session {conn.ident} for {src.key}")
        return True

    async def _open_vllm(self, src: _Source) -> _Conn:
        from websockets.asyncio.client import connect

        if self.settings.url_problem:
            raise _Failure("bad_url", self.settings.url_problem)
        served, max_len = await asyncio.get_running_loop().run_in_executor(None, self._models)
        if served and MODEL_NAME not in served:
            raise _Failure(
                "model",
                f"vLLM at {_masked(self.settings.url)} serves {', '.join(served)}, not {MODEL_NAME}: restart it with "
                f"--served-model-name {MODEL_NAME} (echopanel-setup serve does)",
            )
        url = _ws_url(self.settings.url, "/v1/realtime")
        options: dict[str, Any] = {"open_timeout": self.connect_timeout_s, "close_timeout": 2, "max_size": 2**24}
        parameters = inspect.signature(connect).parameters
        if "proxy" in parameters and (urlsplit(url).hostname or "") in _LOOPBACK:
            options["proxy"] = None  # websockets 15+ reads proxy variables; this machine is never behind one
        if self.settings.vllm_key:
            options["additional_headers"] = {"Authorization": f"Bearer {self.settings.vllm_key}"}
        ws = await connect(url, compression=None, **options)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), self.connect_timeout_s))
            if not isinstance(first, dict) or first.get("type") != "session.created":
                raise _Failure("protocol", f"{_masked(url)} does not speak vLLM's realtime protocol")
            await ws.send(json.dumps({"type": "session.update", "model": MODEL_NAME}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
            raise
        self._conn_seq += 1
        return _VllmConn(src, self._conn_seq, max_len, ws)

    async def _open_api(self, src: _Source) -> _Conn:
        if not self.settings.api_key:
            raise _Failure("api_key", "Mistral API mode needs VOXTRAL_MISTRAL_API_KEY (or MISTRAL_API_KEY) in .env")
        try:
            try:
                from mistralai.client import Mistral
            except ImportError:
                from mistralai import Mistral  # type: ignore[no-redef,attr-defined]
            from mistralai.extra.realtime import AudioFormat
        except ImportError:
            raise _Failure(
                "api_sdk",
                "Mistral API mode is not available: mistralai[realtime] is not installed in EchoPanel's Python "
                f"(install it with: {sys.executable} -m pip install 'mistralai[realtime]')",
            ) from None
        client = Mistral(api_key=self.settings.api_key)
        kwargs: dict[str, Any] = {
            "model": MODEL_NAME,
            "audio_format": AudioFormat(encoding="pcm_s16le", sample_rate=RATE),
            "target_streaming_delay_ms": self.settings.delay_ms,
            "timeout_ms": int(self.connect_timeout_s * 1000),
        }
        if self.settings.api_url:
            kwargs["server_url"] = self.settings.api_url
        if self.config.language and "language" in inspect.signature(client.audio.realtime.connect).parameters:
            kwargs["language"] = self.config.language
        connection = await client.audio.realtime.connect(**kwargs)
        self._conn_seq += 1
        return _MistralConn(src, self._conn_seq, connection)

    def _models(self) -> tuple[list[str], int]:
        """(served names, max_model_len) from /v1/models; failures that stop the session raise _Failure."""
        url = self.settings.url + "/v1/models"
        request = urllib.request.Request(url)
        if self.settings.vllm_key:
            request.add_header("Authorization", f"Bearer {self.settings.vllm_key}")
        handlers = [urllib.request.ProxyHandler({})] if (urlsplit(url).hostname or "") in _LOOPBACK else []
        try:
            with urllib.request.build_opener(*handlers).open(request, timeout=self.connect_timeout_s) as response:
                data = json.loads(response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise _Failure("unauthorized", self._unauthorized(exc.code)) from None
            return [], self._fallback_max_len()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Failure(
                "unreachable",
                f"cannot reach vLLM at {_masked(self.settings.url)} ({getattr(reason, 'strerror', None) or reason}): "
                "start it (echopanel-setup serve) or fix VOXTRAL_VLLM_URL",
            ) from None
        except ValueError:
            return [], self._fallback_max_len()
        cards = [c for c in (data.get("data") or []) if isinstance(c, dict)] if isinstance(data, dict) else []
        names = [str(c.get("id")) for c in cards if c.get("id")]
        lengths = [c["max_model_len"] for c in cards if isinstance(c.get("max_model_len"), int)]
        self._max_model_len = lengths[0] if lengths else self._fallback_max_len()
        return names, self._max_model_len

    def _fallback_max_len(self) -> int:
        """--max-model-len from echopanel-setup's serve record for this URL, else a conservative default."""
        record = _state_dir() / "serve" / "server.json"
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads(record.read_text(encoding="utf-8"))
            same_port = urlsplit(str(data.get("url", ""))).port == urlsplit(self.settings.url).port
            argv = [str(a) for a in data.get("argv", [])]
            if same_port and "--max-model-len" in argv:
                return int(argv[argv.index("--max-model-len") + 1])
        return DEFAULT_MAX_MODEL_LEN

    def _unauthorized(self, status: int) -> str:
        if self.settings.vllm_key:
            return f"vLLM at {_masked(self.settings.url)} refused the key in VOXTRAL_VLLM_API_KEY (HTTP {status})"
        return (
            f"vLLM at {_masked(self.settings.url)} wants an API key (HTTP {status}): set VOXTRAL_VLLM_API_KEY to its "
            "--api-key, or start it without one"
        )

    def _classify(self, exc: BaseException) -> tuple[str, str]:
        """(failure kind, sentence) for an exception from opening a session."""
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        url = _masked(self._where())
        server = "Mistral's API" if self.settings.mode == "api" else "vLLM"
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, (InvalidStatus, OSError, asyncio.TimeoutError)):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, InvalidStatus):
            status = cause.response.status_code
            if status in (401, 403) and self.settings.mode == "api":
                return "unauthorized", f"Mistral's API refused the API key (HTTP {status})"
            if status in (401, 403):
                return "unauthorized", self._unauthorized(status)
            return "no_realtime", (
                f"{url} has no realtime WebSocket (HTTP {status}): it is not vLLM 0.16+ serving Voxtral Realtime"
            )
        if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
            return "unreachable", f"{url} did not answer within {self.connect_timeout_s:.0f} s"
        if isinstance(cause, OSError):
            if self.settings.mode == "api":
                return "unreachable", f"cannot reach {server} at {url} ({cause.strerror or cause})"
            return "unreachable", (
                f"cannot reach vLLM at {url} ({cause.strerror or cause}): start it (echopanel-setup serve) or fix "
                "VOXTRAL_VLLM_URL"
            )
        if isinstance(exc, InvalidURI):
            return "bad_url", f"{url} is not a usable WebSocket URL"
        if isinstance(exc, InvalidHandshake):
            return "protocol", f"{url} did not complete a WebSocket handshake ({exc})"
        return "unreachable", f"cannot open a {server} session at {url}: {type(exc).__name__}: {exc}"

    # --- text out ---------------------------------------------------------------------------------------------

    def _pump(self, src: _Source) -> None:
        """Turn the events received so far into partial and final segments (kept on the source's audio clock)."""
        events, src.events = src.events, []
        for event in events:
            if event.kind == "text":
                self._stats["text_events"] += 1
                if src.reported or src.failures:
                    src.reported.clear()
                    self._warned.clear()
                    src.failures = 0
                self._add_text(src, event.text, event.at)
            elif event.kind == "error":
                event.conn.alive = False
                if event.code == "model_not_found":
                    self._fail(
                        src,
                        "model",
                        f"vLLM at {_masked(self.settings.url)} does not serve {MODEL_NAME}: "
                        f"restart it with --served-model-name {MODEL_NAME}",
                    )
                else:
                    self._fail(src, "server_error", f"the server sent error {event.code or '(no code)'}: {event.text}")
            elif event.kind == "closed" and event.conn is src.conn and event.conn is not None:
                event.conn.alive = False
                self._fail(
                    src,
                    "dropped",
                    f"the server at {_masked(self._where())} closed the session ({event.text}); reconnecting",
                )
        if src.utt_text and src.clock - src.last_loud >= self.settings.delay_samples + self.final_pause_s * RATE:
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
            src.out.append((src.utt_text.strip(), src.utt_t0, src.utt_t1, True, TEXT_CONFIDENCE))
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
        """A problem that stops every call before any audio is sent."""
        if sample_rate != RATE:
            return "sample_rate", f"needs 16 kHz audio, got {sample_rate} Hz"
        if self.settings.mode == "vllm" and self.settings.url_problem:
            return "bad_url", self.settings.url_problem
        return None

    def _fail(self, src: _Source, kind: str, message: str) -> None:
        src.failures += 1
        src.retry_at = time.monotonic() + BACKOFF_S[min(src.failures, len(BACKOFF_S)) - 1]
        self._last_error = message
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
            logger.warning("[voxtral_official] %s", message)
        self._last_error = message
        return self._status_text(message)

    @staticmethod
    def _status_text(message: str) -> str:
        return f"[voxtral_official: {message}]"

    def _where(self) -> str:
        if self.settings.mode == "api":
            return self.settings.api_url or "api.mistral.ai"
        return self.settings.url

    def _source(self, source: AudioSource | None) -> _Source:
        key = str(getattr(source, "value", source) or "default")
        loop = asyncio.get_running_loop()
        src = self._sources.get(key)
        if src is None or src.loop is not loop:  # a new event loop: the old one's sessions are gone with it
            src = self._sources[key] = _Source(key, loop)
        return src

    # --- EchoPanel's optional hooks ---------------------------------------------------------------------------

    async def flush(self, source: AudioSource | None = None) -> list[ASRSegment]:
        """Flush the source's session now and return its final segments."""
        key = str(getattr(source, "value", source) or "default")
        src = self._sources.get(key)
        if src is None or src.loop is not asyncio.get_running_loop():
            return []
        async with src.lock:
            await self._flush(src)
            return [s for s in self._take(src, source) if s.is_final]

    async def stop_session(self) -> None:
        await self._close_all(4.0)
        parent = getattr(super(), "stop_session", None)
        if parent is not None:
            await parent()

    async def unload(self) -> None:
        await self._close_all(4.0)
        parent = getattr(super(), "unload", None)
        if parent is not None:
            await parent()

    async def _close_all(self, budget_s: float) -> None:
        loop = asyncio.get_running_loop()
        conns = []
        for src in self._sources.values():
            if src.timer is not None:
                src.timer.cancel()
            if src.conn is not None and src.loop is loop:
                conns.append(src.conn.finish(1.0))
            src.conn = None
        if conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*conns, return_exceptions=True), budget_s)

    async def health(self) -> dict[str, Any]:
        """A dict (EchoPanel's VAD wrapper spreads it into its own), with the server's reachability."""
        reachable = None
        if self.settings.mode == "vllm" and not self.settings.url_problem:
            checked, cached = self._health_cache
            if time.monotonic() - checked > self.health_cache_s:
                cached = await asyncio.get_running_loop().run_in_executor(None, self._server_health)
                self._health_cache = (time.monotonic(), cached)
            reachable = cached
        chunks = self._stats["chunks_processed"]
        open_sessions = sum(1 for s in self._sources.values() if s.conn is not None and s.conn.alive)
        return {
            "status": "degraded" if reachable is False else ("active" if open_sessions else "ready"),
            "provider": "voxtral_official",
            "protocol": "mistral-api" if self.settings.mode == "api" else "vllm-realtime",
            "mode": self.settings.mode,
            "vllm_url": _masked(self.settings.url) if self.settings.mode == "vllm" else None,
            "vllm_healthy": reachable,
            "model": MODEL_NAME,
            "streaming_delay_ms": self.settings.delay_ms,
            "max_model_len": self._max_model_len,
            "sessions_open": open_sessions,
            "sessions_opened": self._stats["sessions_opened"],
            "rollovers": self._stats["rollovers"],
            "chunks_processed": chunks,
            "audio_s": round(self._stats["audio_s"], 3),
            "padding_s": round(self._stats["padding_samples"] / RATE, 3),
            "padding_samples": self._stats["padding_samples"],
            "dropped_audio_s": round(self._stats["dropped_audio_s"], 3),
            "avg_append_ms": round(self._stats["append_ms_total"] / chunks, 3) if chunks else 0.0,
            "realtime_factor": 0.0,
            "last_error": self._last_error,
            "consecutive_errors": max((s.failures for s in self._sources.values()), default=0),
        }

    def _server_health(self) -> bool:
        handlers = (
            [urllib.request.ProxyHandler({})] if (urlsplit(self.settings.url).hostname or "") in _LOOPBACK else []
        )
        try:
            with urllib.request.build_opener(*handlers).open(self.settings.url + "/health", timeout=2) as response:
                return response.status == 200
        except Exception:  # noqa: BLE001
            return False


def _state_dir() -> Path:
    """echopanel-setup's state directory (platformdirs' user_state_dir), where its serve record lives."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "echopanel-setup"
    return Path(os.getenv("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "echopanel-setup"


ASRProviderRegistry.register("voxtral_official", VoxtralOfficialProvider)
