"""Is `watch` cheap enough to leave running beside a busy server? Targets (issue 19):
- parse-and-derive of one 50 KB `/metrics` page in-process: < 5 ms and < 2 MiB allocated (tracemalloc);
- the whole `watch --once` process: < 250 ms and < 50 MiB (peak RSS).

The page is a recorded vLLM 0.33.0 page (tests/fixtures/metrics/, ~55 KB with busy histograms). For the
choice of parser, the same page is also parsed with prometheus_client's parser, and its import is timed in
a fresh interpreter.

The process is timed as a user runs it: the `echopanel-setup` console script of a regular (not editable) install,
made here in a throwaway venv from a copy of this checkout (its dependencies are this venv's, reached through a
.pth line, so nothing is downloaded and no editable-install hook runs). It asks the stand-in server of the tests
(tests/metrics_kit.py), started once beforehand in another process and not counted: `watch --once --interval 0`
(one sample) and `--interval 0.1` (two samples, the 0.1 s subtracted), both `--json` (cron, CI), and the terminal
report. A plain `watch --once` waits 2 s between its two samples on purpose (rates are differences, [watch]
once_interval_s): that wait is not the tool's cost. Wall time is what the issue sets; CPU time (user + system) is
printed beside it because on a shared machine it moves far less with the load. Both, and the peak RSS, come from
wait4 in a small launcher process (a child's peak RSS counts what its parent held when it forked). `--against DIR`
installs another checkout (e.g. a worktree of an older commit) the same way and alternates runs with it, so both
figures come from the same minutes.

    python benchmarks/watch_speed.py [--runs 200] [--against DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from metrics_kit import Scenario, page, render, values_for  # noqa: E402
from regular_install import Runs, install  # noqa: E402

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


def processes(scripts: dict[str, Path], url: str, runs: int) -> None:
    """Each case with each install, alternating, so the machine's load hits them alike."""
    once = ["watch", "--url", url, "--once"]
    cases: dict[str, tuple[list[str], float]] = {  # what: (arguments, seconds of deliberate waiting to subtract)
        "watch --once --json (one sample)": ([*once, "--interval", "0", "--json"], 0.0),
        "watch --once --json (two samples, minus the 0.1 s interval)": ([*once, "--interval", "0.1", "--json"], 0.1),
        "watch --once (one sample, the terminal report, piped)": ([*once, "--interval", "0"], 0.0),
        "for reference, --version": (["--version"], 0.0),
    }
    found: dict[tuple[str, str], Runs] = {}
    for i in range(runs + 1):  # the first round warms the page cache and is not counted
        for name, script in scripts.items():
            for what, (args, minus_s) in cases.items():
                runs_of = found.setdefault((name, what), Runs()) if i else Runs()
                runs_of.add([str(script), *args], minus_s)
    for name in scripts:
        for what in cases:
            print(f"{name}: {what}: {_summary(found[name, what], target=not what.startswith('for reference'))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--against", metavar="DIR", help="another checkout to time the same way, runs alternating")
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
    with tempfile.TemporaryDirectory(prefix="watch-speed-") as tmp:
        scripts = {"this checkout": install(REPO, Path(tmp, "this"))}
        if args.against:
            scripts[f"against {args.against}"] = install(Path(args.against).resolve(), Path(tmp, "against"))
        standin = subprocess.Popen(
            [sys.executable, "-c", _STANDIN, str(REPO / "tests")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = standin.stdout.readline().strip()  # type: ignore[union-attr]
            load = os.getloadavg()[0]
            processes(scripts, url, max(10, args.runs // 10))
            print(f"load average: {load:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
        finally:
            standin.stdin.close()  # type: ignore[union-attr]
            standin.wait(10)


def _summary(runs: Runs, *, target: bool) -> str:
    wall, cpu, rss = runs.medians()
    met = f"  [< 250 ms, < 50 MiB: {_met(wall < 250 and rss < 50)}]" if target else ""
    return f"median {wall:.0f} ms (CPU {cpu:.0f} ms), peak RSS {rss:.1f} MiB{met}"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
