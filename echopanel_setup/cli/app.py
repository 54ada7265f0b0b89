"""The root app and the table of its commands: a run imports and builds only the command it names.

Typer turns a command's signature into Click objects when the app runs (~20 ms for all of ours); a run of `doctor`
needs only doctor's. Each command lives in its own module of this package: a plain command is the function named
like the module, a group (`install`, `serve`, ...) is the module's `app`. A new command is one module and one name
in COMMANDS or GROUPS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated

import typer

from echopanel_setup import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

SETTINGS = {
    "name": "echopanel-setup",
    "help": "Get EchoPanel transcribing live with Voxtral Realtime: check, install, serve, smoke-test, configure.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}
# In the order `--help` lists them (Typer lists the plain commands before the groups).
COMMANDS = ("doctor", "explain", "smoke", "watch", "configure", "setup")
GROUPS = ("install", "serve", "provider", "tunnel")


def _version(value: bool) -> None:
    if value:
        print(f"echopanel-setup {__version__}")
        raise typer.Exit()


def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Get EchoPanel transcribing live with Voxtral Realtime: check, install, serve, smoke-test, configure."""


def _root() -> typer.Typer:
    root = typer.Typer(**SETTINGS)  # type: ignore[arg-type]
    root.callback()(_main)
    return root


def _add(root: typer.Typer, name: str) -> None:
    module = importlib.import_module(f"echopanel_setup.cli.{name}")
    if name in GROUPS:
        root.add_typer(module.app, name=name)
    else:
        root.command()(getattr(module, name))


def whole() -> typer.Typer:
    """The app with every command, as `--help` lists them."""
    root = _root()
    for name in COMMANDS + GROUPS:
        _add(root, name)
    return root


def app_for(args: list[str]) -> typer.Typer:
    """The app to run: only the command named in `args` when there is one.

    `--help`, `--version` and unknown names get every command (as option-less stand-ins, `listing`), so the listing
    and Click's "No such command" stay as they are.
    """
    name = args[0] if args and not args[0].startswith("-") else None
    if name not in COMMANDS + GROUPS:
        return listing(whole())
    single = _root()
    _add(single, name)
    return single


def listing(full: typer.Typer) -> typer.Typer:
    """`full` with every command's callback replaced by an option-less stand-in carrying its name and docstring.

    With no command named (`--help`, `--version`, a bare run, a mistyped name) Click needs each command's name and
    help, not its options; building those is most of the root help's cost. A test pins that the help is the same."""
    return _light(full, root=True)


def _light(full: typer.Typer, root: bool) -> typer.Typer:
    import copy

    def bare(callback: Callable[..., object]) -> Callable[[], None]:
        def nothing() -> None:
            """Stand-in: never run."""

        nothing.__name__, nothing.__doc__ = callback.__name__, callback.__doc__
        return nothing

    light = copy.copy(full)
    light.registered_commands = []
    for command in full.registered_commands:
        light.registered_commands.append(copy.copy(command))
        light.registered_commands[-1].callback = bare(command.callback)  # type: ignore[arg-type]
    if full.registered_callback is not None and not root:  # the root keeps its eager --version
        light.registered_callback = copy.copy(full.registered_callback)
        light.registered_callback.callback = bare(full.registered_callback.callback)  # type: ignore[arg-type]
    light.registered_groups = []
    for group in full.registered_groups:
        light.registered_groups.append(copy.copy(group))
        light.registered_groups[-1].typer_instance = _light(group.typer_instance, root=False)  # type: ignore[arg-type]
    return light
