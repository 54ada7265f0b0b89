"""`watch`: a running server's streams, queue and sessions, live or once."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from echopanel_setup.cli.options import EnvFile, key, server_url
from echopanel_setup.url import ServerURL


def watch(
    url: Annotated[
        ServerURL | None,
        server_url("The vLLM server (default: the one `serve` started, else VOXTRAL_VLLM_URL, else localhost)."),
    ] = None,
    api_key: Annotated[
        str | None,
        key("vLLM's --api-key for /v1/models (default: VLLM_API_KEY; '-' reads it from stdin). Never printed."),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Seconds between samples (default 5; --once: 2, or 0 for one sample)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Take what one verdict needs (two samples an interval apart), report, exit.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option("--for", metavar="SECONDS", help="Stop after this many seconds.")
    ] = None,
    config: EnvFile = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="--once: one JSON document; live: one JSON line per sample (NDJSON)."),
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show the formula behind each figure.")] = False,
) -> None:
    """Watch a running server: are EchoPanel's streams keeping up, is anything queued, when do sessions end.

    Exit codes: 0 healthy (warnings allowed) · 1 a verdict failed at some sample · 2 bad input · 3 the server
    was unreachable at the end.
    """
    from echopanel_setup import env, output
    from echopanel_setup.watch import render, runner

    opts = runner.WatchOptions(
        url=url,
        api_key=api_key,
        vllm_api_key=env.vllm_api_key(),
        interval=interval,
        once=once,
        duration=duration,
        config=config,
    )
    if once:
        result = runner.run(opts)
    elif json_out:
        result = runner.run(opts, lambda tick, r: output.write_line(render.tick_line(tick, r)))
    elif sys.stdout.isatty():
        with render.live_view(verbose) as show:
            result = runner.run(opts, show)
    else:
        result = runner.run(opts, lambda tick, r: print(render.plain_line(tick, sys.stdout), flush=True))
    if once and json_out:
        output.write_json(render.to_document(result))
    elif once:
        render.render_once(result, verbose)
    elif json_out:
        output.write_line(render.end_line(result))
    raise typer.Exit(result.exit_code)
