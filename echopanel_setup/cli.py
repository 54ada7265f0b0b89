"""The `echopanel-setup` command line: thin Typer commands that parse arguments and call the modules.

Imports of anything heavy happen inside the commands, so `--help` and `doctor` start fast.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from echopanel_setup import __version__
from echopanel_setup.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, SetupError, UsageError

app = typer.Typer(
    name="echopanel-setup",
    help="Get EchoPanel transcribing live with Voxtral Realtime: check, install, serve, smoke-test, configure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
install_app = typer.Typer(help="Install the Voxtral model or the vLLM runtime.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(install_app, name="install")


class Mode(str, Enum):
    local = "local"
    remote = "remote"
    api = "api"


def _version(value: bool) -> None:
    if value:
        print(f"echopanel-setup {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Get EchoPanel transcribing live with Voxtral Realtime: check, install, serve, smoke-test, configure."""


def _split(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def doctor(
    mode: Annotated[Optional[Mode], typer.Option(help="Which checks are required (default: from the EchoPanel config, else the hardware).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document (schema_version 1) and nothing else.")] = False,
    strict: Annotated[bool, typer.Option(help="Warnings fail too (exit 1).")] = False,
    offline: Annotated[bool, typer.Option(help="No network probes (a loopback vLLM server is still asked).")] = False,
    python: Annotated[Optional[str], typer.Option(help="The Python (or venv) that runs vLLM.")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="The port vLLM listens on (default 8000 or the config's).")] = None,
    url: Annotated[Optional[str], typer.Option(help="A vLLM server to check (default: VOXTRAL_VLLM_URL from the config).")] = None,
    model_dir: Annotated[Optional[str], typer.Option(help="Where the model is (default: where `install voxtral` put it).")] = None,
    config: Annotated[Optional[str], typer.Option(help="EchoPanel's env file (default: the per-user echopanel.env).")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only these checks (ids or prefixes, comma-separated).")] = None,
    skip: Annotated[Optional[list[str]], typer.Option(help="Skip these checks (ids or prefixes, comma-separated).")] = None,
    list_checks: Annotated[bool, typer.Option("--list", help="Print the mode × check matrix and exit.")] = False,
    facts: Annotated[Optional[str], typer.Option(help="Replay a saved facts snapshot instead of probing.")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse the last reading of the target Python while none of its import directories changed.")] = True,
    save_facts: Annotated[Optional[str], typer.Option(help="Write the facts snapshot (no secrets) to FILE.")] = None,
    report: Annotated[bool, typer.Option(help="Print a redacted Markdown report to paste into a bug report.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Details for every check, and probe timings.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Problems only.")] = False,
) -> None:
    """Check this machine for Voxtral Realtime and say what to do next. Also the CI preflight (--json --strict).

    Exit codes: 0 ready · 1 a required check failed (or any warning with --strict) · 2 bad input · 4 internal error.
    """
    from echopanel_setup import doctor as doctor_mod
    from echopanel_setup import report as report_mod
    from echopanel_setup.checks import all_checks
    from echopanel_setup.facts.collect import Options

    if list_checks:
        report_mod.render_matrix(all_checks())
        return
    if url is not None:
        from echopanel_setup.envconfig import validate_url

        if problem := validate_url(url):
            raise UsageError(f"--url: {problem.split(' ', 1)[1]}")
    opts = Options(python=python, port=port, offline=offline, model_dir=model_dir, config=config, url=url, use_cache=cache)
    with _spinner(enabled=not (json_out or quiet or report) and sys.stderr.isatty()) as on_wait:
        run = doctor_mod.run(
            opts,
            mode=mode.value if mode else None,
            only=_split(only),
            skip=_split(skip),
            strict=strict,
            facts_file=facts,
            on_wait=on_wait,
        )
    if save_facts:
        doctor_mod.save_facts(run.facts, save_facts)
    if json_out:
        report_mod.write_json(run)
    elif report:
        report_mod.render_report(run)
    else:
        report_mod.render_human(run, verbose=verbose, quiet=quiet)
    raise typer.Exit(run.exit_code)


class _spinner:
    """A stderr spinner that names the probes still running; only on a TTY, only after a short wait."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.status = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.update if self.enabled else None

    def update(self, pending: list[str]) -> None:
        if self.status is None:
            from rich.console import Console

            self.status = Console(stderr=True).status("")
            self.status.start()
        self.status.update(f"probing: {', '.join(pending)}")

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()


@app.command()
def explain(
    logfile: Annotated[str, typer.Argument(help="A vLLM log or traceback file, or - for standard input.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
) -> None:
    """Name a known vLLM failure in a log and say how to fix it. Exit 0 recognised, 1 not recognised."""
    import json
    from dataclasses import asdict

    from echopanel_setup.explain import explain as find

    if logfile == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(logfile, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise UsageError(f"{logfile}: no such file (pass a vLLM log, or - to read standard input)") from None
        except OSError as exc:
            raise UsageError(f"{logfile}: cannot read: {exc.strerror or exc}") from None
    matches = find(text)
    if json_out:
        print(json.dumps({"schema_version": 1, "recognised": bool(matches), "matches": [asdict(m) for m in matches]}, indent=2))
        raise typer.Exit(0 if matches else 1)
    from rich.markup import escape

    from echopanel_setup.report import console

    con = console()
    if not matches:
        con.print("Not recognised: none of the known vLLM failures appears in this log.")
        con.print("Try `echopanel-setup doctor`, and include the last 50 lines of the log in a bug report.")
        raise typer.Exit(1)
    first, *others = matches
    con.print(f"[bold red]{escape(first.title)}[/]  ({first.id}, line {first.line_no})")
    con.print(f"  [dim]{escape(first.line)}[/]")
    con.print(f"Cause: {escape(first.cause)}")
    con.print(f"Fix:   {escape(first.fix)}")
    for cmd in first.commands:
        con.print(f"       [cyan]{escape(cmd)}[/]")
    if first.groups:
        con.print("Found: " + ", ".join(f"{k}={escape(v)}" for k, v in first.groups.items()))
    for m in others:
        con.print(f"Also in the log: {escape(m.title)} ({m.id}, line {m.line_no})")


def _not_yet(name: str, issue: int) -> None:
    raise UsageError(f"`{name}` is not available in echopanel-setup {__version__} yet (tracked in issue #{issue}); `echopanel-setup doctor` says what to do meanwhile")


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@install_app.command("voxtral", context_settings=_PASSTHROUGH)
def install_voxtral(ctx: typer.Context) -> None:
    """Download the three files vLLM needs (~8.9 GB), resumable and verified. Not available yet."""
    _not_yet("install voxtral", 9)


@install_app.command("vllm", context_settings=_PASSTHROUGH)
def install_vllm(ctx: typer.Context) -> None:
    """Install vLLM and mistral_common[audio] in a dedicated venv. Not available yet."""
    _not_yet("install vllm", 9)


@app.command(context_settings=_PASSTHROUGH)
def serve(ctx: typer.Context) -> None:
    """Print (or run) a `vllm serve` command tuned to this GPU. Not available yet."""
    _not_yet("serve", 10)


@app.command(context_settings=_PASSTHROUGH)
def smoke(ctx: typer.Context) -> None:
    """Transcribe a bundled clip through the server and report latency and accuracy. Not available yet."""
    _not_yet("smoke", 11)


@app.command(context_settings=_PASSTHROUGH)
def configure(ctx: typer.Context) -> None:
    """Write EchoPanel's env config. Not available yet."""
    _not_yet("configure", 11)


@app.command(context_settings=_PASSTHROUGH)
def setup(ctx: typer.Context) -> None:
    """The guided path: doctor → install → serve → smoke → configure. Not available yet."""
    _not_yet("setup", 11)


def main() -> None:
    """Entry point: one line for every known error, a saved traceback for the unknown ones."""
    try:
        app()
    except SetupError as exc:
        print(f"echopanel-setup: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("echopanel-setup: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line + saved traceback
        _internal_error(exc)


def _internal_error(exc: BaseException) -> None:
    import traceback
    from datetime import datetime

    from echopanel_setup import paths

    where = "not saved"
    try:
        crash_dir = paths.state_dir() / "crash"
        crash_dir.mkdir(parents=True, exist_ok=True)
        path = crash_dir / f"crash-{datetime.now():%Y%m%d-%H%M%S}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        where = str(path)
    except OSError:
        pass
    print(f"echopanel-setup: internal error: {type(exc).__name__}: {exc} (traceback: {where}; please report it)", file=sys.stderr)
    sys.exit(EXIT_INTERNAL)


__all__ = ["app", "main", "EXIT_USAGE"]
