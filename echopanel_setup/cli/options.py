"""Option types and values more than one command declares: one declaration each, so every command spells them alike."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from echopanel_setup import env
from echopanel_setup.errors import UsageError
from echopanel_setup.url import ServerURL


class Mode(str, Enum):
    local = "local"
    remote = "remote"
    api = "api"


ProviderName = Annotated[
    str,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="The EchoPanel provider: voxtral_official (vLLM, the default) or voxtral_realtime (voxtral.c).",
    ),
]
Checkout = Annotated[
    str | None,
    typer.Option(
        "--echopanel",
        metavar="PATH",
        help="EchoPanel's checkout (default: ECHOPANEL_HOME, the current directory or a parent, ~/EchoPanel, "
        "~/Projects/EchoPanel, ~/src/EchoPanel, ~/code/EchoPanel).",
    ),
]
CheckoutPython = Annotated[
    str | None,
    typer.Option(
        "--echopanel-python",
        metavar="PYTHON",
        help="The Python (or venv) EchoPanel's backend runs on (default: <checkout>/.venv).",
    ),
]
EnvFile = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="An EchoPanel .env to read, by EchoPanel's rules (default: the checkout's .env; its environment wins).",
    ),
]
VllmPython = Annotated[str | None, typer.Option(help="The Python (or venv) that runs vLLM.")]
ModelDir = Annotated[str | None, typer.Option(help="Where the model is (default: where `install voxtral` put it).")]
# A `doctor --save-facts` snapshot read instead of probing: the installers decide from it, configure and setup take
# the machine's facts from it.
DecideFrom = Annotated[
    str | None,
    typer.Option(metavar="FILE", help="Decide from a saved doctor facts snapshot instead of probing this machine."),
]
MachineFacts = Annotated[
    str | None,
    typer.Option(metavar="FILE", help="Take the machine's facts from a saved doctor snapshot instead of probing."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else on stdout.")]
JsonWithProgress = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (progress and notes go to stderr).")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the diff; write nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (after the diff).")]
Force = Annotated[bool, typer.Option("--force", help="Also over a file echopanel-setup does not recognise.")]


def server_url(help: str) -> Any:
    """`--url URL` for a vLLM server (or the API's base URL), parsed once into a ServerURL: http(s):// or ws(s)://."""
    return typer.Option(parser=ServerURL.parse, metavar="URL", help=help)


def key(help: str) -> Any:
    """`--api-key KEY`: a key or token, never printed."""
    return typer.Option(metavar="KEY", help=help)


def refuse_group_options(ctx: typer.Context) -> None:
    """`serve --json status` must not drop --json silently: a subcommand's options come after its name.

    For every command group whose own callback takes options (`serve`, and later `tunnel`, `watch`)."""
    given = [
        p.opts[0]
        for p in ctx.command.params
        if p.name and getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    ]
    if given:
        sub = f"{ctx.info_name} {ctx.invoked_subcommand}"
        raise UsageError(
            f"{', '.join(given)} before `{ctx.invoked_subcommand}`: give `{sub}` its options after its name "
            f"(see `echopanel-setup {sub} --help`)"
        )


def server(mode: Mode | None, url: ServerURL | None, api_key: str | None) -> dict[str, Any]:
    """The server fields smoke's and setup's options share: the mode, the URL and key given, and VLLM_API_KEY (read
    here, at the edge, never inside the logic)."""
    key = api_key if api_key == "-" else env.header_value(api_key, "--api-key")  # "-": read from stdin later
    return {"mode": mode.value if mode else None, "url": url, "api_key": key, "vllm_api_key": env.vllm_api_key()}
