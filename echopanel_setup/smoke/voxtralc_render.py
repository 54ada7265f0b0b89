"""Output of `smoke --client voxtral-c`: what ran, the transcript, WER, load, time to first text, RTF; or one JSON
document."""

from __future__ import annotations

from typing import Any

from echopanel_setup import output, ui
from echopanel_setup.smoke.voxtralc import VoxtralCSmoke

SCHEMA_VERSION = 1


def _s(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def to_document(r: VoxtralCSmoke) -> dict[str, Any]:
    t = r.target
    return output.document(
        "smoke",
        SCHEMA_VERSION,
        r.exit_code,
        client="voxtral-c",
        passed=r.passed,
        verdict=r.verdict,
        argv=t.argv(),
        binary={"path": str(t.binary), "from": t.binary_from},
        model={"path": str(t.model), "from": t.model_from},
        interval_s={"value": t.interval_s, "from": t.interval_from},
        audio=r.clip.document(),
        transcript=r.transcript,
        reference=r.clip.reference,
        wer=None if r.score is None else round(r.score.wer, 4),
        max_wer=r.max_wer,
        load_s=_s(r.load_s),
        first_text_s=_s(r.first_text_s),
        finish_s=_s(r.finish_s),
        rtf=_s(r.rtf),
        wall_s=_s(r.wall_s),
        returncode=r.returncode,
        reason=r.error,
        stderr_tail=r.stderr_tail[-5:],
    )


def render_human(r: VoxtralCSmoke) -> None:
    con = ui.console()
    t = r.target
    con.print("Client:     voxtral-c (voxtral.c alone, as EchoPanel's voxtral_realtime starts it)", markup=False)
    con.print(f"Ran:        {' '.join(t.argv())}", markup=False)
    con.print(
        f"            binary from {t.binary_from}; model from {t.model_from}; -I from {t.interval_from}", markup=False
    )
    con.print(f"Audio:      {r.clip.source} clip, {r.clip.duration_s:.1f} s, PCM16 16 kHz mono on stdin", markup=False)
    if r.clip.conversion:
        con.print(f"Converted:  {r.clip.conversion}", markup=False)
    con.print(f"Transcript: {ui.clean(r.transcript) or '(none)'}", markup=False)  # voxtral.c's own output
    if r.clip.reference is not None:
        con.print(f"Reference:  {r.clip.reference}", markup=False)
    if r.score is not None:
        con.print(f"WER:        {r.score.wer:.1%} (limit {r.max_wer:.0%})", markup=False)
    load = "not measured (it read the audio as fast as it came)" if r.load_s is None else f"{r.load_s:.2f} s"
    con.print(f"Load:       {load} (until it read its first audio)", markup=False)
    if r.first_text_s is not None:
        con.print(f"First text: {r.first_text_s:.2f} s after it began reading", markup=False)
    if r.rtf is not None:
        con.print(
            f"RTF:        {r.rtf:.2f} ({r.finish_s:.2f} s for {r.clip.duration_s:.1f} s of audio; under 1 keeps up "
            "with live audio)",
            markup=False,
        )
    for line in r.stderr_tail[-3:] if r.error else []:
        con.print(f"  stderr: {ui.clean(line)}", markup=False)
    ui.outcome(con, "ok" if r.passed else "fail", r.verdict)
