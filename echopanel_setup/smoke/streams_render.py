"""`smoke --streams N` output: one line per stream and the verdict against serve's plan, or one JSON document."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from echopanel_setup import ui
from echopanel_setup.output import document
from echopanel_setup.smoke.render import SCHEMA_VERSION
from echopanel_setup.smoke.streams import StreamRun, StreamsResult


def _s(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _stream(r: StreamRun) -> dict[str, Any]:
    return {
        "stream": r.index,
        "kept_up": r.kept_up,
        "error": r.error,
        "lag_s": {"p50": _s(r.lag(0.5)), "p99": _s(r.lag(0.99)), "max": _s(r.lag(1.0))},
        "lag_growth_s": _s(r.growth_s),
        "drain_s": _s(r.drain_s),
        "words_timed": len(r.lags_s),
        "wer": None if r.score is None else round(r.score.wer, 4),
        "transcript_words": None if r.transcript is None else len(r.transcript.text.split()),
    }


def to_document(r: StreamsResult) -> dict[str, Any]:
    return {
        **document("smoke", SCHEMA_VERSION, r.exit_code),
        "passed": r.passed,
        "route": "realtime",
        "mode": r.target.mode,
        "url": str(r.target.url),
        "server": {"version": r.server_version},
        "model": r.model,
        "streams": {
            "asked": len(r.runs),
            "carried": r.carried,
            "planned": r.planned,
            "plan_source": r.plan_source,
            "audio_s": round(r.audio_s, 3),
            "loops": r.loops,
            "lag_s": {"p50": _s(r.lag(0.5)), "p99": _s(r.lag(0.99))},
            "max_lag_growth_s": r.runs[0].max_growth_s if r.runs else None,
            "summary": r.summary,
            "each": [_stream(s) for s in r.runs],
        },
        "audio": r.clip.document(),
        "max_wer": r.max_wer,
        "wall_ms": round(r.wall_s * 1000, 1),
        "notes": r.notes,
    }


def render_human(r: StreamsResult, out: TextIO | None = None) -> None:
    con = ui.console(out or sys.stdout)
    server = f"vLLM {r.server_version}" if r.server_version else "vLLM ?"
    con.print(
        f"[bold]echopanel-setup smoke --streams {len(r.runs)}[/]  ·  {ui.esc(r.target.url)} ({ui.esc(server)})  ·  "
        f"model {ui.esc(r.model)}"
    )
    what = "the bundled clip" if r.clip.source == "bundled" else ui.esc(r.clip.source)
    con.print(
        f"Audio:      {what} looped {r.loops}× ({r.audio_s:.1f} s) per stream, {len(r.runs)} streams at once, "
        "each paced like a live microphone"
    )
    if r.clip.conversion:
        con.print(f"Converted:  {ui.esc(r.clip.conversion)}")
    for s in r.runs:
        if s.error is not None:
            ui.outcome(con, "fail", s.error, label=f"stream {s.index}", label_width=10, word="failed", word_width=8)
            continue
        p50, p99 = s.lag(0.5), s.lag(0.99)
        lag = f"lag p50 {p50:.2f} s, p99 {p99:.2f} s" if p50 is not None and p99 is not None else "no words timed"
        growth = f", grew {s.growth_s:+.2f} s" if s.growth_s is not None else ""
        wer_text = f", WER {s.score.wer:.0%}" if s.score is not None else ""
        ok = s.kept_up and s.score is not None and s.score.wer <= r.max_wer
        word = "behind" if not s.kept_up else "kept up" if ok else "wrong"  # in time, but not the words
        ui.outcome(
            con,
            "ok" if ok else "fail",
            f"{lag}{growth}{wer_text}",
            label=f"stream {s.index}",
            label_width=10,
            word=word,
            word_width=8,
        )
    words_only = not r.passed and all(s.kept_up for s in r.runs)  # in time, but not the words: not a capacity matter
    if words_only:
        wrong = len(r.runs) - r.carried
        con.print(
            f"Verdict:    {r.summary}: every stream kept up in real time, but {wrong} of {len(r.runs)} transcripts "
            f"are over the {r.max_wer:.0%} WER limit"
        )
    else:
        verdict = "carries" if r.passed else "does not carry"
        con.print(f"Verdict:    {r.summary}: the server {verdict} {len(r.runs)} streams in real time")
    for note in r.notes:
        ui.outcome(con, "warn", note, word="note", word_width=9)
    if words_only:
        con.print(
            "Fix:        check that --expect is the words spoken in the audio; `echopanel-setup smoke` (one stream) "
            "shows the transcript"
        )
    elif not r.passed:
        con.print(
            "Fix:        fewer streams per server (`echopanel-setup serve --streams N` plans for N), a bigger GPU or a "
            "second replica; `echopanel-setup watch` shows the server's side while the streams run"
        )
