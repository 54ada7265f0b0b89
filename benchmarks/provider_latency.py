"""What our EchoPanel provider adds on the audio path: time per chunk inside the provider, and CPU per second of audio.

The provider `provider fix` installs runs in this process, loaded from a stand-in checkout exactly as EchoPanel
loads it; the realtime server is the stand-in model (tests/realtime_kit.py) in a child process, on loopback, so
its CPU is not counted. Audio is fed as fast as the provider takes it, the way EchoPanel's queue hands over a
backlog:
- stream (VAD off): 0.1 s chunks in one call; "added latency" is the time from handing a chunk to the provider
  until it asks for the next one (decode, loudness, base64, the WebSocket send, turning events into segments);
- windows (VAD on): 2 s windows, one call each; the call's time minus the wait for the server's text (the flush
  at a pause, which is the model's delay, not ours) is reported separately.
CPU is this process's CPU time (time.process_time) per second of audio streamed. Target: median < 5 ms per chunk.

    python benchmarks/provider_latency.py [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from echopanel_kit import make_checkout  # noqa: E402
from realtime_kit import speech  # noqa: E402

from echopanel_setup.provider import TEMPLATE, echopanel_harness, template_text  # noqa: E402

_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from realtime_kit import ModelBehaviour, RealtimeModel, speech
clip = speech(sys.argv[2])
with RealtimeModel(clip.vocabulary, ModelBehaviour(max_model_len=1_000_000)) as model:
    print(model.url, flush=True)
    sys.stdin.read()
"""

SCRIPT = "please call stella. ask her to bring these things with her from the store. six spoons of fresh snow peas."


def _clip(seconds: float) -> bytes:
    one = speech(SCRIPT).pcm
    return (one * math.ceil(seconds * 32000 / len(one)))[: int(seconds * 32000)]


async def _stream(provider: Any, source: Any, pcm: bytes, chunk_s: float) -> list[float]:
    size = int(16000 * chunk_s) * 2
    handed: list[float] = []
    gaps: list[float] = []

    async def audio() -> AsyncIterator[bytes]:
        for offset in range(0, len(pcm), size):
            if handed:
                gaps.append(time.perf_counter() - handed[-1])
            handed.append(time.perf_counter())
            yield pcm[offset : offset + size]

    async for _ in provider.transcribe_stream(audio(), 16000, source):
        pass
    return gaps


async def _windows(provider: Any, source: Any, pcm: bytes) -> list[tuple[float, float]]:
    size = 64000
    out: list[tuple[float, float]] = []
    for offset in range(0, len(pcm), size):
        window = pcm[offset : offset + size]

        async def one(chunk: bytes = window) -> AsyncIterator[bytes]:
            yield chunk

        started = time.perf_counter()
        waited = 0.0
        original = provider._settle

        async def timed_settle(*args: Any, original: Any = original) -> None:
            nonlocal waited
            t = time.perf_counter()
            await original(*args)
            waited += time.perf_counter() - t

        provider._settle = timed_settle
        async for _ in provider.transcribe_stream(one(), 16000, source):
            pass
        provider._settle = original
        out.append((time.perf_counter() - started, waited))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(REPO / "tests"), SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as tmp:
            import os

            os.environ["VOXTRAL_VLLM_URL"] = url
            checkout = make_checkout(Path(tmp) / "EchoPanel", providers={TEMPLATE: template_text()})
            pcm = _clip(args.seconds)
            rows = []
            for label, vad in (("stream, 0.1 s chunks (VAD off)", False), ("2 s windows (VAD on)", True)):
                mod = echopanel_harness.load_provider(checkout, package=f"bench_{int(vad)}")
                provider = echopanel_harness.make_provider(mod, f"bench_{int(vad)}", vad=vad)
                source = mod.AudioSource("system")
                cpu = time.process_time()
                if vad:
                    calls = asyncio.run(_windows(provider, source, pcm))
                    own = [(total - waited) * 1000 for total, waited in calls]
                    waits = [waited * 1000 for _, waited in calls]
                    extra = f"; waiting for the server's text {statistics.median(waits):.0f} ms median per window"
                else:
                    own = [g * 1000 for g in asyncio.run(_stream(provider, source, pcm, 0.1))]
                    extra = ""
                cpu_ms = (time.process_time() - cpu) * 1000 / (len(pcm) / 32000)
                own.sort()
                p95 = own[int(len(own) * 0.95) - 1]
                ok = statistics.median(own) < 5
                rows.append(
                    f"{label:<32} added per chunk: median {statistics.median(own):.2f} ms, p95 {p95:.2f} ms "
                    f"(target < 5 ms: {'ok' if ok else 'OVER'}); CPU {cpu_ms:.1f} ms per s of audio{extra}"
                )
        print(f"{args.seconds:.0f} s of audio, Python {sys.version.split()[0]}, loopback stand-in in a child process")
        print("\n".join(rows))
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)


if __name__ == "__main__":
    main()
