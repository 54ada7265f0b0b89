"""What `configure` shows: the plan (values, why each, warnings) before it writes, the outcome after; or the
export lines of `--shell`; or one JSON document. Secrets are masked everywhere."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from echopanel_setup import envconfig, output, ui
from echopanel_setup.configure import VOXTRAL, ConfigureResult, Plan, diff, is_literal_secret, masked, shell

if TYPE_CHECKING:
    from rich.console import Console

SCHEMA_VERSION = 1


class ConfigureUi:
    """configure's live side (configure.PlanUi): the plan on `out` before anything is written, and the
    question whether to write it — asked only where someone can answer (a terminal both ways)."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.con = ui.console(self.out)

    def show(self, plan: Plan) -> None:
        if not self.json_mode:
            _plan(plan, self.con)

    def confirm(self, plan: Plan) -> bool:
        if self.json_mode or not (sys.stdin.isatty() and self.out.isatty()):
            return True
        from rich.prompt import Confirm

        return Confirm.ask(f"Write {plan.path}?", default=True, console=self.con)


def to_document(r: ConfigureResult) -> dict[str, Any]:
    p = r.plan
    return output.document(
        "configure",
        SCHEMA_VERSION,
        r.exit_code,
        action=r.action,
        path=str(p.path),
        provider=p.provider,
        mode=p.mode,
        values={k: "****" if is_literal_secret(k, v) else v for k, v in p.values.items()},
        removed=p.removed,
        reasons=p.reasons,
        advice=[{"text": a.text, "commands": a.commands} for a in p.advice],
        changed=p.changed,
        private=p.secret,
        backup=str(r.backup) if r.backup else None,
        diff=diff(p),
    )


def render(r: ConfigureResult, json_out: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """The outcome (the plan itself was shown by ConfigureUi while configure ran)."""
    if json_out:
        output.write_json(to_document(r), out)
        return
    stream = out or sys.stdout
    if r.action == "shell":  # advice on stderr: `eval "$(echopanel-setup configure --shell)"` sees only exports
        for item in r.plan.advice:
            print(f"echopanel-setup: warning: {item.text} {' / '.join(item.commands)}".rstrip(), file=err or sys.stderr)
        stream.write(shell(r.plan))
        return
    con = ui.console(stream)
    if r.action == "dry-run":
        con.print(diff(r.plan) if r.plan.changed else "No change.\n", markup=False, end="")
        con.print("Dry run: nothing written.")
        return
    if r.action == "declined":
        con.print("Nothing written.")
        return
    if r.action == "unchanged":
        ui.outcome(con, "ok", f"{r.plan.path} is already up to date", word_width=6)
    else:
        kept = f"previous file kept as {r.backup}" if r.backup else "new file"
        ui.outcome(con, "ok", f"wrote {r.plan.path} ({'0600, ' if r.plan.secret else ''}{kept})", word_width=6)
    if r.plan.provider == VOXTRAL:
        con.print(
            'Next:     [cyan]echopanel-setup smoke[/]   ·   in a shell: [cyan]eval "$(echopanel-setup configure '
            '--shell)"[/]'
        )


def _plan(plan: Plan, con: Console) -> None:
    """The values and why each was chosen, then the warnings with their fixes."""
    con.print(f"[bold]echopanel-setup configure[/]  ·  {ui.esc(plan.path)}")
    why = plan.reasons.get("provider")
    con.print(f"Provider: {plan.provider}" + (f" ({ui.esc(why)})" if why else ""))
    if plan.mode:
        con.print(f"Mode:     {plan.mode} ({ui.esc(plan.reasons.get('mode', ''))})")
    for line in masked("".join(f"{k}={v}\n" for k, v in plan.values.items())).splitlines():
        con.print(f"  {ui.esc(line):<44} [dim]{ui.esc(plan.reasons.get(line.split('=', 1)[0], ''))}[/]")
    for key, why in plan.reasons.items():
        if key in envconfig.KEYS and key not in plan.values:  # decided, but nothing to write (e.g. in the environment)
            con.print(f"  {key} not written {'':<19} [dim]{ui.esc(why)}[/]")
    for key in plan.removed:
        con.print(f"  {key} removed {'':<25} [dim](absent = the vLLM server at {envconfig.URL})[/]")
    for item in plan.advice:
        ui.outcome(con, "warn", item.text, word_width=6)
        ui.advise(con, "", item.commands, indent=7)
