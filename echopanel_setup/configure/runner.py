"""`configure`'s run: find the target, plan, show, confirm (unless --yes), write under the lock, read back what
EchoPanel will see. Questions go through the `PlanUi` (render.ConfigureUi); the outcome is a `ConfigureResult`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from echopanel_setup.configure import migrate
from echopanel_setup.configure.plan import check_values, make_plan
from echopanel_setup.configure.result import SELECTOR, ConfigureOptions, ConfigureResult, Fixable, Plan, PlanUi
from echopanel_setup.configure.write import apply, require_target, target_path
from echopanel_setup.echopanel import discover, settings
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import Facts


def collect_facts(opts: ConfigureOptions, checkout: discover.Checkout | None) -> Facts:
    """What doctor knows (offline: no network), or a saved snapshot when --facts is given."""
    from echopanel_setup import doctor
    from echopanel_setup.facts.collect import Options, collect

    if opts.facts:
        return doctor.load_facts(opts.facts)
    path = target_path(opts, checkout)
    return collect(
        Options(
            offline=True,
            config=str(path) if path else None,
            echopanel=str(checkout.path) if checkout else None,
            echopanel_python=opts.echopanel_python,
        )
    )


def _confirm_checkout(opts: ConfigureOptions, checkout: discover.Checkout | None, ui: PlanUi) -> bool:
    """A checkout found by looking around (not named by --echopanel/ECHOPANEL_HOME) is shown and confirmed before
    anything is written into it; --yes skips the question, and without anyone to ask configure refuses."""
    if checkout is None or checkout.named_by_user or opts.output or opts.shell or opts.dry_run or opts.yes:
        return True
    if not ui.interactive:
        raise UsageError(
            f"found {discover.describe(checkout)}: confirm writing its .env with --yes, or name it with --echopanel "
            f"{checkout.path}"
        )
    return ui.ask(f"Write EchoPanel's settings into {checkout.env_file}?")


def _offer_fix(opts: ConfigureOptions, checkout: discover.Checkout | None, ui: PlanUi, refused: Fixable) -> Path:
    """The provider cannot work as it is: offer `provider fix` (its diff first), and apply it only with a yes — never
    on --yes alone, never without someone to ask."""
    from echopanel_setup.provider import command as pc

    if checkout is None or opts.shell or opts.dry_run or not ui.interactive:
        raise refused
    if not ui.ask(f"{refused}. Install echopanel-setup's working provider now (`provider fix`; the diff comes first)?"):
        raise refused
    fix = pc.ProviderOptions(
        action="fix", provider=refused.provider, echopanel=str(checkout.path), echopanel_python=opts.echopanel_python
    )
    done = pc.run(fix, ask=ui.ask, show=lambda r: ui.preview(r.diff or ""))
    if done.exit_code != 0 or done.orig is None:
        raise settings.Refused(f"`provider fix` did not apply: {done.reason or done.outcome}")
    return done.orig


def run(
    opts: ConfigureOptions,
    ui: PlanUi,
    *,
    facts: Facts | None = None,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
) -> ConfigureResult:
    """Find the target, plan, show, confirm (unless --yes), write under the lock, read back what EchoPanel sees."""
    environ = os.environ if environ is None else environ
    check_values(opts)
    checkout = discover.find(opts.echopanel, environ, Path.cwd(), Path.home())
    facts = facts or collect_facts(opts, checkout)
    require_target(opts, checkout, facts.platform.system)
    if not _confirm_checkout(opts, checkout, ui):
        return ConfigureResult(plan=_empty_plan(checkout), action="declined")
    migration = migrate.offer(opts, checkout, ui)
    fixed = None
    try:
        plan = make_plan(opts, facts, environ, checkout, migration, stdin)
    except Fixable as refused:
        fixed = _offer_fix(opts, checkout, ui, refused)
        plan = make_plan(opts, facts, environ, checkout, migration, stdin)
    if opts.shell:
        return ConfigureResult(plan=plan, action="shell", fixed_provider=fixed)
    ui.show(plan)
    if opts.dry_run:
        return ConfigureResult(plan=plan, action="dry-run", fixed_provider=fixed)
    assert plan.path is not None
    backup, action = None, "unchanged"
    if plan.changed:
        if not opts.yes and opts.api_key != "-" and not ui.confirm(plan):  # a key piped on stdin: no one to ask
            return ConfigureResult(plan=plan, action="declined", fixed_provider=fixed)
        backup, changed = apply(plan)
        action = "written" if changed else "unchanged"
    migrate.retire(migration)
    readback = settings.read_back(plan.path, plan.managed, environ, plan.chosen)
    return ConfigureResult(plan=plan, action=action, backup=backup, readback=readback, fixed_provider=fixed)


def _empty_plan(checkout: discover.Checkout | None) -> Plan:
    """The plan of a run declined before planning (the user said no to the checkout found)."""
    return Plan(
        path=checkout.env_file if checkout else None,
        checkout=checkout,
        provider="",
        variant="",
        mode=None,
        reasons={},
        updates={},
        dropped=[],
        managed=[SELECTOR],
        advice=[],
        notes=[],
        old_text="",
        new_text="",
    )
