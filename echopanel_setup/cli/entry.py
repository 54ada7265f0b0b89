"""`main()`: the console script. Turns every exception into one line and an exit code, and signals into the cleanups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from echopanel_setup.cli import app
from echopanel_setup.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, SetupError


def main() -> None:
    """Entry point: one line for every known error, a saved traceback for the unknown ones.

    Under `--json` every error also prints one error document on stdout (output.error_document), so the
    commands themselves only ever write their results.
    """
    with _signals_as_interrupts():
        _run()


_signalled: list[int] = []  # the SIGTERM or SIGHUP that ended this run, if one did


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, as Ctrl-C is: every cleanup written for Ctrl-C runs for
    them too (`serve --exec` stops vLLM, which runs in its own session and used to keep the GPU after a `kill` or a
    closed terminal; install keeps what it verified)."""


def _on_signal(signum: int, _frame: object) -> None:
    import signal

    if (probes := sys.modules.get("echopanel_setup.proc")) is not None:
        probes.kill_all()  # before the exception: probe threads waiting on a hung child return at once
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if _signalled:  # a second one while cleaning up after the first: let the cleanup finish
        return
    _signalled.append(signum)
    raise _Terminated


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the run through the same cleanups, for the length of one `main()`. A signal
    the caller ignores stays ignored (`nohup` sets SIGHUP to SIG_IGN), and the previous handlers come back after."""
    import signal
    import threading

    _signalled.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                previous[sig] = signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(json_command: str | None, message: str = "interrupted") -> NoReturn:
    """Exit as the signal that ended the run says: 130 for Ctrl-C, 128 + N for SIGTERM (143) or SIGHUP (129)."""
    if _signalled:
        import signal

        name = signal.Signals(_signalled[0]).name
        _fail(f"{message} (terminated by {name})", 128 + _signalled[0], json_command)
    _fail(message, EXIT_INTERRUPTED, json_command)


def _run() -> None:
    _open_closed_std_streams()
    for stream in (sys.stdout, sys.stderr):
        # A C/ASCII locale must not crash us, nor a lone surrogate (a non-UTF-8 path decoded by Python, or one in a
        # replayed --facts file) on a UTF-8 stream: such characters print as "?".
        stream.reconfigure(errors="replace")  # type: ignore[union-attr]
    args = sys.argv[1:]
    json_command = _json_command(args)
    try:
        code = app.app_for(args)(args, prog_name="echopanel-setup", standalone_mode=False)
    except SystemExit as exc:  # Click turns a write to a closed pipe into exit 1 ("a check failed"): not ours
        _exit_quietly_if_stdout_gone()
        raise exc
    except BrokenPipeError:
        _exit_quietly_if_stdout_gone()
        raise
    except SetupError as exc:
        if exc.exit_code == EXIT_INTERRUPTED:  # install's "interrupted: kept …, run again" after a signal too
            _interrupted(json_command, str(exc))
        _fail(str(exc), exc.exit_code, json_command)
    except KeyboardInterrupt:
        _interrupted(json_command)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line + saved traceback
        # Click's exceptions are matched by shape: Typer >= 0.28 raises those of its own vendored copy of Click.
        if type(exc).__name__ == "Abort":  # Click turns Ctrl-C at a prompt into Abort
            _interrupted(json_command)
        if type(exc).__name__ == "NoArgsIsHelpError":  # Click >= 8.2: a bare group is a usage error (exit 2)
            print(exc.ctx.get_help(), file=sys.stderr)  # type: ignore[attr-defined]  # the help, not one squashed line
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # Click's usage errors
            _fail(_click_message(exc), exc.exit_code, json_command)
        _internal_error(exc, json_command)
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C inside a command into a silent Exit(130)
        _interrupted(json_command)
    if code:
        _exit_quietly_if_stdout_gone()
    sys.exit(code if isinstance(code, int) else 0)


EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process that SIGPIPE ended: `git log | head -1` is 141 too


def _open_closed_std_streams() -> None:
    """Put /dev/null where the caller closed stdin, stdout or stderr (`>&-`): the run goes on, its output unread.

    Python leaves sys.stdout None then (every print would crash), and the lowest free descriptor would be
    handed to the next file we open: a log or a record would receive our output. Occupying 0-2 first, as
    daemons do, keeps both from happening; the exit code still says how the run went.
    """
    import os

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False))  # noqa: SIM115


def _exit_quietly_if_stdout_gone() -> None:
    """Exit 141 without a word when whoever read stdout has gone (`doctor | head -1`).

    A reader that stops early is a normal end, not a failed check (1) nor a crash (4): the best tools end as
    SIGPIPE would end them, quietly with 141. We do not let SIGPIPE kill us instead, because `serve --exec`
    must stop its vLLM first (that runs in the `finally` blocks this exit passes through). Whether the
    reader has gone is asked of the descriptor (poll: POLLERR on a pipe with no reader), so a broken pipe
    to a server never passes for this.
    """
    import os
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        gone = any(event & select.POLLERR for _fd, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll() on Windows: keep the code the run had
        return
    if gone:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # the interpreter's last flush of stdout must not complain on stderr
        os.close(null)
        sys.exit(EXIT_BROKEN_PIPE)


def _json_command(args: list[str]) -> str | None:
    """The command a `--json` run names ("doctor", "install voxtral"), or None when there is no `--json`.

    Command names come before any option (only the root's eager --help/--version could precede them), so
    the leading words name it; a group's subcommand is the word after the group's name.
    """
    if "--json" not in (args[: args.index("--")] if "--" in args else args):
        return None
    words = [args[0]] if args and not args[0].startswith("-") else []
    if words and words[0] in app.GROUPS and len(args) > 1 and not args[1].startswith("-"):
        words.append(args[1])
    return " ".join(words) or "echopanel-setup"


def _fail(message: str, code: int, json_command: str | None = None, traceback: str | None = None) -> NoReturn:
    """Exit with `code` after one stderr line (and, under --json, one error document on stdout)."""
    if json_command is not None:
        from echopanel_setup import output

        output.write_error(output.error_document(json_command, message, code, traceback=traceback))
    from echopanel_setup import ui

    print(f"echopanel-setup: error: {ui.clean(message)}", file=sys.stderr)  # it may quote a server, a file, a log
    sys.exit(code)


def _click_message(exc: Exception) -> str:
    """Click's usage error as one line, with the help command for the command that failed."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return " ".join(exc.format_message().split()) + where  # type: ignore[attr-defined]


def _internal_error(exc: BaseException, json_command: str | None) -> NoReturn:
    import traceback
    from datetime import datetime

    from echopanel_setup import paths

    saved = None
    try:
        crash_dir = paths.state_dir() / "crash"
        crash_dir.mkdir(parents=True, exist_ok=True)
        path = crash_dir / f"crash-{datetime.now():%Y%m%d-%H%M%S}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        saved = str(path)
    except OSError:
        pass
    message = f"{type(exc).__name__}: {exc}"
    if json_command is not None:
        from echopanel_setup import output

        output.write_error(output.error_document(json_command, message, EXIT_INTERNAL, traceback=saved))
    print(
        f"echopanel-setup: internal error: {message} (traceback: {saved or 'not saved'}; please report it)",
        file=sys.stderr,
    )
    sys.exit(EXIT_INTERNAL)
