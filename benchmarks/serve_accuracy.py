"""How close the serve planner comes to vLLM: its KV-cache pool and stream count against what vLLM itself
prints at start-up ("Available KV cache memory: X GiB", "Maximum concurrency for L tokens per request: Kx").

Status: no GPU was lent to the task that wrote the planner, so there are no measurements yet; the ratios below await a
GPU. The planner's figures are an upper-bound reading of vLLM's code (vLLM `v1/worker/gpu_worker.py`,
`whisper_utils.py`: the encoder's sliding window counted in decoder-token slots), so expect measured / planned >= 1 for
concurrency if that reading is conservative, and about 1 for the KV pool if the activation, non-torch and graph
estimates in compat.toml [serve.planner] are right.

Every successful `echopanel-setup serve --exec/--detach` records vLLM's figures beside the plan in the state
file ("serve_good"), so each start on a GPU is a data point. On a machine with an NVIDIA GPU, after
`echopanel-setup install vllm` and `install voxtral`:

    python benchmarks/serve_accuracy.py --run 1 2 4   # serve --detach with 1, 2, 4 streams, record, stop
    python benchmarks/serve_accuracy.py               # the ratios for every recorded start
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from echopanel_setup import paths


def _exe() -> str:
    here = Path(sys.executable).parent / "echopanel-setup"
    return str(here) if here.exists() else (shutil.which("echopanel-setup") or sys.exit("echopanel-setup not found"))


def run(streams: list[int]) -> None:
    """Start, let the launcher record vLLM's figures, stop; once per stream count."""
    exe = _exe()
    for n in streams:
        out = subprocess.run([exe, "serve", "--detach", "--json", "--streams", str(n)], capture_output=True, text=True)
        print(
            f"--streams {n}: exit {out.returncode}"
            + ("" if out.returncode == 0 else f": {out.stderr.strip().splitlines()[-1:]}")
        )
        subprocess.run([exe, "serve", "--stop"], capture_output=True, text=True)


def rows() -> list[tuple[str, float, float, float, float]]:
    """(GPU | vLLM, planned pool GiB, measured GiB, planned streams, measured concurrency) per recorded start."""
    good = paths.read_state().get("serve_good") or {}
    out = []
    for key, entry in good.items():
        f, b = entry.get("vllm_figures", {}), entry["plan"]["breakdown_mib"]
        if "kv_memory.gib" not in f or "concurrency.times" not in f:
            continue
        pool = (b["kv"] + b["headroom"]) / 1024
        out.append(
            (
                key,
                pool,
                float(f["kv_memory.gib"]),
                (b["kv"] + b["headroom"]) / b["kv_per_stream"],
                float(f["concurrency.times"]),
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=int, nargs="*", metavar="STREAMS", help="start and stop the server with these --streams first"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.run:
        run(args.run)
    data = rows()
    if args.json:
        print(
            json.dumps(
                [
                    dict(zip(("key", "planned_gib", "vllm_gib", "planned_streams", "vllm_concurrency"), r, strict=True))
                    for r in data
                ],
                indent=2,
            )
        )
        return
    if not data:
        print(
            "No recorded start on a GPU yet: the planner-vs-vLLM comparison awaits a GPU (see this file's docstring)."
        )
        return
    print(
        f"{'GPU | vLLM':<44} {'KV pool GiB plan':>16} {'vLLM':>7} {'ratio':>6}   {'streams plan':>12} {'vLLM':>6} "
        f"{'ratio':>6}"
    )
    for key, pool, got, streams, conc in data:
        print(
            f"{key:<44} {pool:>16.2f} {got:>7.2f} {got / pool:>6.2f}   {streams:>12.2f} {conc:>6.2f} "
            f"{conc / streams:>6.2f}"
        )


if __name__ == "__main__":
    main()
