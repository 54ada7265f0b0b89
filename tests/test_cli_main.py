"""The last line of defence in cli.main: internal errors and interrupts map to one line and an exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli

from echopanel_setup import doctor, paths


def test_internal_error_is_one_line_and_saves_the_traceback(cli: Cli, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(doctor, "run", boom)
    run = cli("doctor", "--offline")
    assert run.code == 4
    err = run.err.strip().splitlines()
    assert len(err) == 1
    assert "internal error: RuntimeError: probe exploded" in err[0]
    saved = Path(err[0].split("traceback: ")[1].split(";")[0])
    assert saved.parent == paths.state_dir() / "crash"
    assert "Traceback" in saved.read_text() and "probe exploded" in saved.read_text()


def test_ctrl_c_exits_130(cli: Cli, monkeypatch):
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor, "run", interrupted)
    run = cli("doctor", "--offline")
    assert run.code == 130 and "Traceback" not in run.err


def test_usage_error_is_one_line_exit_2(cli: Cli):
    run = cli("doctor", "--python", "/nonexistent/python")
    assert run.code == 2
    assert run.err.strip().splitlines() == [
        "echopanel-setup: error: --python /nonexistent/python: no such file; pass the python of the venv that runs vLLM"
    ]


@pytest.mark.slow
def test_spinner_names_slow_probes_only_on_a_terminal(tmp_path):
    """On a TTY a slow probe is named while doctor waits; piped output never carries the spinner."""
    import os
    import pty
    import subprocess
    import textwrap

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import time
        time.sleep(1.0)
        print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
        raise SystemExit(9)
        """)
    )
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TERM": "xterm", "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "echopanel_setup", "doctor", "--offline"]

    piped = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # meanwhile
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.execve(sys.executable, cmd, env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    assert "probing:" not in piped.communicate(timeout=60)[0]
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "probing: gpu" in screen


def _doctor_replay(fixtures: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """doctor replaying a snapshot (a known exit code, ~40 lines of output) in a real process."""
    snapshot = fixtures / "facts" / "linux-4090-desktop.json"
    cmd = [sys.executable, "-m", "echopanel_setup", "doctor", "--facts", str(snapshot)]
    return subprocess.run(cmd, text=True, stderr=subprocess.PIPE, timeout=60, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("json_out", [False, True])
def test_a_reader_gone_away_ends_the_run_quietly_with_141(fixtures: Path, json_out: bool):
    """`doctor | head -1`: a pipe with no reader is not a failed check (1) nor a crash (4); it is what SIGPIPE
    would give (141), with nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        cmd = [
            sys.executable, "-m", "echopanel_setup", "doctor",
            "--facts", str(fixtures / "facts" / "linux-4090-desktop.json"), *(["--json"] if json_out else []),
        ]  # fmt: skip
        run = subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (run.returncode, run.stderr) == (141, "")


@pytest.mark.slow
def test_closed_stdout_runs_with_its_output_discarded(fixtures: Path):
    """`doctor >&-`: no traceback; the exit code is the one the run has with its output thrown away."""
    discarded = _doctor_replay(fixtures, stdout=subprocess.DEVNULL)
    closed = _doctor_replay(fixtures, stdout=None, preexec_fn=lambda: os.close(1))
    assert "Traceback" not in closed.stderr and closed.stderr == discarded.stderr
    assert closed.returncode == discarded.returncode == 0


@pytest.mark.parametrize("group", [[], ["install"], ["provider"]])
def test_a_bare_group_prints_its_whole_help(cli: Cli, group: list[str]):
    """Click >= 8.2 squashes a bare group's help into one "Error:" line; ours is the help as --help shows it,
    on stderr with exit 2 (it is still a command line that did not say what to do)."""
    bare = cli(*group)
    helped = cli(*group, "--help")
    assert (bare.code, bare.out) == (2, "")
    assert bare.err.strip() == helped.out.strip() and "error" not in bare.err.lower().split("options:")[0]


def test_signal_handlers_keep_nohup_and_are_restored(cli: Cli, monkeypatch) -> None:
    """SIGTERM and SIGHUP end a run through Ctrl-C's cleanups, for the length of one run only; a signal the caller
    ignores (`nohup` ignores SIGHUP) stays ignored, so a `nohup serve --exec` survives its terminal."""
    import signal

    from echopanel_setup.cli import entry

    seen = {}

    def record(*_a, **_k):
        seen.update({s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)})
        raise KeyboardInterrupt

    # The dispositions a terminal gives, set here: pytest started in the background of a script inherits SIGINT
    # ignored (and SIGHUP under nohup), and main rightly keeps an ignored signal ignored.
    given = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL, signal.SIGHUP: signal.SIG_IGN}
    previous = {sig: signal.signal(sig, handler) for sig, handler in given.items()}
    try:
        monkeypatch.setattr(doctor, "run", record)
        assert cli("doctor", "--offline").code == 130
        assert seen[signal.SIGHUP] is signal.SIG_IGN
        assert seen[signal.SIGTERM] is seen[signal.SIGINT] is entry._on_signal
        assert {sig: signal.getsignal(sig) for sig in given} == given
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("argv", [(), ("--help",), ("doctr",), ("--bogus",)])
def test_the_light_listing_prints_what_the_whole_app_prints(cli: Cli, monkeypatch, argv):
    """With no command named, main builds each command from a stand-in (name and docstring, no options): the
    output and exit code must be exactly the whole app's."""
    from echopanel_setup.cli import app

    light = cli(*argv)
    monkeypatch.setattr(app, "listing", lambda full: full)
    whole = cli(*argv)
    assert (light.code, light.out, light.err) == (whole.code, whole.out, whole.err)
    assert "doctor" in light.out + light.err or argv == ("--bogus",)


def test_doctor_without_a_checkout_loads_no_echopanel_reader(tmp_path):
    """The contract reader, the .env parser/writer and the settings rules load only with a checkout: a GPU host or a
    CI runner has none, and doctor's start-up is a feature (so is importlib.metadata's absence: facts.local reads the
    client packages' versions itself)."""
    with socket.socket() as free:  # a port nothing answers on: a vLLM someone runs on 8001 must not change the test
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    code = (
        "import sys\n"
        f"sys.argv = ['echopanel-setup', 'doctor', '--offline', '--json', '--mode', 'local', '--url', {url!r}]\n"
        "from echopanel_setup import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "readers = ('contract', 'dotenv', 'settings', 'fixes')\n"
        "loaded = [m for m in readers if 'echopanel_setup.echopanel.' + m in sys.modules]\n"
        "lazy = ('concurrent.futures', 'echopanel_setup.metrics.derive', 'echopanel_setup.vllm_client',\n"
        "        'importlib.metadata')\n"
        "heavy = [m for m in lazy if m in sys.modules]\n"
        "print(loaded, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.stderr.strip().splitlines()[-1] == "[] []"
