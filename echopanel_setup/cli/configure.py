"""`configure`: EchoPanel's settings written into its .env."""

from __future__ import annotations

from typing import Annotated

import typer

from echopanel_setup.cli.options import Checkout, CheckoutPython, MachineFacts, Mode, key
from echopanel_setup.errors import UsageError


def configure(
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="local/remote: a vLLM server; api: Mistral's hosted API (default: from the existing file, a server or "
            "tunnel of ours, else local where this machine can serve vLLM)."
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="ECHOPANEL_ASR_PROVIDER: voxtral_official, voxtral_realtime (voxtral.c), mlx_whisper or whisper_cpp.",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="The vLLM server, http://HOST:PORT (default: http://localhost:8001 in local mode)."
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        typer.Option(
            metavar="MS",
            help="Streaming delay: 240-1200 in steps of 80, or 2400 (default 480, or what the model dir serves).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        key(
            "API mode: the Mistral key to store in .env (- reads it from standard input). Default: none written; "
            "the provider falls back to MISTRAL_API_KEY in its environment."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Write this file (by EchoPanel's .env rules) instead of <checkout>/.env."),
    ] = None,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell",
            help="Print export lines for the shell that starts EchoPanel's backend (a key only as "
            "${MISTRAL_API_KEY}); writes nothing.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the values and the diff; write nothing.")] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask: write into the checkout found, migrate the old echopanel.env."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Select a provider variant known not to work, or a URL at EchoPanel's own port, anyway.",
        ),
    ] = False,
    echopanel: Checkout = None,
    echopanel_python: CheckoutPython = None,
    voxtral_bin: Annotated[
        str | None,
        typer.Option(
            metavar="PATH", help="voxtral_realtime: ECHOPANEL_VOXTRAL_BIN (default: what install voxtral-c built)."
        ),
    ] = None,
    voxtral_model: Annotated[
        str | None,
        typer.Option(
            metavar="DIR", help="voxtral_realtime: ECHOPANEL_VOXTRAL_MODEL (default: install voxtral's model dir)."
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="voxtral_realtime: ECHOPANEL_VOXTRAL_STREAMING_DELAY, voxtral.c's -I (encoder interval; 1.0-2.0 "
            "suits live use). Written only when given.",
        ),
    ] = None,
    facts: MachineFacts = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (secrets masked); it asks nothing (a checkout found by looking needs --yes).",
        ),
    ] = False,
) -> None:
    """Write EchoPanel's settings into <checkout>/.env, where its backend reads them, by its own .env rules.

    Only the keys the checkout's provider reads; every other line kept; atomic, locked, the previous version backed up
    in echopanel-setup's state dir; then read back: what EchoPanel will see, and which environment variables win.
    It asks GET /health at the URL it writes and says what answers there (vLLM, EchoPanel's own backend, nothing).

    Exit codes: 0 written or already up to date · 1 refused (a provider variant that cannot work, --mode api without an
    API path) · 2 bad value, no checkout, a target that is not a regular file, or no vLLM server known where this
    machine cannot serve one · 3 the disk is full.
    """
    from echopanel_setup.configure import render as configure_render
    from echopanel_setup.configure import runner as configure_mod
    from echopanel_setup.configure.result import ConfigureOptions

    if shell and json_out:
        raise UsageError("--shell and --json exclude each other: pick one")
    opts = ConfigureOptions(
        mode=mode.value if mode else None,
        provider=provider,
        url=url,
        delay_ms=delay_ms,
        api_key=api_key,
        output=output,
        facts=facts,
        shell=shell,
        dry_run=dry_run,
        yes=yes,
        force=force,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        voxtral_bin=voxtral_bin,
        voxtral_model=voxtral_model,
        interval=interval,
    )
    result = configure_mod.run(opts, configure_render.ConfigureUi(json_mode=json_out))
    configure_render.render(result, json_out=json_out)
    raise typer.Exit(result.exit_code)
