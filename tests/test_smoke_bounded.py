"""Every smoke route reads a user's file in blocks (issue 18: a 2-hour WAV died with MemoryError because routes took
the whole converted recording, `Clip.pcm`). Here `Clip.pcm` fails for a file, so a route that still takes the audio
whole fails its run; the peak memory itself, per route and recording length, is benchmarks/smoke_memory.py's."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import voxtralc_kit as kit
from conftest import Cli
from smoke_kit import MistralBehaviour, MistralStandIn, VllmBehaviour, VllmHttpStandIn, VllmStandIn, close_to, tone_pcm
from smoke_kit import write_wav as write

from echopanel_setup.smoke import audio, streams

TEXT = "tones in a file"
TONES = (300.0, 1000.0)


@pytest.fixture(scope="module")
def file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bounded") / "long.wav"
    write(path, tone_pcm(1.0, 44100, 2, tones=TONES, side=(700.0,)), 44100, 2)
    return path


@pytest.fixture
def wav(file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 44.1 kHz stereo WAV (converted on the way), read in many small blocks, and no way to take it whole."""
    path = file
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 1500)
    monkeypatch.setattr(audio, "_BLOCK_BYTES", 3000)

    def whole(self: audio.Clip) -> bytes:
        if self.stream is not None:
            raise AssertionError("a smoke route took the whole recording (Clip.pcm) instead of reading its blocks")
        return self.data

    monkeypatch.setattr(audio.Clip, "pcm", property(whole))
    return path


CHECK = close_to(tone_pcm(1.0, 16000, 1, tones=TONES, side=()), min_snr_db=30)


@pytest.mark.slow
def test_realtime(cli: Cli, wav: Path) -> None:
    with VllmStandIn(CHECK, VllmBehaviour(transcript=TEXT)) as server:
        run = cli("smoke", "--url", server.url, "--fast", "--audio", str(wav), "--expect", TEXT)
    assert run.code == 0, run.err


def test_http_uploads_a_wav_written_block_by_block(cli: Cli, wav: Path) -> None:
    with VllmHttpStandIn(CHECK, VllmBehaviour(transcript=TEXT)) as server:
        run = cli("smoke", "--url", server.url, "--http", "--audio", str(wav), "--expect", TEXT, "--json")
    assert run.code == 0, run.err
    assert run.json()["audio"]["conversion"].startswith("44.1 kHz 16-bit stereo → 16 kHz 16-bit mono by ")


@pytest.mark.slow
def test_api(cli: Cli, wav: Path) -> None:
    pytest.importorskip("mistralai")
    with MistralStandIn(CHECK, MistralBehaviour(transcript=TEXT)) as server:
        run = cli("smoke", "--mode", "api", "--url", server.url, "--api-key", "test-key", "--fast", "--audio", str(wav))
    assert run.code == 0, run.err


@pytest.mark.slow
def test_streams_read_one_spooled_file_each(cli: Cli, wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "run", functools.partial(streams.run, speed=8.0))
    with VllmStandIn(lambda pcm: None, VllmBehaviour(transcript=TEXT)) as server:
        run = cli(
            "smoke", "--url", server.url, "--streams", "2", "--duration", "2", "--audio", str(wav), "--expect", TEXT
        )
        assert server.seen.events.count("session.update") == 2
    assert "looped 2×" in run.out and "Converted:  44.1 kHz 16-bit stereo" in run.out, run.out + run.err


@pytest.mark.skipif(not kit.compiler_available(), reason="needs make and gcc")
def test_voxtral_c(cli: Cli, wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXTRAL_STANDIN_SECONDS_PER_WORD", "0.2")  # the stand-in's four words in one second
    binary = kit.build(kit.make_repo(tmp_path / "voxtral.c"), "blas")
    model = kit.make_model(tmp_path / "model", TEXT)
    run = cli(
        "smoke", "--client", "voxtral-c", "--voxtral-bin", str(binary), "--voxtral-model", str(model),
        "--audio", str(wav), "--expect", TEXT,
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    assert "Converted:  44.1 kHz 16-bit stereo → 16 kHz 16-bit mono by " in run.out


def test_echopanels_provider_gets_the_time_a_long_recording_takes_to_feed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its feed is paced (at 20× with --fast): a 2-hour recording must not meet a fixed 120 s timeout."""
    import sys
    import threading

    from echopanel_setup.smoke import echopanel

    asked: list[float] = []

    class Timer(threading.Timer):
        def __init__(self, interval: float, function: Any) -> None:
            asked.append(interval)
            super().__init__(interval, function)

    monkeypatch.setattr(echopanel.threading, "Timer", Timer)
    feed = echopanel._run_feed(Path(sys.executable), tmp_path, {}, tmp_path / "feed.pcm", "vad", 1.0, feeding_s=7200.0)
    assert asked == [echopanel.RUN_TIMEOUT_S + 7200.0]
    assert feed.error and "load" in feed.error  # no EchoPanel checkout there: the harness says so, and exits


def test_echopanels_provider_output_is_taken_as_it_comes_logs_counted_past_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from echopanel_setup.smoke import client, echopanel

    feed = echopanel.Feed("vad")
    log = json.dumps({"event": "log", "level": "DEBUG", "name": "p", "message": "POST failed"})
    assert all(echopanel._take(feed, log) for _ in range(echopanel._MAX_LOG + 50))
    assert len(feed.log) == echopanel._MAX_LOG and feed.log_dropped == 50
    monkeypatch.setattr(client, "_MAX_TEXT_CHARS", 10)
    segment = json.dumps({"event": "segment", "text": "six ch", "is_final": True})
    assert echopanel._take(feed, segment) and not echopanel._take(feed, segment)
    assert len(feed.segments) == 1 and feed.error is not None
    assert "our memory bound of 10 characters" in feed.error and "EchoPanel's provider is repeating" in feed.error


@pytest.mark.skipif(not kit.compiler_available(), reason="needs make and gcc")
def test_voxtral_c_printing_past_our_memory_bound_is_stopped_and_named(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from echopanel_setup.smoke import client

    monkeypatch.setattr(client, "_MAX_TEXT_CHARS", 20)
    monkeypatch.setenv("VOXTRAL_STANDIN_SECONDS_PER_WORD", "0.1")
    binary = kit.build(kit.make_repo(tmp_path / "voxtral.c"), "blas")
    model = kit.make_model(tmp_path / "model", "again " * 40)
    run = cli("smoke", "--client", "voxtral-c", "--voxtral-bin", str(binary), "--voxtral-model", str(model), "--json")
    doc = run.json()
    assert run.code == 1 and doc["passed"] is False
    assert doc["reason"].startswith("this side stopped the transcription: the transcript passed our memory bound of 20")
    assert "voxtral.c is repeating text without end" in doc["reason"] and "install voxtral --verify" in doc["reason"]
