"""`tunnel start|status|stop`: `run(opts) -> TunnelResult`, rendered by `tunnel/render.py`.

A tunnel is the safe route to a GPU host elsewhere: vLLM there stays on its own loopback, EchoPanel here uses
`http://127.0.0.1:LOCAL`, and nothing is exposed on any network. Failures are raised as `SetupError`s with one
line that names the fix; what `start` finds at the far end (vLLM, EchoPanel's own backend, nothing) is part of
the result, since a tunnel to a port where nothing listens is up but useless.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from echopanel_setup import ports
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, ExternalError, SetupError, UsageError
from echopanel_setup.tunnel import records, ssh
from echopanel_setup.tunnel.records import TunnelRecord
from echopanel_setup.tunnel.supervise import Spec, start_detached

# ssh's own connect timeout, plus the login and the forward's set-up.
_START_WAIT_S = ssh.CONNECT_TIMEOUT_S + 15
_STOP_GRACE_S = 5.0


@dataclass(frozen=True, kw_only=True)
class TunnelOptions:
    action: str  # "start", "status", "stop"
    host: str | None = None
    local_port: int | None = None
    remote_port: int | None = None
    ssh_config: str | None = None
    json_out: bool = False


@dataclass(frozen=True)
class FarEnd:
    """Who answered `/health` through the tunnel: "vllm", "echopanel", "other", or "nothing" (and why)."""

    kind: str
    status: int | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "vllm" and self.status == 200


@dataclass(frozen=True)
class Started:
    record: TunnelRecord
    far_end: FarEnd
    already: bool = False  # the same tunnel was running: nothing was started


@dataclass(frozen=True)
class Status:
    record: TunnelRecord | None  # None: no tunnel was ever started (or it was stopped)
    running: bool
    far_end: FarEnd | None = None


@dataclass(frozen=True)
class Stopped:
    record: TunnelRecord | None  # None: nothing was running
    seconds: float = 0.0


@dataclass(frozen=True)
class TunnelResult:
    action: str
    as_json: bool
    part: Started | Status | Stopped

    @property
    def exit_code(self) -> int:
        """status: 0 only when the tunnel is up and vLLM answers through it; start and stop: 0 (errors raise)."""
        p = self.part
        if isinstance(p, Status):
            up = p.running and p.record is not None and p.record.state == "up"
            return EXIT_OK if up and p.far_end is not None and p.far_end.ok else EXIT_FAILED
        return EXIT_OK


def run(opts: TunnelOptions) -> TunnelResult:
    part: Started | Status | Stopped
    if opts.action == "start":
        part = start(opts)
    elif opts.action == "status":
        part = status()
    else:
        part = stop()
    return TunnelResult(opts.action, opts.json_out, part)


def start(opts: TunnelOptions) -> Started:
    """Start the supervisor in the background and wait until the forward is up (or say why it is not)."""
    assert opts.host is not None
    spec = Spec(
        host=ssh.check_destination(opts.host),
        local_port=opts.local_port or ports.default_port(),
        remote_port=opts.remote_port or ports.default_port(),
        ssh_config=_config_file(opts.ssh_config),
    )
    running = records.current()
    if running is not None:
        if (running.host, running.local_port, running.remote_port) == (spec.host, spec.local_port, spec.remote_port):
            return Started(running, probe(running), already=True)
        raise SetupError(
            f"a tunnel is already running (pid {running.pid}: {running.route}): stop it first with "
            "`echopanel-setup tunnel stop`"
        )
    if shutil.which(spec.ssh) is None:
        raise SetupError("no `ssh` on PATH: install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)")
    _check_local_port(spec.local_port)
    proc = start_detached(spec)
    record = _wait_started(proc)
    return Started(record, probe(record))


def _config_file(path: str | None) -> str | None:
    """`--ssh-config` as an absolute path: the supervisor runs from another directory."""
    if path is None:
        return None
    config = Path(path).expanduser().resolve()
    if not config.is_file():
        raise UsageError(f"--ssh-config: no such file: {path}")
    return str(config)


def _check_local_port(port: int) -> None:
    from echopanel_setup.facts.local import probe_port

    facts = probe_port(port)
    if facts.free is False:
        who = f"pid {facts.holder_pid}" if facts.holder_pid else "another process"
        if facts.holder_name:
            who += f" ({facts.holder_name})"
        raise SetupError(f"port {port} on this machine is in use by {who}: stop it, or pick another with --local-port")


def _wait_started(proc: subprocess.Popen[bytes]) -> TunnelRecord:
    """The supervisor's record once the forward is up; its failure raised as one line when it is not."""
    deadline = time.monotonic() + _START_WAIT_S
    while time.monotonic() < deadline:
        record = TunnelRecord.read()
        mine = record if record is not None and record.pid == proc.pid else None
        if mine is not None and mine.state == "up":
            return mine
        if proc.poll() is not None:
            if mine is not None and mine.state == "failed" and mine.message:
                error = SetupError if mine.failure == "local-port" else ExternalError
                raise error(mine.message)
            raise SetupError(f"the tunnel's supervisor exited (code {proc.returncode}); see {records.log_path()}")
        time.sleep(0.05)
    _terminate(proc.pid, _create_time(proc.pid))
    proc.wait()
    raise ExternalError(f"the tunnel did not come up within {_START_WAIT_S} s; see {records.log_path()}")


def probe(record: TunnelRecord) -> FarEnd:
    """Ask `/health` through the tunnel: is it vLLM at the far end, EchoPanel's backend, or nothing at all?"""
    from echopanel_setup.url import ServerURL
    from echopanel_setup.vllm_client import VllmClient, server_kind

    offset = _log_size(record)
    with VllmClient(ServerURL.parse(record.url), timeout=5.0) as client:
        health = client.health()
    kind = server_kind(health)
    if kind is not None:
        return FarEnd(kind.value, health.status)
    return FarEnd("nothing", detail=_refused_reason(record, offset) or health.error)


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _log_size(record: TunnelRecord) -> int:
    try:
        return os.path.getsize(record.log)
    except OSError:
        return 0


def _refused_reason(record: TunnelRecord, offset: int) -> str | None:
    """ssh's "open failed" reason logged after `offset` (it may take a moment to reach the log)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            with open(record.log, encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                for line in fh:
                    if (reason := ssh.remote_refused(line)) is not None:
                        return reason
        except OSError:
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def status() -> Status:
    record = TunnelRecord.read()
    if record is None:
        return Status(None, False)
    if not record.alive():
        return Status(record, False)
    return Status(record, True, probe(record) if record.state == "up" else None)


def stop() -> Stopped:
    """Stop our supervisor (and the ssh it runs) — only those pids, checked by their start times."""
    record = TunnelRecord.read()
    if record is None:
        return Stopped(None)
    if not record.alive() and not records.same_process(record.ssh_pid, record.ssh_create_time):
        record.clear()
        return Stopped(None)
    started = time.monotonic()
    _terminate(record.pid, record.create_time)
    if record.ssh_pid is not None:  # still there only when the supervisor was killed before it could stop it
        _terminate(record.ssh_pid, record.ssh_create_time)
    record.clear()
    return Stopped(record, time.monotonic() - started)


def _terminate(pid: int, create_time: float | None) -> None:
    """SIGTERM, then SIGKILL after a grace period. Gone means not running: a zombie only waits for its parent
    (for a detached supervisor, whatever reaps orphans here, which can take seconds)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not records.same_process(pid, create_time):
            return
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
        deadline = time.monotonic() + _STOP_GRACE_S
        while time.monotonic() < deadline and records.same_process(pid, create_time):
            time.sleep(0.02)
