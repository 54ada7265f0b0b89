"""How much time does `smoke` itself add on top of the server? Target (issue 11): with --fast against the
loopback vLLM stand-in, the client's own overhead for a 10 s clip stays under 50 ms.

The client's overhead is everything but waiting for the server: reading the config and the audio file,
the HTTP discovery requests' own work, base64-encoding and sending ~80 chunks, parsing the answers, and
scoring. The time blocked on the server (connecting, waiting for session.created, waiting after the final
commit, closing) is measured around each wait and taken out. Runs are in-process and warm (imports are
paid once, at start-up: `echopanel-setup smoke --help`-style start-up is measured by doctor_speed.py).
The stand-in is the test suite's (tests/smoke_kit.py): a real WebSocket server that checks every byte.

    python benchmarks/smoke_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from smoke_kit import VllmBehaviour, VllmStandIn, exact, write_wav

from echopanel_setup.smoke import audio, runner

TARGET_MS = 50.0
CLIP_S = 10.0


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
        with VllmStandIn(exact(pcm), VllmBehaviour(transcript=text)) as server:
            opts = runner.SmokeOptions(url=server.url, audio=str(path), expect=text, fast=True, config=str(Path(tmp) / "none.env"))
            runner.run(opts)  # warm-up: imports, first connection
            overhead, wall, waiting = [], [], []
            for _ in range(args.runs):
                result = runner.run(opts)
                assert result.passed, result.transcript.text
                overhead.append(result.overhead_s * 1000)
                wall.append(result.wall_s * 1000)
                waiting.append(result.waiting_s * 1000)
            cli_start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "echopanel_setup", "smoke", "--url", server.url, "--fast", "--audio", str(path), "--expect", text],
                capture_output=True, text=True, cwd=REPO, check=False,
            )
            cli_ms = (time.perf_counter() - cli_start) * 1000
    median, worst = statistics.median(overhead), max(overhead)
    ok = median < TARGET_MS
    print(f"clip {CLIP_S:.0f} s, 16 kHz mono, {len(pcm) // 4096 + 1} chunks, --fast, {args.runs} warm runs against the loopback stand-in")
    print(f"client overhead   median {median:6.1f} ms   max {worst:6.1f} ms   (target < {TARGET_MS:.0f} ms) {'ok' if ok else 'OVER'}")
    print(f"waiting on server median {statistics.median(waiting):6.1f} ms")
    print(f"wall per smoke    median {statistics.median(wall):6.1f} ms")
    print(f"one CLI run, cold (interpreter start + imports included): {cli_ms:.0f} ms, exit {done.returncode}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
