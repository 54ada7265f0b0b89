"""Child processes that probes start (nvidia-smi, the target Python, EchoPanel's Python, git): each in its own
process group, and none outliving the run.

`subprocess.run(timeout=…)` kills only the child it started: a hung `nvidia-smi` whose own children hold its pipes
kept the run waiting past the timeout, and those children outlived doctor (SIGTERM, Ctrl-C, or doctor returning
while the probe thread still waited). Here the whole group is killed on a timeout, on any exception, and — through
`kill_all`, which `cli.main` calls when a signal ends the run and at exit — for every probe still running.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

_live: dict[int, subprocess.Popen[Any]] = {}
_lock = threading.Lock()
_POSIX = hasattr(os, "killpg")


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    text: bool = True,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run(argv, capture_output=True, timeout=…)` for a probe: stdin closed, the child and all it
    starts killed together when the timeout passes (TimeoutExpired is raised as before) or anything interrupts."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=_POSIX,
    )
    with _lock:
        _live[proc.pid] = proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # TimeoutExpired, Ctrl-C, a signal turned into an exception
        _kill_group(proc)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        raise
    finally:
        with _lock:
            _live.pop(proc.pid, None)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_all() -> None:
    """Kill every probe's process group still running (safe from a signal handler: no waiting, no lock held)."""
    for proc in list(_live.values()):
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    try:
        if _POSIX:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:  # already gone
        pass


atexit.register(kill_all)  # doctor returns once its probes' deadlines pass: a probe still waiting dies with us
