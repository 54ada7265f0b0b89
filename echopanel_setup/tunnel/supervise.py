"""The process that keeps a tunnel up: it runs `ssh -N -L …`, notices when the forward is listening, and when
ssh ends, says why in one line and starts it again with backoff — unless retrying cannot help (a host key, a
refused login, a taken local port) or the tunnel never came up at all (`tunnel start` reports that at once).

`tunnel start` runs it detached (`python -m echopanel_setup.tunnel.supervise SPEC`, its own session, output in
the tunnel log) so it outlives the shell; its pid and state go to the record (`records.py`) at every change.
SIGTERM (what `tunnel stop` sends) or SIGINT stops ssh and then the supervisor, and removes the record.
Long-running commands keep their lifecycle as subcommands and records in our state dir, as
`serve/supervise.py` describes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from echopanel_setup import paths
from echopanel_setup.tunnel import ssh
from echopanel_setup.tunnel.records import TunnelRecord, log_path

# Reconnect pacing: 1 s after the first drop, doubling to at most 30 s; a connection that stayed up for a
# minute starts the pacing afresh (a flapping link is not hammered, a single drop is mended at once).
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
_POLL_S = 0.05


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What to forward, and how: the arguments `tunnel start` hands to the detached supervisor."""

    host: str
    local_port: int
    remote_port: int
    ssh_config: str | None = None
    ssh: str = "ssh"

    def argv(self) -> list[str]:
        # Detached: no terminal to answer a prompt on, so ssh must never wait for one (BatchMode).
        return ssh.forward_argv(
            self.host, self.local_port, self.remote_port, batch=True, ssh=self.ssh, config=self.ssh_config
        )


class Supervisor:
    """Runs ssh until stopped or until it fails for good; every change of state is written to the record."""

    def __init__(self, spec: Spec, log: IO[str]) -> None:
        self.spec = spec
        self._log = log
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        import psutil

        self.record = TunnelRecord(
            pid=os.getpid(),
            create_time=psutil.Process().create_time(),
            host=spec.host,
            local_port=spec.local_port,
            remote_port=spec.remote_port,
            argv=spec.argv(),
            log=str(log_path()),
            started_at=paths.timestamp(),
        ).write()

    def note(self, text: str) -> None:
        self._log.write(f"{paths.timestamp()} {text}\n")
        self._log.flush()

    def stop(self) -> None:
        """Ask the loop to end (from a signal handler): ssh is told to quit, no reconnect follows."""
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def run(self) -> TunnelRecord:
        """Keep the tunnel up; returns the last record (state "failed", or "stopped" after stop())."""
        backoff = BACKOFF_FIRST_S
        ever_up = False
        while not self._stop.is_set():
            up_for, failure = self._once(reconnect=ever_up)
            ever_up = ever_up or up_for is not None
            if self._stop.is_set():
                break
            if not ever_up or failure.fatal:
                self.note(f"echopanel-setup: gave up: {failure.message}")
                return self.record.updated(state="failed", message=failure.message, failure=failure.kind)
            if up_for is not None and up_for >= BACKOFF_RESET_AFTER_S:
                backoff = BACKOFF_FIRST_S
            self.note(f"echopanel-setup: {failure.message}; reconnecting in {backoff:.0f} s")
            self.record = self.record.updated(
                state="reconnecting", message=failure.message, failure=failure.kind, ssh_pid=None, up_since=None
            )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        self.note("echopanel-setup: stopped")
        self.record.clear()
        return self.record

    def _once(self, *, reconnect: bool) -> tuple[float | None, ssh.Failure]:
        """One ssh run: (seconds it was up, or None when it never came up; why it ended)."""
        import psutil

        self.note(f"echopanel-setup: {'reconnecting' if reconnect else 'connecting'}: {' '.join(self.spec.argv())}")
        stderr: deque[str] = deque(maxlen=50)
        try:
            proc = subprocess.Popen(
                self.spec.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        except OSError as exc:
            return None, ssh.Failure("ssh", f"cannot run {self.spec.ssh}: {exc.strerror or exc}", True)
        self._proc = proc
        if self._stop.is_set():  # a stop that came while ssh was being started
            proc.terminate()
        reader = threading.Thread(target=self._read, args=(proc, stderr), daemon=True)
        reader.start()
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            created = None
        self.record = self.record.updated(ssh_pid=proc.pid, ssh_create_time=created)
        up_at = None
        if self._wait_listening(proc):
            up_at = time.monotonic()
            self.note(f"echopanel-setup: up: {self.record.route}")
            count = self.record.reconnects + (1 if reconnect else 0)
            self.record = self.record.updated(state="up", up_since=paths.timestamp(), reconnects=count)
        code = proc.wait()
        reader.join(timeout=2)
        up_for = None if up_at is None else time.monotonic() - up_at
        return up_for, ssh.classify("\n".join(stderr), self.spec.host, self.spec.local_port, code)

    def _read(self, proc: subprocess.Popen[str], keep: deque[str]) -> None:
        """ssh's stderr, line by line, into the log (and the last lines kept, to say why it ended)."""
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\r\n")
            if line:
                if ssh.remote_refused(line) is None:  # a connection through the tunnel, not why ssh ended
                    keep.append(line)
                self.note(f"ssh: {line}")

    def _wait_listening(self, proc: subprocess.Popen[str]) -> bool:
        """True once ssh listens on the local port (logged in, forward set up); False when it exited first."""
        import psutil

        try:
            me = psutil.Process(proc.pid)
        except psutil.Error:
            return False
        while proc.poll() is None and not self._stop.is_set():
            try:
                conns = me.net_connections(kind="tcp")
            except psutil.Error:
                return False
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.spec.local_port for c in conns):
                return True
            time.sleep(_POLL_S)
        return False


def serve(spec: Spec) -> TunnelRecord:
    """The supervisor's life in this process, its notes appended to the tunnel log; SIGTERM/SIGINT stop it."""
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        sup = Supervisor(spec, log)

        def on_signal(_sig: int, _frame: Any) -> None:
            sup.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal `tunnel start` ran in may close
        return sup.run()


def start_detached(spec: Spec) -> subprocess.Popen[bytes]:
    """Start the supervisor in the background, in its own session: it outlives this process and its terminal."""
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".1"))
    with path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "echopanel_setup.tunnel.supervise", json.dumps(asdict(spec))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path.home() if Path.home().is_dir() else None,
        )


if __name__ == "__main__":
    final = serve(Spec(**json.loads(sys.argv[1])))
    sys.exit(1 if final.state == "failed" else 0)
