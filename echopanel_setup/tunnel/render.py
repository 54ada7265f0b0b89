"""All of `tunnel`'s output: a few lines on stdout (what runs, what answers at the far end, what to do next), or
under `--json` one document (`output.document`) and nothing else on stdout."""

from __future__ import annotations

from typing import Any

from echopanel_setup import output, ports, ui
from echopanel_setup.tunnel.main import FarEnd, Started, Status, Stopped, TunnelResult
from echopanel_setup.tunnel.records import TunnelRecord

SCHEMA_VERSION = 1


def emit(result: TunnelResult) -> None:
    p = result.part
    if result.as_json:
        output.write_json(output.document(f"tunnel {result.action}", SCHEMA_VERSION, result.exit_code, **_fields(p)))
    elif isinstance(p, Started):
        _started(p)
    elif isinstance(p, Status):
        _status(p)
    else:
        _stopped(p)


def _fields(p: Started | Status | Stopped) -> dict[str, Any]:
    if isinstance(p, Started):
        return {"already_running": p.already, "tunnel": _tunnel(p.record), "far_end": _far_end(p.far_end)}
    if isinstance(p, Status):
        return {"running": p.running, "tunnel": _tunnel(p.record), "far_end": _far_end(p.far_end)}
    return {"stopped": p.record is not None, "tunnel": _tunnel(p.record), "seconds": round(p.seconds, 1)}


def _tunnel(r: TunnelRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    keys = ("pid", "ssh_pid", "host", "local_port", "remote_port", "state", "reconnects", "up_since", "started_at")
    return {
        **{k: getattr(r, k) for k in keys},
        "url": r.url,
        "last_error": r.message,
        "last_error_kind": r.failure,
        "log": r.log,
    }


def _far_end(f: FarEnd | None) -> dict[str, Any] | None:
    return None if f is None else {"kind": f.kind, "health": f.status, "detail": f.detail}


def _started(s: Started) -> None:
    con = ui.console()
    r = s.record
    what = "already running" if s.already else "up"
    con.print(f"{ui.mark(con, 'ok', what)} tunnel {ui.esc(r.route)} (pid {r.pid}, in the background)")
    _far_end_line(con, r, s.far_end)
    ui.advise(con, f"EchoPanel on this machine reaches it at {r.url}:", [f"echopanel-setup configure --url {r.url}"])
    ui.advise(con, "See it, or stop it:", ["echopanel-setup tunnel status", "echopanel-setup tunnel stop"])


def _far_end_line(con: Any, r: TunnelRecord, f: FarEnd) -> None:
    where = f"{r.host} port {r.remote_port}"
    if f.ok:
        con.print(f"{ui.mark(con, 'ok')} vLLM answers through it (/health {f.status})")
    elif f.kind == "vllm":
        con.print(f"{ui.mark(con, 'warn')} vLLM answers through it but is not ready (/health {f.status})")
    elif f.kind == "echopanel":
        con.print(
            f"{ui.mark(con, 'fail')} EchoPanel's own backend answers at {ui.esc(where)}, not vLLM: tunnel to the "
            f"port vLLM serves on (`echopanel-setup serve` there uses {ports.default_port()}: --remote-port)"
        )
    elif f.kind == "other":
        con.print(f"{ui.mark(con, 'warn')} something that is not vLLM answers at {ui.esc(where)} (/health {f.status})")
    else:
        why = f" ({ui.esc(f.detail)})" if f.detail else ""
        con.print(
            f"{ui.mark(con, 'warn')} nothing listens at {ui.esc(where)}{why}: start vLLM there "
            f"([cyan]echopanel-setup serve --detach[/] on {ui.esc(r.host)})"
        )


def _status(s: Status) -> None:
    con = ui.console()
    r = s.record
    if r is None:
        hint = ui.esc("echopanel-setup tunnel start [user@]HOST")
        con.print(f"{ui.mark(con, 'skip', 'no tunnel')}: start one with [cyan]{hint}[/]")
        return
    if not s.running:
        why = f": {ui.esc(r.message)}" if r.state == "failed" and r.message else ""
        con.print(f"{ui.mark(con, 'fail', 'not running')} the tunnel to {ui.esc(r.host)} ended{why}")
        con.print(f"  log: {ui.esc(r.log)}")
        return
    if r.state == "up":
        drops = f"; reconnected {r.reconnects}x, last drop: {ui.esc(r.message)}" if r.reconnects and r.message else ""
        con.print(f"{ui.mark(con, 'ok', 'up')} {ui.esc(r.route)}, pid {r.pid}, since {r.up_since}{drops}")
    else:
        why = f": {ui.esc(r.message)}" if r.message else ""
        con.print(f"{ui.mark(con, 'warn', r.state)} {ui.esc(r.route)}, pid {r.pid}{why}")
    if s.far_end is not None:
        _far_end_line(con, r, s.far_end)
    con.print(f"  URL for EchoPanel here: {r.url}")
    con.print(f"  log: {ui.esc(r.log)}")


def _stopped(s: Stopped) -> None:
    con = ui.console()
    if s.record is None:
        con.print("nothing to stop: no tunnel started by echopanel-setup is running")
    else:
        con.print(f"stopped the tunnel {ui.esc(s.record.route)} (pid {s.record.pid}) in {s.seconds:.1f} s")
