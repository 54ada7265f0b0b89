"""Time `echopanel-setup doctor --offline --json` against `hf env`, and `echopanel-setup --help` against
`hf --help`, side by side on this machine. Prints medians and the ratios the doctor issue sets:
doctor ≤ 0.8 × hf env, --help ≤ 0.4 × hf --help.

Run from the venv where echopanel-setup is installed (huggingface_hub, a dependency, brings `hf`):
    python benchmarks/doctor_speed.py [--runs 15] [--against DIR]
echopanel-setup is timed as a user runs it: a regular (not editable) install of this checkout, made in a throwaway
venv (benchmarks/regular_install.py), with a state dir of its own. Runs alternate between the tools so that load on
the machine hits them alike; the first round is a warm-up and not counted. The ratios are of wall time; CPU time
(user + system) is printed beside it because on a shared machine it moves far less with the load. `--against DIR`
installs another checkout (e.g. a worktree of an older commit) the same way and alternates with it too: the start-up
must not get slower from one commit to the next.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from regular_install import Runs, install, own_state

REPO = Path(__file__).resolve().parent.parent
CASES = (  # what, our arguments, the peer's name and arguments, the ratio the issue sets
    ("doctor --offline --json", ["doctor", "--offline", "--json"], "hf env", ["env"], 0.8),
    ("--help", ["--help"], "hf --help", ["--help"], 0.4),
)


def _exe(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or sys.exit(f"{name} not found"))


def measure(ours: dict[str, Path], hf: str, runs: int) -> dict[tuple[str, str], Runs]:
    """Every case with every install and the peer, alternating; the first round is not counted. Exit codes are
    not judged: doctor's verdict depends on the machine (1 without a GPU)."""
    found: dict[tuple[str, str], Runs] = {}
    for i in range(runs + 1):
        for what, args, _, peer_args, _ in CASES:
            for name, script in ours.items():
                (found.setdefault((name, what), Runs()) if i else Runs()).add(
                    [str(script), *args], env=own_state(script), ok=None
                )
            (found.setdefault(("peer", what), Runs()) if i else Runs()).add([hf, *peer_args], ok=None)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--against", metavar="DIR", help="another checkout to time the same way, runs alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doctor-speed-") as tmp:
        ours = {"this checkout": install(REPO, Path(tmp, "this"))}
        if args.against:
            ours[f"against {args.against}"] = install(Path(args.against).resolve(), Path(tmp, "against"))
        load = os.getloadavg()[0]
        found = measure(ours, _exe("hf"), args.runs)
    failed = False
    for what, _, peer, _, limit in CASES:
        theirs, their_cpu, _ = found["peer", what].medians()
        for name in ours:
            mine, cpu, _ = found[name, what].medians()
            ratio = mine / theirs
            ok = ratio <= limit or name != "this checkout"
            failed |= not ok
            print(
                f"{name}: echopanel-setup {what:<24} {mine:6.0f} ms (CPU {cpu:4.0f})   {peer:<10} {theirs:6.0f} ms "
                f"(CPU {their_cpu:4.0f})   ratio {ratio:.2f} (target ≤ {limit}) {'ok' if ok else 'OVER'}"
            )
    print(f"load average: {load:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
