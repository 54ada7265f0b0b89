"""The `ssh` command a tunnel runs, and what its failures mean, in one line each.

The forward is `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE HOST`: loopback at both ends, so the vLLM server on
the GPU host stays bound to its own 127.0.0.1 and nothing here listens beyond this machine. Host-key checking
is ssh's own and is never changed: an unknown or changed host key stops the tunnel and says how to accept it
(`ssh HOST` once, where the user sees the fingerprint). ssh's own config (`~/.ssh/config`, or `--ssh-config`)
supplies the user, port and key.

The messages matched here are OpenSSH's own (recorded from OpenSSH 9.2 against a loopback sshd; the tests run
the real client and server): "Host key verification failed.", "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS
CHANGED! @@@", "Permission denied (publickey).", "Could not request local forwarding.", "channel N: open failed:
connect failed: Connection refused", "Connection to HOST closed by remote host.".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from echopanel_setup.errors import UsageError

# ssh destinations: [user@]host or ssh://[user@]host[:port]; never an option ("-oProxyCommand=...").
_DESTINATION = re.compile(
    r"^(?:ssh://)?(?:[A-Za-z0-9._%+-]+@)?(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]*)|\[[0-9A-Fa-f:.]+\])(?::\d+)?$"
)
_KEEPALIVE = ("-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3")
# A host that never answers must not hold `tunnel start` for the kernel's TCP timeout (minutes).
CONNECT_TIMEOUT_S = 15
# What ssh prints when the forward works but nothing listens on the far end's port (one line per connection).
_REMOTE_CLOSED = re.compile(r"channel \d+: open failed: connect failed: (.*)")


def check_destination(host: str) -> str:
    """The destination as ssh takes it; a UsageError for anything ssh could read as an option or a command."""
    text = host.strip()
    if not text or text.startswith("-") or not _DESTINATION.match(text):
        raise UsageError(f"{host!r} is not an ssh destination: write [user@]HOST (as for `ssh [user@]HOST`)")
    return text


def forward_argv(
    host: str, local_port: int, remote_port: int, *, batch: bool, ssh: str = "ssh", config: str | None = None
) -> list[str]:
    """`ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE` that exits when the forward cannot be set up, notices a dead
    link within 45 s (3 keep-alives 15 s apart), and, in `batch` (detached) mode, never waits for a prompt."""
    argv = [ssh, "-N", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}", "-o", "ExitOnForwardFailure=yes"]
    argv += [*_KEEPALIVE, "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    if config:
        argv += ["-F", config]
    return [*argv, "--", host]


@dataclass(frozen=True)
class Failure:
    """Why an ssh run ended: `kind` for scripts, `message` one line for people, `fatal` when retrying cannot help."""

    kind: str
    message: str
    fatal: bool


def classify(stderr: str, host: str, local_port: int, exit_code: int | None) -> Failure:
    """What ssh's stderr says went wrong, as one line naming the fix."""
    text = stderr
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "has changed and you have requested strict checking" in text:
        return Failure(
            "host-key-changed",
            f"{host}'s host key has CHANGED since you last connected (ssh refuses: this can be an attack); check the "
            f"key with the host's administrator, remove the old one (`ssh-keygen -R HOST`), then run `ssh {host}` once",
            True,
        )
    if "Host key verification failed" in text or "No ED25519 host key is known" in text or "host key is known" in text:
        return Failure(
            "host-key-unknown",
            f"{host}'s host key is not known here: run `ssh {host}` once, check the fingerprint and accept it, "
            "then start the tunnel again",
            True,
        )
    if m := re.search(r"Permission denied \(([^)]*)\)", text):
        return Failure(
            "auth",
            f"{host} refused the login ({m.group(1)}): `ssh {host}` must log in without a password prompt — "
            f"add your key there (`ssh-copy-id {host}`) or load it into ssh-agent (`ssh-add`)",
            True,
        )
    if "Too many authentication failures" in text:
        return Failure(
            "auth",
            f"{host} refused the login (too many keys offered): name the key with IdentityFile and IdentitiesOnly yes "
            "in ~/.ssh/config",
            True,
        )
    if "Could not request local forwarding" in text or "Address already in use" in text:
        return Failure(
            "local-port",
            f"port {local_port} on this machine is taken: stop what holds it, or pick another with --local-port",
            True,
        )
    if m := re.search(r"Could not resolve hostname ([^:]+): (.*)", text):
        return Failure("resolve", f"cannot resolve {m.group(1).strip()}: {m.group(2).strip()} (check the name)", False)
    for pattern, kind, what in (
        (r"Connection refused", "refused", "refused the connection (is sshd running there, on this port?)"),
        (r"Connection timed out|Operation timed out", "timeout", "did not answer (down, or a firewall in the way)"),
        (r"No route to host|Network is unreachable", "unreachable", "is unreachable from here (network down?)"),
        (r"Timeout, server .* not responding", "dropped", "stopped answering (the link dropped)"),
        (r"closed by remote host|Connection reset|Broken pipe|Connection closed", "dropped", "closed the connection"),
        (r"kex_exchange_identification|banner exchange", "dropped", "closed the connection during the handshake"),
    ):
        if re.search(pattern, text):
            return Failure(kind, f"{host} {what}", False)
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    detail = last or (f"ssh exited with code {exit_code}" if exit_code is not None else "ssh stopped")
    # ssh's own exit 255 is a connection error; anything else (a bad option, a config error) will not fix itself.
    return Failure("ssh", f"ssh to {host} failed: {detail}", exit_code not in (None, 255))


def remote_refused(line: str) -> str | None:
    """ssh's reason when a connection through the tunnel found nothing on the far end's port, else None."""
    m = _REMOTE_CLOSED.search(line)
    return m.group(1).strip() if m else None
