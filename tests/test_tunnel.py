"""`tunnel start|status|stop` against a real OpenSSH server on loopback (tests/sshd_kit.py): the forward, the
far end (vLLM, nothing), each failure as one line (unknown host key, refused key, taken port), a dropped link
mended by the supervisor, and `stop` ending only our own processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Cli, CliRun, run_cli
from echopanel_kit import make_checkout
from metrics_kit import MetricsStandIn
from serve_kit import Machine, machine_fixture, venv_fixture  # noqa: F401 - fixtures
from sshd_kit import HOST, SshdStandIn, free_port, needs_sshd

from echopanel_setup.tunnel import main, records, ssh


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdStandIn]:
    with SshdStandIn(tmp_path) as server:
        server.trust_host_key()
        yield server
        main.stop()  # never leave a tunnel behind, whatever the test did


def start(cli: Cli, sshd: SshdStandIn, remote_port: int, *extra: str) -> CliRun:
    return cli(
        "tunnel", "start", HOST, "--ssh-config", str(sshd.client_config),
        "--local-port", str(free_port()), "--remote-port", str(remote_port), *extra,
    )  # fmt: skip


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def ssh_processes(config: Path) -> list[int]:
    """Our ssh clients (those using the kit's config), running."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if str(config) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p.info["pid"])
    return found


@needs_sshd
@pytest.mark.slow
def test_a_tunnel_reaches_vllm_on_the_far_end_and_stop_ends_it(cli: Cli, sshd: SshdStandIn) -> None:
    with MetricsStandIn() as vllm:
        vllm_port = int(vllm.url.rsplit(":", 1)[1])
        run = start(cli, sshd, vllm_port)
        assert run.code == 0, run.err
        record = records.current()
        assert record is not None and record.state == "up"
        assert f"tunnel 127.0.0.1:{record.local_port} -> gpu:{vllm_port}" in run.out
        assert "vLLM answers through it (/health 200)" in run.out
        assert f"echopanel-setup configure --url http://127.0.0.1:{record.local_port}" in run.out
        argv = psutil.Process(record.ssh_pid).cmdline()
        assert argv[argv.index("-L") + 1] == f"127.0.0.1:{record.local_port}:127.0.0.1:{vllm_port}"
        for option in ("ExitOnForwardFailure=yes", "ServerAliveInterval=15", "ServerAliveCountMax=3", "BatchMode=yes"):
            assert option in argv
        assert not any("StrictHostKeyChecking" in a or "KnownHosts" in a for a in argv)  # ssh's own checking

        status = cli("tunnel", "status", "--json")
        doc = json.loads(status.out)
        assert status.code == 0 and doc["running"] and doc["far_end"] == {"kind": "vllm", "health": 200, "detail": None}
        assert doc["tunnel"]["url"] == f"http://127.0.0.1:{record.local_port}"

        again = start(cli, sshd, vllm_port)
        assert again.code == 1 and "a tunnel is already running" in again.err  # another local port: refused

        stopped = cli("tunnel", "stop")
        assert stopped.code == 0 and f"(pid {record.pid})" in stopped.out
        assert not psutil.pid_exists(record.pid) or not records.same_process(record.pid, record.create_time)
        assert not ssh_processes(sshd.client_config)
        assert records.current() is None
        assert "no tunnel" in cli("tunnel", "status").out


@needs_sshd
@pytest.mark.slow
def test_an_unknown_host_key_is_one_line_that_says_run_ssh_once(cli: Cli, tmp_path: Path) -> None:
    with SshdStandIn(tmp_path) as sshd:  # known_hosts stays empty
        run = start(cli, sshd, free_port())
    assert run.code == 3
    assert run.err.strip().splitlines() == [
        "echopanel-setup: error: gpu's host key is not known here: run `ssh gpu` once, check the fingerprint and "
        "accept it, then start the tunnel again"
    ]
    assert records.current() is None and not ssh_processes(sshd.client_config)
    assert "Host key verification failed." in records.log_path().read_text()


@needs_sshd
@pytest.mark.slow
def test_a_changed_host_key_is_refused_with_the_way_out(cli: Cli, sshd: SshdStandIn) -> None:
    other = sshd.dir / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {key}\n")
    run = start(cli, sshd, free_port())
    assert run.code == 3 and "host key has CHANGED" in run.err and "ssh-keygen -R" in run.err
    assert len(run.err.strip().splitlines()) == 1


@needs_sshd
@pytest.mark.slow
def test_a_refused_key_is_one_line(cli: Cli, sshd: SshdStandIn) -> None:
    sshd.wrong_key()
    run = start(cli, sshd, free_port(), "--json")
    assert run.code == 3
    error = json.loads(run.out)["error"]
    assert error["kind"] == "external"
    assert error["message"].startswith("gpu refused the login (publickey): `ssh gpu` must log in without a password")
    assert len(run.err.strip().splitlines()) == 1 and records.current() is None


@needs_sshd
@pytest.mark.slow
def test_a_closed_remote_port_is_named_and_status_fails(cli: Cli, sshd: SshdStandIn) -> None:
    closed = free_port()
    run = start(cli, sshd, closed)
    assert run.code == 0, run.err  # the tunnel is up: vLLM may be started there later
    assert f"nothing listens at gpu port {closed} (Connection refused): start vLLM there" in run.out
    status = cli("tunnel", "status", "--json")
    assert status.code == 1
    assert json.loads(status.out)["far_end"] == {"kind": "nothing", "health": None, "detail": "Connection refused"}


@needs_sshd
@pytest.mark.slow
def test_a_dropped_connection_is_restored_and_said(cli: Cli, sshd: SshdStandIn) -> None:
    with MetricsStandIn() as vllm:
        assert start(cli, sshd, int(vllm.url.rsplit(":", 1)[1])).code == 0
        first = records.current()
        assert first is not None
        sshd.drop_sessions()  # "Connection to 127.0.0.1 closed by remote host."
        assert wait_for(lambda: (r := records.current()) is not None and r.reconnects == 1 and r.state == "up")
        sshd.restart(down_for=0.3)  # sshd itself goes away and comes back
        assert wait_for(lambda: (r := records.current()) is not None and r.reconnects == 2 and r.state == "up", 20)
        status = cli("tunnel", "status")
    record = records.current()
    assert record is not None and record.pid == first.pid and record.ssh_pid != first.ssh_pid
    assert status.code == 0, status.out
    assert "reconnected 2x, last drop: gpu closed the connection" in status.out
    log = records.log_path().read_text()
    assert "ssh: Connection to 127.0.0.1 closed by remote host." in log
    assert "echopanel-setup: gpu closed the connection; reconnecting in 1 s" in log


@needs_sshd
@pytest.mark.slow
def test_a_taken_local_port_is_refused_before_ssh_runs(cli: Cli, sshd: SshdStandIn) -> None:
    with MetricsStandIn() as other:
        taken = other.url.rsplit(":", 1)[1]
        run = cli("tunnel", "start", HOST, "--ssh-config", str(sshd.client_config), "--local-port", taken)
    assert run.code == 1 and f"port {taken} on this machine is in use by pid {os.getpid()}" in run.err
    assert records.TunnelRecord.read() is None


def test_stop_never_signals_a_pid_that_is_not_our_tunnel(cli: Cli, tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        records.TunnelRecord(
            pid=stranger.pid,
            create_time=psutil.Process(stranger.pid).create_time() - 100,  # the pid was reused by `sleep`
            host="gpu",
            local_port=8001,
            remote_port=8001,
            argv=["ssh"],
            log=str(tmp_path / "log"),
            started_at="2026-01-01T00:00:00+00:00",
            state="up",
        ).write()
        run = cli("tunnel", "stop")
        assert run.code == 0 and "nothing to stop" in run.out
        assert stranger.poll() is None
        assert records.TunnelRecord.read() is None  # the stale record is gone
    finally:
        stranger.kill()
        stranger.wait()


def test_a_missing_ssh_config_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    run = cli("tunnel", "start", "gpu", "--ssh-config", str(tmp_path / "nope"))
    assert run.code == 2 and "--ssh-config: no such file" in run.err


@pytest.mark.parametrize("bad", ["-oProxyCommand=touch /tmp/x", "gpu; rm -rf /", "", "user@"])
def test_a_destination_ssh_could_read_as_an_option_is_a_usage_error(cli: Cli, bad: str) -> None:
    run = cli("tunnel", "start", "--", bad)  # after --: what ssh would see
    assert run.code == 2 and "is not an ssh destination" in run.err


@pytest.mark.parametrize(
    ("stderr", "kind", "fatal"),
    [
        ("Host key verification failed.", "host-key-unknown", True),
        ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@", "host-key-changed", True),
        ("root@127.0.0.1: Permission denied (publickey).", "auth", True),
        ("bind [127.0.0.1]:8001: Address already in use\nCould not request local forwarding.", "local-port", True),
        ("Connection to 127.0.0.1 closed by remote host.", "dropped", False),
        ("ssh: connect to host 127.0.0.1 port 2222: Connection refused", "refused", False),
        ("Timeout, server 127.0.0.1 not responding.", "dropped", False),
    ],
)
def test_opensshs_own_messages_are_classified(stderr: str, kind: str, fatal: bool) -> None:
    failure = ssh.classify(stderr, "gpu", 8001, 255)
    assert (failure.kind, failure.fatal) == (kind, fatal) and "\n" not in failure.message


def test_a_closed_far_port_is_not_a_reason_ssh_ended() -> None:
    assert ssh.remote_refused("channel 2: open failed: connect failed: Connection refused") == "Connection refused"
    assert ssh.remote_refused("Connection to 127.0.0.1 closed by remote host.") is None


@pytest.mark.slow
def test_serve_on_a_host_without_echopanel_prints_the_matching_tunnel_command(machine: Machine, tmp_path: Path) -> None:
    import getpass
    import socket

    doc = json.loads(run_cli(*machine.args("--json")).stdout)
    wanted = f"echopanel-setup tunnel start {getpass.getuser()}@{socket.gethostname()} --remote-port {machine.port}"
    assert any(wanted in n for n in doc["notes"]), doc["notes"]
    checkout = make_checkout(tmp_path / "EchoPanel")  # EchoPanel runs here: no tunnel needed
    doc = json.loads(run_cli(*machine.args("--json"), env={"ECHOPANEL_HOME": str(checkout)}).stdout)
    assert not any("tunnel start" in n for n in doc["notes"])


@needs_sshd
@pytest.mark.slow
def test_setup_through_a_tunnel_is_resumed_as_remote(cli: Cli, sshd: SshdStandIn) -> None:
    from smoke_kit import VllmStandIn, exact

    from echopanel_setup.smoke import audio

    clip = audio.bundled()
    with VllmStandIn(exact(clip.pcm)) as server:
        assert start(cli, sshd, int(server.url.rsplit(":", 1)[1])).code == 0
        record = records.current()
        assert record is not None
        first = cli("setup", "--mode", "remote", "--url", record.url, "--yes")
        assert first.code == 0, first.out + first.err
        again = cli("setup", "--yes")
        assert again.code == 0, again.out + again.err
        assert "remote mode (resumed: the last `setup --mode remote` chose it on " in again.out
        assert f"for {record.url} through the tunnel to gpu; --mode to choose again)" in again.out
        cli("tunnel", "stop")
        down = cli("setup", "--yes")
    assert down.code == 1 and "through the tunnel to gpu (not running: `echopanel-setup tunnel start gpu`)" in down.out


@needs_sshd
@pytest.mark.slow
def test_stop_also_ends_the_ssh_of_a_supervisor_that_was_killed(cli: Cli, sshd: SshdStandIn) -> None:
    assert start(cli, sshd, free_port()).code == 0
    record = records.current()
    assert record is not None and record.ssh_pid is not None
    os.kill(record.pid, 9)  # the supervisor dies without stopping its ssh
    assert wait_for(lambda: not records.same_process(record.pid, record.create_time))
    assert records.same_process(record.ssh_pid, record.ssh_create_time)
    run = cli("tunnel", "stop")
    assert run.code == 0 and "stopped the tunnel" in run.out
    assert not records.same_process(record.ssh_pid, record.ssh_create_time) and not ssh_processes(sshd.client_config)
