"""`explain` output: the first match with its cause and fix (and the others by name), or one JSON document."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, TextIO

from echopanel_setup import output, ui
from echopanel_setup.explain import ExplainResult

SCHEMA_VERSION = 1


def to_document(result: ExplainResult) -> dict[str, Any]:
    return output.document(
        "explain",
        SCHEMA_VERSION,
        result.exit_code,
        recognised=bool(result.matches),
        matches=[asdict(m) for m in result.matches],
        searched={"bytes": result.searched_bytes, "log_bytes": result.log_bytes, "tail_only": result.tail_only},
    )


def render(result: ExplainResult, json_out: bool, out: TextIO | None = None) -> None:
    if json_out:
        output.write_json(to_document(result), out)
        return
    con = ui.console(out or sys.stdout)
    if not result.matches:
        con.print("Not recognised: none of the known vLLM failures appears in this log.")
        con.print("Try `echopanel-setup doctor`, and include the last 50 lines of the log in a bug report.")
        return
    first, *others = result.matches
    ui.explained(con, first)
    for m in others:
        con.print(f"Also in the log: {ui.esc(m.title)} ({m.id}, line {m.line_no})")
    if result.tail_only and result.log_bytes:
        con.print(
            f"[dim]Searched the last {result.searched_bytes / 1e6:.1f} MB of this {result.log_bytes / 1e6:.1f} MB log, "
            "where it ends; --full searches all of it.[/]"
        )
