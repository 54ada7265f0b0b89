"""`tunnel start|status|stop`: an ssh tunnel to vLLM on a GPU host elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echopanel_setup.cli.options import Json

if TYPE_CHECKING:
    from echopanel_setup.tunnel.main import TunnelOptions

app = typer.Typer(
    help="An ssh tunnel to a GPU host elsewhere: EchoPanel here reaches its vLLM at http://127.0.0.1:PORT.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("start")
def tunnel_start(
    host: Annotated[str, typer.Argument(metavar="[USER@]HOST", help="The GPU host, as you would `ssh` to it.")],
    remote_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, metavar="PORT", help="vLLM's port on HOST (its loopback) [default: 8001]."),
    ] = None,
    local_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, metavar="PORT", help="The port on this machine's 127.0.0.1 [default: 8001]."),
    ] = None,
    ssh_config: Annotated[
        str | None, typer.Option(metavar="FILE", help="An ssh config file to use instead of ~/.ssh/config (ssh -F).")
    ] = None,
    json_out: Json = False,
) -> None:
    """Forward 127.0.0.1:LOCAL here to vLLM on HOST's 127.0.0.1:REMOTE over ssh, in the background.

    Runs `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE` (keep-alives every 15 s, BatchMode: your key must log in
    without a prompt, e.g. through ssh-agent) and reconnects with backoff when the link drops. ssh's host-key
    checking is never changed: run `ssh HOST` once first to accept its key. Then point EchoPanel at
    http://127.0.0.1:LOCAL (`echopanel-setup configure`).

    Exit codes: 0 up · 1 refused (a tunnel already runs, the local port is taken) · 2 bad input · 3 ssh failed
    (unknown host key, login refused, host unreachable).
    """
    from echopanel_setup.tunnel.main import TunnelOptions

    _tunnel(
        TunnelOptions(
            action="start",
            host=host,
            remote_port=remote_port,
            local_port=local_port,
            ssh_config=ssh_config,
            json_out=json_out,
        )
    )


@app.command("status")
def tunnel_status(json_out: Json = False) -> None:
    """Is the tunnel up, and does vLLM answer through it?

    Exit codes: 0 up and vLLM answers /health · 1 not running, reconnecting, or nothing (ready) at the far end.
    """
    from echopanel_setup.tunnel.main import TunnelOptions

    _tunnel(TunnelOptions(action="status", json_out=json_out))


@app.command("stop")
def tunnel_stop(json_out: Json = False) -> None:
    """Stop the tunnel `tunnel start` started (only its own ssh).

    Exit codes: 0 stopped, or nothing was running.
    """
    from echopanel_setup.tunnel.main import TunnelOptions

    _tunnel(TunnelOptions(action="stop", json_out=json_out))


def _tunnel(opts: TunnelOptions) -> None:
    from echopanel_setup.tunnel import main, render

    result = main.run(opts)
    render.emit(result)
    raise typer.Exit(result.exit_code)
