"""A dedicated venv for vLLM: what is at the path, the installer to use (uv when it is on PATH, else pip),
the exact commands, and running them with their output streamed line by line.

The venv keeps vLLM away from whatever else the user has installed (EchoPanel's setup guide's `pip install vllm` lands
in the active environment, often next to a transformers that breaks it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup import paths, proc

PROBE_TIMEOUT_S = 15.0


def inspect(venv: Path) -> str:
    """absent | empty | venv | broken (a venv whose python does not run) | other (a folder that is no venv)."""
    if not venv.exists():
        return "absent"
    if venv.is_dir() and not any(venv.iterdir()):
        return "empty"
    if not (venv / "pyvenv.cfg").is_file():
        return "other"
    try:
        ok = proc.run([str(paths.venv_python(venv)), "-c", "pass"], timeout=PROBE_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return "venv" if ok else "broken"


@dataclass(frozen=True)
class Interpreter:
    """Which Python an interpreter is: its version and the installation it belongs to (a venv's python reports
    the installation the venv was made from), so "the venv's Python" and "--python X" can be compared."""

    version: str  # X.Y.Z
    base: str  # sys.base_prefix, resolved


# Python 2 has no sys.base_prefix: it must still say its version, to be refused as too old (not as "does not run").
_WHO = (
    "import os, sys; print('%d.%d.%d' % sys.version_info[:3]); "
    "print(os.path.realpath(getattr(sys, 'base_prefix', sys.prefix)))"
)


def interpreter(python: str) -> Interpreter | None:
    """Version and installation of an interpreter (ours without a subprocess); None if it does not run."""
    if python == sys.executable:
        return Interpreter(".".join(map(str, sys.version_info[:3])), os.path.realpath(sys.base_prefix))
    try:
        out = proc.run([python, "-c", _WHO], timeout=PROBE_TIMEOUT_S)  # a hung one's children die with it
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split("\n")
    if out.returncode != 0 or len(lines) < 2 or not lines[0].strip():
        return None
    return Interpreter(lines[0].strip(), lines[1].strip())


def has_pip(python: Path) -> bool:
    try:
        return proc.run([str(python), "-m", "pip", "--version"], timeout=PROBE_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class Plan:
    """The commands `install vllm` runs, in order, exactly as --dry-run prints them."""

    installer: str  # uv | pip
    commands: list[list[str]] = field(default_factory=list)


def plan(
    venv: Path,
    state: str,
    base_python: str,
    specs: list[str],
    *,
    uv: str | None,
    uv_args: list[str],
    find_links: list[str],
    no_index: bool,
    rebuild: bool = False,
) -> Plan:
    """Create the venv if needed (uv venv / python -m venv), then one upgrade-install of every spec.

    `--upgrade` is what repairs a broken stack in place: named packages move to versions the specs allow and
    their dependencies follow only as far as they must. `rebuild` makes the venv again from `base_python`
    (`--clear`: another interpreter was asked for, the user agreed).
    """
    py = str(paths.venv_python(venv))
    sources = [arg for d in find_links for arg in ("--find-links", d)] + (["--no-index"] if no_index else [])
    commands: list[list[str]] = []
    create = rebuild or state in ("absent", "empty")
    clear = ["--clear"] if rebuild else []
    if uv:
        if create:
            commands.append([uv, "venv", *clear, "--python", base_python, str(venv)])
        commands.append([uv, "pip", "install", "--python", py, "--upgrade", *uv_args, *sources, *specs])
        return Plan("uv", commands)
    if create:
        commands.append([base_python, "-m", "venv", *clear, str(venv)])
    elif not has_pip(paths.venv_python(venv)):  # made by `uv venv`, which seeds no pip
        commands.append([py, "-m", "ensurepip", "--upgrade"])
    commands.append([py, "-m", "pip", "install", "--upgrade", *sources, *specs])
    return Plan("pip", commands)


def find_uv() -> str | None:
    return shutil.which("uv")


@dataclass
class Result:
    returncode: int
    tail: deque[str]


def stream(cmd: list[str], on_line: Callable[[str], None], keep: int = 40) -> Result:
    """Run `cmd`, handing each output line (stdout and stderr merged) to `on_line` as it arrives."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    tail: deque[str] = deque(maxlen=keep)
    child = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
        bufsize=1,
    )
    assert child.stdout is not None
    try:
        for raw in child.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                on_line(line)
        return Result(child.wait(), tail)
    except BaseException:
        child.kill()
        child.wait()
        raise
