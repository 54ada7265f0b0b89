"""`smoke --streams N`: N realtime sessions at once against the realtime stand-in that behaves like the model in time
(tests/realtime_kit.py), one of them slowed per step, with the microphone's clock run faster (`speed`) so the suite
stays quick. Every figure the tool reports is in audio time, so the verdicts are the same as at speed 1."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
from conftest import Cli
from realtime_kit import ModelBehaviour, RealtimeModel
from smoke_kit import write_wav

from echopanel_setup.smoke import audio, streams
from echopanel_setup.smoke.result import Transcript
from echopanel_setup.smoke.runner import SmokeOptions
from echopanel_setup.url import ServerURL
from echopanel_setup.watch import runner as watch_runner

CLIP = audio.bundled()
SPEED = 4.0  # the microphone's clock, 4× real time: 4.8 s of audio per stream takes 1.2 s


def model(seconds: float, session_step_s: tuple[float, ...] = ()) -> RealtimeModel:
    """The stand-in serving the bundled clip looped as smoke sends it; `session_step_s`: compute time per 80 ms step
    of each session (wall clock: at SPEED 4 a step's audio arrives every 20 ms, so 30 ms per step falls behind)."""
    loops = max(1, math.ceil(seconds / CLIP.duration_s))
    script = (CLIP.pcm * loops, " ".join([CLIP.reference or ""] * loops))
    return RealtimeModel({}, ModelBehaviour(script=script, session_step_s=session_step_s, max_model_len=None))


def run(server: RealtimeModel, n: int, seconds: float) -> streams.StreamsResult:
    return streams.run(SmokeOptions(url=ServerURL.parse(server.url)), n, seconds, speed=SPEED)


@pytest.mark.slow
def test_one_slow_stream_of_three_is_told_from_the_two_that_keep_up() -> None:
    with model(4.0, session_step_s=(0.0, 0.03, 0.0)) as server:
        result = run(server, 3, 4.0)
        assert len(server.sessions) == 3  # never more sessions than asked
    kept = [r for r in result.runs if r.kept_up]
    behind = [r for r in result.runs if not r.kept_up]
    assert len(kept) == 2 and len(behind) == 1
    assert behind[0].growth_s is not None and behind[0].growth_s > 1.0
    for r in kept:  # the model's 480 ms delay plus a chunk: steady, not growing
        assert r.lag(0.99) is not None and 0.3 < r.lag(0.99) < 1.5 and abs(r.growth_s or 0.0) < 0.3
    assert all(r.score is not None and r.score.wer == 0.0 for r in result.runs)  # slow is not wrong: every word came
    assert not result.passed and result.exit_code == 1 and result.carried == 2
    assert "carried 2 of 3" in result.summary


@pytest.mark.slow
def test_streams_that_keep_up_pass_and_are_compared_with_serves_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_runner, "serve_plan", lambda url: watch_runner.Plan(3, None, "the serve record"))
    with model(6.0) as server:
        result = run(server, 3, 6.0)  # 6 s: the clip twice
        assert len(server.sessions) == 3
    assert result.loops == 2 and result.passed and result.exit_code == 0
    assert all(len(r.lags_s) == 28 for r in result.runs)  # 14 words a loop, each timed
    assert result.summary.startswith("planned 3, carried 3 of 3, lag p99 ")


@pytest.mark.slow
def test_smoke_streams_json_is_an_envelope(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "run", functools.partial(streams.run, speed=SPEED))
    with model(1.0, session_step_s=(0.0, 0.03)) as server:
        run_ = cli("smoke", "--json", "--url", server.url, "--streams", "2", "--duration", "1")
        assert len(server.sessions) == 2
    doc = run_.json()
    assert run_.code == 1 and doc["exit_code"] == 1 and doc["error"] is None
    assert doc["streams"]["asked"] == 2 and doc["streams"]["carried"] == 1
    assert sorted(s["kept_up"] for s in doc["streams"]["each"]) == [False, True]


@pytest.mark.slow
def test_smoke_streams_human_report(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "run", functools.partial(streams.run, speed=SPEED))
    with model(1.0) as server:
        code, out, err = cli("smoke", "--url", server.url, "--streams", "2", "--duration", "1")
    assert code == 0, out + err
    assert out.count("kept up") == 2 and "carried 2 of 2" in out and "carries 2 streams in real time" in out
    assert out.startswith("echopanel-setup smoke --streams 2  ·  "), out  # no 'Client: realtime (--streams)' first


@pytest.mark.slow
def test_streams_that_keep_up_with_a_wrong_transcript_are_not_blamed_on_capacity(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: every stream kept up but the text did not match --expect, and the verdict said the server does not
    carry the streams in real time, with "fewer streams per server" as the fix."""
    monkeypatch.setattr(streams, "run", functools.partial(streams.run, speed=SPEED))
    with model(1.0) as server:
        code, out, err = cli(
            "smoke", "--url", server.url, "--streams", "2", "--duration", "1", "--expect", "nothing like it at all"
        )
    assert code == 1, out + err
    assert out.count("wrong") == 2 and "kept up" not in out.split("Verdict:")[0]
    assert "every stream kept up in real time, but 2 of 2 transcripts are over the 30% WER limit" in out
    assert "does not carry" not in out and "fewer streams" not in out and "--expect" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--duration", "5"), "--duration goes with --streams"),
        (("--streams", "0"), "--streams 0"),
        (("--streams", "65"), "--streams 65"),
        (("--streams", "2", "--duration", "0"), "--duration 0"),
        (("--streams", "2", "--fast"), "drop --http and --fast"),
        (("--streams", "2", "--client", "echopanel"), "drop --client"),
        (("--streams", "2", "--mode", "api", "--api-key", "k"), "Mistral's API"),
    ],
)
def test_bad_streams_flags_are_usage_errors(cli: Cli, args: tuple[str, ...], fragment: str) -> None:
    code, _, err = cli("smoke", "--url", "http://127.0.0.1:9", *args)
    assert code == 2 and fragment in err, err


def test_a_recording_longer_than_duration_is_refused_before_any_stream(cli: Cli, tmp_path: Path) -> None:
    """Regression: a 600 s --audio with --duration 3 ran 600 s per stream (the clip was looped at least once, never
    cut). Its --expect covers the whole recording, so it cannot be cut: a --duration shorter than it is a usage
    error, said before any session opens or the file is converted."""
    wav = tmp_path / "long.wav"
    write_wav(wav, bytes(2 * 16000 * 4), 16000, 1)  # 4 s
    with model(1.0) as server:
        args = ("smoke", "--url", server.url, "--streams", "2", "--audio", str(wav), "--expect", "x")
        code, _, err = cli(*args, "--duration", "3")
        assert not server.sessions
    assert code == 2 and "--duration 3" in err and "4 s" in err and "--duration 4" in err, err


def test_word_ends_follow_the_voiced_time() -> None:
    silence, tone = bytes(3200), b"\x00\x40" * 3200  # 0.1 s silence, 0.2 s loud
    pcm = silence + tone + silence + tone + silence
    ends = streams.word_ends(pcm, 2)
    assert ends == [1600 + 3200, 1600 + 3200 + 1600 + 3200]  # each word ends where its sound does


def test_a_growing_lag_is_falling_behind_and_a_steady_one_is_not() -> None:
    ends = [1600 * (k + 1) for k in range(9)]  # a word every 0.1 s of audio
    sent = [(0.1 * (k + 1), 3200 * (k + 1)) for k in range(9)]  # each word's audio sent as it is spoken
    steady, growing = streams.StreamRun(1), streams.StreamRun(2)
    streams.measure(steady, sent, [(0.1 * (k + 1) + 0.5, f" w{k}") for k in range(9)], ends, 1.0)
    streams.measure(growing, sent, [(0.1 * (k + 1) + 0.5 + 0.3 * k, f" w{k}") for k in range(9)], ends, 1.0)
    steady.transcript = growing.transcript = Transcript("w0 w1 w2 w3 w4 w5 w6 w7 w8")
    assert steady.lags_s == pytest.approx([0.5] * 9) and steady.kept_up
    assert growing.growth_s == pytest.approx(1.8) and not growing.kept_up
