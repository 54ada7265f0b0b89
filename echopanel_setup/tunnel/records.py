"""The record of the tunnel we run: which process, to where, and how it is doing, in our state dir.

The supervisor (`tunnel/supervise.py`) writes it at every change of state; `tunnel status`, `tunnel stop`,
`configure` (the URL a running tunnel gives EchoPanel) and `setup` read it from any shell. Its pid comes with
the process's start time, so a pid the system reused for another program is never taken for ours (and never
signalled by `tunnel stop`). It is kept after a failure, so `tunnel status` can still say why the tunnel ended.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from echopanel_setup import paths

# The supervisor's states: "connecting" (first try), "up", "reconnecting" (after a drop, waiting or trying
# again), "failed" (it gave up: `message` says why, the supervisor has exited).
LIVE_STATES = ("connecting", "up", "reconnecting")


def run_dir() -> Path:
    return paths.state_dir() / "tunnel"


def record_path() -> Path:
    return run_dir() / "tunnel.json"


def log_path() -> Path:
    return run_dir() / "tunnel.log"


@dataclass(frozen=True, kw_only=True)
class TunnelRecord:
    """One tunnel: the supervisor's pid (the one `tunnel stop` ends), the ssh it runs, and its state."""

    pid: int
    create_time: float
    host: str
    local_port: int
    remote_port: int
    argv: list[str]
    log: str
    started_at: str
    state: str = "connecting"
    message: str | None = None  # the last failure, one line
    failure: str | None = None  # its kind (ssh.Failure.kind), for scripts
    reconnects: int = 0
    up_since: str | None = None
    ssh_pid: int | None = None
    ssh_create_time: float | None = None

    @property
    def url(self) -> str:
        """What EchoPanel on this machine uses to reach the far end's vLLM through the tunnel."""
        return f"http://127.0.0.1:{self.local_port}"

    @property
    def route(self) -> str:
        return f"127.0.0.1:{self.local_port} -> {self.host}:{self.remote_port}"

    @classmethod
    def read(cls) -> TunnelRecord | None:
        """The record, or None when there is none or it is not one of ours (a bad file is no record)."""
        try:
            data = json.loads(record_path().read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            record = cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        ok = isinstance(record.pid, int) and record.pid > 0 and isinstance(record.local_port, int)
        return record if ok else None

    def write(self) -> TunnelRecord:
        """Replace the record atomically (a reader never sees half a file)."""
        run_dir().mkdir(parents=True, exist_ok=True)
        tmp = record_path().with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, record_path())
        return self

    def updated(self, **changes: Any) -> TunnelRecord:
        return replace(self, **changes).write()

    def alive(self) -> bool:
        """The supervisor still runs (the same process: its start time matches)."""
        return same_process(self.pid, self.create_time)

    def clear(self) -> None:
        """Remove the record if it is still this one (a newer tunnel's record stays)."""
        current = TunnelRecord.read()
        if current is not None and current.pid == self.pid:
            record_path().unlink(missing_ok=True)


def same_process(pid: int | None, create_time: float | None) -> bool:
    """`pid` runs and is the process that started at `create_time` (not a reused pid, not a zombie)."""
    if pid is None or create_time is None:
        return False
    import psutil

    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - create_time) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def current() -> TunnelRecord | None:
    """The tunnel of ours that runs now (up, or reconnecting after a drop), else None.

    For `configure` and `setup`: while one runs, EchoPanel here reaches the far end's vLLM at `record.url`.
    """
    record = TunnelRecord.read()
    return record if record is not None and record.state in LIVE_STATES and record.alive() else None
