"""Is `watch` cheap enough to leave running beside a busy server? Targets (issue 19):
- parse-and-derive of one 50 KB `/metrics` page in-process: < 5 ms and < 2 MiB allocated (tracemalloc);
- the whole `watch --once` process: < 250 ms and < 50 MiB (peak RSS).

The page is a recorded vLLM 0.33.0 page (tests/fixtures/metrics/, ~55 KB with busy histograms). For the
choice of parser, the same page is also parsed with prometheus_client's parser, and its import is timed in
a fresh interpreter. The process is timed against the stand-in server of the tests (tests/metrics_kit.py),
run in another process: `watch --once --interval 0` (one sample) and `--interval 0.1` (two samples, the
interval subtracted).

    python benchmarks/watch_speed.py [--runs 200]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from metrics_kit import Scenario, page, render, values_for  # noqa: E402

from echopanel_setup.metrics import derive, sample  # noqa: E402

_STANDIN = """
import sys, time
sys.path.insert(0, sys.argv[1])
from metrics_kit import MetricsStandIn, Scenario
with MetricsStandIn(Scenario(streams=3)) as s:
    print(s.url, flush=True)
    sys.stdin.read()
"""


def busy_page() -> str:
    text = page("0.33.0")
    return render(text, values_for(text, Scenario(streams=3), 3600.0, time.time(), "0.33.0"))


def in_process(text: str, runs: int) -> tuple[float, float, float]:
    """(median ms, max ms, peak MiB allocated) of parse + derive against a previous sample."""
    prev = sample.from_text(text, 0.0, time.time())
    ctx = derive.Context(max_model_len=45000, health=200)
    derive.derive(prev, sample.from_text(text, 5.0, time.time()), ctx)  # warm: knowledge, caches
    times = []
    for i in range(runs):
        t = time.perf_counter()
        derive.derive(prev, sample.from_text(text, 5.0 + i, time.time()), ctx)
        times.append((time.perf_counter() - t) * 1000)
    tracemalloc.start()
    derive.derive(prev, sample.from_text(text, 9.0, time.time()), ctx)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), max(times), peak


def prometheus_client_parse(text: str, runs: int) -> tuple[float, float]:
    """(import ms in a fresh interpreter, median parse ms) of prometheus_client's text parser."""
    code = "import time; t=time.perf_counter(); import prometheus_client.parser; print((time.perf_counter()-t)*1000)"
    imports = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout) for _ in range(5)
    ]
    from prometheus_client.parser import text_string_to_metric_families

    times = []
    for _ in range(max(5, runs // 10)):
        t = time.perf_counter()
        for family in text_string_to_metric_families(text):
            list(family.samples)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(imports), statistics.median(times)


def process(url: str, interval: str, runs: int) -> tuple[float, float]:
    """(median wall ms, max peak RSS MiB) of `python -m echopanel_setup watch --once`."""
    walls, rss = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "echopanel_setup",
                "watch",
                "--url",
                url,
                "--once",
                "--interval",
                interval,
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        walls.append((time.perf_counter() - t) * 1000 - float(interval) * 1000)
        assert done.returncode == 0, done.stdout + done.stderr
        rss.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)
    return statistics.median(walls), max(rss)


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    text = busy_page()
    median, worst, peak = in_process(text, args.runs)
    print(f"page: {len(text.encode()) / 1000:.1f} KB, {text.count(chr(10))} lines (vLLM 0.33.0, 3 streams after 1 h)")
    print(
        f"parse+derive: median {median:.2f} ms (max {worst:.2f}), {peak:.2f} MiB allocated  "
        f"[< 5 ms, < 2 MiB: {_met(median < 5 and peak < 2)}]"
    )
    imp, parse = prometheus_client_parse(text, args.runs)
    print(f"for reference, prometheus_client: import {imp:.0f} ms (fresh interpreter), parse {parse:.2f} ms")
    standin = subprocess.Popen(
        [sys.executable, "-c", _STANDIN, str(REPO / "tests")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        url = standin.stdout.readline().strip()  # type: ignore[union-attr]
        runs = max(5, args.runs // 20)
        for interval in ("0", "0.1"):
            wall, rss = process(url, interval, runs)
            what = "one sample" if interval == "0" else "two samples, minus the 0.1 s interval"
            print(
                f"watch --once ({what}): median {wall:.0f} ms, peak RSS {rss:.1f} MiB  "
                f"[< 250 ms, < 50 MiB: {_met(wall < 250 and rss < 50)}]"
            )
        base = statistics.median(_wall([sys.executable, "-m", "echopanel_setup", "--version"]) for _ in range(runs))
        print(f"for reference, `echopanel-setup --version` on this machine now: {base:.0f} ms")
    finally:
        standin.stdin.close()  # type: ignore[union-attr]
        standin.wait(10)


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
