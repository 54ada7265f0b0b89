"""The retired per-user `echopanel.env`: earlier versions wrote it and EchoPanel never read it. configure offers to
carry the keys the provider reads into `.env` (the `.env`'s own lines win), then renames it `echopanel.env.migrated`."""

from __future__ import annotations

from echopanel_setup import paths
from echopanel_setup.configure.result import SELECTOR, VOXTRAL, Migration
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
