"""A client for vLLM's realtime transcription WebSocket (`/v1/realtime`), as EchoPanel uses it.

The sequence is vLLM's (read in vLLM 0.33.0 `entrypoints/speech_to_text/realtime/connection.py` and
`examples/speech_to_text/realtime/openai_realtime_client.py`): wait for `session.created`; `session.update` with the
served model; a non-final `input_audio_buffer.commit`, which starts generation; `input_audio_buffer.append` chunks of
base64 PCM16 (paced like a live microphone unless `fast`); a final commit; then `transcription.delta`s until
`transcription.done`. vLLM answers a final commit without a started generation with silence, so every wait has a
timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from echopanel_setup import knowledge
from echopanel_setup.errors import ExternalError
from echopanel_setup.smoke.audio import RATE, Clip
from echopanel_setup.smoke.result import Timings, Transcript
from echopanel_setup.smoke.server import out_of_memory, tls_failed, unauthorized
from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import Tls, is_tls


class ServerEventError(ExternalError):
    """vLLM sent an `error` event: shown verbatim, with a hint for the codes we know (or for running out of memory,
    whatever the code)."""

    def __init__(self, code: str | None, message: str) -> None:
        self.code, self.message = code, message
        hint = out_of_memory(message) or knowledge.load().smoke.server_errors.hints.get(code or "", "")
        super().__init__(f"the server sent error {code or '(no code)'}: {message}" + (f" ({hint})" if hint else ""))


_MAX_FRAME = 2**24  # bytes per frame from the server (websockets closes with 1009 past it)
_CLOSE_S = 2.0  # for the closing handshake
# Of transcript kept, a bound on our memory: ~20 hours of speech, so only a server repeating text without end (a
# stuck decoder) reaches it, and the exchange stops there instead of exhausting this machine's memory.
_MAX_TEXT_CHARS = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Timeouts in seconds for each wait on the server."""

    connect_s: float
    session_s: float
    done_s: float

    @classmethod
    def defaults(cls, done_s: float | None = None) -> Limits:
        s = knowledge.load().smoke
        return cls(s.connect_timeout_s, s.session_timeout_s, float(done_s or s.done_timeout_s))


@dataclass
class Trace:
    """When each audio chunk went out (with the bytes of audio sent so far) and each delta came in: what
    `smoke --streams` turns into the lag between audio and its text."""

    sent: list[tuple[float, int]] = field(default_factory=list)
    texts: list[tuple[float, str]] = field(default_factory=list)


def transcribe(
    server: ServerURL,
    model: str,
    pcm: bytes | Clip,
    *,
    api_key: str | None,
    fast: bool,
    limits: Limits,
    tls: Tls | None = None,
) -> Transcript:
    """Stream `pcm` (16 kHz mono PCM16, or a clip read from its file as it goes) through the server's realtime
    endpoint and return the transcript."""
    return asyncio.run(stream(server, model, pcm, api_key=api_key, fast=fast, limits=limits, tls=tls))


async def stream(
    server: ServerURL,
    model: str,
    pcm: bytes | Clip,
    *,
    api_key: str | None,
    fast: bool,
    limits: Limits,
    speed: float = 1.0,
    trace: Trace | None = None,
    tls: Tls | None = None,
) -> Transcript:
    """One realtime session. `speed` scales the microphone's pace (tests run the clock faster); `trace`, when
    given, records when each chunk was sent and each delta arrived."""
    from websockets.asyncio.client import connect

    ws_url = server.ws_url
    t = Timings()
    start = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        ws = await connect(
            ws_url,
            additional_headers=headers,
            open_timeout=limits.connect_s,
            close_timeout=_CLOSE_S,
            compression=None,
            max_size=_MAX_FRAME,
            ssl=(tls or Tls()).context() if ws_url.startswith("wss://") else None,
            **_no_proxy_for_loopback(server),
        )
    except Exception as exc:  # noqa: BLE001 - every handshake failure becomes one sentence
        raise _handshake_error(ws_url, exc, bool(api_key)) from None
    t.connect_s = time.monotonic() - start
    t.waiting_s += t.connect_s
    state = _Received(trace=trace)
    # One deadline for the whole exchange: a server that accepts the WebSocket and then stops reading blocks a send
    # forever (TCP backpressure), and its keepalive would only close the socket ~40 s later, looking like its fault.
    n_bytes = pcm.n_bytes if isinstance(pcm, Clip) else len(pcm)
    budget = limits.session_s + (0.0 if fast else n_bytes / 2 / RATE / speed) + limits.done_s
    try:
        await asyncio.wait_for(_exchange(ws, ws_url, model, pcm, fast, limits, speed, state, t), timeout=budget)
    except asyncio.TimeoutError:
        raise _overdue(budget, state) from None
    finally:
        closing = time.monotonic()
        try:  # a normal close (1000) even on errors: the failure is ours to report, not the server's ...
            await asyncio.wait_for(ws.close(), timeout=_CLOSE_S)
        except asyncio.TimeoutError:  # ... unless it cannot even take the close frame (it stopped reading): cut it
            ws.transport.abort()
        t.waiting_s += time.monotonic() - closing
    t.total_s = time.monotonic() - start
    if state.first_delta is not None and state.audio_started is not None:
        t.first_delta_s = state.first_delta - state.audio_started
    return Transcript(
        state.text if state.text is not None else "".join(state.parts), state.deltas, t, state.usage, model
    )


async def _exchange(
    ws,
    ws_url: str,
    model: str,
    pcm: bytes | Clip,
    fast: bool,
    limits: Limits,
    speed: float,
    state: _Received,
    t: Timings,
) -> None:
    """session.created → session.update → commit → the audio → final commit → transcription.done."""
    waited = time.monotonic()
    first = await _recv(ws, limits.session_s, "session.created")
    t.waiting_s += time.monotonic() - waited
    if first.get("type") == "error":
        raise ServerEventError(first.get("code"), _error_text(first))
    if first.get("type") != "session.created":
        raise ExternalError(
            f"{ws_url} opened with {first.get('type')!r} instead of session.created: not vLLM's realtime protocol"
        )
    await ws.send(json.dumps({"type": "session.update", "model": model}))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    receiver = asyncio.create_task(_receive(ws, state))
    try:
        await _send_audio(ws, pcm, fast, receiver, state, t, speed)
        final_sent = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(receiver), timeout=limits.done_s)
        except asyncio.TimeoutError:
            raise ExternalError(
                f"no transcription.done within {limits.done_s:.0f} s after the end of the audio "
                f"({_deltas(state.deltas)} so far): the server is stalled or overloaded; read its log "
                "(`echopanel-setup explain LOG`), or allow longer with --timeout"
            ) from None
        done_at = time.monotonic()
        t.final_to_done_s = done_at - final_sent
        t.waiting_s += t.final_to_done_s
    finally:
        receiver.cancel()
        if receiver.done() and not receiver.cancelled():
            receiver.exception()  # already raised through us, or moot: mark it retrieved


def _no_proxy_for_loopback(server: ServerURL) -> dict[str, Any]:
    """websockets 15+ takes HTTP(S)_PROXY from the environment; a server on this machine is never behind it."""
    import inspect

    from websockets.asyncio.client import connect

    return {"proxy": None} if server.is_loopback and "proxy" in inspect.signature(connect).parameters else {}


@dataclass
class _Received:
    parts: list[str] = field(default_factory=list)
    text: str | None = None
    deltas: int = 0
    usage: dict[str, Any] | None = None
    first_delta: float | None = None
    audio_started: float | None = None
    trace: Trace | None = None
    sending: bool = False  # inside a send of audio: where a server that stopped reading leaves us
    kept_chars: int = 0  # of the deltas' text; past the cap the rest is counted, not kept


async def _send_audio(
    ws, pcm: bytes | Clip, fast: bool, receiver: asyncio.Task, state: _Received, t: Timings, speed: float = 1.0
) -> None:
    """Append chunks (on a microphone's schedule, `speed` times as fast, unless `fast`), then the final commit. A
    clip from a file is read as it is sent, so memory does not grow with the recording's length."""
    from websockets.exceptions import ConnectionClosed

    size = knowledge.load().smoke.chunk_bytes
    chunk_s = size / 2 / RATE / speed
    state.audio_started = began = time.monotonic()
    sent = 0
    try:
        pieces = pcm.chunks(size) if isinstance(pcm, Clip) else (pcm[o : o + size] for o in range(0, len(pcm), size))
        for n, chunk in enumerate(pieces):
            if receiver.done():  # an error event or a closed socket: stop sending and report it
                break
            if not fast and (lag := began + n * chunk_s - time.monotonic()) > 0:
                await asyncio.sleep(lag)
                t.paced_s += lag
            else:  # no wait due: still let the receiver and websockets' keepalive run (a long file converts here)
                await asyncio.sleep(0)
            audio = base64.b64encode(chunk).decode("ascii")
            state.sending = True
            await ws.send('{"type": "input_audio_buffer.append", "audio": "' + audio + '"}')
            state.sending = False
            sent += len(chunk)
            if state.trace is not None:
                state.trace.sent.append((time.monotonic(), sent))
        if not receiver.done():
            await ws.send(json.dumps({"type": "input_audio_buffer.commit", "final": True}))
    except ConnectionClosed:
        pass  # the receiver saw why; fall through to it
    t.stream_s = time.monotonic() - began
    if receiver.done():
        receiver.result()  # raises the server's error, or the drop
        raise ExternalError("the server ended the transcription before the audio was sent")


async def _receive(ws, state: _Received) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for raw in ws:
            try:
                event = json.loads(raw)
            except ValueError:
                raise ExternalError(f"the server sent a frame that is not JSON: {str(raw)[:80]!r}") from None
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "transcription.delta":
                if state.first_delta is None:
                    state.first_delta = time.monotonic()
                state.deltas += 1
                delta = str(event.get("delta", ""))
                if not delta:
                    continue
                state.kept_chars += len(delta)
                if error := over_cap(state.kept_chars, state.deltas):  # endless deltas must not exhaust memory
                    raise error
                state.parts.append(delta)
                if state.trace is not None:
                    state.trace.texts.append((time.monotonic(), delta))
            elif kind == "transcription.done":
                text = str(event.get("text", ""))
                if error := over_cap(len(text), state.deltas):
                    raise error
                state.text = text
                state.usage = event.get("usage") if isinstance(event.get("usage"), dict) else None
                return
            elif kind == "error":
                raise ServerEventError(event.get("code"), _error_text(event))
    except ConnectionClosed as exc:
        raise _dropped(exc, state) from None
    raise _dropped(None, state)


def over_cap(
    chars: int,
    deltas: int | None = None,
    *,
    source: str = "the server",
    fix: str = "restart it, and read its log (`echopanel-setup explain LOG`)",
) -> ExternalError | None:
    """The error that stops an exchange whose transcript has passed our bound on its memory (any route, voxtral.c
    too), else None."""
    if chars <= _MAX_TEXT_CHARS:
        return None
    after = "" if deltas is None else f" after {_deltas(deltas)}"
    return ExternalError(
        f"this side stopped the transcription{after}: the transcript passed our memory bound of {_MAX_TEXT_CHARS:,} "
        f"characters (about 20 hours of speech), so {source} is repeating text without end (a stuck decoder): {fix}"
    )


def _dropped(exc: Exception | None, state: _Received) -> ExternalError:
    """Who closed the WebSocket, and why: our keepalive or size limit, the server's close frame (out of memory named
    as such), or a cut."""
    rcvd, sent = getattr(exc, "rcvd", None), getattr(exc, "sent", None)
    after = f"after {_deltas(state.deltas)}"
    if rcvd is None and sent is not None and sent.code == 1011:
        return ExternalError(
            f"this side closed the WebSocket {after}: the server stopped answering keepalive pings (code 1011"
            f"{': ' + sent.reason if sent.reason else ''}): it is stuck or the network dropped the connection"
        )
    if rcvd is None and sent is not None and sent.code == 1009:
        return ExternalError(
            f"this side closed the WebSocket {after}: the server sent a frame over our {_MAX_FRAME >> 20} MiB limit "
            "(code 1009, our bound on memory): not a realtime transcription event; is --url a vLLM server?"
        )
    if rcvd is not None and rcvd.code == 1009:
        return ExternalError(
            f"the server closed the WebSocket {after}: one of our frames was over its size limit (code 1009"
            f"{': ' + rcvd.reason if rcvd.reason else ''}); a proxy in between may have a smaller limit"
        )
    why = f" (close code {rcvd.code}{': ' + rcvd.reason if rcvd.reason else ''})" if rcvd else " (no close frame)"
    if rcvd is not None and (memory := out_of_memory(rcvd.reason)):
        return ExternalError(f"the server closed the WebSocket {after}{why}: {memory}")
    if rcvd is not None and rcvd.code == 1011 and "keepalive" in rcvd.reason.lower():
        return ExternalError(
            f"the server closed the WebSocket {after}{why}: its keepalive got no answer to its pings from this side "
            "in time; this machine may be overloaded, or the network dropped the connection"
        )
    return ExternalError(
        f"the server closed the WebSocket before transcription.done{why}, {after}: "
        "it may have crashed or restarted; read its log (`echopanel-setup explain LOG` names known failures)"
    )


def _overdue(budget: float, state: _Received) -> ExternalError:
    """The whole exchange ran past its deadline: say where it was stuck."""
    if state.sending:
        return ExternalError(
            f"the server stopped reading our audio: a send was still blocked when the {budget:.0f} s deadline for "
            "the whole exchange passed (it accepted the WebSocket, then stopped reading: it is stuck or overloaded); "
            "read its log, or allow longer with --timeout"
        )
    return ExternalError(
        f"no complete transcript within {budget:.0f} s, the deadline for the whole exchange ({_deltas(state.deltas)} "
        "so far): the server is stalled or overloaded; allow longer with --timeout"
    )


def _deltas(n: int) -> str:
    return f"{n} delta{'s' if n != 1 else ''}"


async def _recv(ws, timeout: float, waiting_for: str) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed

    try:
        raw = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise ExternalError(
            f"no {waiting_for} within {timeout:.0f} s: the server accepted the WebSocket but stays silent"
        ) from None
    except ConnectionClosed as exc:
        raise _dropped(exc, _Received()) from None
    try:
        event = json.loads(raw)
    except ValueError:
        raise ExternalError(
            f"the server sent a frame that is not JSON while we waited for {waiting_for}: not vLLM's realtime protocol"
        ) from None
    return event if isinstance(event, dict) else {"type": None}


def _error_text(event: dict[str, Any]) -> str:
    err = event.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err or event.get("message") or "(no message)")


def _handshake_error(url: str, exc: Exception, sent_key: bool) -> ExternalError:
    """One actionable sentence for a failed WebSocket opening."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    if is_tls(exc):
        return ExternalError(tls_failed(url, str(exc).splitlines()[0][:200]))
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return ExternalError(unauthorized(url, sent_key))
        if status in (403, 404):
            return ExternalError(
                f"{url} has no realtime WebSocket (HTTP {status}): vLLM older than 0.16, or the served model does not "
                "support realtime transcription (serve mistralai/Voxtral-Mini-4B-Realtime-2602)"
            )
        return ExternalError(f"{url} refused the WebSocket with HTTP {status}")
    if isinstance(exc, InvalidURI):
        return ExternalError(f"{url} is not a WebSocket URL: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ExternalError(f"{url}: the WebSocket did not open within the connect timeout")
    if isinstance(exc, InvalidHandshake):
        return ExternalError(
            f"{url} did not complete a WebSocket handshake ({exc}): a proxy in the way, or not a vLLM server"
        )
    if isinstance(exc, OSError):
        return ExternalError(f"cannot reach {url}: {exc.strerror or exc}")
    return ExternalError(f"{url}: the WebSocket failed to open: {type(exc).__name__}: {exc}")
