"""Peak memory of `echopanel-setup smoke --audio FILE` on every route, for a short and a long recording.

Issue 18: a 2-hour 44.1 kHz WAV died with MemoryError, and a 10-minute one took 1.67 GB, because the audio was
decoded whole (and, on some routes, copied again). Every route now reads the converted audio in blocks, so its peak
RSS must not depend on the recording's length. This runs each route as a user would, in a child process, against the
loopback stand-ins the tests use (tests/smoke_kit.py, tests/realtime_kit.py, tests/voxtralc_kit.py,
tests/echopanel_kit.py), on a 10-second and an N-minute generated WAV (tones, 44.1 kHz stereo by default), and prints
both peaks and their difference per route (ours: EchoPanel's harness and voxtral.c run in processes of their own,
not counted). The peak RSS is the VmHWM each child reads from /proc/self/status as it exits (Linux): `wait4`'s
ru_maxrss would also count this process, which the child was forked from and which holds the stand-ins and the audio
they received.

    python benchmarks/smoke_memory.py [--minutes 10] [--rate 44100] [--channels 2] [--routes realtime,http,...]
                                      [--source DIR] [--no-soxr]

`--source` runs that checkout's `echopanel_setup` in the children (PYTHONPATH), for before/after figures.
The resampler the children use is whatever is installed (soxr when the `audio` extra is); `--no-soxr` hides it
from them, to measure the pure-Python one.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

ROUTES = ("realtime", "http", "api", "streams", "voxtral-c", "echopanel")
TEXT = "tones for a memory benchmark"
# Run first in every child: its own peak RSS, written where the benchmark reads it.
PEAK = """
import atexit, os, sys
def _peak():  # VmHWM: this process's own peak RSS since exec, in KiB
    with open("/proc/self/status") as fh, open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in fh if line.startswith("VmHWM:")))
atexit.register(_peak)
"""
# Run in the child for --streams: the microphone's clock sped up (the CLI has no such option; the tests use the same).
STREAMS = (
    PEAK
    + """
{hide}
from echopanel_setup.smoke import streams
from echopanel_setup.smoke.runner import SmokeOptions
from echopanel_setup.url import ServerURL
opts = SmokeOptions(url=ServerURL.parse(sys.argv[1]), audio=sys.argv[2], expect=sys.argv[3])
try:
    streams.run(opts, 2, 1.0, speed=float(sys.argv[4]))
except Exception as exc:  # the verdict does not matter here, the memory does
    print(exc, file=sys.stderr)
"""
)
HIDE_SOXR = "sys.modules['soxr'] = None"
CLI = PEAK + "{hide}\nfrom echopanel_setup.cli import main\nsys.argv[0] = 'echopanel-setup'\nmain()\n"


def make_wav(path: Path, seconds: float, rate: int, channels: int) -> None:
    """Tones (a different pair per channel), one second generated and written over and over."""
    second = array("h")
    for n in range(rate):
        for ch in range(channels):
            f1, f2 = 300.0 + 200 * ch, 1000.0 + 500 * ch
            t = 2 * math.pi * n / rate
            second.append(int(6000 * math.sin(f1 * t) + 4000 * math.sin(f2 * t)))
    if sys.byteorder == "big":
        second.byteswap()
    block = second.tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        for _ in range(int(seconds)):
            w.writeframes(block)


def run_child(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 900.0) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS in KiB, exit code, the last line of stderr) of one child, run in `cwd` (not this
    checkout: `python -c` puts the working directory first on sys.path, ahead of --source)."""
    start = time.perf_counter()
    peak = cwd / "peak-kib"
    with tempfile.TemporaryFile() as err:
        env = {**env, "BENCH_PEAK_FILE": str(peak)}
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    rss = int(peak.read_text()) if peak.exists() else -1
    return time.perf_counter() - start, rss, proc.returncode, lines[-1][:160] if lines else ""


@contextlib.contextmanager
def stand_in(route: str, work: Path) -> Iterator[tuple[str, list[str]]]:
    """(the URL, extra smoke arguments) for a route, with its stand-in running."""
    from smoke_kit import MistralStandIn, VllmBehaviour, VllmHttpStandIn, VllmStandIn

    def anything(pcm: bytes) -> None:
        return None

    if route in ("realtime", "streams"):
        with VllmStandIn(anything, VllmBehaviour(transcript=TEXT)) as server:
            yield server.url, ["--fast"]
    elif route == "http":
        with VllmHttpStandIn(anything, VllmBehaviour(transcript=TEXT)) as server:
            yield server.url, ["--http"]
    elif route == "api":
        with MistralStandIn(anything) as server:
            yield server.url, ["--mode", "api", "--api-key", "test-key", "--fast"]
    elif route == "voxtral-c":
        import voxtralc_kit

        binary = voxtralc_kit.build(voxtralc_kit.make_repo(work / "vc"), "blas")
        model = voxtralc_kit.make_model(work / "model", TEXT)
        yield "", ["--client", "voxtral-c", "--voxtral-bin", str(binary), "--voxtral-model", str(model)]
    elif route == "echopanel":
        from echopanel_kit import make_checkout
        from realtime_kit import ChatFront, RealtimeModel

        with RealtimeModel({}) as model, ChatFront(model) as server:
            checkout = make_checkout(work / "EchoPanel", env=f"VOXTRAL_VLLM_URL={server.url}\n")
            yield "", ["--client", "echopanel", "--echopanel", str(checkout), "--echopanel-python", sys.executable]
            return
    else:
        raise SystemExit(f"unknown route {route}; one of {', '.join(ROUTES)}")


def measure(
    route: str, wav: Path, seconds: float, env: dict[str, str], work: Path, no_soxr: bool
) -> tuple[float, int, int, str]:
    hide = HIDE_SOXR if no_soxr else ""
    with stand_in(route, work) as (url, extra):
        if route == "streams":
            speed = max(4.0, seconds / 5)  # the whole file in about five seconds of wall time
            argv = [sys.executable, "-c", STREAMS.format(hide=hide), url, str(wav), TEXT, str(speed)]
        else:
            argv = [sys.executable, "-c", CLI.format(hide=hide), "smoke", *(["--url", url] if url else []), *extra]
            argv += ["--audio", str(wav), "--expect", TEXT, "--json"]
        return run_child(argv, env, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--source", type=Path, help="run this checkout's echopanel_setup in the children")
    parser.add_argument("--no-soxr", action="store_true", help="hide soxr from the children (pure-Python resampler)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.source.resolve()), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {"10 s": (work / "short.wav", 10.0), f"{args.minutes:g} min": (work / "long.wav", args.minutes * 60)}
        for path, seconds in files.values():
            make_wav(path, seconds, args.rate, args.channels)
        soxr = "hidden" if args.no_soxr else "used if installed"
        print(f"{args.rate} Hz, {args.channels} channels; code: {args.source or REPO}; soxr {soxr}")
        print(f"{'route':<10} {'file':>8} {'wall s':>8} {'peak RSS MiB':>13}  exit")
        for route in args.routes.split(","):
            peaks = []
            for label, (path, seconds) in files.items():
                sub = work / f"{route}-{label.replace(' ', '')}"
                sub.mkdir()
                wall, rss, code, last = measure(route, path, seconds, env, sub, args.no_soxr)
                peaks.append(rss)
                print(f"{route:<10} {label:>8} {wall:8.1f} {rss / 1024:13.1f}  {code} {last if code > 1 else ''}")
            print(f"{route:<10} {'growth':>8} {'':>8} {(peaks[1] - peaks[0]) / 1024:13.1f}")


if __name__ == "__main__":
    main()
