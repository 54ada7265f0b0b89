"""`serve`: the `vllm serve` command for this GPU, and the lifecycle of the server it starts."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from echopanel_setup import env
from echopanel_setup.cli.options import EnvFile, ModelDir, VllmPython, refuse_group_options

if TYPE_CHECKING:
    from echopanel_setup.serve.context import ServeOptions

app = typer.Typer(rich_markup_mode=None)


class ServeFormat(str, Enum):
    shell = "shell"
    json = "json"
    docker = "docker"
    compose = "compose"
    systemd = "systemd"
    kubernetes = "kubernetes"


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    gpu_memory: Annotated[
        float | None,
        typer.Option("--gpu-memory", metavar="GIB", help="Plan for a GPU with this much memory (another machine)."),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Use N GPUs with tensor parallelism (default: the fewest that fit)."),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Plan for this GPU model (e.g. 4090, L4, H100), or use local GPU index N."),
    ] = None,
    session_minutes: Annotated[
        float | None,
        typer.Option(
            metavar="MINUTES", help="Longest session to allow, minutes [default: 60, shortened if it does not fit]."
        ),
    ] = None,
    streams: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Concurrent transcription streams to plan for [default: EchoPanel's sources per meeting, 2, or "
            "ECHOPANEL_MAX_ACTIVE_SOURCES_PER_SESSION; on a GPU of its own vLLM may then run every stream its share "
            "holds]. Given, vLLM holds only what N streams need.",
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        typer.Option(
            metavar="MS",
            help="Streaming delay in ms (default: EchoPanel's config, else the model's 480); served from a variant "
            "dir.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port to listen on (default: the config's URL unless it is EchoPanel's 8000, else 8001).",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 serves other machines (add --api-key).")
    ] = "127.0.0.1",
    api_key: Annotated[str | None, typer.Option(help="Require this key on /v1/* (not /health).")] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="Model name clients send (default: the Hub repo id EchoPanel uses).")
    ] = None,
    fmt: Annotated[
        ServeFormat,
        typer.Option(
            "--format",
            help="Output: the shell command, JSON, docker run, Compose, a systemd unit, or Kubernetes objects.",
        ),
    ] = ServeFormat.shell,
    exec_: Annotated[
        bool,
        typer.Option(
            "--exec",
            help="Run it here in the foreground: port check, start-up phases, /health, /v1/models, realtime session; "
            "Ctrl-C stops it.",
        ),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Like --exec, but leave it running in the background.")
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="Same as `serve status`.")] = False,
    logs: Annotated[bool, typer.Option("--logs", help="Same as `serve logs`.")] = False,
    lines: Annotated[int, typer.Option(min=0, metavar="N", help="With --logs: as in `serve logs`.")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="With --logs: as in `serve logs`.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Same as `serve stop`.")] = False,
    python: VllmPython = None,
    model_dir: ModelDir = None,
    facts: Annotated[
        str | None,
        typer.Option(help="Plan from a saved doctor snapshot (`doctor --save-facts`) instead of probing."),
    ] = None,
    config: EnvFile = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="With --exec/--detach: seconds to wait for /health [default: 900].")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="Container image for docker/compose/kubernetes [default: vllm/vllm-openai:v<installed vLLM>]."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout (the plan, the launch result or the status).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="With --exec/--detach: show every vLLM log line.")
    ] = False,
) -> None:
    """Print (or run) the `vllm serve` command for this GPU and this vLLM, with a memory plan.

    The server it starts is managed with `serve status`, `serve logs` and `serve stop`.

    Exit codes: 0 ok · 1 nothing fits / the server failed to start · 2 bad input · 3 not ready in time · 130 Ctrl-C.
    """
    if ctx.invoked_subcommand is not None:
        refuse_group_options(ctx)
        return
    from echopanel_setup.serve.context import ServeOptions

    opts = ServeOptions(
        gpu_memory=gpu_memory,
        gpus=gpus,
        gpu=gpu,
        session_minutes=session_minutes,
        streams=streams,
        delay_ms=delay_ms,
        port=port,
        host=host,
        api_key=env.header_value(api_key, "--api-key"),
        served_model_name=served_model_name,
        fmt=fmt.value,
        exec_=exec_,
        detach=detach,
        status=status,
        logs=logs,
        lines=lines,
        follow=follow,
        stop=stop,
        python=python,
        model_dir=model_dir,
        facts=facts,
        config=config,
        json_out=json_out,
        timeout=timeout,
        image=image,
        verbose=verbose,
        vllm_api_key=env.vllm_api_key(),
    )
    _serve(opts)


_SERVE_JSON_HELP = "One JSON document on stdout."


@app.command("status")
def serve_status(json_out: Annotated[bool, typer.Option("--json", help=_SERVE_JSON_HELP)] = False) -> None:
    """Is the server `serve` started running and ready?

    Its pid, URL, served models, uptime and log, for a server started with `serve --exec` or `--detach`.

    Exit codes: 0 running and ready · 1 not running, or not ready yet.
    """
    from echopanel_setup.serve.context import ServeOptions

    _serve(ServeOptions(status=True, json_out=json_out, vllm_api_key=env.vllm_api_key()))


@app.command("logs")
def serve_logs(
    lines: Annotated[int, typer.Option(min=0, metavar="N", help="How many lines from the end (0: all).")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="One JSON document; with --follow one JSON object per line (NDJSON)."),
    ] = False,
) -> None:
    """Print the end of the server's log.

    The log of the vLLM that `serve --exec` or `--detach` started (the last start's).

    Exit codes: 0 printed (Ctrl-C ends --follow) · 1 no log yet.
    """
    from echopanel_setup.serve.context import ServeOptions

    _serve(ServeOptions(logs=True, lines=lines, follow=follow, json_out=json_out))


@app.command("stop")
def serve_stop(json_out: Annotated[bool, typer.Option("--json", help=_SERVE_JSON_HELP)] = False) -> None:
    """Stop the server `serve` started.

    vLLM and its engine processes, started by `serve --exec` or `--detach`: SIGINT, then SIGTERM, then SIGKILL.

    Exit codes: 0 stopped, or nothing was running.
    """
    from echopanel_setup.serve.context import ServeOptions

    _serve(ServeOptions(stop=True, json_out=json_out))


def _serve(opts: ServeOptions) -> None:
    """Run `serve` (or one of its lifecycle actions) and render its result."""
    from echopanel_setup.serve import main, render

    result = main.run(opts)
    render.emit(result)
    raise typer.Exit(result.exit_code)
