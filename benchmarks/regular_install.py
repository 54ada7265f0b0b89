"""Time the `echopanel-setup` console script as a user runs it, for the start-up benchmarks (doctor_speed, watch_speed).

`install` makes a regular (not editable) install of a checkout in a throwaway venv, from a copy of it: its
dependencies are this venv's, reached through a .pth line, so nothing is downloaded and no editable-install hook
runs. `Runs.add` starts each run from a small launcher process and reads wall time, CPU time (user + system) and peak
RSS from wait4: on a shared machine CPU time moves far less with the load than wall time, and a child's peak RSS is
at least what its parent held when it forked (the benchmark itself holds ~30 MiB by then). Each install gets its own
state dir, so its caches (knowledge's parsed TOML, keyed by the file it read) are not thrown out by another's runs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def install(checkout: Path, where: Path) -> Path:
    """A regular install of `checkout` in a new venv at `where`; returns its `echopanel-setup` script."""
    src = where / "src"  # a copy: building in the checkout would leave a build/ directory there
    shutil.copytree(checkout, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "_benchmark_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(src)]
    subprocess.run(pip, check=True)
    return where / "venv" / "bin" / "echopanel-setup"


def own_state(script: Path) -> dict[str, str]:
    """The environment for runs of `script`: XDG dirs of its own, beside its venv."""
    home = script.parent.parent.parent / "xdg"
    return {**os.environ, **{f"XDG_{kind}_HOME": str(home / kind.lower()) for kind in ("STATE", "CACHE", "DATA")}}


_LAUNCHER = """
import json, os, sys, time
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
actions = [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
print(json.dumps([wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))
"""


@dataclass
class Runs:
    """One command's runs: wall and CPU milliseconds, peak RSS MiB."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def add(self, argv: list[str], minus_s: float = 0.0, env: dict[str, str] | None = None, ok: int | None = 0) -> None:
        """One run of `argv` (`minus_s`: seconds of deliberate waiting not to count; `ok`: the exit code it must end
        with, None for any)."""
        with tempfile.NamedTemporaryFile() as out:
            done = subprocess.run(
                [sys.executable, "-S", "-c", _LAUNCHER, out.name, *argv],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            wall, cpu, rss, code = json.loads(done.stdout)
            assert ok is None or code == ok, Path(out.name).read_text()
        self.wall.append((wall - minus_s) * 1000)
        self.cpu.append(cpu * 1000)
        self.rss.append(rss / 1024)  # KiB on Linux

    def medians(self) -> tuple[float, float, float]:
        """(median wall ms, median CPU ms, the highest peak RSS MiB)."""
        return statistics.median(self.wall), statistics.median(self.cpu), max(self.rss)
