"""A real OpenSSH server on loopback for the tunnel tests: throw-away host and client keys, a client config.

    with SshdStandIn(tmp_path) as sshd:
        sshd.trust_host_key()                      # else: ssh says "Host key verification failed."
        cli("tunnel", "start", "gpu", "--ssh-config", str(sshd.client_config), ...)
        sshd.drop_sessions()                       # "Connection to 127.0.0.1 closed by remote host."
        sshd.restart()                             # down, then up again on the same port

Nothing is faked: Debian's `/usr/sbin/sshd` (openssh-server) and the `ssh` client on PATH. The server listens
on 127.0.0.1 only, accepts only the kit's client key, and allows local forwarding; the client config (`ssh -F`)
names the host `gpu` and keeps ssh away from the user's own ~/.ssh (keys, known_hosts, config).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.access(p, os.X_OK)), None)
SSH = shutil.which("ssh")
HOST = "gpu"  # the name the client config gives the loopback server

needs_sshd = pytest.mark.skipif(
    SSHD is None or SSH is None or shutil.which("ssh-keygen") is None,
    reason="needs OpenSSH's sshd, ssh and ssh-keygen (Debian: apt-get install openssh-server openssh-client)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class SshdStandIn:
    """sshd on 127.0.0.1:`port`, in the foreground of its own process (`-D -e`), its log in `dir/sshd.log`."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "sshd"
        self.dir.mkdir()
        self.port = free_port()
        self.host_key = self.dir / "host_key"
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.client_config = self.dir / "ssh_config"
        self._proc: subprocess.Popen[bytes] | None = None
        _keygen(self.host_key)
        _keygen(self.client_key)
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        authorized.chmod(0o600)
        self.known_hosts.write_text("")
        self.server_config = self.dir / "sshd_config"
        self.server_config.write_text(
            f"ListenAddress 127.0.0.1\nHostKey {self.host_key}\nAuthorizedKeysFile {authorized}\nPidFile none\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "AllowTcpForwarding local\nPermitRootLogin prohibit-password\nLogLevel INFO\n"
        )
        self.use_key(self.client_key)

    def use_key(self, key: Path) -> None:
        """The client config: host `gpu` is this server, logging in with `key`, trusting only our known_hosts."""
        self.client_config.write_text(
            f"Host {HOST}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {_user()}\n  IdentityFile {key}\n"
            f"  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {self.known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
        )

    def wrong_key(self) -> None:
        """Log in with a key the server does not know."""
        other = self.dir / "other_key"
        if not other.exists():
            _keygen(other)
        self.use_key(other)

    def trust_host_key(self) -> None:
        """What `ssh gpu` once (answering yes) leaves in known_hosts."""
        key = " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key}\n")

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation directory, as root
        log = (self.dir / "sshd.log").open("ab")
        self._proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.server_config), "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("sshd did not listen within 10 s")

    def sessions(self) -> list[int]:
        """The pids of the per-connection sshd processes."""
        import psutil

        if self._proc is None:
            return []
        try:
            return [p.pid for p in psutil.Process(self._proc.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def drop_sessions(self) -> None:
        """Kill every open session: the client reads "Connection to 127.0.0.1 closed by remote host."."""
        import psutil

        for pid in self.sessions():
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()

    def stop(self) -> None:
        self.drop_sessions()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> SshdStandIn:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def _user() -> str:
    import getpass

    return getpass.getuser()
