"""The retired per-user `echopanel.env`: earlier versions wrote it and EchoPanel never read it. configure offers to
carry the keys the provider reads into `.env` (the `.env`'s own lines win), then renames it `echopanel.env.migrated`."""

from __future__ import annotations

from echopanel_setup import paths
from echopanel_setup.configure.result import SELECTOR, VOXTRAL, ConfigureOptions, Migration, PlanUi
from echopanel_setup.configure.write import target_path
from echopanel_setup.echopanel import contract as contract_mod
from echopanel_setup.echopanel import discover, dotenv, settings


def legacy_migration(checkout: discover.Checkout | None, name: str | None) -> Migration | None:
    """The per-user `echopanel.env` earlier versions wrote, when it exists and holds keys the provider reads."""
    legacy = paths.legacy_echopanel_env()
    if not legacy.is_file():
        return None
    try:
        old = dotenv.read(legacy).values
    except OSError:
        return None
    chosen_name = name or old.get(SELECTOR) or VOXTRAL
    contract = contract_mod.read(checkout.path, [*contract_mod.VOXTRAL_PROVIDERS, chosen_name]) if checkout else None
    return Migration(legacy, settings.migratable(old, settings.provider(chosen_name, contract)))


def offer(opts: ConfigureOptions, checkout: discover.Checkout | None, ui: PlanUi) -> Migration | None:
    """The retired file, if any, and whether to carry it: --yes, or a yes from someone at a terminal. --shell prints
    exports and never migrates; --dry-run shows the plan without it."""
    migration = None if opts.shell else legacy_migration(checkout, opts.provider)
    if migration is not None and not opts.dry_run:
        carry = f"Carry {', '.join(migration.values)} from" if migration.values else "Nothing to carry from"
        migration.accepted = opts.yes or (
            ui.interactive
            and ui.ask(
                f"{carry} the retired {migration.source} (EchoPanel never read it) into "
                f"{target_path(opts, checkout)}; rename it {migration.source.name}.migrated?"
            )
        )
    return migration


def retire(migration: Migration | None) -> None:
    """After the write: an accepted migration's file becomes `echopanel.env.migrated` (never deleted)."""
    if migration is not None and migration.accepted:
        migration.retired_to = settings.retire(migration.source)
