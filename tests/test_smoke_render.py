"""smoke.render: the human report and the JSON document, for passing, failing and unscored runs."""

from __future__ import annotations

import io
import json

from echopanel_setup import output
from echopanel_setup.smoke import audio, render
from echopanel_setup.smoke.result import Timings, Transcript
from echopanel_setup.smoke.runner import SmokeResult, Target
from echopanel_setup.smoke.scoring import wer


def result(text: str, reference: str | None) -> SmokeResult:
    clip = audio.Clip(b"\0\0" * 16000, "/tmp/user.wav", reference)
    timings = Timings(
        total_s=1.2, connect_s=0.01, first_delta_s=0.3, final_to_done_s=0.2, stream_s=1.0, waiting_s=0.25, paced_s=0.9
    )
    return SmokeResult(
        Target("remote", "http://gpu:8000", "secret-key", "VLLM_API_KEY", None, "--url"),
        "realtime",
        clip,
        Transcript(text, 3, timings),
        "voxtral",
        "0.33.0",
        ["voxtral"],
        wer(reference, text) if reference is not None else None,
        0.3,
        wall_s=1.3,
        waiting_s=0.3,
        fast=False,
    )


def test_json_document_is_complete_and_keyless() -> None:
    out = io.StringIO()
    output.write_json(render.to_document(result("hello world", "hello world")), out)
    doc = json.loads(out.getvalue())
    assert doc["schema_version"] == 1 and doc["command"] == "smoke" and doc["passed"] and doc["exit_code"] == 0
    assert doc["timings_ms"]["first_delta"] == 300.0 and doc["timings_ms"]["client_overhead"] == 100.0
    assert doc["rtf"] == 1.2 and doc["error"] is None
    assert "secret-key" not in out.getvalue()


def test_human_report_pass_fail_and_unscored() -> None:
    for text, reference, expect in (
        ("hello world", "hello world", "✓ pass"),
        ("goodbye moon", "hello world", "✗ fail"),
        ("anything", None, "not measured"),
        ("", None, "✗ empty transcript"),
    ):
        out = io.StringIO()
        r = result(text, reference)
        render.render_human(r, out)
        assert expect in out.getvalue()
        assert r.exit_code == (0 if expect in ("✓ pass", "not measured") else 1)
    assert "paced like a live microphone" in out.getvalue() and "RTF 1.20" in out.getvalue()
