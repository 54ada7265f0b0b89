"""`smoke`: a clip transcribed through the server (or EchoPanel's provider, or voxtral.c), scored."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from echopanel_setup import env
from echopanel_setup.cli.options import Checkout, CheckoutPython, EnvFile, Mode, key, server, server_url
from echopanel_setup.errors import UsageError
from echopanel_setup.url import ServerURL

if TYPE_CHECKING:
    from echopanel_setup.smoke.runner import SmokeOptions
    from echopanel_setup.vllm_client import Tls


class Client(str, Enum):
    echopanel = "echopanel"
    realtime = "realtime"
    voxtral_c = "voxtral-c"


def smoke(
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="local/remote: a vLLM server; api: Mistral's hosted API (default: from the EchoPanel config)."
        ),
    ] = None,
    url: Annotated[
        ServerURL | None,
        server_url(
            "The vLLM server (http(s):// or ws(s)://); alone, no config is needed. In api mode: the API's base URL."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        key("vLLM's --api-key (default: VLLM_API_KEY), or the Mistral key in api mode. Never printed."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The model name to ask for (default: the one the server serves; in api mode the pinned API model).",
        ),
    ] = None,
    audio: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Your own WAV or FLAC (any rate, any channels) instead of the bundled clip."),
    ] = None,
    expect: Annotated[
        str | None, typer.Option(metavar="TEXT", help="The words spoken in --audio, to score it.")
    ] = None,
    max_wer: Annotated[
        float | None,
        typer.Option(min=0.0, metavar="X", help="Fail (exit 1) above this word error rate (default 0.3)."),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Send the audio at full speed instead of pacing it like a live microphone.")
    ] = False,
    http: Annotated[
        bool,
        typer.Option(
            "--http", help="Use the one-shot HTTP route /v1/audio/transcriptions instead of the realtime WebSocket."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            metavar="SECONDS",
            help="Seconds to wait for the transcript after the end of the audio (default 30); the whole exchange "
            "gets one deadline: the session's start, the audio's length and this.",
        ),
    ] = None,
    config: EnvFile = None,
    client: Annotated[
        Client | None,
        typer.Option(
            help="echopanel: run (or replay) the provider EchoPanel is set to, in its own code; realtime: a good "
            "/v1/realtime client; voxtral-c: voxtral.c alone (default: echopanel when an EchoPanel checkout is "
            "found)."
        ),
    ] = None,
    echopanel: Checkout = None,
    echopanel_python: CheckoutPython = None,
    voxtral_bin: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="voxtral-c: the voxtral binary (default: EchoPanel's ECHOPANEL_VOXTRAL_BIN, else install "
            "voxtral-c's).",
        ),
    ] = None,
    voxtral_model: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="voxtral-c: the weights dir (default: EchoPanel's ECHOPANEL_VOXTRAL_MODEL, else install voxtral's).",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            metavar="SECONDS",
            help="voxtral-c: voxtral.c's -I, the encoder interval (default: EchoPanel's "
            "ECHOPANEL_VOXTRAL_STREAMING_DELAY, else 1.0).",
        ),
    ] = None,
    ca_cert: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="PEM bundle to trust for an https:// server with a self-signed or private-CA certificate "
            "(default: SSL_CERT_FILE).",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the https:// server's certificate at all.")
    ] = False,
    streams: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Run N realtime sessions at once, each paced like a live microphone with the clip looped: does the "
            "server carry N streams in real time (lag, kept up, WER per stream; serve's plan compared)?",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="With --streams: seconds of audio per stream (default 30; an --audio recording is sent whole).",
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (also when the test fails or the server errs) and nothing else on stdout.",
        ),
    ] = False,
) -> None:
    """Transcribe a short clip through the server, as EchoPanel would, and report accuracy and latency.

    Exit codes: 0 pass · 1 word error rate over --max-wer · 2 bad input · 3 server unreachable, refused (401) or failed.
    """
    from echopanel_setup.smoke import render, runner

    chosen, why = runner.choose_client(
        client.value if client else None,
        mode_given=mode is not None,
        http=http,
        streams=streams,
        duration=duration,
        echopanel=echopanel,
    )
    if chosen == "echopanel":
        base = url.http_base if url is not None else None
        _smoke_echopanel(why, echopanel, echopanel_python, base, audio, expect, max_wer, fast, json_out)
    if chosen == "voxtral-c":
        _smoke_voxtral_c(echopanel, voxtral_bin, voxtral_model, interval, audio, expect, max_wer, json_out)
    opts = runner.SmokeOptions(
        **server(mode, url, api_key),
        model=model,
        audio=audio,
        expect=expect,
        max_wer=max_wer,
        fast=fast,
        http=http,
        timeout=timeout,
        config=config,
        tls=_tls(ca_cert, insecure),
    )
    if streams is not None:
        _smoke_streams(opts, streams, duration, json_out)
    if not json_out:  # --streams names itself in its report's first line
        print(f"Client:     realtime ({why})")
    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        result = runner.run(opts, status=status)
    if json_out:
        from echopanel_setup import output

        output.write_json(render.to_document(result))
    else:
        render.render_human(result)
    raise typer.Exit(result.exit_code)


def _tls(ca_cert: str | None, insecure: bool) -> Tls | None:
    """--ca-cert (else SSL_CERT_FILE) and --insecure, for https:// servers."""
    from echopanel_setup.vllm_client import Tls

    if ca_cert and insecure:
        raise UsageError("--ca-cert and --insecure exclude each other: trust a certificate, or skip verification")
    ca = ca_cert or env.ssl_cert_file()
    return Tls(ca_cert=ca, insecure=insecure) if ca or insecure else None


def _smoke_streams(opts: SmokeOptions, streams: int, duration: float | None, json_out: bool) -> NoReturn:
    """`smoke --streams N`: N sessions at once; one report, its exit code."""
    from echopanel_setup.smoke import render, streams_render
    from echopanel_setup.smoke import streams as streams_mod

    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        result = streams_mod.run(opts, streams, duration, status)
    if json_out:
        from echopanel_setup import output

        output.write_json(streams_render.to_document(result))
    else:
        streams_render.render_human(result)
    raise typer.Exit(result.exit_code)


def _smoke_voxtral_c(
    echopanel: str | None,
    binary: str | None,
    model: str | None,
    interval: float | None,
    audio: str | None,
    expect: str | None,
    max_wer: float | None,
    json_out: bool,
) -> None:
    from echopanel_setup import knowledge, output
    from echopanel_setup.smoke import render, runner, voxtralc, voxtralc_render

    clip = runner.load_clip(runner.SmokeOptions(audio=audio, expect=expect))
    limit = knowledge.load().smoke.max_wer if max_wer is None else max_wer
    target = voxtralc.target(binary=binary, model=model, interval=interval, echopanel=echopanel)
    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        if status is not None:
            status(f"running {target.binary} on the clip (the model loads first)")
        result = voxtralc.run(target, clip, max_wer=limit)
    if json_out:
        output.write_json(voxtralc_render.to_document(result))
    else:
        voxtralc_render.render_human(result)
    raise typer.Exit(result.exit_code)


def _smoke_echopanel(
    why: str,
    echopanel: str | None,
    echopanel_python: str | None,
    url: str | None,  # the server's http(s) base
    audio: str | None,
    expect: str | None,
    max_wer: float | None,
    fast: bool,
    json_out: bool,
) -> None:
    from echopanel_setup import knowledge, output
    from echopanel_setup.smoke import echopanel as ep_smoke
    from echopanel_setup.smoke import echopanel_render, render, runner

    if not json_out:
        print(f"Client:     echopanel ({why}; --client realtime or voxtral-c tests the server or voxtral.c alone)")
    clip = runner.load_clip(runner.SmokeOptions(audio=audio, expect=expect))
    limit = knowledge.load().smoke.max_wer if max_wer is None else max_wer
    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        result = ep_smoke.run(
            echopanel=echopanel,
            echopanel_python=echopanel_python,
            url=url,  # what EchoPanel would be given as VOXTRAL_VLLM_URL
            clip=clip,
            max_wer=limit,
            fast=fast,
            say=status,
        )
    if json_out:
        output.write_json(echopanel_render.to_document(result))
    else:
        echopanel_render.render_human(result)
    raise typer.Exit(result.exit_code)
