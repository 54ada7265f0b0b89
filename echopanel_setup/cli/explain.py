"""`explain LOG`: a known vLLM failure named, with its fix."""

from __future__ import annotations

from typing import Annotated

import typer


def explain(
    logfile: Annotated[
        str, typer.Argument(help="A vLLM log or traceback file (plain or .gz), or - for standard input.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Search the whole log, also when its last 4 MiB explain the failure.")
    ] = False,
) -> None:
    """Name a known vLLM failure in a log and say how to fix it. Exit 0 recognised, 1 not recognised."""
    from echopanel_setup import explain_render
    from echopanel_setup.explain import ExplainOptions, run

    result = run(ExplainOptions(log=logfile, full=full))
    explain_render.render(result, json_out=json_out)
    raise typer.Exit(result.exit_code)
