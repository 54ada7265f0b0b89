"""How much time does `smoke` itself add on top of the server? Target (issue 11): with --fast against the
loopback vLLM stand-in, the client's own overhead for a 10 s clip stays under 50 ms.

The client's overhead is everything but waiting for the server: reading the config and the audio file,
building the HTTP client, base64-encoding and sending ~80 chunks, parsing the answers, and scoring. Two
measures, both printed, both held to the target:
- `reported`: what `smoke --json` calls `client_overhead` (wall time minus the time measured around each
  wait on the server: each discovery request, connecting, session.created, after the final commit, closing);
- `cpu`: the CPU time this process spends per smoke. The stand-in runs in ANOTHER process here, so none of
  the server's work is in it; it catches client work that hides inside a timed wait.
Runs are warm (imports are paid once, at start-up; a cold CLI run is printed for reference). The stand-in
is the test suite's (tests/smoke_kit.py): a real WebSocket server that checks every byte it receives.
A user's 44.1 kHz stereo file adds its conversion to 16 kHz mono (soxr when installed, else pure Python); both are
printed apart.

    python benchmarks/smoke_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from smoke_kit import tone_pcm, write_wav  # noqa: E402 (found through the sys.path entry above)

from echopanel_setup.smoke import audio, runner  # noqa: E402
from echopanel_setup.url import ServerURL  # noqa: E402

TARGET_MS = 50.0
CLIP_S = 10.0

_STANDIN = """
import sys, wave
sys.path.insert(0, sys.argv[1])
from smoke_kit import VllmBehaviour, VllmStandIn, exact
with wave.open(sys.argv[2]) as w:
    pcm = w.readframes(w.getnframes())
with VllmStandIn(exact(pcm), VllmBehaviour(transcript=sys.argv[3])) as server:
    print(server.url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


def ten_second_clip(folder: Path) -> tuple[Path, bytes, str]:
    """The bundled clip looped to 10 s, as a 16 kHz mono WAV, with its reference text."""
    clip = audio.bundled()
    repeats = int(CLIP_S / clip.duration_s) + 1
    pcm = (clip.pcm * repeats)[: int(CLIP_S * audio.RATE) * 2]
    path = folder / "ten-seconds.wav"
    write_wav(path, pcm, audio.RATE, 1)
    return path, pcm, " ".join([clip.reference or ""] * repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, pcm, text = ten_second_clip(Path(tmp))
        standin = subprocess.Popen(
            [sys.executable, "-c", _STANDIN, str(REPO / "tests"), str(path), text],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = (standin.stdout.readline() if standin.stdout else "").strip()
            opts = runner.SmokeOptions(
                url=ServerURL.parse(url), audio=str(path), expect=text, fast=True, config=str(Path(tmp) / "none.env")
            )
            runner.run(opts)  # warm-up: imports, first connection
            overhead, cpu, wall, waiting = [], [], [], []
            for _ in range(args.runs):
                cpu_start = time.process_time()
                result = runner.run(opts)
                cpu.append((time.process_time() - cpu_start) * 1000)
                assert result.passed, result.transcript.text
                overhead.append(result.overhead_s * 1000)
                wall.append(result.wall_s * 1000)
                waiting.append(result.waiting_s * 1000)
            cli_start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "echopanel_setup",
                    "smoke",
                    "--url",
                    url,
                    "--fast",
                    "--audio",
                    str(path),
                    "--expect",
                    text,
                ],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=False,
            )
            cli_ms = (time.perf_counter() - cli_start) * 1000
        finally:
            if standin.stdin:
                standin.stdin.close()
            standin.wait(10)
        stereo = Path(tmp) / "stereo-44k.wav"
        write_wav(stereo, tone_pcm(CLIP_S, 44100, 2), 44100, 2)
        convert_ms = {}
        for resampler in audio.RESAMPLERS:
            with contextlib.suppress(ImportError):  # soxr is an optional extra
                clip = audio.load(stereo, resampler=resampler)
                convert_start = time.perf_counter()
                sum(map(len, clip.blocks()))  # a file is converted as it is read
                convert_ms[resampler] = (time.perf_counter() - convert_start) * 1000
    ok = max(statistics.median(overhead), statistics.median(cpu)) < TARGET_MS
    print(
        f"clip {CLIP_S:.0f} s, 16 kHz mono, {len(pcm) // 4096 + 1} chunks, --fast, {args.runs} warm runs against the "
        "loopback stand-in (own process)"
    )
    print(
        f"client overhead, reported  median {statistics.median(overhead):6.1f} ms   max {max(overhead):6.1f} ms   "
        f"(target < {TARGET_MS:.0f} ms)"
    )
    print(
        f"client CPU time per smoke  median {statistics.median(cpu):6.1f} ms   max {max(cpu):6.1f} ms   (target < "
        f"{TARGET_MS:.0f} ms)"
    )
    print(f"waiting on server          median {statistics.median(waiting):6.1f} ms")
    print(f"wall per smoke             median {statistics.median(wall):6.1f} ms   -> {'ok' if ok else 'OVER'}")
    print(f"one CLI run, cold (interpreter start + imports included): {cli_ms:.0f} ms, exit {done.returncode}")
    for resampler, ms in convert_ms.items():
        print(f"converting a {CLIP_S:.0f} s 44.1 kHz stereo WAV to 16 kHz mono (--audio, {resampler}): {ms:.0f} ms")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
