"""`doctor`: the checks of this machine, also the CI preflight."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from echopanel_setup import env
from echopanel_setup.cli.options import Checkout, CheckoutPython, EnvFile, Mode, ModelDir, VllmPython
from echopanel_setup.errors import UsageError
from echopanel_setup.url import ServerURL

if TYPE_CHECKING:
    from collections.abc import Callable

    from echopanel_setup.ui import Spinner


def _echopanel_url(text: str) -> ServerURL:
    """`--url` where it stands for EchoPanel's VOXTRAL_VLLM_URL: http(s)://HOST:PORT, parsed once here."""
    return ServerURL.parse_echopanel(text, what="--url")


def _split(values: list[str] | None, option: str) -> list[str]:
    """The check names of a repeatable, comma-separated option. Given but naming none (`--only ""` from an unset
    variable in a CI script) is a usage error: as no filter at all it would run every check, or none."""
    names = [v.strip() for item in values or [] for v in item.split(",") if v.strip()]
    if values is not None and not names:
        raise UsageError(f"{option} names no check; `echopanel-setup doctor --list` shows them")
    return names


def doctor(
    mode: Annotated[
        Mode | None,
        typer.Option(help="Which checks are required (default: from the EchoPanel config, else the hardware)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema_version 1) and nothing else.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Warnings of required checks fail too (exit 1).")] = False,
    offline: Annotated[bool, typer.Option(help="No network probes (a loopback vLLM server is still asked).")] = False,
    python: VllmPython = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The port vLLM listens on (default 8001, or the config's).")
    ] = None,
    url: Annotated[
        ServerURL | None,
        typer.Option(
            parser=_echopanel_url,
            metavar="URL",
            help="A vLLM server to check; without --mode, checks it in remote mode (default: VOXTRAL_VLLM_URL).",
        ),
    ] = None,
    model_dir: ModelDir = None,
    config: EnvFile = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these checks (ids or prefixes, comma-separated).")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option(help="Skip these checks (ids or prefixes, comma-separated).")
    ] = None,
    list_checks: Annotated[bool, typer.Option("--list", help="Print the mode × check matrix and exit.")] = False,
    echopanel: Checkout = None,
    echopanel_python: CheckoutPython = None,
    facts: Annotated[str | None, typer.Option(help="Replay a saved facts snapshot instead of probing.")] = None,
    cache: Annotated[
        bool,
        typer.Option(help="Reuse the last reading of the target Python while none of its import directories changed."),
    ] = True,
    save_facts: Annotated[str | None, typer.Option(help="Write the facts snapshot (no secrets) to FILE.")] = None,
    report: Annotated[bool, typer.Option(help="Print a redacted Markdown report to paste into a bug report.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Details for every check, and probe timings.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Problems only.")] = False,
) -> None:
    """Check this machine for Voxtral Realtime and say what to do next. Also the CI preflight (--json --strict).

    Exit codes: 0 ready · 1 a required check failed or could not look (or warned, with --strict) · 2 bad input ·
    4 internal error.
    """
    from echopanel_setup import doctor as doctor_mod
    from echopanel_setup import report as report_mod
    from echopanel_setup.checks import all_checks
    from echopanel_setup.facts.collect import Options

    if list_checks:
        report_mod.render_matrix(all_checks())
        return
    opts = Options(
        python=python,
        port=port,
        offline=offline,
        model_dir=model_dir,
        config=config,
        url=url,
        use_cache=cache,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        vllm_api_key=env.vllm_api_key(),
    )
    with _spinner(enabled=not (json_out or quiet or report) and sys.stderr.isatty()) as on_wait:
        run = doctor_mod.run(
            opts,
            mode=mode.value if mode else None,
            only=_split(only, "--only"),
            skip=_split(skip, "--skip"),
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
        self.status: Spinner | None = None

    def __enter__(self) -> Callable[[list[str]], None] | None:
        return self.update if self.enabled else None

    def update(self, pending: list[str]) -> None:
        if self.status is None:
            from echopanel_setup import ui

            self.status = ui.spinner()
            self.status.start()
        self.status.update(f"probing: {', '.join(pending)}")

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()
