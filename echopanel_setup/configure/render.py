"""What `configure` shows: the plan (values, why each, notes, warnings) before it writes, then what EchoPanel's backend
will see; or the export lines of `--shell`; or one JSON document. Secrets are masked everywhere."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from echopanel_setup import output, ui
from echopanel_setup.configure.result import URL, VOXTRAL, ConfigureResult, Plan
from echopanel_setup.configure.write import diff, masked, shell, shown

if TYPE_CHECKING:
    from rich.console import Console

    from echopanel_setup.echopanel.settings import ReadBack

SCHEMA_VERSION = 2


class ConfigureUi:
    """configure's live side (result.PlanUi): the plan on `out` before anything is written, and the questions —
    asked only where someone can answer (a terminal both ways, not --json)."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.con = ui.console(self.out)

    @property
    def interactive(self) -> bool:
        return not self.json_mode and sys.stdin.isatty() and self.out.isatty()

    def show(self, plan: Plan) -> None:
        if not self.json_mode:
            _plan(plan, self.con)

    def confirm(self, plan: Plan) -> bool:
        if not self.interactive:
            return True
        return self.ask(f"Write {plan.path}?", default=True)

    def ask(self, question: str, default: bool = False) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(ui.esc(question), default=default, console=self.con)

    def preview(self, text: str) -> None:
        if not self.json_mode and text:
            self.con.print(text, markup=False, highlight=False, end="" if text.endswith("\n") else "\n")


def _seen(readback: ReadBack | None) -> dict[str, Any]:
    if readback is None:
        return {}
    return {k: {"value": s.value, "source": s.source} for k, s in readback.seen.items()}


def to_document(r: ConfigureResult) -> dict[str, Any]:
    p, rb = r.plan, r.readback
    return output.document(
        "configure",
        SCHEMA_VERSION,
        r.exit_code,
        action=r.action,
        path=str(p.path) if p.path else None,
        checkout=str(p.checkout.path) if p.checkout else None,
        provider=p.provider,
        variant=p.variant,
        mode=p.mode,
        values={k: shown(k, v) for k, v in p.values.items()},
        removed=p.removed,
        not_written=p.dropped,
        reasons=p.reasons,
        notes=p.notes,
        advice=[{"text": a.text, "commands": a.commands} for a in p.advice],
        changed=p.changed,
        private=p.secret,
        backup=str(r.backup) if r.backup else None,
        diff=diff(p),
        echopanel_sees=_seen(rb),
        other_keys=rb.other_keys if rb else None,
        overridden_by_environment=rb.overridden_by_environment if rb else [],
        migrated_from=str(p.migration.source) if p.migration and p.migration.retired_to else None,
        provider_fixed=str(r.fixed_provider) if r.fixed_provider else None,
        server=p.server.to_dict() if p.server else None,
    )


def render(r: ConfigureResult, json_out: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """The outcome (the plan itself was shown by ConfigureUi while configure ran)."""
    if json_out:
        output.write_json(to_document(r), out)
        return
    stream = out or sys.stdout
    if r.action == "shell":  # notes on stderr: `eval "$(echopanel-setup configure --shell)"` sees only exports
        for text in [*r.plan.notes, *(f"{a.text} {' / '.join(a.commands)}".rstrip() for a in r.plan.advice)]:
            print(f"echopanel-setup: note: {ui.clean(text)}", file=err or sys.stderr)
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
        kept = f"previous version kept as {r.backup}" if r.backup else "new file"
        ui.outcome(con, "ok", f"wrote {r.plan.path} ({kept})", word_width=6)
    migration = r.plan.migration
    if migration is not None and migration.retired_to is not None:
        con.print(f"Retired {ui.esc(migration.source)} → {ui.esc(migration.retired_to.name)} (EchoPanel never read it)")
    if r.readback is not None:
        _readback(r.readback, r.plan.updates, con)
    if r.plan.provider == VOXTRAL:
        con.print(
            "Next:     [cyan]echopanel-setup smoke --client echopanel[/]  (what EchoPanel's provider really gets)"
        )


def _readback(rb: ReadBack, written: dict[str, str | None], con: Console) -> None:
    """What EchoPanel's backend will hold, read back with its own parser, for the keys that are set or that configure
    wrote or removed: the value and where it comes from."""
    con.print("EchoPanel will see (read back with its own .env rules):")
    for key, seen in rb.seen.items():
        if seen.value is None and written.get(key) is None:  # unset, and configure did not set it
            continue
        value = "(unset: the provider's default)" if seen.value is None else repr(seen.value)
        where = {"environment": "from the environment: it wins over .env", "file": "from .env"}.get(seen.source, "")
        con.print(f"  {ui.esc(f'{key}={value}'):<56} [dim]{where}[/]")
    con.print(f"  [dim]{rb.other_keys} other key{'s' if rb.other_keys != 1 else ''} in the file, left as they were[/]")
    if rb.overridden_by_environment:
        names = ", ".join(rb.overridden_by_environment)
        ui.outcome(
            con,
            "warn",
            f"set in this environment, so they win over .env if EchoPanel's backend starts from here: {names}",
            word_width=6,
        )
    for note in rb.notes:
        ui.outcome(con, "warn", note, word_width=6)
    if rb.unread:
        con.print(f"  [dim]in the file but not read by this provider: {ui.esc(', '.join(rb.unread))}[/]")


def _plan(plan: Plan, con: Console) -> None:
    """The target, the values and why each was chosen, the notes, then the warnings with their fixes."""
    where = f"{plan.path}" + (
        f"  ·  {plan.checkout.how}" if plan.checkout and plan.path == plan.checkout.env_file else ""
    )
    con.print(f"[bold]echopanel-setup configure[/]  ·  {ui.esc(where)}")
    why = plan.reasons.get("provider")
    con.print(f"Provider: {plan.provider}" + (f" ({ui.esc(why)})" if why else ""))
    con.print(f"          [dim]{ui.esc(plan.variant)}[/]")
    if plan.mode:
        con.print(f"Mode:     {plan.mode} ({ui.esc(plan.reasons.get('mode', ''))})")
    for line in masked("".join(f"{k}={v}\n" for k, v in plan.values.items())).splitlines():
        con.print(f"  {ui.esc(line):<44} [dim]{ui.esc(plan.reasons.get(line.split('=', 1)[0], ''))}[/]")
    for key, why in plan.reasons.items():
        if key not in ("provider", "mode") and key not in plan.values:  # decided, nothing written (e.g. environment)
            con.print(f"  {key} not written {'':<19} [dim]{ui.esc(why)}[/]")
    for key in plan.removed:
        con.print(f"  {key} removed {'':<25} [dim](not used with a vLLM server at {URL})[/]")
    for note in plan.notes:
        ui.outcome(con, "run", note, word="note", word_width=6)
    for item in plan.advice:
        ui.outcome(con, "warn", item.text, word_width=6)
        ui.advise(con, "", item.commands, indent=7)
