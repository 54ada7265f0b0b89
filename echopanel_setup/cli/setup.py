"""`setup`: the guided path through every other command."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from echopanel_setup.cli.options import Checkout, CheckoutPython, MachineFacts, Mode, key, server, server_url
from echopanel_setup.url import ServerURL


class SetupProvider(str, Enum):
    voxtral_official = "voxtral_official"
    voxtral_realtime = "voxtral_realtime"


def setup(
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="local (vLLM here), remote (a vLLM server elsewhere) or api (Mistral). Default: from the config, else "
            "the hardware."
        ),
    ] = None,
    url: Annotated[
        ServerURL | None,
        server_url("The vLLM server (remote mode), or the API's base URL (api mode)."),
    ] = None,
    api_key: Annotated[
        str | None,
        key(
            "The vLLM server's --api-key, or the Mistral key in api mode (stored in EchoPanel's config, 0600); "
            "- reads it from standard input."
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        typer.Option(metavar="MS", help="Streaming delay for serve and configure (240-1200 in steps of 80, or 2400)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Answer yes to the installers and to configure.")] = False,
    exec_: Annotated[
        bool, typer.Option("--exec", help="Start vLLM in the foreground; it keeps running after setup.")
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Start vLLM in the background (serve --detach).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run doctor and say what each step would do; change nothing.")
    ] = False,
    python: Annotated[str | None, typer.Option(metavar="PATH", help="The Python (or venv) that runs vLLM.")] = None,
    facts: MachineFacts = None,
    offline: Annotated[
        bool,
        typer.Option(
            help="Ask nothing of Hugging Face or the Mistral API and download nothing; the vLLM server is still asked."
        ),
    ] = False,
    echopanel: Checkout = None,
    echopanel_python: CheckoutPython = None,
    provider: Annotated[
        SetupProvider | None,
        typer.Option(
            help="voxtral_realtime: Voxtral on this machine with voxtral.c (install voxtral-c, install voxtral, "
            "provider, configure, smoke); default: the provider EchoPanel selects.",
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document with every step; the steps' progress goes to stderr."),
    ] = False,
) -> None:
    """The guided path: doctor → install → serve → smoke → provider → configure → smoke echopanel; done steps skipped.

    Stops at the first blocker with its fix. On an Apple Silicon Mac it offers voxtral.c first (--provider
    voxtral_realtime), then --mode remote or api; without an NVIDIA GPU it points to --mode remote or api.
    Exit codes: 0 set up · 1 stopped at a step (its fix is printed) · 2 bad input · 3 external failure.
    """
    from echopanel_setup import setup_flow, setup_render

    opts = setup_flow.SetupOptions(
        **server(mode, url, api_key),
        delay_ms=delay_ms,
        yes=yes,
        exec_=exec_,
        detach=detach,
        dry_run=dry_run,
        facts=facts,
        offline=offline,
        python=python,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        provider=provider.value if provider else None,
    )
    result = setup_flow.run(opts, setup_render.SetupUi(json_mode=json_out))
    setup_render.render(result, json_out=json_out)
    raise typer.Exit(result.exit_code)
