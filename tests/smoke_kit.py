"""Real loopback stand-ins for what `smoke` talks to: vLLM's realtime WebSocket (with its plain-HTTP
routes), vLLM's HTTP transcription route, and Mistral's realtime transcription endpoint.

Each one is a real server on 127.0.0.1 speaking the real protocol (vLLM 0.33.0's connection.py event
order and error codes; the Mistral SDK's event shapes), and each one CHECKS the audio it receives:
it answers with the transcript only when the PCM16 16 kHz mono stream matches what the test expects,
and otherwise sends an `invalid_audio` error saying what differed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import time
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback_kit import HttpStandIn, QuietHandler, WsStandIn, empty_response, json_response
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

VOXTRAL = "mistralai/Voxtral-Mini-4B-Realtime-2602"
RATE = 16000


# --- audio checks ---------------------------------------------------------------------------------


def samples(pcm: bytes) -> array:
    out = array("h")
    out.frombytes(pcm)
    return out


def snr_db(expected: array, got: array) -> float:
    """Signal-to-noise ratio of `got` against `expected` (same length required)."""
    signal = sum(x * x for x in expected) or 1
    noise = sum((x - y) ** 2 for x, y in zip(expected, got, strict=False)) or 1e-9
    return 10 * math.log10(signal / noise)


def exact(expected_pcm: bytes) -> Callable[[bytes], str | None]:
    """The stream must be byte-identical to `expected_pcm` (no conversion was needed)."""

    def check(pcm: bytes) -> str | None:
        if pcm == expected_pcm:
            return None
        return f"got {len(pcm)} bytes, expected the {len(expected_pcm)} bytes of the clip sent"

    return check


def close_to(expected_pcm: bytes, min_snr_db: float = 30.0, length_slack: int = 2) -> Callable[[bytes], str | None]:
    """The stream must be `expected_pcm` (16 kHz mono) within `min_snr_db`: a wrong rate, a missed
    downmix or byte order shows up as noise of the size of the signal."""

    def check(pcm: bytes) -> str | None:
        exp, got = samples(expected_pcm), samples(pcm)
        if abs(len(exp) - len(got)) > length_slack:
            return f"got {len(got)} samples ({len(got) / RATE:.3f} s at 16 kHz), expected {len(exp)}"
        n = min(len(exp), len(got))
        snr = snr_db(exp[:n], got[:n])
        return None if snr >= min_snr_db else f"audio differs from the expected 16 kHz mono signal: SNR {snr:.1f} dB"

    return check


# --- vLLM: realtime WebSocket + /health, /version, /v1/models on one port --------------------------


@dataclass
class VllmBehaviour:
    transcript: str = "Please call Stella. Ask her to bring these things with her from the store."
    models: list[str] = field(default_factory=lambda: [VOXTRAL])
    version: str = "0.33.0"
    api_key: str | None = None
    health: int = 200
    realtime_route: bool = True
    error_after_appends: tuple[int, str, str] | None = None  # (n, code, message)
    drop_after_appends: int | None = None
    close_after_appends: tuple[int, int, str] | None = None  # (n, close code, reason): the server closes the socket
    stall: bool = False
    stop_reading: bool = False  # after session.created, never read again: the client's sends back up and block
    reject_model: bool = False  # /v1/models lists it, but the realtime session says model_not_found


@dataclass
class Seen:
    events: list[str] = field(default_factory=list)
    model: str | None = None
    pcm: bytearray = field(default_factory=bytearray)
    append_times: list[float] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    session_updates: list[dict[str, Any]] = field(default_factory=list)


class VllmStandIn(WsStandIn):
    """vLLM's realtime server as far as `smoke` sees it. Use as a context manager; `.url` is its base."""

    def __init__(
        self,
        check: Callable[[bytes], str | None],
        behaviour: VllmBehaviour | None = None,
        port: int = 0,
        ssl_context: Any = None,
    ) -> None:
        """`ssl_context`: serve https:// and wss:// with it (see `self_signed`)."""
        super().__init__(port, ssl_context)
        self.check = check
        self.b = behaviour or VllmBehaviour()
        self.seen = Seen()

    def _authorized(self, request: Request) -> bool:
        got = request.headers.get("Authorization")
        self.seen.auth.append(got)
        return self.b.api_key is None or got == f"Bearer {self.b.api_key}"

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/health":
            return empty_response(self.b.health)
        if path == "/version":
            return json_response(200, {"version": self.b.version})
        if path.startswith("/v1/") and not self._authorized(request):
            return json_response(401, {"error": "Unauthorized"})
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "vllm", "root": m, "parent": None}
                for m in self.b.models
            ]
            return json_response(200, {"object": "list", "data": data})
        if path == "/v1/realtime" and self.b.realtime_route:
            return None  # go on with the WebSocket handshake
        if path == "/v1/realtime":
            return empty_response(403)  # Starlette's answer to a WebSocket on an unknown route
        return json_response(404, {"detail": "Not Found"})

    async def _session(self, ws: ServerConnection) -> None:
        seen = self.seen
        seen.pcm, seen.append_times = bytearray(), []
        await ws.send(json.dumps({"type": "session.created", "id": "sess-standin", "created": int(time.time())}))
        if self.b.stop_reading:
            ws.transport.pause_reading()  # a stuck server: the kernel buffers fill, then every send waits
            await ws.wait_closed()
            return
        with contextlib.suppress(ConnectionClosed):  # the client went away: nothing to answer
            await self._events(ws)

    async def _events(self, ws: ServerConnection) -> None:
        b, seen = self.b, self.seen
        validated = started = False
        appends = 0

        async def error(code: str, message: str) -> None:
            await ws.send(json.dumps({"type": "error", "error": message, "code": code}))

        async for raw in ws:
            try:
                event = json.loads(raw)
            except ValueError:
                await error("invalid_json", "Invalid JSON")
                continue
            kind = event.get("type")
            seen.events.append(kind)
            if kind == "session.update":
                seen.session_updates.append(event)
                model = event.get("model")
                if not model:
                    await error("invalid_event", "Missing required field: model")
                elif model not in b.models or b.reject_model:
                    await error("model_not_found", f"The model `{model}` does not exist.")
                else:
                    seen.model, validated = model, True
            elif kind == "input_audio_buffer.append":
                try:
                    chunk = base64.b64decode(event["audio"], validate=True)
                except (KeyError, ValueError):
                    chunk = b""
                if not chunk:
                    await error("invalid_audio", "Invalid audio data")
                    continue
                seen.pcm += chunk
                seen.append_times.append(time.monotonic())
                appends += 1
                if b.drop_after_appends is not None and appends >= b.drop_after_appends:
                    ws.transport.abort()  # the process died: no close frame
                    return
                if b.close_after_appends is not None and appends >= b.close_after_appends[0]:
                    await ws.close(*b.close_after_appends[1:])
                    return
                if b.error_after_appends and appends >= b.error_after_appends[0]:
                    _, code, message = b.error_after_appends
                    await error(code, message)
                    b.error_after_appends = None
                if started and appends == 1:
                    await ws.send(json.dumps({"type": "transcription.delta", "delta": b.transcript.split()[0] + " "}))
            elif kind == "input_audio_buffer.commit":
                if not validated:
                    await error(
                        "model_not_validated", "Model not validated. Send session.update with a valid model first."
                    )
                    continue
                if not event.get("final"):
                    started = True
                    continue
                if not started or b.stall:
                    continue  # vLLM: a final commit without a started generation gets no answer
                problem = self.check(bytes(seen.pcm))
                if problem:
                    await error("invalid_audio", f"stand-in: {problem}")
                    continue
                rest = b.transcript.split()[1:]
                for word in rest:
                    await ws.send(json.dumps({"type": "transcription.delta", "delta": word + " "}))
                await ws.send(
                    json.dumps(
                        {
                            "type": "transcription.done",
                            "text": b.transcript,
                            "usage": {
                                "prompt_tokens": len(seen.pcm) // 2560,
                                "completion_tokens": len(rest) + 1,
                                "total_tokens": 0,
                            },
                        }
                    )
                )
            else:
                await error("unknown_event", f"Unknown event type: {kind}")


def self_signed(tmp: Any) -> tuple[Any, str]:
    """A server SSL context with a fresh self-signed certificate for 127.0.0.1 (made by the openssl CLI), and the
    certificate's path: what a user's `--ca-cert` would name."""
    import ssl
    import subprocess

    cert, key = str(tmp / "cert.pem"), str(tmp / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


# --- vLLM: HTTP /v1/audio/transcriptions ----------------------------------------------------------


class VllmHttpStandIn(HttpStandIn):
    """vLLM's OpenAI-compatible HTTP side: GET routes plus the multipart transcription POST."""

    def __init__(self, check: Callable[[bytes], str | None], behaviour: VllmBehaviour | None = None) -> None:
        self.check, self.b = check, behaviour or VllmBehaviour()
        self.seen = Seen()
        outer = self

        class Handler(QuietHandler):
            def _authorized(self) -> bool:
                return outer.b.api_key is None or self.headers.get("Authorization") == f"Bearer {outer.b.api_key}"

            def do_GET(self) -> None:
                if self.path == "/health":
                    return self._send(outer.b.health)
                if self.path == "/version":
                    return self._send(200, {"version": outer.b.version})
                if self.path.startswith("/v1/") and not self._authorized():
                    return self._send(401, {"error": "Unauthorized"})
                if self.path == "/v1/models":
                    return self._send(
                        200, {"object": "list", "data": [{"id": m, "object": "model"} for m in outer.b.models]}
                    )
                return self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                if not self._authorized():
                    return self._send(401, {"error": "Unauthorized"})
                if self.path != "/v1/audio/transcriptions":
                    return self._send(404, {"detail": "Not Found"})
                body = self.rfile.read(int(self.headers["Content-Length"]))
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                form = {
                    p.get_param("name", header="content-disposition"): p
                    for p in BytesParser(policy=HTTP).parsebytes(head + body).iter_parts()
                }
                model = form["model"].get_content()
                if model not in outer.b.models:
                    return self._send(
                        404,
                        {
                            "error": {
                                "message": f"The model `{model}` does not exist.",
                                "type": "NotFoundError",
                                "code": 404,
                            }
                        },
                    )
                with wave.open(io.BytesIO(form["file"].get_payload(decode=True)), "rb") as w:
                    fmt = (w.getframerate(), w.getnchannels(), w.getsampwidth())
                    pcm = w.readframes(w.getnframes())
                if fmt != (RATE, 1, 2):
                    return self._send(
                        400, {"error": {"message": f"stand-in: WAV is {fmt}, expected 16 kHz mono 16-bit", "code": 400}}
                    )
                if problem := outer.check(pcm):
                    return self._send(400, {"error": {"message": f"stand-in: {problem}", "code": 400}})
                outer.seen.model = model
                return self._send(
                    200, {"text": outer.b.transcript, "usage": {"type": "duration", "seconds": len(pcm) // 32000}}
                )

        super().__init__(Handler)


# --- Mistral's realtime transcription --------------------------------------------------------------


@dataclass
class MistralBehaviour:
    transcript: str = "Please call Stella. Ask her to bring these things with her from the store."
    api_key: str = "test-key"
    error: tuple[int, str] | None = None  # sent after the first audio chunk; the socket stays open, as after any error
    silent: bool = False  # accept the WebSocket, never send session.created


MISTRAL_FORMAT = {"encoding": "pcm_s16le", "sample_rate": 16000}


def mistral_gate(request: Request, api_key: str) -> Response | None:
    """Mistral's answer before the handshake: 404 off the realtime route, 401 without the key; None goes on."""
    if urlsplit(request.path).path != "/v1/audio/transcriptions/realtime":
        return json_response(404, {"detail": "Not Found"})
    if request.headers.get("Authorization") != f"Bearer {api_key}":
        return json_response(401, {"message": "Unauthorized", "request_id": "req-standin"})
    return None


async def mistral_open(ws: ServerConnection, model: str) -> dict[str, Any]:
    """Send `session.created` as Mistral does; the dict returned is the session that `mistral_update` changes."""
    session: dict[str, Any] = {"request_id": "req-standin", "model": model, "audio_format": dict(MISTRAL_FORMAT)}
    await ws.send(json.dumps({"type": "session.created", "session": session}))
    return session


async def mistral_update(ws: ServerConnection, session: dict[str, Any], changes: dict[str, Any]) -> None:
    """`session.update`: take the fields that are not null, answer `session.updated` with the whole session."""
    session.update({k: v for k, v in changes.items() if v is not None})
    await ws.send(json.dumps({"type": "session.updated", "session": session}))


class MistralStandIn(WsStandIn):
    """`/v1/audio/transcriptions/realtime` with the event shapes the mistralai SDK parses."""

    def __init__(self, check: Callable[[bytes], str | None], behaviour: MistralBehaviour | None = None) -> None:
        super().__init__()
        self.check, self.b = check, behaviour or MistralBehaviour()
        self.seen = Seen()
        self.query: dict[str, list[str]] = {}

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        self.seen.auth.append(request.headers.get("Authorization"))
        refused = mistral_gate(request, self.b.api_key)
        if refused is None:
            self.query = parse_qs(urlsplit(request.path).query)
        return refused

    async def _session(self, ws: ServerConnection) -> None:
        self.seen.pcm, self.seen.append_times = bytearray(), []  # each session is checked on its own audio
        if self.b.silent:
            await ws.wait_closed()
            return
        model = self.query.get("model", ["?"])[0]
        session = await mistral_open(ws, model)
        with contextlib.suppress(ConnectionClosed):  # the client goes away (it does right after an error event)
            await self._events(ws, session, model)

    async def _events(self, ws: ServerConnection, session: dict[str, Any], model: str) -> None:
        async for raw in ws:
            event = json.loads(raw)
            kind = event.get("type")
            self.seen.events.append(kind)
            if kind == "session.update":
                self.seen.session_updates.append(event["session"])
                await mistral_update(ws, session, event["session"])
            elif kind == "input_audio.append":
                self.seen.pcm += base64.b64decode(event["audio"])
                self.seen.append_times.append(time.monotonic())
                if self.b.error:
                    code, message = self.b.error
                    await ws.send(json.dumps({"type": "error", "error": {"message": message, "code": code}}))
                    self.b.error = None
            elif kind == "input_audio.end":
                fmt = session["audio_format"]
                problem = None if fmt == MISTRAL_FORMAT else f"audio_format {fmt}"
                problem = problem or self.check(bytes(self.seen.pcm))
                if problem:
                    await ws.send(
                        json.dumps({"type": "error", "error": {"message": f"stand-in: {problem}", "code": 3400}})
                    )
                    return
                for word in self.b.transcript.split():
                    await ws.send(json.dumps({"type": "transcription.text.delta", "text": word + " "}))
                await ws.send(
                    json.dumps(
                        {
                            "type": "transcription.done",
                            "model": model,
                            "text": self.b.transcript,
                            "language": "en",
                            "usage": {"prompt_audio_seconds": len(self.seen.pcm) // 32000, "total_tokens": 1},
                        }
                    )
                )


# --- test audio ------------------------------------------------------------------------------------


def tone_pcm(
    seconds: float,
    rate: int,
    channels: int,
    tones: tuple[float, ...] = (300.0, 1000.0, 2500.0, 5000.0),
    side: tuple[float, ...] = (700.0, 3000.0),
) -> bytes:
    """Interleaved PCM16: every channel carries `tones`, and the channels differ by ± `side` tones
    (which cancel in a correct downmix), so rate, channel handling and byte order are all checked."""
    out = array("h")
    for n in range(int(seconds * rate)):
        t = n / rate
        mid = sum(math.sin(2 * math.pi * f * t) for f in tones) * 5000
        diff = sum(math.sin(2 * math.pi * f * t) for f in side) * 3000
        for c in range(channels):
            sign = 1 if c % 2 == 0 else -1
            out.append(round(mid + (sign * diff if channels > 1 else 0)))
    return out.tobytes()


def write_wav(path, pcm: bytes, rate: int, channels: int, width: int = 2) -> None:  # type: ignore[no-untyped-def]
    """A WAV file of `pcm` (PCM16) stored with `width` bytes per sample."""
    data = samples(pcm)
    if width == 2:
        raw = pcm
    elif width == 1:
        raw = bytes((s >> 8) + 128 for s in data)
    else:
        raw = b"".join(((s << ((width - 2) * 8)) & ((1 << (width * 8)) - 1)).to_bytes(width, "little") for s in data)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
