"""Output of `smoke --client echopanel`: each step, what EchoPanel would show, the verdict; or one JSON document."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from echopanel_setup import output
from echopanel_setup.smoke.echopanel import EchoPanelSmoke

SCHEMA_VERSION = 1


def to_document(r: EchoPanelSmoke) -> dict[str, Any]:
    """The result; a run that ended in an external failure (nothing answers: exit 3) also carries its `error`, as the
    envelope requires of every exit 2-4."""
    doc = _document(r)
    if r.exit_code >= 2:
        doc["error"] = output.error(r.verdict, r.exit_code)
    return doc


def _document(r: EchoPanelSmoke) -> dict[str, Any]:
    return output.document(
        "smoke",
        SCHEMA_VERSION,
        r.exit_code,
        client="echopanel",
        passed=r.passed,
        verdict=r.verdict,
        checkout={"path": str(r.checkout), "found_by": r.how_found},
        provider={"name": r.provider, "variant": r.variant, "title": r.variant_title},
        url=r.url,
        url_from=r.url_from,
        python=r.python,
        how=r.mode,
        fallback_reason=r.fallback,
        runs=[
            {
                "feed": f.feed,
                "finals": f.finals,
                "status_lines": f.status_lines,
                "segments": f.segments,
                "log": f.log,
                "health": f.health,
                "error": f.error,
            }
            for f in r.feeds
        ],
        steps=[{"what": s.what, "status": s.status, "detail": s.detail, "echopanel_shows": s.shows} for s in r.steps],
        audio=r.clip.document(),
        transcript=r.transcript,
        reference=r.clip.reference,
        wer=None if r.score is None else round(r.score.wer, 4),
        max_wer=r.max_wer,
        server_works=r.server_works,
        server_detail=r.server_detail or None,
        notes=r.notes,
    )


def render_human(r: EchoPanelSmoke, out: TextIO | None = None) -> None:
    from echopanel_setup import ui

    w = ui.plain(out or sys.stdout)  # the server's error bodies, EchoPanel's log and transcript: text from outside

    def line(text: str = "") -> None:
        print(text, file=w)

    line(f"Provider:   {r.variant_title or 'a version echopanel-setup does not know'}")
    if r.provider == "voxtral_realtime":
        ran = next((f.health for f in r.feeds if f.health and f.health.get("binary")), None)
        shown = f"{ran['binary']} -d {ran['model']} -I {ran['interval_s']}" if ran else "as EchoPanel's settings say"
        line(f"voxtral.c:  {shown} (ECHOPANEL_VOXTRAL_BIN, ECHOPANEL_VOXTRAL_MODEL, ECHOPANEL_VOXTRAL_STREAMING_DELAY)")
    else:
        line(f"Server:     {r.url} (VOXTRAL_VLLM_URL from {r.url_from})")
    if r.mode == "run":
        line(f"Ran:        its own code in {r.python}, EchoPanel's .env and environment applied")
        for f in r.feeds:
            how = "VAD on, 2 s windows" if f.feed == "vad" else "VAD off, one stream"
            shown = f.finals or "(no transcript)"
            line(f"  {how}: {shown}")
            for status in f.status_lines:
                line(f"    EchoPanel shows: {status}")
            if f.error:
                line(f"    x the pipeline would stop: {f.error}")
            for message in _hidden_failures(f.log)[:2]:
                line(f"    DEBUG, invisible in EchoPanel: {message}")
    else:
        line(f"Replayed:   its protocol step by step (its code does not load in {r.python}: {r.fallback})")
        for s in r.steps:
            code = "no answer" if s.status is None else str(s.status)
            detail = f" {s.detail}" if s.detail else ""
            line(f"  {s.what} → {code}{detail}: EchoPanel shows {s.shows}")
    if r.clip.conversion:
        line(f"Converted:  {r.clip.conversion}")
    if r.clip.reference is not None:
        line(f"Reference:  {r.clip.reference}")
    if r.score is not None:
        line(f"WER:        {r.score.wer:.1%} (limit {r.max_wer:.0%})")
    if r.server_works is not None:
        works = "works" if r.server_works else "does not work"
        if r.provider == "voxtral_realtime":
            line(f"voxtral.c:  {works} alone (--client voxtral-c): {r.server_detail}")
        else:
            line(f"Server:     {works} with a realtime client: {r.server_detail}")
    for note in r.notes:
        line(f"! {note}")
    line(f"{'✓' if r.passed else '✗'} {r.verdict}")


def _hidden_failures(log: list[dict[str, Any]]) -> list[str]:
    """Distinct DEBUG lines that report a failure: what the published provider hides from EchoPanel's INFO log."""
    seen: list[str] = []
    for entry in log:
        message = str(entry.get("message", ""))
        failed = any(word in message.lower() for word in ("error", "fail", "timeout"))
        if entry.get("level") == "DEBUG" and failed and message not in seen:
            seen.append(message)
    return seen
