"""Run one of EchoPanel's own providers the way EchoPanel's pipeline drives it, outside EchoPanel.

This file runs in EchoPanel's Python (`<checkout>/.venv/bin/python echopanel_harness.py ...`), so it uses the
standard library only and never imports echopanel_setup. It loads the provider module on its own: importing
`server.services` would import every provider (and their heavy dependencies), so `server` and `server.services`
are stood up as bare packages pointing at the checkout and only `asr_providers` and the provider module load.

Feeding follows EchoPanel (pranaysuyash/EchoPanel 3845da5 `server/services/vad_asr_wrapper.py` and
`server/api/ws_live_listener.py`): with VAD on, the audio is cut into `chunk_seconds` windows, windows without speech
are skipped (an energy gate stands in for EchoPanel's FireRedVAD/Silero) and `transcribe_stream` is called afresh with
each speech window as a one-chunk stream, the window's start added to the segments' times; with VAD off, one call gets
the whole stream in small chunks. Audio is paced like a live source, `--speed` times faster. Output: one JSON document
per line on stdout (`loaded`, `segment`, `log`, `health`, `done`, `error`); the caller's environment is EchoPanel's (its
`.env` already applied).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
import time
import traceback
import types
from array import array
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

RATE = 16000
STREAM_CHUNK_S = 0.1  # the size of the audio frames EchoPanel's queue hands over with VAD off
SPEECH_PEAK = 1000  # a 20 ms frame peaking above this counts as speech for the stand-in VAD


def emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"event": kind, **fields}, default=str), flush=True)


class _JsonLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not end the run
            message = str(record.msg)
        emit("log", level=record.levelname, name=record.name, message=message)


def load_provider(checkout: Path, package: str = "server", module: str = "provider_voxtral_official") -> Any:
    """The provider module, loaded alone from `checkout` under the package name `package`."""
    server = types.ModuleType(package)
    server.__path__ = [str(checkout / "server")]
    services = types.ModuleType(f"{package}.services")
    services.__path__ = [str(checkout / "server" / "services")]
    sys.modules[package] = server
    sys.modules[f"{package}.services"] = services
    importlib.import_module(f"{package}.services.asr_providers")
    return importlib.import_module(f"{package}.services.{module}")


def make_provider(mod: Any, package: str = "server", *, vad: bool, name: str = "voxtral_official") -> Any:
    """An instance of the provider registered as `name`, built with the config EchoPanel builds
    (`asr_stream._get_default_config`'s variables)."""
    asr = sys.modules[f"{package}.services.asr_providers"]
    config = asr.ASRConfig(
        language=os.getenv("ECHOPANEL_WHISPER_LANGUAGE", "en"),
        chunk_seconds=int(os.getenv("ECHOPANEL_ASR_CHUNK_SECONDS", "2")),
        vad_enabled=vad,
    )
    registry = getattr(asr.ASRProviderRegistry, "_providers", {})
    cls = registry.get(name)
    if cls is None:
        raise LookupError(f"{mod.__name__} registers no provider named {name!r} (it registers {sorted(registry)})")
    return cls(config)


def has_speech(pcm: bytes) -> bool:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return any(
        max(samples[i : i + 320], default=0) > SPEECH_PEAK or -min(samples[i : i + 320], default=0) > SPEECH_PEAK
        for i in range(0, len(samples), 320)
    )


def _segment(seg: Any, offset: float, window: int | None, started: float) -> dict[str, Any]:
    source = getattr(seg, "source", None)
    return {
        "text": seg.text,
        "t0": offset + float(seg.t0),
        "t1": offset + float(seg.t1),
        "confidence": seg.confidence,
        "is_final": seg.is_final,
        "source": getattr(source, "value", source),
        "language": getattr(seg, "language", None),
        "window": window,
        "at_s": round(time.monotonic() - started, 3),
    }


def pieces(pcm: BinaryIO, size: int) -> Iterator[tuple[int, bytes]]:
    """(byte offset, piece) of `size` bytes, read from the file one piece at a time (a long recording is never held
    whole)."""
    offset = 0
    while piece := pcm.read(size):
        yield offset, piece
        offset += len(piece)


async def feed_vad(
    provider: Any, pcm: BinaryIO, source: Any, chunk_seconds: float, speed: float, out: list[dict[str, Any]]
) -> None:
    """EchoPanel's VAD wrapper: one `transcribe_stream` call per speech window, silent windows skipped."""
    size = int(RATE * chunk_seconds) * 2
    started = time.monotonic()
    for n, (offset, window) in enumerate(pieces(pcm, size)):
        due = started + (offset + len(window)) / 2 / RATE / speed  # the window is complete only then
        if (lag := due - time.monotonic()) > 0:
            await asyncio.sleep(lag)
        if not has_speech(window):
            continue

        async def one(chunk: bytes = window) -> AsyncIterator[bytes]:
            yield chunk

        async for seg in provider.transcribe_stream(one(), RATE, source):
            out.append(_segment(seg, offset / 2 / RATE, n, started))


async def feed_stream(provider: Any, pcm: BinaryIO, source: Any, speed: float, out: list[dict[str, Any]]) -> None:
    """VAD off: one call, the audio in small chunks as it arrives."""
    size = int(RATE * STREAM_CHUNK_S) * 2
    started = time.monotonic()

    async def audio() -> AsyncIterator[bytes]:
        for offset, chunk in pieces(pcm, size):
            due = started + offset / 2 / RATE / speed
            if (lag := due - time.monotonic()) > 0:
                await asyncio.sleep(lag)
            yield chunk

    async for seg in provider.transcribe_stream(audio(), RATE, source):
        out.append(_segment(seg, 0.0, None, started))


async def _run(args: argparse.Namespace) -> int:
    checkout = Path(args.checkout)
    try:
        mod = load_provider(checkout, module=args.module)
        provider = make_provider(mod, vad=args.feed == "vad", name=args.module.removeprefix("provider_"))
    except BaseException as exc:  # noqa: BLE001 - the load failure is the result
        emit("error", stage="load", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return 3
    emit(
        "loaded",
        module=mod.__name__,
        file=getattr(mod, "__file__", None),
        provider=type(provider).__name__,
        available=bool(provider.is_available),
        python=sys.executable,
    )
    if args.import_only:
        return 0
    asr = sys.modules["server.services.asr_providers"]
    source = asr.AudioSource(args.source) if args.source else None
    out: list[dict[str, Any]] = []
    try:
        with Path(args.pcm).open("rb") as pcm:  # read window by window as the feed goes
            if args.feed == "vad":
                await feed_vad(provider, pcm, source, float(provider.config.chunk_seconds), args.speed, out)
            else:
                await feed_stream(provider, pcm, source, args.speed, out)
    except BaseException as exc:  # noqa: BLE001 - EchoPanel's pipeline would die here: report it
        emit("error", stage="transcribe", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return 4
    finally:
        for segment in out:
            emit("segment", **segment)
    health = getattr(provider, "health", None)
    if callable(health):
        try:
            value = await asyncio.wait_for(health(), 10)
            emit("health", value=value if isinstance(value, dict) else getattr(value, "to_dict", dict)())
        except Exception as exc:  # noqa: BLE001
            emit("health", error=f"{type(exc).__name__}: {exc}")
    unload = getattr(provider, "unload", None)
    if callable(unload):
        with contextlib.suppress(Exception):  # closing is best effort once the results are out
            await asyncio.wait_for(unload(), 5)
    emit("done", segments=len(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", required=True)
    parser.add_argument("--module", default="provider_voxtral_official")
    parser.add_argument("--import-only", action="store_true")
    parser.add_argument("--pcm", help="16 kHz mono PCM16 little-endian, no header")
    parser.add_argument("--feed", choices=("vad", "stream"), default="vad")
    parser.add_argument("--source", default="system")
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    root = logging.getLogger()
    root.handlers[:] = [_JsonLog()]
    root.setLevel(logging.DEBUG)
    for noisy in ("asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.path.insert(0, str(Path(args.checkout)))
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
