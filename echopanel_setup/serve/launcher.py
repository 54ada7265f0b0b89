"""Run `vllm serve` and watch it start: phases from its log, /health, then /v1/models and the realtime
WebSocket's `session.created`; known failures (explain's signatures) stop it with cause and fix.

vLLM runs in its own session (process group), writing to a log file under the state dir, in the foreground
(`--exec`) or the background (`--detach`) alike, so `serve status|logs|stop` work for both and Ctrl-C
reaches only us: we then stop vLLM and its engine processes together (SIGINT, SIGTERM, SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from echopanel_setup import knowledge, paths
from echopanel_setup.errors import SetupError
from echopanel_setup.explain import Match, explain
from echopanel_setup.facts.local import probe_port
from echopanel_setup.serve.builder import ServeCommand
from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import VllmClient, parse_models

Say = Callable[[str], None]
_ERRORISH = re.compile(r"Error|ERROR|error:|Traceback|Exception")


def run_dir() -> Path:
    return paths.state_dir() / "serve"


def record_path() -> Path:
    return run_dir() / "server.json"


def log_path() -> Path:
    return run_dir() / "vllm.log"


def _launch() -> knowledge.Launch:
    return knowledge.load().serve.launch


# --- the record of the server we started --------------------------------------------------------------------


@dataclass
class Record:
    pid: int
    create_time: float
    url: str
    served_model_name: str
    argv: list[str]  # API key redacted
    log: str
    started_at: str
    detached: bool
    vllm_version: str | None = None
    api_key_env: bool = False  # the server wants VLLM_API_KEY (its value is never recorded)
    # The streams EchoPanel needs, as planned (`watch` and `smoke --streams` compare with it); --max-num-seqs in argv
    # may allow more on a GPU of its own. None in records written before this field.
    streams: int | None = None

    @classmethod
    def read(cls) -> Record | None:
        """The record, or None when there is none or it is not one (see `set_aside_unusable`)."""
        try:
            return cls.parse(record_path().read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def parse(cls, text: str) -> Record:
        """A record from its JSON; ValueError/TypeError for anything else (a pid of -1 or "1" is not a process we
        could have started, and psutil would raise on it). Fields this version does not know (a newer
        echopanel-setup wrote the record) are ignored: such a record still names a live server."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        if missing := [name for name in required if name not in data]:
            raise ValueError(f"missing {', '.join(missing)}")
        record = cls(**{name: value for name, value in data.items() if name in known})
        numbers = (record.pid, record.create_time)
        if any(isinstance(n, bool) or not isinstance(n, (int, float)) for n in numbers) or not (
            isinstance(record.pid, int) and record.pid > 1
        ):
            raise ValueError(f"pid {record.pid!r}, create_time {record.create_time!r}")
        if not all(isinstance(v, str) for v in (record.url, record.log, record.served_model_name)):
            raise ValueError("url, log and served_model_name must be text")
        return record

    def write(self) -> None:
        run_dir().mkdir(parents=True, exist_ok=True)
        set_aside_unusable()  # a directory (or garbage) where the record goes must not make the start crash
        tmp = record_path().with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, record_path())

    def flag(self, name: str) -> int | None:
        """A whole-number flag of the recorded command (`--max-num-seqs`), None when absent or not a number."""
        argv = self.argv
        if name in argv and argv.index(name) + 1 < len(argv):
            value = argv[argv.index(name) + 1]
            return int(value) if value.isdigit() else None
        return None

    @property
    def planned_streams(self) -> int | None:
        """The streams EchoPanel needs, as planned: records from before `streams` was kept planned --max-num-seqs."""
        if isinstance(self.streams, int) and not isinstance(self.streams, bool) and self.streams > 0:
            return self.streams
        return self.flag("--max-num-seqs")

    def alive(self) -> bool:
        """The recorded process still runs (and is the same process, not a reused pid)."""
        import psutil

        try:
            p = psutil.Process(self.pid)
            return abs(p.create_time() - self.create_time) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def running() -> Record | None:
    record = Record.read()
    return record if record and record.alive() else None


def running_url() -> ServerURL | None:
    """The URL of the server `serve --exec/--detach` started and that still runs (None: none, or its URL unusable)."""
    record = running()
    if record is None:
        return None
    try:
        return ServerURL.parse(record.url, what="the serve record's url")
    except SetupError:
        return None


def set_aside_unusable() -> str | None:
    """Move a server record we cannot read (garbage, a pid of -1, a directory) out of the way, and say so.

    Such a record names no server we can reach: treating it as "no record" (status: not running; a start goes on)
    is right, and moving it aside, never deleting it, keeps it for whoever wants to look. None when there was
    nothing to set aside; SetupError when it cannot be moved (the sentence says to remove it).
    """
    path = record_path()
    if not (path.exists() or path.is_symlink()) or Record.read() is not None:
        return None
    try:
        why = "a directory" if path.is_dir() else f"not a server record ({_why_unusable(path)})"
    except OSError as exc:
        why = f"unreadable ({exc.strerror or exc})"
    aside = path.with_name(f"{path.name}.unusable-{datetime.now():%Y%m%d-%H%M%S-%f}")
    try:
        os.rename(path, aside)  # a new name each time: an earlier one set aside is never replaced
    except OSError as exc:
        raise SetupError(f"{path} is {why} and could not be moved aside ({exc.strerror or exc}): remove it") from None
    return f"{path} was {why}: treated as no record, moved to {aside.name}"


def _why_unusable(path: Path) -> str:
    try:
        Record.parse(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return "unknown"


@contextmanager
def start_lock() -> Iterator[None]:
    """Only one `serve --exec/--detach` starts at a time: two at once both became ready, the second record
    overwrote the first and the live server was orphaned (`status`: not running, `stop`: nothing to stop).

    A lock file in our state dir (flock, so a killed holder releases it with its last descriptor; nothing to
    clean up by hand) is held from the running-server check until the launch returns (ready in the background,
    or the foreground run over); who holds it is written beside it so the loser can say so.
    """
    from filelock import FileLock, Timeout

    run_dir().mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir() / "start.lock"))
    holder = run_dir() / "start.holder"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SetupError(_held_by(holder)) from None
    try:
        holder.write_text(
            json.dumps({"pid": os.getpid(), "since": datetime.now().astimezone().isoformat(timespec="seconds")}),
            encoding="utf-8",
        )
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _held_by(holder: Path) -> str:
    """The loser's sentence: the server already running, or the start under way, by whom."""
    if (ours := running()) is not None:
        return (
            f"the server echopanel-setup started is running (pid {ours.pid}, {ours.url}): see "
            "`echopanel-setup serve status`, or stop it with `echopanel-setup serve stop` first"
        )
    try:
        info = json.loads(holder.read_text(encoding="utf-8"))
        who = f"pid {int(info['pid'])}, since {info['since']}"
    except (OSError, ValueError, TypeError, KeyError):
        who = "another process"
    return (
        f"another `echopanel-setup serve` is starting a server ({who}): wait for it, then see "
        "`echopanel-setup serve status`"
    )


def check_port(port: int) -> None:
    """Refuse a taken port, naming who holds it."""
    facts = probe_port(port)
    if facts.free is not False:
        return
    ours = running()
    if ours and (facts.holder_pid is None or facts.holder_pid == ours.pid or _in_group(facts.holder_pid, ours.pid)):
        raise SetupError(
            f"port {port}: the server echopanel-setup started (pid {ours.pid}, {ours.url}) is running; "
            "see `echopanel-setup serve status`, or stop it with `echopanel-setup serve stop`"
        )
    who = f"pid {facts.holder_pid}" if facts.holder_pid else "another process"
    if facts.holder_name:
        who += f" ({facts.holder_name})"
    cmdline = f": {facts.holder_cmdline[:120]}" if facts.holder_cmdline else ""
    raise SetupError(f"port {port} is in use by {who}{cmdline}; stop it or serve on another port (--port {port + 1})")


def _in_group(pid: int, leader: int) -> bool:
    try:
        return os.getpgid(pid) == leader
    except OSError:
        return False


# --- watching the log ---------------------------------------------------------------------------------------------


@dataclass
class LogWatch:
    """Reads the log as it grows: the current phase, vLLM's memory figures, and the first known failure."""

    path: Path
    offset: int = 0
    text: str = ""
    phase: str = "starting"
    reached: list[str] = field(default_factory=list)  # phases in the order the log reached them
    figures: dict[str, str] = field(default_factory=dict)

    def poll(self) -> list[str]:
        """New complete lines since the last call."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            return []
        self.offset += end
        new = chunk[:end].decode("utf-8", "replace")
        self.text += new
        lines = new.splitlines()
        for line in lines:
            self._scan(line)
        return lines

    def _scan(self, line: str) -> None:
        k = knowledge.load().serve
        order = [p.id for p in k.phase]
        for p in k.phase:
            if order.index(p.id) > (order.index(self.phase) if self.phase in order else -1) and re.search(
                p.pattern, line
            ):
                self.phase = p.id
                self.reached.append(self.phase)
        for key in ("kv_memory", "kv_tokens", "concurrency", "version"):
            m = re.search(k.log.patterns()[key], line)
            if m:
                self.figures.update(
                    {f"{key}.{g}" if key != "version" else "version": v for g, v in m.groupdict().items()}
                )

    def failure(self, exited: bool) -> Match | None:
        """The first known failure; while vLLM still runs, only one on an error line (not a warning)."""
        lines = self.text.split("\n")  # explain numbers lines by \n only
        for match in explain(self.text):
            if exited or _ERRORISH.search(lines[match.line_no - 1] if 0 < match.line_no <= len(lines) else match.line):
                return match
        return None


def notable(line: str) -> bool:
    """A log line worth showing without --verbose: warnings and errors."""
    return bool(_ERRORISH.search(line)) or "WARNING" in line


def phase_title(phase: str) -> str:
    for p in knowledge.load().serve.phase:
        if p.id == phase:
            return p.title
    return "starting vLLM"


# --- starting, confirming, stopping ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """How a start went: ready, or the failure (a known signature, or why not) with vLLM's own figures."""

    ok: bool
    record: Record
    failure: Match | None = None
    reason: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    timed_out: bool = False


def _rotate_log() -> Path:
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        os.replace(log, log.with_name(log.name + ".1"))
    return log


def start(
    cmd: ServeCommand, api_key: str | None, url: str, served_name: str, detached: bool, streams: int | None = None
) -> tuple[subprocess.Popen[bytes], Record]:
    """Start vLLM in its own process group, its output in the log file; record it for `serve status`/`stop`."""
    log = _rotate_log()
    env = {**os.environ, **cmd.env, "PYTHONUNBUFFERED": "1"}
    argv = cmd.argv()
    if api_key:  # the key travels in the environment, out of `ps` and the recorded argv
        env["VLLM_API_KEY"] = api_key
        argv = [*cmd.executable, "serve", cmd.model, *cmd.without("--api-key")]
    with log.open("ab") as fh:
        fh.write(
            f"# echopanel-setup: {shlex.join([*cmd.executable, 'serve', cmd.model, *cmd.redacted_args()])}\n".encode()
        )
        fh.flush()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except OSError as exc:
            raise SetupError(
                f"cannot run {argv[0]}: {exc.strerror or exc}; is vLLM installed? (`echopanel-setup install vllm`)"
            ) from None
    try:
        return proc, _record(proc, cmd, api_key, url, served_name, detached, log, streams)
    except BaseException:  # Ctrl-C before the caller holds the record: never leave vLLM running
        stop_group(proc.pid, proc)
        raise


def _record(
    proc: subprocess.Popen[bytes],
    cmd: ServeCommand,
    api_key: str | None,
    url: str,
    served_name: str,
    detached: bool,
    log: Path,
    streams: int | None,
) -> Record:
    import psutil

    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = time.time()
    record = Record(
        pid=proc.pid,
        create_time=created,
        url=url,
        served_model_name=served_name,
        argv=[*cmd.executable, "serve", cmd.model, *cmd.redacted_args()],
        log=str(log),
        started_at=paths.timestamp(),
        detached=detached,
        vllm_version=cmd.version,
        api_key_env=bool(api_key),
        streams=streams,
    )
    record.write()
    return record


def wait_ready(
    proc: subprocess.Popen[bytes],
    record: Record,
    served_name: str,
    api_key: str | None,
    timeout_s: float,
    say: Say,
    echo: Say | None,
) -> Outcome:
    """Follow the log until /health answers 200, then confirm /v1/models and the realtime WebSocket."""
    watch = LogWatch(Path(record.log))
    started = time.monotonic()
    shown, last_note = 0, started
    poll = _launch().poll_interval_s
    say(f"waiting for {record.url}/health (up to {duration(timeout_s)}; --timeout to change); log: {record.log}")

    def catch_up() -> None:
        """Echo the new log lines and announce each phase reached, once; also called on the way out, so a
        phase that the last poll reached (e.g. `ready`, logged just before /health answered) is still shown."""
        nonlocal shown, last_note
        for line in watch.poll():
            if echo:
                echo(line)
        for phase in watch.reached[shown:]:
            say(f"[{duration(time.monotonic() - started)}] {phase_title(phase)}")
            shown, last_note = shown + 1, time.monotonic()

    with VllmClient(ServerURL.parse(record.url), api_key=api_key, timeout=2.0) as client:
        while True:
            catch_up()
            code = proc.poll()
            failure = watch.failure(exited=code is not None)
            if failure or code is not None:
                catch_up()
                return Outcome(False, record, failure or watch.failure(exited=True), _exit_reason(code), watch.figures)
            if _healthy(client):
                catch_up()
                problem = confirm(client, served_name, api_key)
                if problem:
                    return Outcome(False, record, None, problem, watch.figures)
                return Outcome(True, record, None, "", watch.figures)
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                reason = (
                    f"/health did not answer 200 within {duration(timeout_s)} (last phase: {phase_title(watch.phase)})"
                )
                return Outcome(False, record, None, reason, watch.figures, timed_out=True)
            if time.monotonic() - last_note > 30:
                last_note = time.monotonic()
                say(f"[{duration(elapsed)}] still {phase_title(watch.phase)}…")
            time.sleep(poll)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "vLLM reported an error"
    if code < 0:
        return f"vLLM was killed by signal {-code}"
    return f"vLLM exited with code {code} before it was ready"


def _healthy(client: VllmClient) -> bool:
    return client.health().ok


def confirm(client: VllmClient, served_name: str, api_key: str | None) -> str | None:
    """None when /v1/models lists the served name and /v1/realtime sends session.created; else the problem."""
    timeout = _launch().confirm_timeout_s
    models = client.models(timeout=timeout)
    if not models.reachable:
        return f"/v1/models did not answer: {models.error}"
    if not models.ok:
        return f"/v1/models answered HTTP {models.status}" + (" (API key refused)" if models.status == 401 else "")
    ids = parse_models(models)
    if ids is None:
        return "/v1/models did not answer a model list"
    if served_name not in ids:
        return f"/v1/models lists {ids}, not {served_name!r}: EchoPanel's session.update would be refused"
    return realtime_session(client.server, api_key, timeout)


def realtime_session(server: ServerURL, api_key: str | None, timeout: float) -> str | None:
    """Open the realtime WebSocket and expect `session.created` first."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    ws_url = server.ws_url
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with connect(ws_url, additional_headers=headers, open_timeout=timeout, close_timeout=2) as ws:
            first = json.loads(ws.recv(timeout=timeout))
    except TimeoutError:
        return f"{ws_url} sent nothing within {timeout:.0f} s"
    except (OSError, WebSocketException, ValueError) as exc:
        return f"{ws_url}: {exc}"
    if not isinstance(first, dict) or first.get("type") != "session.created":
        return f"{ws_url} answered {str(first)[:120]!r} instead of session.created (is this the Realtime model?)"
    return None


def follow(proc: subprocess.Popen[bytes], record: Record, echo: Say) -> int:
    """After start-up (foreground): keep relaying the log until vLLM exits; its exit code."""
    watch = LogWatch(Path(record.log), offset=Path(record.log).stat().st_size)
    while proc.poll() is None:
        for line in watch.poll():
            echo(line)
        time.sleep(0.2)
    for line in watch.poll():
        echo(line)
    return proc.returncode


@dataclass(frozen=True)
class Halt:
    """How a stop went: the seconds it took, and whether a second Ctrl-C cut vLLM's own shutdown short."""

    seconds: float
    forced: bool = False


def stop_group(
    pid: int, proc: subprocess.Popen[bytes] | None = None, note: Say | None = None, announce: str | None = None
) -> Halt:
    """Stop vLLM and its engine processes (one process group): SIGINT, as a terminal's Ctrl-C, so vLLM shuts
    down cleanly; then SIGTERM; then SIGKILL. `note` hears `announce` first, then each escalation.

    vLLM's own shutdown can take long (or hang, never releasing the GPU); a Ctrl-C (or SIGTERM) that arrives at any
    point of the stop, announcement included, is the user asking for it now: the group gets SIGKILL and the stop
    still completes, however many more come, instead of an interrupt abandoning it halfway with vLLM still holding
    the GPU. `Halt.forced` tells the caller."""
    start_t = time.monotonic()
    forced = False
    while True:
        try:
            if forced:
                _signal_group(pid, signal.SIGKILL)
                _wait_gone(pid, proc, 5.0)
            else:
                _escalate(pid, proc, note, announce)
            return Halt(time.monotonic() - start_t, forced)
        except KeyboardInterrupt:  # Ctrl-C again (or SIGTERM/SIGHUP after a Ctrl-C): stop it now
            forced = True


def _escalate(pid: int, proc: subprocess.Popen[bytes] | None, note: Say | None, announce: str | None) -> None:
    if note and announce:
        note(announce)
    steps = ((signal.SIGINT, float(_launch().stop_grace_s)), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))
    for n, (sig, wait) in enumerate(steps):
        if n and note:
            note(f"vLLM did not stop within {duration(steps[n - 1][1])}: sending {sig.name}")
        if not _signal_group(pid, sig) or _wait_gone(pid, proc, wait):
            return


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the group (to its leader alone where the group cannot be signalled); False when it is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pgid, sig)
    return True


def _wait_gone(pgid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()  # reap our own child, or it lingers as a zombie
        if not _group_running(pgid):
            return True
        time.sleep(0.1)
    return False


def _group_running(pgid: int) -> bool:
    """Any process of the group still running (zombies do not count: they only wait for their parent)."""
    import psutil

    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.info["pid"]) == pgid:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def clear_record(pid: int) -> None:
    record = Record.read()
    if record and record.pid == pid:
        record_path().unlink(missing_ok=True)


def record_success(key: str, cmd: ServeCommand, figures: dict[str, str], plan_summary: dict[str, Any]) -> None:
    """Remember the flags that worked on this GPU with this vLLM (never the API key)."""
    good = paths.read_state().get("serve_good")
    good = good if isinstance(good, dict) else {}
    good[key] = {
        "args": cmd.redacted_args(),
        "env": cmd.env,
        "vllm_figures": figures,
        "plan": {
            k: plan_summary[k]
            for k in (
                "breakdown_mib",
                "streams",
                "streams_fit",
                "max_num_seqs",
                "max_model_len",
                "gpu_memory_utilization",
                "memory",
            )
        },
        "recorded_at": paths.timestamp(),
    }
    paths.write_state({"serve_good": good})


# --- serve status, logs, stop ---------------------------------------------------------------------------------------


@dataclass
class Status:
    running: bool
    record: Record | None
    health: int | None = None
    models: list[str] | None = None
    phase: str | None = None
    uptime_s: float | None = None
    error: str | None = None
    note: str | None = None  # an unusable record was set aside


def status(api_key: str | None = None) -> Status:
    """Whether the server we started runs and answers; `api_key` (VLLM_API_KEY) lists its models."""
    note = set_aside_unusable()
    record = Record.read()
    if record is None or not record.alive():
        return Status(False, record, note=note)
    result = Status(True, record, uptime_s=time.time() - record.create_time)
    watch = LogWatch(Path(record.log))
    watch.poll()
    result.phase = watch.phase
    with VllmClient(ServerURL.parse(record.url), api_key=api_key, timeout=2.0) as client:
        survey = client.survey()
    result.health = survey.health.status
    result.models = survey.served
    if survey.auth_required:
        result.error = "/v1/models wants the API key: export VLLM_API_KEY=… to list the models"
    elif problem := survey.problem:
        result.error = f"{record.url}: {problem[1]}"
    return result


def tail(lines: int) -> tuple[Path, list[str], int]:
    """The log, its last `lines` lines (0: all), and the byte offset they end at, where a follow goes on."""
    record = Record.read()
    log = Path(record.log) if record else log_path()
    try:
        data = log.read_bytes()
    except FileNotFoundError:
        raise SetupError(
            f"no vLLM log yet at {log}: start a server with `echopanel-setup serve --exec` or `--detach`"
        ) from None
    text = data.decode("utf-8", "replace").splitlines()
    return log, text[-lines:] if lines > 0 else text, len(data)


def follow_log(log: Path, echo: Say, offset: int) -> None:
    """`serve logs --follow`: print what vLLM writes after `offset`, until Ctrl-C (KeyboardInterrupt)."""
    watch = LogWatch(log, offset=offset)
    while True:
        for line in watch.poll():
            echo(line)
        watch.text = ""  # only the new lines matter here: a follow that runs for days must not keep the whole log
        time.sleep(0.3)


def stop(note: Say | None = None) -> tuple[Record | None, Halt, str | None]:
    """Stop the server echopanel-setup started: (its record or None when none runs, how the stop went, the note of
    a record set aside as unusable); `note` hears that the stop started and each escalation."""
    aside = set_aside_unusable()
    record = Record.read()
    if record is None or not record.alive():
        if record:
            clear_record(record.pid)
        return None, Halt(0.0), aside
    announce = f"Stopping vLLM (pid {record.pid}, {record.url})… Ctrl-C stops it at once."
    halt = stop_group(record.pid, note=note, announce=announce)
    clear_record(record.pid)
    return record, halt, aside


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60:02d} s" if seconds % 60 else "")
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
