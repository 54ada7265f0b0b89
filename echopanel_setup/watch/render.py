"""`watch` output: one document (`--once`), one line per sample (plain, or NDJSON under `--json`), or a
live terminal view (rich Live: one row per signal with its trend). Every JSON line carries the shared header."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from echopanel_setup import output
from echopanel_setup.metrics.derive import FAIL, OK, UNKNOWN, WARN, Signal
from echopanel_setup.watch.runner import NO_METRICS, UNREACHABLE, Tick, WatchResult

SCHEMA_VERSION = 1
_STYLE = {
    OK: "green",
    WARN: "yellow",
    FAIL: "bold red",
    UNKNOWN: "dim",
    UNREACHABLE: "bold magenta",
    NO_METRICS: "bold red",
}
_SPARKS = "▁▂▃▄▅▆▇█"
_ASCII_SPARKS = "_.-=*#"
_SYMBOL_OF = {OK: "ok", WARN: "warn", FAIL: "fail", UNKNOWN: "skip", UNREACHABLE: "crashed", NO_METRICS: "fail"}
_SHORT = {"streams": "streams", "queue": "queue", "rate": "rate", "step": "step", "kv": "KV", "session": "session"}


# --- JSON ---------------------------------------------------------------------------------------------------


def _server(r: WatchResult) -> dict[str, Any]:
    s = r.server
    return {
        "url": str(s.url),
        "url_source": s.url_source,
        "version": s.version,
        "models": s.models,
        "max_model_len": s.max_model_len,
        "models_error": s.models_error,
        "plan": {
            "streams": r.plan.streams,
            "allowed_streams": r.plan.allowed,
            "max_model_len": r.plan.max_model_len,
            "source": r.plan.source,
        },
    }


def _tick(t: Tick) -> dict[str, Any]:
    return {
        "index": t.index,
        "taken_at": t.taken_at,
        "status": t.status,
        "error": t.error,
        "metric_names": t.metric_names,
        "signals": [s.to_dict() for s in t.derived.signals] if t.derived else [],
    }


def _unreachable(r: WatchResult) -> dict[str, Any]:
    """`error` for a run that ends with the server unreachable (exit 3): a result, and an external error."""
    if not r.unreachable_at_end:
        return {}
    message = r.last.error if r.last and r.last.error else f"{r.server.url}: no sample taken"
    return {"error": output.error(message, r.exit_code)}


def to_document(r: WatchResult) -> dict[str, Any]:
    """The `--once --json` document."""
    return output.document(
        "watch",
        SCHEMA_VERSION,
        r.exit_code,
        **_unreachable(r),
        worst=r.worst,
        unreachable=r.unreachable_at_end,
        stopped=r.stopped,
        interval_s=r.interval_s,
        server=_server(r),
        sample=_tick(r.last) if r.last else None,
    )


def tick_line(t: Tick, r: WatchResult) -> dict[str, Any]:
    """One NDJSON line per live sample; `exit_code` is what the run would exit with if it ended here."""
    fields = _tick(t)
    del fields["error"]  # an unreachable sample's reason is the envelope's `error` (exit code 3)
    return output.document(
        "watch", SCHEMA_VERSION, r.exit_code, **_unreachable(r), event="sample", url=str(r.server.url), **fields
    )


def end_line(r: WatchResult) -> dict[str, Any]:
    """The last NDJSON line of a live run: how it ended, its worst verdict and its exit code."""
    return output.document(
        "watch",
        SCHEMA_VERSION,
        r.exit_code,
        **_unreachable(r),
        event="end",
        worst=r.worst,
        unreachable=r.unreachable_at_end,
        stopped=r.stopped,
        interval_s=r.interval_s,
        samples=len(r.ticks),
        server=_server(r),
    )


# --- human ---------------------------------------------------------------------------------------------------


def title(r: WatchResult, dot: str) -> str:
    s = r.server
    parts = [f"vLLM {s.version}" if s.version else "vLLM ?"]
    if s.models:
        parts.append(", ".join(s.models))
    if s.max_model_len:
        parts.append(f"max-model-len {s.max_model_len}")
    return f"echopanel-setup watch {dot} {s.url} ({'; '.join(parts)})"


def plain_line(t: Tick, stream: TextIO) -> str:
    """One greppable line per sample for logs and pipes; problems follow on indented lines."""
    from echopanel_setup import ui

    stamp = t.taken_at[11:19]
    if t.derived is None:  # the error may quote the server (http.client's BadStatusLine): no control characters
        return f"{stamp}  {t.status}  {ui.clean(t.error)}"
    d = t.derived
    cells = [f"{_SHORT[s.id]} {s.value}" for s in d.signals if s.id in _SHORT]
    counts = [f"{s.id} {s.value}" for s in d.signals if s.id in ("preemptions", "errors")]
    dot = " · " if ui.unicode_ok(stream) else " | "
    lines = [f"{stamp}  {d.worst:<7} {dot.join(cells + counts)}"]
    for s in d.signals:
        if s.status in (WARN, FAIL):
            lines.append(f"          {s.status}: {s.said}" + (f" -> {s.fix}" if s.fix else ""))
    return "\n".join(lines)


def _reach(r: WatchResult) -> str:
    """What to do when nothing answered: start the server (here, or on its host), or watch another one."""
    s = r.server
    start = (
        "start one here (`echopanel-setup serve --detach`)"
        if s.url.is_loopback
        else "start vLLM on that host, or check the address and its firewall"
    )
    where = "" if s.url_source == "--url" else f", or watch another with --url URL (this one is {s.url_source})"
    return start + where


def render_once(r: WatchResult, verbose: bool = False, stream: TextIO | None = None) -> None:
    """The `--once` report: one row per signal, then the fixes."""
    from echopanel_setup import ui

    out = stream or sys.stdout
    con = ui.console(out)
    sym = ui.symbols(con)
    dot = sym["dot"]
    con.print(f"[bold]{ui.esc(title(r, dot))}[/]")
    t = r.last
    if t is None or t.derived is None:
        status = t.status if t else UNREACHABLE
        word = f"{sym[_SYMBOL_OF[status]]} {status.replace('-', ' ')}"
        con.print(f"[{_STYLE[status]}]{word}[/]  {ui.esc(t.error if t else '')}")
        if status == UNREACHABLE:
            con.print(f"      [bold]fix:[/] {ui.esc(_reach(r))}")
        return
    span = f"over {r.interval_s:g} s" if t.paired else "one sample: counters since the server started"
    con.print(f"[dim]{span}; plan: {ui.esc(r.plan.source or 'none recorded (not started by `serve` here)')}[/]")
    for s in t.derived.signals:
        _print_signal(con, s, sym, verbose)
    con.print(f"Verdict: [{_STYLE[t.derived.worst]}]{t.derived.worst}[/]")


def _print_signal(con: Any, s: Signal, sym: dict[str, str], verbose: bool) -> None:
    from echopanel_setup import ui

    mark = sym[_SYMBOL_OF[s.status]]
    con.print(f"  [{_STYLE[s.status]}]{mark}[/] {s.title:<14} {ui.esc(s.value):<16} {ui.esc(s.said)}")
    if s.fix and s.status in (WARN, FAIL):
        con.print(f"      [bold]fix:[/] {ui.esc(s.fix)}")
    if verbose and s.formula:
        con.print(f"      [dim]{ui.esc(s.formula)}[/]")


def trend(values: list[float | None], ascii_only: bool) -> str:
    """A sparkline of the last values (gaps as spaces), scaled between their min and max — but never over less than
    a tenth of their size (or 1), so a steady signal's jitter (120 ms ± 0.01) draws flat, not full-height jumps."""
    marks = _ASCII_SPARKS if ascii_only else _SPARKS
    nums = [v for v in values if v is not None]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    span = max(hi - lo, 0.1 * max(abs(lo), abs(hi)), 1.0)
    return "".join(" " if v is None else marks[min(len(marks) - 1, int((v - lo) / span * len(marks)))] for v in values)


def live_table(r: WatchResult, verbose: bool, ascii_only: bool, points: int) -> Any:
    """The Live view's renderable: the title, one row per signal with its trend, the latest fixes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from echopanel_setup import ui

    sym = ui.ASCII_SYMBOLS if ascii_only else ui.SYMBOLS
    t = r.last
    head = Text.from_markup(f"[bold]{ui.esc(title(r, '-' if ascii_only else '·'))}[/]")
    if t is None:
        return head
    if t.derived is None:
        status = t.status
        return Group(head, Text.from_markup(f"[{_STYLE[status]}]{status.replace('-', ' ')}[/] {ui.esc(t.error or '')}"))
    table = Table(box=None, show_header=False, pad_edge=False)
    for _ in range(5):
        table.add_column()
    history = [x.derived for x in r.ticks[-points:]]
    for s in t.derived.signals:
        past = [(seen.number if d and (seen := d.get(s.id)) else None) for d in history]
        table.add_row(
            Text(sym[_SYMBOL_OF[s.status]], style=_STYLE[s.status]),
            s.title,
            ui.esc(s.value),
            trend(past, ascii_only),
            ui.esc(s.said),
        )
    fixes = [
        f"[bold]fix[/] ({s.title}): {ui.esc(s.fix)}" for s in t.derived.signals if s.fix and s.status in (WARN, FAIL)
    ]
    if verbose:
        fixes += [f"[dim]{s.title}: {ui.esc(s.formula)}[/]" for s in t.derived.signals if s.formula]
    foot = Text.from_markup(f"[dim]sample {t.index + 1} at {t.taken_at} · every {r.interval_s:g} s · Ctrl-C stops[/]")
    return Group(head, table, *(Text.from_markup(f) for f in fixes), foot)


@contextmanager
def live_view(verbose: bool, stream: TextIO | None = None) -> Iterator[Callable[[Tick, WatchResult], None]]:
    """A rich Live view on a terminal, redrawn at each sample; what it last showed stays on screen."""
    from rich.live import Live

    from echopanel_setup import knowledge, ui

    out = stream or sys.stdout
    ascii_only = not ui.unicode_ok(out)
    points = knowledge.load().watch.trend_points
    with Live(console=ui.console(out), auto_refresh=False, transient=False) as view:
        yield lambda tick, r: view.update(live_table(r, verbose, ascii_only, points), refresh=True)
