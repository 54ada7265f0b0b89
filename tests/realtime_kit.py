"""A realtime stand-in that behaves like Voxtral Realtime in time, and speech it can recognise.

`RealtimeModel` is a real WebSocket server on 127.0.0.1 speaking vLLM's realtime protocol (0.33's connection.py:
session.created, session.update validated against the served names, a non-final commit starting generation, one
`transcription.delta` per 80 ms step, empty when no text is due, `transcription.done` after a final commit, `error`
events with vLLM's codes) plus `/health` and `/v1/models` (with `max_model_len`). Like the model it releases each
word only once the audio `delay_ms` past the word's end has arrived, and it recognises words from the audio itself:
a "word" is a tone burst whose frequency names it (`Speech`), so audio that was cut, reordered, resampled or byte-
swapped comes out as wrong words, a word split by inserted silence comes out twice, and a word whose audio never
arrived is missing. Each session counts the samples it received; positions (one per 80 ms) past `max_model_len`
end the generation with an error, as vLLM's realtime sessions do (vllm#39996).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loopback_kit import HttpStandIn, QuietHandler, WsStandIn, empty_response, json_response
from smoke_kit import mistral_gate, mistral_open, mistral_update
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

RATE = 16000
FRAME = 1280  # 80 ms: one model step
SUB = 160  # 10 ms: the word detector's resolution
MODEL = "voxtral-mini-transcribe-realtime-2602"
LOUD = 2000
AMPLITUDE = 8000


# --- speech the stand-in can recognise ----------------------------------------------------------------------


@dataclass
class Speech:
    """PCM16 16 kHz mono where each word is a tone burst at its own frequency, with the words' timings."""

    pcm: bytes
    words: list[tuple[str, float, float]]  # (word, start s, end s)
    vocabulary: dict[str, float]

    @property
    def text(self) -> str:
        return " ".join(w for w, _, _ in self.words)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / RATE


def speech(
    script: str,
    *,
    gap_s: float = 0.12,
    pause_s: float = 0.9,
    lead_s: float = 0.0,
    tail_s: float = 0.0,
    vocabulary: dict[str, float] | None = None,
) -> Speech:
    """Tone-burst speech for `script`: words 0.25-0.4 s long, `gap_s` between them, `pause_s` after a sentence.

    `|` in the script inserts a long pause (3 s). Each distinct word gets its own frequency, added to `vocabulary`
    (pass one dict to several clips so that they never share a frequency)."""
    vocabulary = {} if vocabulary is None else vocabulary
    out = array("h", bytes(int(lead_s * RATE) * 2))
    words: list[tuple[str, float, float]] = []
    for n, token in enumerate(script.split()):
        if token == "|":
            out.extend(array("h", bytes(3 * RATE * 2)))
            continue
        freq = vocabulary.setdefault(token, 400.0 + 60.0 * len(vocabulary))
        length = int((0.25 + 0.05 * (n % 4)) * RATE)
        start = len(out)
        out.extend(round(AMPLITUDE * math.sin(2 * math.pi * freq * i / RATE)) for i in range(length))
        words.append((token, start / RATE, len(out) / RATE))
        rest = pause_s if token.endswith((".", "?", "!")) else gap_s
        out.extend(array("h", bytes(int(rest * RATE) * 2)))
    out.extend(array("h", bytes(int(tail_s * RATE) * 2)))
    return Speech(out.tobytes(), words, vocabulary)


# --- the model ------------------------------------------------------------------------------------------------


@dataclass
class ModelBehaviour:
    models: list[str] = field(default_factory=lambda: [MODEL])
    max_model_len: int | None = 4096
    prompt_positions: int = 40
    delay_ms: int = 480
    api_key: str | None = None
    step_s: float = 0.0  # compute time per 80 ms step
    session_step_s: tuple[float, ...] = ()  # per session, in the order they open (then step_s): one slow stream
    error_after_samples: tuple[int, str, str] | None = None  # (samples, code, message), once
    drop_after_samples: int | None = None  # once: the server process dies (no close frame)
    realtime_route: bool = True
    # Real speech instead of tone words: (pcm, transcript). Its words are spread evenly over the clip's sound (runs
    # of 80 ms or more of exact zeros, like the silence a client appends, are not sound) and released as above.
    script: tuple[bytes, str] | None = None


@dataclass
class SessionLog:
    samples: int = 0
    pcm: bytearray = field(default_factory=bytearray)
    events: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    model: str | None = None
    ended: str | None = None  # why generation ended


class _Recogniser:
    """Words from audio, released `delay` after their end, one step (80 ms) at a time."""

    def __init__(self, vocabulary: dict[str, float], delay_samples: int) -> None:
        self.vocabulary = vocabulary
        self.delay = delay_samples
        self.samples = array("h")
        self.scanned = 0  # samples run through the detector
        self.run_start: int | None = None
        self.words: list[tuple[int, int, str]] = []  # (start, end, word)
        self.released = 0

    def add(self, pcm: bytes) -> None:
        self.samples.frombytes(pcm)

    def _detect(self, upto: int) -> None:
        while self.scanned + SUB <= upto:
            sub = self.samples[self.scanned : self.scanned + SUB]
            loud = max(sub) > LOUD or -min(sub) > LOUD
            if loud and self.run_start is None:
                self.run_start = self.scanned
            elif not loud and self.run_start is not None:
                self._close(self.scanned)
            self.scanned += SUB

    def _close(self, end: int) -> None:
        start, self.run_start = self.run_start, None
        assert start is not None
        run = self.samples[start:end]
        crossings = sum(1 for a, b in zip(run, run[1:], strict=False) if (a < 0) != (b < 0))
        freq = crossings / 2 / (len(run) / RATE)
        word = min(self.vocabulary, key=lambda w: abs(self.vocabulary[w] - freq), default="<?>")
        if not self.vocabulary or abs(self.vocabulary[word] - freq) > 15 or len(run) < 0.1 * RATE:
            word = "<?>"
        self.words.append((start, end, word))

    def step(self, upto: int) -> str:
        """Text released by the audio up to sample `upto`."""
        self._detect(upto)
        due = [w for s, e, w in self.words[self.released :] if e + self.delay <= upto]
        self.released += len(due)
        return "".join(" " + w for w in due)

    def rest(self) -> str:
        """At the end of the audio (vLLM pads the right side): every word left."""
        self._detect(len(self.samples) - len(self.samples) % SUB)
        if self.run_start is not None:
            self._close(len(self.samples))
        due = [w for _, _, w in self.words[self.released :]]
        self.released = len(self.words)
        return "".join(" " + w for w in due)


def _sound(pcm: bytes) -> int:
    """Samples of `pcm` that are not in a run of 80 ms or more of exact zeros."""
    return _ScriptClock().feed(pcm)


class _ScriptClock:
    """Counts sound samples as audio arrives (a zero run counts only once it ends short of 80 ms)."""

    def __init__(self) -> None:
        self.sound = 0
        self.zeros = 0

    def feed(self, pcm: bytes) -> int:
        samples = array("h")
        samples.frombytes(pcm)
        for x in samples:
            if x == 0:
                self.zeros += 1
                continue
            if self.zeros < FRAME:
                self.sound += self.zeros
            self.zeros = 0
            self.sound += 1
        return self.sound


class _ScriptRecogniser(_Recogniser):
    """`_Recogniser` for real speech with a known transcript: word i ends at (i + 1) / n of the clip's sound."""

    def __init__(self, pcm: bytes, transcript: str, delay_samples: int) -> None:
        super().__init__({}, delay_samples)
        words = transcript.split()
        total = _sound(pcm)
        self.ends = [(n + 1) * total // len(words) for n in range(len(words))]
        self.script = words
        self.clock = _ScriptClock()
        self.reached: list[int] = []  # received-sample index where each word's end was heard

    def add(self, pcm: bytes) -> None:
        start = len(self.samples)
        super().add(pcm)
        for offset in range(0, len(pcm), 320):
            self.clock.feed(pcm[offset : offset + 320])
            while len(self.reached) < len(self.ends) and self.clock.sound >= self.ends[len(self.reached)]:
                self.reached.append(start + offset // 2 + 160)

    def step(self, upto: int) -> str:
        heard = self.reached[self.released :]
        due = [w for w, at in zip(self.script[self.released :], heard, strict=False) if at + self.delay <= upto]
        self.released += len(due)
        return "".join(" " + w for w in due)

    def rest(self) -> str:
        due = self.script[self.released :]
        self.released = len(self.script)
        return "".join(" " + w for w in due)


class RealtimeModel(WsStandIn):
    """vLLM serving Voxtral Realtime, as far as a realtime client can tell. Use as a context manager."""

    def __init__(self, vocabulary: dict[str, float], behaviour: ModelBehaviour | None = None) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.b = behaviour or ModelBehaviour()
        self.sessions: list[SessionLog] = []
        self.auth: list[str | None] = []

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.sessions)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/health":
            return empty_response(200)
        if path.startswith("/v1/"):
            got = request.headers.get("Authorization")
            self.auth.append(got)
            if self.b.api_key is not None and got != f"Bearer {self.b.api_key}":
                return json_response(401, {"error": "Unauthorized"})
        if path == "/v1/models":
            card = {"object": "model", "owned_by": "vllm", "root": "/models/voxtral"}
            if self.b.max_model_len is not None:
                card["max_model_len"] = self.b.max_model_len
            return json_response(200, {"object": "list", "data": [{"id": m, **card} for m in self.b.models]})
        if path == "/v1/realtime" and self.b.realtime_route:
            return None
        return json_response(404, {"detail": "Not Found"})

    async def _session(self, ws: ServerConnection) -> None:
        log = SessionLog()
        self.sessions.append(log)
        index = len(self.sessions) - 1
        await ws.send(json.dumps({"type": "session.created", "id": f"sess-{len(self.sessions)}", "created": 0}))
        step_s = self.b.session_step_s[index] if index < len(self.b.session_step_s) else self.b.step_s
        with contextlib.suppress(ConnectionClosed):
            await self._events(ws, log, step_s)

    async def _events(self, ws: ServerConnection, log: SessionLog, step_s: float) -> None:
        b = self.b
        delay = b.delay_ms * RATE // 1000
        rec = _ScriptRecogniser(*b.script, delay) if b.script else _Recogniser(self.vocabulary, delay)
        validated = generating = False
        steps = 0

        async def send(event: dict[str, Any]) -> None:
            await ws.send(json.dumps(event))

        async for raw in ws:
            event = json.loads(raw)
            kind = event.get("type")
            log.events.append(kind)
            if kind == "session.update":
                model = event.get("model")
                if model in b.models:
                    log.model, validated = model, True
                else:
                    await send(
                        {"type": "error", "error": f"The model `{model}` does not exist.", "code": "model_not_found"}
                    )
            elif kind == "input_audio_buffer.commit" and not validated:
                await send({"type": "error", "error": "Model not validated.", "code": "model_not_validated"})
            elif kind == "input_audio_buffer.commit" and not event.get("final"):
                generating = True
            elif kind == "input_audio_buffer.commit":
                if generating and log.ended is None:
                    text = rec.rest()
                    if text:
                        log.texts.append(text)
                        await send({"type": "transcription.delta", "delta": text})
                    done = "".join(log.texts)
                    await send({"type": "transcription.done", "text": done, "usage": {"prompt_tokens": steps}})
                    log.ended = "final commit"
            elif kind == "input_audio_buffer.append":
                chunk = base64.b64decode(event.get("audio") or "")
                if not chunk or len(chunk) % 2:
                    await send({"type": "error", "error": "Invalid audio data", "code": "invalid_audio"})
                    continue
                log.samples += len(chunk) // 2
                log.pcm += chunk
                rec.add(chunk)
                if b.drop_after_samples is not None and self.samples >= b.drop_after_samples:
                    b.drop_after_samples = None
                    ws.transport.abort()
                    return
                if b.error_after_samples is not None and self.samples >= b.error_after_samples[0]:
                    _, code, message = b.error_after_samples
                    b.error_after_samples = None
                    await send({"type": "error", "error": message, "code": code})
                    log.ended = f"error {code}"
                if not generating or log.ended is not None:
                    continue
                while (steps + 1) * FRAME <= len(rec.samples):
                    steps += 1
                    if b.max_model_len is not None and steps + b.prompt_positions > b.max_model_len:
                        log.ended = "max_model_len"
                        await send(
                            {
                                "type": "error",
                                "error": "AssertionError: positions exceed max_model_len",
                                "code": "processing_error",
                            }
                        )
                        break
                    if step_s:
                        await asyncio.sleep(step_s)
                    text = rec.step(steps * FRAME)
                    if text:
                        log.texts.append(text)
                    await send({"type": "transcription.delta", "delta": text})
            else:
                await send({"type": "error", "error": f"Unknown event type: {kind}", "code": "unknown_event"})


def words_of(segments: list[dict[str, Any]] | list[Any], *, final: bool = True) -> list[str]:
    """The words of the (final) text segments, status lines left out."""
    out: list[str] = []
    for seg in segments:
        text, is_final = (seg["text"], seg["is_final"]) if isinstance(seg, dict) else (seg.text, seg.is_final)
        if is_final == final and not text.startswith("["):
            out.extend(text.split())
    return out


def wait_until(predicate: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# --- vLLM's chat route in front of the realtime model (one port, as vLLM serves both) -----------------------------


class ChatFront(HttpStandIn):
    """HTTP on one loopback port: `/health`, `/v1/models`, `POST /v1/chat/completions` answering as stock vLLM
    0.30-0.34 does to EchoPanel's published provider (headerless PCM in a data: URL → 400; a name not served →
    404), and `/v1/realtime` spliced through to `model` (a RealtimeModel) so realtime clients meet the real thing."""

    def __init__(self, model: RealtimeModel, served: list[str] | None = None, port: int = 0) -> None:
        import socket
        import threading

        self.model = model
        self.served = served if served is not None else model.b.models
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/v1/realtime":
                    return self._splice()
                if self.path == "/health":
                    return self._send(200)
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": m} for m in outer.served]})
                return self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posts.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"detail": "Not Found"})
                if body.get("model") not in outer.served:
                    message = f"The model `{body.get('model')}` does not exist."
                    return self._send(404, {"error": {"message": message, "type": "NotFoundError", "code": 404}})
                url = body["messages"][0]["content"][0]["audio_url"]["url"]
                audio_bytes = base64.b64decode(url.split(",", 1)[1])
                if audio_bytes[:4] != b"RIFF":
                    message = "Invalid or corrupted audio data. Please check the file format."
                    return self._send(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})
                return self._send(200, {"choices": [{"message": {"content": "from a wav"}}]})

            def _splice(self) -> None:
                upstream = socket.create_connection(("127.0.0.1", outer.model._loop.port))
                head = f"GET {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
                upstream.sendall((head + "\r\n").encode())

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    finally:
                        for s in (src, dst):
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)

                back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
                back.start()
                pump(self.connection, upstream)
                back.join(5)
                self.close_connection = True

        super().__init__(Handler, port)
        self.httpd.daemon_threads = True


# --- Mistral's hosted realtime transcription, with the same recogniser ---------------------------------------------


class MistralModel(WsStandIn):
    """`/v1/audio/transcriptions/realtime` with the event shapes the mistralai SDK parses, releasing words like the
    model (`delay_ms` after their end) and everything heard on `input_audio.flush`."""

    def __init__(self, vocabulary: dict[str, float], api_key: str = "test-key", delay_ms: int = 480) -> None:
        super().__init__()
        self.vocabulary, self.api_key, self.delay_ms = vocabulary, api_key, delay_ms
        self.session_updates: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.samples = 0

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        self.auth.append(request.headers.get("Authorization"))
        return mistral_gate(request, self.api_key)

    async def _session(self, ws: ServerConnection) -> None:
        session = await mistral_open(ws, MODEL)
        rec = _Recogniser(self.vocabulary, self.delay_ms * RATE // 1000)
        parts: list[str] = []

        async def text(delta: str) -> None:
            if delta:
                parts.append(delta)
                await ws.send(json.dumps({"type": "transcription.text.delta", "text": delta}))

        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "session.update":
                    self.session_updates.append(event["session"])
                    await mistral_update(ws, session, event["session"])
                elif kind == "input_audio.append":
                    chunk = base64.b64decode(event["audio"])
                    self.samples += len(chunk) // 2
                    rec.add(chunk)
                    await text(rec.step(len(rec.samples) - len(rec.samples) % FRAME))
                elif kind == "input_audio.flush":
                    await text(rec.rest())
                elif kind == "input_audio.end":
                    await text(rec.rest())
                    done = {"type": "transcription.done", "model": MODEL, "text": "".join(parts), "language": "en"}
                    await ws.send(json.dumps({**done, "usage": {"prompt_audio_seconds": 1, "total_tokens": 1}}))
