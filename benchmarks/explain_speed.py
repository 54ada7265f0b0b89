"""Time `echopanel-setup explain` on a big vLLM log against `grep -c` on the same file, and measure its memory.

The log: ~100 MB of ordinary vLLM serving lines (throughput reports, health checks, tqdm redraws), then a real
failure from tests/fixtures/logs at its very end, as a server that ran for days and then crashed leaves it. Rows:
- `explain LOG` (the end is read first) against `grep -c '<the failure's text>' LOG`: target ≤ 15×;
- `explain --full LOG` (every byte searched) against the same grep;
- `explain LOG.gz` against `zgrep -c` (a gzip stream cannot be read from its end).
Each row prints median wall times (runs alternate between the two tools, so load hits both alike; the first run
is a warm-up), the ratio, the CPU time of each (user + sys, steadier than wall time on a shared machine) and
explain's peak RSS (`wait4`). Then explain's run in this process under tracemalloc: the peak of Python's own
allocations, which the issue bounds at 100 MiB.

    python benchmarks/explain_speed.py [--size-mb 100] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAILURE = REPO / "tests" / "fixtures" / "logs" / "free-memory-startup.log"
NEEDLE = "Free memory on device"
LINES = [
    "(APIServer pid=30100) INFO 11-25 10:{m:02d}:{s:02d} [loggers.py:123] Engine 000: Avg prompt throughput: 0.0 "
    "tokens/s, Avg generation throughput: 12.5 tokens/s, Running: 1 reqs, Waiting: 0 reqs, GPU KV cache usage: 3.1%,"
    " Prefix cache hit rate: 0.0%",
    '(APIServer pid=30100) INFO:     127.0.0.1:{port} - "GET /health HTTP/1.1" 200 OK',
    "(EngineCore_DP0 pid=30211) DEBUG 11-25 10:{m:02d}:{s:02d} [core.py:708] step took 0.0{s:02d}3 s, batch size 1",
    "\x1b[32mINFO\x1b[0m 11-25 10:{m:02d}:{s:02d} [api_server.py:1021] realtime session {port} closed after {m} min",
    "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01,  1.02s/it]\r"
    "Loading safetensors checkpoint shards: 100% Completed | 2/2 [00:02<00:00,  1.01s/it]",
]


def make_log(path: Path, size: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8", newline="") as fh:
        written = 0
        while written < size:
            line = rng.choice(LINES).format(m=rng.randrange(60), s=rng.randrange(60), port=rng.randrange(40000, 60000))
            written += fh.write(line + "\n")
        fh.write(FAILURE.read_text(encoding="utf-8"))


def _run(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (KiB) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def compare(ours: list[str], peer: list[str], runs: int) -> dict[str, float]:
    _run(ours), _run(peer)
    a, b = [], []
    for _ in range(runs):
        a.append(_run(ours))
        b.append(_run(peer))
    return {
        "wall": statistics.median(x[0] for x in a),
        "peer_wall": statistics.median(x[0] for x in b),
        "cpu": statistics.median(x[1] for x in a),
        "peer_cpu": statistics.median(x[1] for x in b),
        "rss_mib": max(x[2] for x in a) / 1024,
    }


def traced_peak_mib(log: Path, full: bool) -> float:
    sys.path.insert(0, str(REPO))
    from echopanel_setup.explain import ExplainOptions, run

    run(ExplainOptions(log=str(log), full=full))  # warm: knowledge file and patterns compiled, as in a real run
    tracemalloc.start()
    result = run(ExplainOptions(log=str(log), full=full))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.matches and result.matches[0].id == "free-memory-startup", result.matches
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the logs here and keep them")
    args = parser.parse_args()
    ours = str(Path(sys.executable).with_name("echopanel-setup"))
    if not Path(ours).exists():
        ours = shutil.which("echopanel-setup") or sys.exit("echopanel-setup not found: run from its venv")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="explain-speed-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "vllm.log"
    make_log(log, args.size_mb * 1_000_000)
    gz = folder / "vllm.log.gz"
    with log.open("rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    print(f"log: {log.stat().st_size / 1e6:.1f} MB ({gz.stat().st_size / 1e6:.1f} MB gzipped), failure at its end")
    grep = ["grep", "-c", NEEDLE, str(log)]
    rows = [
        ("explain LOG", [ours, "explain", str(log)], "grep -c", grep, 15.0),
        ("explain --full LOG", [ours, "explain", "--full", str(log)], "grep -c", grep, None),
        ("explain LOG.gz", [ours, "explain", str(gz)], "zgrep -c", ["zgrep", "-c", NEEDLE, str(gz)], None),
    ]
    failed = False
    for name, cmd, peer_name, peer_cmd, limit in rows:
        r = compare(cmd, peer_cmd, args.runs)
        ratio = r["wall"] / r["peer_wall"]
        verdict = "" if limit is None else f" (target ≤ {limit:g}×) {'ok' if ratio <= limit else 'OVER'}"
        failed |= limit is not None and ratio > limit
        print(
            f"{name:<20} {r['wall'] * 1000:7.0f} ms   {peer_name:<8} {r['peer_wall'] * 1000:6.0f} ms   ratio "
            f"{ratio:5.1f}×{verdict};  CPU {r['cpu'] * 1000:.0f} ms vs {r['peer_cpu'] * 1000:.0f} ms "
            f"({r['cpu'] / max(r['peer_cpu'], 1e-3):.1f}×);  peak RSS {r['rss_mib']:.0f} MiB"
        )
    for full in (False, True):
        peak = traced_peak_mib(log, full)
        ok = peak < 100
        failed |= not ok
        print(
            f"tracemalloc peak, explain{' --full' if full else ''}: {peak:.1f} MiB (target < 100) "
            f"{'ok' if ok else 'OVER'}"
        )
    if args.keep is None:
        shutil.rmtree(folder)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
