"""`explain` output: the first match with its cause and fix (and the others by name), or one JSON document."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, TextIO

from echopanel_setup import output
from echopanel_setup.explain import ExplainResult

SCHEMA_VERSION = 1


def to_document(result: ExplainResult) -> dict[str, Any]:
    return output.document(
        "explain",
        SCHEMA_VERSION,
        result.exit_code,
        recognised=bool(result.matches),
        matches=[asdict(m) for m in result.matches],
    )


def render(result: ExplainResult, json_out: bool, out: TextIO | None = None) -> None:
    if json_out:
        output.write_json(to_document(result), out)
        return
    from rich.markup import escape

    from echopanel_setup.report import console

    con = console(out or sys.stdout)
    if not result.matches:
        con.print("Not recognised: none of the known vLLM failures appears in this log.")
        con.print("Try `echopanel-setup doctor`, and include the last 50 lines of the log in a bug report.")
        return
    first, *others = result.matches
    con.print(f"[bold red]{escape(first.title)}[/]  ({first.id}, line {first.line_no})")
    con.print(f"  [dim]{escape(first.line)}[/]")
    con.print(f"Cause: {escape(first.cause)}")
    con.print(f"Fix:   {escape(first.fix)}")
    for cmd in first.commands:
        con.print(f"       [cyan]{escape(cmd)}[/]")
    if first.suggestion:
        con.print(f"Try:   [cyan]{escape(first.suggestion)}[/]")
    for m in others:
        con.print(f"Also in the log: {escape(m.title)} ({m.id}, line {m.line_no})")
