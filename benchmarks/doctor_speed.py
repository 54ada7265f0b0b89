"""Time `echopanel-setup doctor --offline --json` against `hf env`, and `echopanel-setup --help` against
`hf --help`, side by side on this machine. Prints medians and the ratios the doctor issue sets:
doctor ≤ 0.8 × hf env, --help ≤ 0.4 × hf --help.

Run from the venv where echopanel-setup is installed (huggingface_hub, a dependency, brings `hf`):
    python benchmarks/doctor_speed.py [--runs 15]
Runs alternate between the two tools so that load on the machine hits both alike. The first run of
each command is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _exe(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or sys.exit(f"{name} not found"))


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def compare(ours: list[str], peer: list[str], runs: int) -> tuple[float, float]:
    _time(ours), _time(peer)
    a, b = [], []
    for _ in range(runs):
        a.append(_time(ours))
        b.append(_time(peer))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ours, hf = _exe("echopanel-setup"), _exe("hf")
    rows = [
        ("doctor --offline --json", [ours, "doctor", "--offline", "--json"], "hf env", [hf, "env"], 0.8),
        ("--help", [ours, "--help"], "hf --help", [hf, "--help"], 0.4),
    ]
    failed = False
    for name, cmd, peer_name, peer_cmd, limit in rows:
        mine, theirs = compare(cmd, peer_cmd, args.runs)
        ratio = mine / theirs
        ok = ratio <= limit
        failed |= not ok
        print(
            f"echopanel-setup {name:<24} {mine * 1000:6.0f} ms   {peer_name:<10} {theirs * 1000:6.0f} ms   "
            f"ratio {ratio:.2f} (target ≤ {limit}) {'ok' if ok else 'OVER'}"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
