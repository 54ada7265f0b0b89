"""`provider check|fix|revert`: EchoPanel's Voxtral provider file."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from echopanel_setup.cli.options import Checkout, CheckoutPython, DryRun, Force, Json, ProviderName, Yes
from echopanel_setup.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

app = typer.Typer(
    help="EchoPanel's Voxtral providers (voxtral_official, voxtral_realtime): check one, replace it with one that "
    "works (fix), put it back (revert).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("check")
def provider_check(
    provider: ProviderName = "voxtral_official",
    echopanel: Checkout = None,
    echopanel_python: CheckoutPython = None,
    json_out: Json = False,
) -> None:
    """What EchoPanel's provider is, and whether it can work. Exit 1 when it cannot."""
    _provider("check", provider, echopanel, echopanel_python, json_out, False, False, False)


def _writer(action: str, doc: str) -> Callable[..., None]:
    """`fix` and `revert` take the same options: one signature, told apart by the action and the help."""

    def command(
        provider: ProviderName = "voxtral_official",
        echopanel: Checkout = None,
        echopanel_python: CheckoutPython = None,
        dry_run: DryRun = False,
        yes: Yes = False,
        force: Force = False,
        json_out: Json = False,
    ) -> None:
        _provider(action, provider, echopanel, echopanel_python, json_out, dry_run, yes, force)

    command.__name__, command.__doc__ = f"provider_{action}", doc
    return command


app.command("fix")(
    _writer(
        "fix",
        """Replace EchoPanel's provider with echopanel-setup's realtime one (the original is kept as .orig).

    Exit codes: 0 done (or nothing to do) · 1 refused, declined, or the new provider does not load · 2 bad input.
    """,
    )
)
app.command("revert")(
    _writer(
        "revert",
        "Put EchoPanel's original provider back, byte for byte. Exit 1 if it changed since `fix` (--force overrides).",
    )
)


def _provider(
    action: str,
    provider: str,
    echopanel: str | None,
    echopanel_python: str | None,
    json_out: bool,
    dry_run: bool,
    yes: bool,
    force: bool,
) -> None:
    from echopanel_setup import output
    from echopanel_setup.provider import command, render

    opts = command.ProviderOptions(
        action=action,
        provider=provider,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        dry_run=dry_run,
        yes=yes,
        force=force,
    )

    def ask(question: str) -> bool:
        if json_out or not sys.stdin.isatty():
            raise UsageError(
                f"`provider {action}` asks before writing: pass --yes to apply, or --dry-run to see the diff"
            )
        return typer.confirm(question, default=False, err=True)

    result = command.run(opts, ask=ask, show=None if json_out else render.show_diff)
    if json_out:
        output.write_json(render.to_document(result))
    else:
        render.render_human(result)
    raise typer.Exit(result.exit_code)
