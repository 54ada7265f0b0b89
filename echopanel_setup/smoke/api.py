"""API mode: the same clip through Mistral's hosted realtime transcription, with the official SDK.

The SDK (`mistralai[realtime]`, an optional extra) is imported only here and only when API mode runs.
Mistral's realtime protocol is not vLLM's (mistralai 1.12 `extra/realtime`), so it gets its own adapter;
unlike vLLM, the delay is a per-session setting, sent as `target_streaming_delay_ms`. The SDK takes
`server_url`, which `--url` sets (a regional endpoint, a proxy, or a test stand-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from echopanel_setup import knowledge
from echopanel_setup.errors import ExternalError, UsageError
from echopanel_setup.smoke.audio import RATE, Clip
from echopanel_setup.smoke.client import Limits, over_cap
from echopanel_setup.smoke.result import Timings, Transcript
from echopanel_setup.smoke.server import out_of_memory

_CLOSE_TIMEOUT_S = 2.0


def transcribe(
    clip: Clip,
    *,
    api_key: str,
    key_source: str,
    model: str,
    delay_ms: int,
    server_url: str,
    fast: bool,
    limits: Limits,
) -> Transcript:
    """Stream the clip (read from its file as it goes, never whole) through Mistral's realtime transcription and
    return the transcript."""
    mistral_cls, audio_format = load_sdk()
    client = mistral_cls(api_key=api_key, server_url=server_url, timeout_ms=int(limits.connect_s * 1000))
    budget = limits.connect_s + limits.session_s + limits.done_s + (0 if fast else clip.duration_s)
    try:
        return asyncio.run(
            asyncio.wait_for(_stream(client, audio_format, clip, model, delay_ms, server_url, fast, limits), budget)
        )
    except asyncio.TimeoutError:
        raise ExternalError(
            f"{server_url}: no complete transcript within {budget:.0f} s (allow longer with --timeout)"
        ) from None
    except ExternalError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK's exceptions vary by version; each becomes one sentence
        raise _sdk_error(exc, server_url, key_source, model) from None


def load_sdk() -> tuple[Any, Any]:
    """(Mistral, AudioFormat) from whichever SDK layout is installed (1.x: mistralai, 2.x+: mistralai.client)."""
    from importlib import metadata

    from packaging.version import Version

    api = knowledge.load().smoke.api
    install = f"pip install 'echopanel-setup[api]' (or pip install '{api.install_spec}')"
    try:
        installed = metadata.version("mistralai")
    except metadata.PackageNotFoundError:
        raise UsageError(f"API mode needs Mistral's SDK, an optional extra: {install}") from None
    if Version(installed) < Version(api.min_sdk):
        raise UsageError(
            f"mistralai {installed} has no realtime transcription (needs {api.min_sdk} or newer): {install}"
        )
    try:
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral  # type: ignore[attr-defined,no-redef]
        from mistralai.extra.realtime import AudioFormat
    except ImportError as exc:
        raise UsageError(f"mistralai {installed} cannot load its realtime module ({exc}): {install}") from None
    return Mistral, AudioFormat(encoding="pcm_s16le", sample_rate=RATE)


async def _stream(
    client, audio_format, clip: Clip, model: str, delay_ms: int, server_url: str, fast: bool, limits: Limits
) -> Transcript:
    t = Timings()
    marks: dict[str, float] = {}
    start = time.monotonic()
    size = knowledge.load().smoke.chunk_bytes
    chunk_s = size / 2 / RATE

    async def audio() -> AsyncIterator[bytes]:
        marks["audio"] = began = time.monotonic()
        for n, chunk in enumerate(clip.chunks(size)):
            if not fast and (lag := began + n * chunk_s - time.monotonic()) > 0:
                await asyncio.sleep(lag)
                t.paced_s += lag
            else:  # no wait due: still let the SDK's receiver and keepalive run (a long file converts here)
                await asyncio.sleep(0)
            yield chunk
        marks["final"] = time.monotonic()

    parts: list[str] = []
    text: str | None = None
    usage: dict[str, Any] | None = None
    deltas = kept = 0
    events = client.audio.realtime.transcribe_stream(
        audio_stream=audio(),
        model=model,
        audio_format=audio_format,
        target_streaming_delay_ms=delay_ms,
        server_url=server_url,
        timeout_ms=int(limits.session_s * 1000),
    )
    try:
        async for event in events:
            kind = getattr(event, "type", None)
            if kind == "transcription.text.delta":
                marks.setdefault("first_delta", time.monotonic())
                deltas += 1
                kept += len(event.text)
                if error := over_cap(kept, deltas):  # endless deltas must not exhaust memory
                    raise error
                parts.append(event.text)
            elif kind == "transcription.done":
                if error := over_cap(len(event.text), deltas):
                    raise error
                text = event.text
                raw_usage: Any = getattr(event, "usage", None)
                usage = raw_usage.model_dump() if hasattr(raw_usage, "model_dump") else None
                marks["done"] = time.monotonic()
                break
            elif kind == "error":
                detail = getattr(event, "error", None)
                raise _api_error(getattr(detail, "code", None), str(getattr(detail, "message", detail)), server_url)
    finally:
        # Close the SDK's stream (and its socket) now, not at interpreter exit; its close handshake can hang
        # for websockets' 10 s close timeout when the server has already closed, so bound it.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(events.aclose(), _CLOSE_TIMEOUT_S)
    if text is None:
        raise ExternalError(f"{server_url} closed the session before transcription.done, after {deltas} deltas")
    t.total_s = time.monotonic() - start
    t.connect_s = marks.get("audio", start) - start
    t.stream_s = marks.get("final", marks["done"]) - marks.get("audio", start)
    if "first_delta" in marks and "audio" in marks:
        t.first_delta_s = marks["first_delta"] - marks["audio"]
    t.final_to_done_s = marks["done"] - marks.get("final", marks["done"])
    t.waiting_s = t.connect_s + t.final_to_done_s
    return Transcript(text or "".join(parts), deltas, t, usage, model)


def _api_error(code: Any, message: str, server_url: str) -> ExternalError:
    if code in (401, 403):
        return ExternalError(
            f"{server_url} refused the API key ({code}: {message}): check it at https://console.mistral.ai/api-keys"
        )
    memory = out_of_memory(message)
    return ExternalError(f"{server_url} sent error {code}: {message}" + (f" ({memory})" if memory else ""))


def _sdk_error(exc: Exception, server_url: str, key_source: str, model: str) -> ExternalError:
    """The SDK wraps websockets' handshake failures; find the HTTP status or socket error underneath."""
    from websockets.exceptions import InvalidStatus

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, (InvalidStatus, OSError)):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, InvalidStatus):
        status = cause.response.status_code
        if status in (401, 403):
            return ExternalError(
                f"{server_url} refused the API key from {key_source} (HTTP {status}): check it at https://console.mistral.ai/api-keys"
            )
        if status == 404:
            return ExternalError(
                f"{server_url} has no realtime transcription for model {model!r} (HTTP 404): check --model"
            )
        return ExternalError(f"{server_url} refused the realtime connection with HTTP {status}")
    if isinstance(cause, TimeoutError):  # an OSError too, but the server did answer the connection
        what = str(exc).splitlines()[0].rstrip(".") if str(exc) else "timed out"
        return ExternalError(
            f"{server_url}: {what}: the server accepted the connection but does not answer (a proxy or firewall in the "
            "way, or an overloaded service)"
        )
    if isinstance(cause, OSError):
        return ExternalError(f"cannot reach {server_url}: {cause.strerror or cause}")
    code = getattr(exc, "code", None)
    if code is not None:
        return _api_error(code, str(exc), server_url)
    return ExternalError(f"{server_url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
