"""What `setup` shows: each step line as it happens (setup takes minutes, and the commands it runs print their
own progress in between), and under --json one document at the end with every step."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, TextIO

from echopanel_setup import output, ui
from echopanel_setup.checks import Fix
from echopanel_setup.setup_flow import SetupResult, Step

SCHEMA_VERSION = 1
_STATUS = {"done": "ok", "skip": "skip", "stop": "fail", "warn": "warn", "run": "run"}  # a step's state: its ui status


class SetupUi:
    """setup's live side (setup_flow.FlowUi). Under --json the lines go to stderr: stdout holds the document."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = sys.stderr if json_mode else (out or sys.stdout)
        self.con = ui.console(self.out)

    def begin(self) -> None:
        self.con.print(
            "[bold]echopanel-setup setup[/]  ·  doctor → install vllm → install voxtral → serve → smoke → provider → "
            "configure → smoke echopanel"
        )

    def step(self, step: Step) -> None:
        ui.outcome(
            self.con, _STATUS[step.state], step.text, word=step.state, word_width=5, label=step.step, label_width=16
        )

    def fix(self, fix: Fix) -> None:
        ui.advise(self.con, fix.text, fix.commands, indent=8)

    def confirm(self, question: str) -> bool:
        """Ask on a terminal; under --json or without one, nobody can answer: no."""
        if self.json_mode or not sys.stdin.isatty():
            return False
        from rich.prompt import Confirm

        return Confirm.ask(ui.esc(question), console=self.con, default=False)

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
