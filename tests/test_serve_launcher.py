"""`serve --exec/--detach`, `serve status|logs|stop` (and their old flags) against the scripted `vllm`
(tests/fixtures/serve): real processes, real log lines, a real HTTP + WebSocket server on loopback, recorded
failure logs."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import run_cli, start_cli
from serve_kit import LOGS_DIR, Machine, machine_fixture, venv_fixture  # noqa: F401 - fixtures

from echopanel_setup import paths
from echopanel_setup.serve import launcher

ECHOPANEL_NAME = "voxtral-mini-transcribe-realtime-2602"  # served first: the name EchoPanel sends


def engine_pid(log: str) -> int:
    return int(re.search(r"\(EngineCore_DP0 pid=(\d+)\)", log).group(1))  # type: ignore[union-attr]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not gone(pid):
        time.sleep(0.05)
    return gone(pid)


@pytest.mark.slow
def test_vllm_holding_fewer_sessions_than_planned_is_a_warning(machine: Machine) -> None:
    """The plan's KV formula is read from vLLM's code, not measured: when vLLM itself says its cache holds fewer
    full-length sessions than the streams planned (here 2.07 for 3), the start says so instead of only printing both."""
    out = run_cli(*machine.args("--detach", "--streams", "3"))
    try:
        assert out.returncode == 0, out.stderr
        assert "vLLM's KV cache holds 2.07 sessions of 49,500 tokens, fewer than the 3 streams planned" in out.stderr
        assert "--session-minutes N" in out.stderr
    finally:
        assert run_cli("serve", "stop").returncode == 0


@pytest.mark.slow
def test_detach_then_status_logs_and_stop(machine: Machine) -> None:
    out = run_cli(*machine.args("--detach"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    for phase in (
        "loading weights",
        "compiling and profiling memory",
        "capturing CUDA graphs",
        "starting the API server",
        "ready",
    ):
        assert f"] {phase}" in out.stderr
    assert "/v1/realtime sent session.created" in out.stderr
    assert "vLLM: KV cache 4.48 GiB, 41,472 tokens, 2.07x concurrency at 49,500 tokens" in out.stderr
    assert "fewer than the" not in out.stderr  # 2.07 sessions of the full length hold the 2 planned

    record = launcher.Record.read()
    assert record is not None and record.alive() and record.detached
    assert record.url == f"http://127.0.0.1:{machine.port}"
    # an H100 of its own: vLLM may run more streams than planned; the record keeps what EchoPanel needs
    assert record.streams == 2 and int(record.argv[record.argv.index("--max-num-seqs") + 1]) > 2
    status = run_cli("serve", "status", "--json")
    doc = json.loads(status.stdout)
    assert status.returncode == 0 and doc["ready"] and doc["phase"] == "ready" and doc["command"] == "serve status"
    assert doc["models"] == [ECHOPANEL_NAME, "mistralai/Voxtral-Mini-4B-Realtime-2602"] and doc["pid"] == record.pid
    allowed = record.flag("--max-num-seqs")
    assert (doc["streams"], doc["max_num_seqs"]) == (2, allowed)
    human = run_cli("serve", "status")
    assert human.stdout.startswith(f"running, ready: pid {record.pid}, http://127.0.0.1:{machine.port}")
    assert f"streams: 2 planned, vLLM may run up to {allowed} (--max-num-seqs)" in human.stdout
    alias = run_cli("serve", "--status")  # today's flag, kept as an alias
    assert alias.returncode == 0 and alias.stdout.splitlines()[1:] == human.stdout.splitlines()[1:]

    logs = run_cli("serve", "logs", "--lines", "3")
    assert logs.returncode == 0 and logs.stdout.splitlines()[-1].endswith("Application startup complete.")
    assert len(logs.stdout.splitlines()) == 3
    assert run_cli("serve", "--logs", "--lines", "3").stdout == logs.stdout
    doc = json.loads(run_cli("serve", "logs", "--lines", "3", "--json").stdout)
    assert doc["command"] == "serve logs" and doc["lines"] == logs.stdout.splitlines() and doc["log"] == record.log
    with never_left_running(start_cli("serve", "--logs", "--lines", "1", "--follow")) as follow:
        read_line = stdout_lines(follow)
        assert b"Application startup complete." in read_line()
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 0  # Ctrl-C is how --follow ends
    assert_ndjson_follow(Path(record.log))

    good = paths.read_state()["serve_good"]
    (entry,) = good.values()
    assert "--max-model-len" in entry["args"] and entry["vllm_figures"]["kv_memory.gib"] == "4.48"

    engine = engine_pid(Path(record.log).read_text())
    stopped = run_cli("serve", "stop")
    assert stopped.returncode == 0 and f"stopped vLLM (pid {record.pid}" in stopped.stdout
    assert wait_gone(record.pid) and wait_gone(engine)
    assert launcher.Record.read() is None
    assert run_cli("serve", "status").returncode == 1 and run_cli("serve", "--status").returncode == 1
    assert "nothing to stop" in run_cli("serve", "--stop").stdout


@contextlib.contextmanager
def never_left_running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """A CLI process a test talks to, killed on the way out if a failed assertion left it running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stdout_lines(proc: subprocess.Popen[bytes]) -> Callable[[], bytes]:
    """The process's stdout line by line; each call fails the test (never hangs it) when no line comes in 20 s."""
    lines: queue.Queue[bytes] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def next_line() -> bytes:
        try:
            return lines.get(timeout=20)
        except queue.Empty:
            raise AssertionError("no line on stdout within 20 s") from None

    return next_line


def assert_ndjson_follow(log: Path) -> None:
    """`serve logs --follow --json`: one JSON object per line, each with the shared header, as lines arrive."""
    with never_left_running(start_cli("serve", "logs", "--lines", "2", "--follow", "--json")) as follow:
        read_line = stdout_lines(follow)
        first, second = json.loads(read_line()), json.loads(read_line())
        with log.open("a", encoding="utf-8") as fh:
            fh.write("INFO 11-25 10:03:00 [loggers.py:123] Engine 000: Avg prompt throughput: 12.5 tokens/s\n")
        third = json.loads(read_line())
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 0
    for event in (first, second, third):
        assert event["schema_version"] == 1 and event["command"] == "serve logs" and event["event"] == "log"
        assert event["tool"]["name"] == "echopanel-setup" and event["log"] == str(log)
    assert second["line"].endswith("Application startup complete.")
    assert third["line"].endswith("Avg prompt throughput: 12.5 tokens/s")


@pytest.mark.slow
def test_a_second_run_uses_the_recorded_flags_for_high_confidence(machine: Machine) -> None:
    detached = run_cli(*machine.args("--detach", "--json"))
    doc = json.loads(detached.stdout)  # --detach is not live: one document when it is ready
    assert detached.returncode == 0 and doc["action"] == "detach" and doc["ok"] and doc["exit_code"] == 0
    assert doc["error"] is None and doc["url"] == f"http://127.0.0.1:{machine.port}" and doc["failure"] is None
    run_cli("serve", "--stop")
    again = run_cli(*machine.args("--json"))
    assert json.loads(again.stdout)["plan"]["confidence"] == "high"


def read_until(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    """stderr up to and including `marker`, read raw (communicate() afterwards must not miss buffered text)."""
    seen = b""
    while marker not in seen:
        chunk = os.read(proc.stderr.fileno(), 65536)  # type: ignore[union-attr]
        if not chunk:
            break
        seen += chunk
    assert marker in seen, seen
    return seen


def finish(proc: subprocess.Popen[bytes], record: launcher.Record, timeout: float = 30) -> str:
    """The CLI's stderr once it exits. If it does not within `timeout`, the failure says why: both processes print
    their Python stacks (they run with PYTHONFAULTHANDLER, SIGABRT dumps them), with vLLM's log and its group."""
    try:
        return proc.communicate(timeout=timeout)[1].decode()
    except subprocess.TimeoutExpired:
        attrs = ["pid", "status", "cmdline"]
        group = [p.info for p in psutil.process_iter(attrs, ad_value=None) if pgid(p.pid) == record.pid]
        for pid in (proc.pid, record.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGABRT)
        err = proc.communicate(timeout=10)[1].decode(errors="replace")
        time.sleep(0.5)
        log = Path(record.log).read_text(errors="replace")[-8000:]
        raise AssertionError(
            f"still running after {timeout} s\nCLI stderr:\n{err}\nvLLM group: {group}\nlog:\n{log}"
        ) from None


def pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def start_exec(machine: Machine, *extra: str) -> tuple[subprocess.Popen[bytes], launcher.Record]:
    """`serve --exec` until it serves in the foreground, and its record."""
    proc = start_cli(*machine.args("--exec", *extra), env={"PYTHONFAULTHANDLER": "1"})
    read_until(proc, b"Ctrl-C stops vLLM")
    record = launcher.Record.read()
    assert record is not None and not record.detached
    return proc, record


def wait_for_log(record: launcher.Record, text: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while text not in Path(record.log).read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in Path(record.log).read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGHUP, 128 + signal.SIGHUP)],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_exec_in_the_foreground_stops_vllm_and_its_engine_on_ctrl_c_sigterm_and_sighup(
    machine: Machine, sig: signal.Signals, code: int
) -> None:
    """Ctrl-C, `kill` (SIGTERM) and a closed terminal or dropped ssh (SIGHUP) all stop vLLM, which runs in its own
    session: it used to keep the GPU after the last two. The exit code is the shell's for that signal."""
    proc, record = start_exec(machine)
    engine = engine_pid(Path(record.log).read_text())
    proc.send_signal(sig)
    err = finish(proc, record)
    assert proc.returncode == code, err
    assert "Stopping vLLM… Ctrl-C again stops it at once." in err and "Stopped in" in err and "killed" not in err
    assert wait_gone(record.pid) and wait_gone(engine)
    assert launcher.Record.read() is None
    assert "Shutting down" in Path(record.log).read_text()  # vLLM got SIGINT: a clean shutdown


@pytest.mark.slow
def test_ctrl_c_again_kills_a_vllm_whose_shutdown_hangs(machine: Machine) -> None:
    """vLLM's own shutdown can hang and keep the GPU: a second Ctrl-C while we wait kills its group at once and the
    stop still completes (it used to abandon the stop and leave vLLM running)."""
    machine.scenario("stuck-stop")
    proc, record = start_exec(machine)
    engine = engine_pid(Path(record.log).read_text())
    proc.send_signal(signal.SIGINT)
    read_until(proc, b"Ctrl-C again stops it at once")
    wait_for_log(record, "Shutting down")  # vLLM got the SIGINT and is stuck in its shutdown
    proc.send_signal(signal.SIGINT)
    err = finish(proc, record, timeout=15)
    assert proc.returncode == 130, err
    assert re.search(r"Stopped in \d+ s \(killed: Ctrl-C cut its shutdown short\)\.", err), err
    assert wait_gone(record.pid) and wait_gone(engine)
    assert launcher.Record.read() is None


def test_a_ctrl_c_at_any_point_of_a_stop_kills_the_group() -> None:
    """The interrupt may land before the first signal is even sent (a loaded machine runs the stop late): the stop
    still ends with the group dead, by SIGKILL, never abandoned with the server running."""
    hung = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert hung.stdout is not None and hung.stdout.readline()
    said: list[str] = []

    def ctrl_c_on_the_announcement(text: str) -> None:
        said.append(text)
        raise KeyboardInterrupt

    halt = launcher.stop_group(hung.pid, hung, ctrl_c_on_the_announcement, "Stopping vLLM…")
    assert halt.forced and said == ["Stopping vLLM…"]
    assert hung.wait(timeout=5) == -signal.SIGKILL


@pytest.mark.slow
def test_serve_stop_says_it_is_stopping_and_ctrl_c_kills_a_hung_shutdown(machine: Machine) -> None:
    machine.scenario("stuck-stop")
    assert run_cli(*machine.args("--detach")).returncode == 0
    record = launcher.Record.read()
    assert record is not None
    stop = start_cli("serve", "stop", "--json", env={"PYTHONFAULTHANDLER": "1"})
    read_until(stop, f"Stopping vLLM (pid {record.pid}, {record.url})… Ctrl-C stops it at once.".encode())
    wait_for_log(record, "Shutting down")
    stop.send_signal(signal.SIGINT)
    out = stop.communicate(timeout=15)[0]
    assert stop.returncode == 0
    doc = json.loads(out)
    assert doc["stopped"] and doc["forced"] and doc["pid"] == record.pid
    assert wait_gone(record.pid)
    assert launcher.Record.read() is None


@pytest.mark.slow
def test_exec_json_is_live_ndjson_ready_then_exited(machine: Machine) -> None:
    """A foreground server is a live command: under --json one NDJSON event when it is ready, one when it ends."""
    proc = start_cli(*machine.args("--exec", "--json"))
    read_line = stdout_lines(proc)
    try:
        ready = json.loads(read_line())
        record = launcher.Record.read()
        assert record is not None and ready["pid"] == record.pid
        os.kill(record.pid, signal.SIGTERM)  # vLLM ends on its own (as after an OOM kill or a `kill`)
        exited = json.loads(read_line())
    finally:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # the fixture stops the recorded vLLM
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert ready["event"] == "ready" and ready["action"] == "exec" and ready["ok"] and ready["exit_code"] == 0
    assert exited["event"] == "exited" and exited["vllm_exit_code"] == 0 and exited["exit_code"] == 0
    assert all(e["command"] == "serve" and e["error"] is None for e in (ready, exited))


@pytest.mark.slow
def test_a_memory_error_is_retried_once_with_vllms_estimate(machine: Machine) -> None:
    machine.scenario("maxlen")
    out = run_cli(*machine.args("--detach"))
    assert out.returncode == 0, out.stderr
    assert "One full-length session does not fit the KV cache (max-model-len-too-long" in out.stderr
    assert "Retrying once with the adjusted plan" in out.stderr and "--max-model-len 21328" in out.stderr
    record = launcher.Record.read()
    assert record is not None and record.argv[record.argv.index("--max-model-len") + 1] == "21328"
    first = Path(record.log + ".1").read_text()
    assert "estimated maximum model length is 21328" in first


@pytest.mark.slow
def test_a_recorded_oom_is_explained_after_one_retry(machine: Machine) -> None:
    machine.scenario("oom")
    out = run_cli(*machine.args("--detach"))
    assert out.returncode == 1
    assert out.stderr.count("✗ fail CUDA out of memory (cuda-oom") == 2
    assert "--enforce-eager" in out.stderr and "--gpu-memory-utilization 0.89" in out.stderr
    assert "Fix:   Lower --gpu-memory-utilization" in out.stderr
    assert launcher.Record.read() is None


@pytest.mark.slow
def test_a_failed_start_under_json_prints_its_document(machine: Machine) -> None:
    machine.scenario("tokenizer")
    out = run_cli(*machine.args("--detach", "--json"))
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["command"] == "serve" and doc["action"] == "detach" and not doc["ok"] and doc["exit_code"] == 1
    assert doc["failure"]["id"] == "tokenizer-kwargs" and "install vllm" in " ".join(doc["failure"]["commands"])


@pytest.mark.slow
def test_the_tokenizer_error_stops_with_cause_and_fix_and_no_retry(machine: Machine) -> None:
    machine.scenario("tokenizer")
    out = run_cli(*machine.args("--exec"))
    assert out.returncode == 1
    assert "Old vLLM passes max_loras" in out.stderr and "Retrying" not in out.stderr
    assert "echopanel-setup install vllm" in out.stderr
    assert (LOGS_DIR / "tokenizer-kwargs.log").read_text().splitlines()[-1] in launcher.log_path().read_text()


@pytest.mark.slow
def test_not_ready_in_time_is_an_external_failure(machine: Machine) -> None:
    machine.scenario("hang")
    out = run_cli(*machine.args("--exec", "--timeout", "1", "--json"))
    assert out.returncode == 3
    assert "did not answer 200 within 1 s (last phase: loading weights)" in out.stderr
    assert launcher.Record.read() is None
    doc = json.loads(out.stdout)  # under --json: one error document, nothing else
    assert doc["command"] == "serve" and doc["exit_code"] == 3 and doc["error"]["kind"] == "external"
    assert "did not answer 200 within 1 s" in doc["error"]["message"]


@pytest.mark.slow
def test_a_taken_port_is_refused_naming_its_holder(machine: Machine) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", machine.port))
        s.listen()
        out = run_cli(*machine.args("--exec"))
    assert out.returncode == 1
    assert f"port {machine.port} is in use by pid {os.getpid()}" in out.stderr
    assert not launcher.log_path().exists()  # vLLM was never started


@pytest.mark.slow
def test_the_api_key_guards_v1_and_stays_out_of_argv_and_state(machine: Machine) -> None:
    out = run_cli(*machine.args("--detach", "--api-key", "k-secret-1"))
    assert out.returncode == 0, out.stderr
    record = launcher.Record.read()
    assert record is not None and record.api_key_env
    assert "k-secret-1" not in " ".join(psutil.Process(record.pid).cmdline())
    assert "k-secret-1" not in paths.state_file().read_text() and "k-secret-1" not in record_text()
    status = json.loads(run_cli("serve", "--status", "--json").stdout)
    assert status["models"] is None and "API key" in status["warning"] and status["error"] is None
    keyed = json.loads(run_cli("serve", "--status", "--json", env={"VLLM_API_KEY": "k-secret-1"}).stdout)
    assert keyed["models"] == [ECHOPANEL_NAME, "mistralai/Voxtral-Mini-4B-Realtime-2602"]
    second = run_cli(*machine.args("--detach"))
    assert second.returncode == 1 and "serve status" in second.stderr


def record_text() -> str:
    return launcher.record_path().read_text()


def test_logs_without_a_server_say_how_to_start_one() -> None:
    out = run_cli("serve", "--logs")
    assert out.returncode == 1 and "no vLLM log yet" in out.stderr


def test_log_watch_follows_phases_and_ignores_warnings_while_running(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text("WARNING 11-25 10:00:09 [cuda.py:310] Falling back; pip install mistral-common[audio] for audio\n")
    watch = launcher.LogWatch(log)
    watch.poll()
    assert watch.failure(exited=False) is None and watch.failure(exited=True) is not None
    log.write_text((LOGS_DIR / "max-model-len-too-long.log").read_text())
    fresh = launcher.LogWatch(log)
    fresh.poll()
    assert fresh.phase == "profiling" and fresh.figures["kv_memory.gib"] == "1.63"
    m = fresh.failure(exited=False)
    assert m is not None and m.id == "max-model-len-too-long" and m.groups["estimated"] == "21328"


@pytest.mark.slow
def test_a_second_start_while_ours_runs_says_stop_it_even_when_its_memory_makes_the_gpu_look_busy(
    machine: Machine, tmp_path: Path
) -> None:
    """Our own vLLM holds the GPU's memory: a second --detach must say `serve stop`, not 'busy' or 'too small'."""
    from probe_kit import install_smi, path_with

    assert run_cli(*machine.args("--detach")).returncode == 0
    install_smi(tmp_path / "busy-bin", "rtx4090")  # 7291 MiB free of 24564: what nvidia-smi shows while vLLM runs
    again = run_cli(*machine.args("--detach"), env={"PATH": path_with(tmp_path / "busy-bin")})
    assert again.returncode == 1
    assert (
        "the server echopanel-setup started is still running" in again.stderr
        and "`echopanel-setup serve stop` first" in again.stderr
    )
    assert "are free" not in again.stderr and "too small" not in again.stderr


def test_a_phase_logged_just_before_health_answers_is_still_announced(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """vLLM logs "Application startup complete." and /health turns 200 between two polls: `ready` must still be
    said (under load the last phase used to be swallowed, so the user never saw the server become ready)."""
    log = tmp_path / "vllm.log"
    log.write_text("INFO Starting vLLM API server on http://127.0.0.1:8001\n", encoding="utf-8")

    def healthy_once_ready_is_logged(client: object) -> bool:
        with log.open("a", encoding="utf-8") as fh:
            fh.write("INFO:     Application startup complete.\n")
        return True

    class Running:
        def poll(self) -> None:
            return None

    monkeypatch.setattr(launcher, "_healthy", healthy_once_ready_is_logged)
    monkeypatch.setattr(launcher, "confirm", lambda *a, **k: None)
    record = launcher.Record(
        pid=os.getpid(),
        create_time=0.0,
        url="http://127.0.0.1:9",
        served_model_name="m",
        argv=[],
        log=str(log),
        started_at="",
        detached=True,
    )
    said: list[str] = []
    outcome = launcher.wait_ready(Running(), record, "m", None, 5.0, said.append, None)  # type: ignore[arg-type]
    assert outcome.ok
    assert [s.split("] ", 1)[1] for s in said if s.startswith("[")] == ["starting the API server", "ready"]


# --- stuck states: a corrupt record, two starts at once ------------------------------------------------------------

_VALID = {
    "create_time": 0.0,
    "url": "http://127.0.0.1:9",
    "served_model_name": "m",
    "argv": [],
    "log": "/nonexistent/vllm.log",
    "started_at": "",
    "detached": True,
}


@pytest.mark.parametrize(
    ("streams", "argv", "planned", "allowed"),
    [
        (2, ["vllm", "serve", "m", "--max-num-seqs", "23"], 2, 23),  # a GPU of its own: more allowed than planned
        (None, ["vllm", "serve", "m", "--max-num-seqs", "3"], 3, 3),  # a record from before `streams` was kept
        ("2", ["vllm", "serve", "m", "--max-num-seqs", "x"], None, None),  # hand-edited: nothing to trust
    ],
)
def test_the_record_tells_the_planned_streams_from_those_vllm_may_run(
    streams: object, argv: list[str], planned: int | None, allowed: int | None
) -> None:
    record = launcher.Record.parse(json.dumps({**_VALID, "pid": 2, "argv": argv, "streams": streams}))
    assert (record.planned_streams, record.flag("--max-num-seqs")) == (planned, allowed)


@pytest.mark.parametrize(
    "content",
    [json.dumps({"pid": -1, **_VALID}), json.dumps({"pid": "123", **_VALID}), "\x00garbage{", "directory"],
    ids=["pid-minus-1", "pid-text", "garbage", "directory"],
)
def test_a_corrupt_record_is_no_record_and_said_so(cli, content: str) -> None:  # type: ignore[no-untyped-def]
    """A server.json with pid -1 or a directory in its place gave exit 4: it names no server we can reach, so it is
    treated as no record, moved aside (never deleted) with a warning, and a later start can write its own."""
    path = launcher.record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "directory":
        path.mkdir()
    else:
        path.write_text(content)
    status = cli("serve", "status")
    assert status.code == 1 and "not running" in status.out, status.err
    assert "treated as no record, moved to server.json.unusable-" in status.err
    assert not path.exists() and len(list(path.parent.glob("server.json.unusable-*"))) == 1
    assert cli("serve", "stop").code == 0
    path.mkdir()  # again, for a start: writing the record must not crash on it
    record = launcher.Record(pid=os.getpid(), **{**_VALID, "create_time": psutil.Process().create_time()})
    record.write()
    assert launcher.running() == record


def test_stop_says_it_set_an_unusable_record_aside(cli) -> None:  # type: ignore[no-untyped-def]
    """`serve stop` moved a corrupt record aside without a word (only `status` said so), and the reason named
    Python internals ("Record.__init__() missing 6 required positional arguments: …") cut mid-word."""
    path = launcher.record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 4242}))
    stop = cli("serve", "stop")
    assert stop.code == 0 and "nothing to stop" in stop.out
    assert "was not a server record (missing create_time, url, served_model_name, argv, log, started_at, " in stop.err
    assert "treated as no record, moved to server.json.unusable-" in stop.err and "__init__" not in stop.err
    path.write_text("[1, 2]")
    doc = cli("serve", "stop", "--json").json()
    assert doc["stopped"] is False and "not a server record (not a JSON object)" in doc["warning"]


def test_a_record_with_fields_this_version_does_not_know_is_still_read() -> None:
    """A record written by a newer echopanel-setup (one more field) names a live server: set aside as unusable, that
    server would be orphaned."""
    record = launcher.Record.parse(json.dumps({**_VALID, "pid": 2, "written_by_a_newer_version": 1}))
    assert record.pid == 2


def test_a_start_while_another_starts_is_refused_naming_it() -> None:
    """Two `serve --detach` at once both became ready and the second record orphaned the first: the start holds a
    lock from its running-server check on, and a second start says who holds it (here: this test)."""
    with launcher.start_lock():
        second = run_cli("serve", "--detach", "--port", "8001", timeout=60)
    assert second.returncode == 1, second.stderr
    assert f"another `echopanel-setup serve` is starting a server (pid {os.getpid()}, since " in second.stderr
    with launcher.start_lock():  # released: the next start may go on
        pass


@pytest.mark.slow
def test_two_detached_starts_at_once_leave_one_server_that_stop_stops(machine: Machine) -> None:
    starts = [start_cli(*machine.args("--detach"), text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in starts]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "another `echopanel-setup serve` is starting" in loser or "is running (pid" in loser, loser
    record = launcher.running()
    assert record is not None
    stopped = run_cli("serve", "stop")
    assert stopped.returncode == 0 and f"pid {record.pid}" in stopped.stdout
    assert wait_gone(record.pid)


@pytest.mark.slow
def test_a_start_over_a_corrupt_record_says_so_and_records_its_own(machine: Machine) -> None:
    path = launcher.record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": -1, **_VALID}))
    out = run_cli(*machine.args("--detach"))
    assert out.returncode == 0, out.stderr
    assert "was not a server record" in out.stderr and "treated as no record" in out.stderr
    record = launcher.running()
    assert record is not None and run_cli("serve", "stop").returncode == 0
