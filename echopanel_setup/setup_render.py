"""What `setup` shows: each step line as it happens (setup takes minutes, and the commands it runs print their
own progress in between), and under --json one document at the end with every step."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, TextIO

from rich.markup import escape

from echopanel_setup import output
from echopanel_setup.checks import Fix
from echopanel_setup.report import console
from echopanel_setup.setup_flow import SetupResult, Step

SCHEMA_VERSION = 1
_LOOK = {
    "done": ("✓", "green"),
    "skip": ("–", "dim"),
    "stop": ("✗", "bold red"),
    "warn": ("!", "yellow"),
    "run": ("→", "cyan"),
}


class SetupUi:
    """setup's live side (setup_flow.FlowUi). Under --json the lines go to stderr: stdout holds the document."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = sys.stderr if json_mode else (out or sys.stdout)
        self.con = console(self.out)

    def begin(self) -> None:
        self.con.print(
            "[bold]echopanel-setup setup[/]  ·  doctor → install vllm → install voxtral → serve → smoke → provider → "
            "configure → smoke echopanel"
        )

    def step(self, step: Step) -> None:
        symbol, style = _LOOK[step.state]
        self.con.print(f"[{style}]{symbol} {step.state:<4}[/]  {step.step:<16} {escape(step.text)}")

    def fix(self, fix: Fix) -> None:
        if fix.text:
            self.con.print(f"          {escape(fix.text)}")
        for command in fix.commands:
            self.con.print(f"          [cyan]{escape(command)}[/]")

    def confirm(self, question: str) -> bool:
        """Ask on a terminal; under --json or without one, nobody can answer: no."""
        if self.json_mode or not sys.stdin.isatty():
            return False
        from rich.prompt import Confirm

        return Confirm.ask(escape(question), console=self.con, default=False)

    def set_up(self, foreground: bool) -> None:
        self.con.print(
            "[green]Voxtral is set up for EchoPanel.[/] Re-check any time with [cyan]echopanel-setup doctor[/]."
        )
        if foreground:
            self.con.print("vLLM keeps running in the foreground (Ctrl-C stops it).")


def to_document(r: SetupResult) -> dict[str, Any]:
    return output.document(
        "setup", SCHEMA_VERSION, r.exit_code, status=r.status, mode=r.mode, steps=[asdict(s) for s in r.steps]
    )


def render(r: SetupResult, json_out: bool, out: TextIO | None = None) -> None:
    """The document under --json; human output was all shown live by SetupUi."""
    if json_out:
        output.write_json(to_document(r), out)
