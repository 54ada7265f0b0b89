"""`smoke` output: a short human report, or one JSON document for CI (`--json`), also on failure."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from echopanel_setup import ui
from echopanel_setup.output import document
from echopanel_setup.smoke.runner import SmokeResult

SCHEMA_VERSION = 1
_WHERE = {"local": "local vLLM", "remote": "remote vLLM", "api": "Mistral API"}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def to_document(r: SmokeResult) -> dict[str, Any]:
    t = r.transcript.timings
    return {
        **document("smoke", SCHEMA_VERSION, r.exit_code),
        "passed": r.passed,
        "mode": r.target.mode,
        "mode_reason": r.target.reason,
        "route": r.route,
        "fast": r.fast,
        "url": str(r.target.url),
        "server": {"version": r.server_version, "models": r.served_models},
        "model": r.model,
        "delay_ms": r.target.delay_ms,
        "audio": {**r.clip.document(), "synthesized": r.clip.synthesized, "description": r.clip.description},
        "transcript": r.transcript.text,
        "reference": r.clip.reference,
        "wer": None
        if r.score is None
        else {
            "value": round(r.score.wer, 4),
            "substitutions": r.score.substitutions,
            "deletions": r.score.deletions,
            "insertions": r.score.insertions,
            "reference_words": r.score.reference_words,
        },
        "max_wer": r.max_wer,
        "deltas": r.transcript.deltas,
        "usage": r.transcript.usage,
        "rtf": None if r.rtf is None else round(r.rtf, 3),
        "timings_ms": {
            "first_delta": _ms(t.first_delta_s),
            "final_to_done": _ms(t.final_to_done_s),
            "connect": _ms(t.connect_s),
            "stream": _ms(t.stream_s),
            "total": _ms(r.wall_s),
            "client_overhead": _ms(r.overhead_s),
        },
        "notes": r.notes,
    }


def render_human(r: SmokeResult, out: TextIO | None = None) -> None:
    con = ui.console(out or sys.stdout)
    t = r.transcript.timings
    server = f"vLLM {r.server_version}" if r.server_version else ("vLLM ?" if r.route != "api" else "hosted")
    con.print(
        f"[bold]echopanel-setup smoke[/]  ·  {_WHERE[r.target.mode]} at {ui.esc(r.target.url)} ({ui.esc(server)})  ·  "
        f"model {ui.esc(r.model)}"
    )
    kind = f"bundled clip, {ui.esc(r.clip.description)}" if r.clip.source == "bundled" else ui.esc(r.clip.source)
    con.print(f"Audio:      {kind}, {r.clip.duration_s:.1f} s")
    if r.clip.conversion:
        con.print(f"Converted:  {ui.esc(r.clip.conversion)}")
    route = {
        "realtime": "realtime WebSocket /v1/realtime",
        "http": "HTTP /v1/audio/transcriptions",
        "api": "Mistral realtime transcription",
    }[r.route]
    if r.route != "http":
        route += ", full speed (--fast)" if r.fast else ", paced like a live microphone"
    if r.target.delay_ms:
        route += f", target_streaming_delay_ms={r.target.delay_ms}"
    con.print(f"Route:      {route}")
    con.print(f"Transcript: {ui.esc(r.transcript.text.strip()) or '[dim](empty)[/]'}")
    if r.clip.reference is not None:
        con.print(f"Reference:  {ui.esc(r.clip.reference)}")
    if r.score is not None:
        s = r.score
        verdict = ui.mark(con, "ok", "pass") if r.passed else ui.mark(con, "fail")
        con.print(
            f"WER:        {s.wer:.1%} ({s.errors} error{'s' if s.errors != 1 else ''} in {s.reference_words} words; "
            f"limit {r.max_wer:.0%})  {verdict}"
        )
    else:
        con.print(
            "WER:        – not measured (no reference text)  "
            + (ui.mark(con, "ok", "transcribed") if r.passed else ui.mark(con, "fail", "empty transcript"))
        )
    parts = []
    if t.first_delta_s is not None:
        parts.append(f"first text {t.first_delta_s * 1000:.0f} ms after the first audio")
    if t.final_to_done_s is not None:
        parts.append(f"done {t.final_to_done_s * 1000:.0f} ms after the end of audio")
    if r.rtf is not None:
        parts.append(f"RTF {r.rtf:.2f}")
    con.print(f"Latency:    {' · '.join(parts)}")
    for note in r.notes:
        ui.outcome(con, "warn", note, word="note", word_width=9)
    if not r.passed:
        con.print(
            "Fix:        the server answered but the words are wrong: check that it serves Voxtral Realtime "
            "(`echopanel-setup doctor`), and for your own audio pass the right --expect text"
        )


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A one-line stderr status ("streaming 4.8 s of audio …") while smoke waits; only on a terminal."""
    if not enabled:
        yield None
        return
    with ui.spinner() as status:
        yield lambda message: status.update(message)
