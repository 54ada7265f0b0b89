"""`smoke --mode api` through the real mistralai SDK against a loopback stand-in for Mistral's realtime
transcription endpoint (the SDK takes server_url). Skipped when the optional SDK is not installed."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

pytest.importorskip("mistralai.extra.realtime", reason="mistralai[realtime] is an optional extra")

from conftest import Cli
from smoke_kit import (
    MistralBehaviour,
    MistralStandIn,
    close_to,
    exact,
    tone_pcm,
    write_wav,
)

from echopanel_setup import knowledge
from echopanel_setup.smoke import audio

CLIP = audio.bundled()


def _config(home: Path, text: str) -> str:
    """An EchoPanel `.env` for `--config`."""
    path = home / "EchoPanel.env"
    path.write_text(text)
    return str(path)


def test_api_mode_sends_the_clip_and_the_configured_delay(cli: Cli, monkeypatch, isolated_home: Path) -> None:
    config = _config(isolated_home, "VOXTRAL_MODE=api\nVOXTRAL_STREAMING_DELAY_MS=720\n")
    monkeypatch.setenv("MISTRAL_API_KEY", "test-key")
    with MistralStandIn(exact(CLIP.pcm)) as standin:
        rc, out, err = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--json", "--config", config)
        update = standin.seen.session_updates[0]
        query = standin.query
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["route"] == "api" and doc["delay_ms"] == 720 and doc["wer"]["value"] == 0.0
    assert update["target_streaming_delay_ms"] == 720
    assert update["audio_format"] == {"encoding": "pcm_s16le", "sample_rate": 16000}
    assert query["model"] == [knowledge.load().model.api_model]
    assert doc["deltas"] == 14 and doc["timings_ms"]["first_delta"] is not None
    assert "test-key" not in out + err


def test_echopanels_key_name_wins_and_the_model_is_configurable(cli: Cli, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOXTRAL_MISTRAL_API_KEY", "right")
    monkeypatch.setenv("MISTRAL_API_KEY", "wrong")
    path = tmp_path / "voice.wav"
    write_wav(path, tone_pcm(1.0, 44100, 2), 44100, 2)
    with MistralStandIn(
        close_to(tone_pcm(1.0, 16000, 1, side=())), MistralBehaviour(api_key="right", transcript="tones")
    ) as standin:
        rc, out, err = cli(
            "smoke",
            "--mode",
            "api",
            "--url",
            standin.url,
            "--fast",
            "--model",
            "voxtral-mini-transcribe-realtime-3",
            "--audio",
            str(path),
            "--expect",
            "tones",
        )
        assert standin.query["model"] == ["voxtral-mini-transcribe-realtime-3"]
    assert rc == 0, err
    assert "target_streaming_delay_ms=480" in out  # the default when the config sets none


def test_a_refused_key_is_an_external_error(cli: Cli, monkeypatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "not-the-key")
    with MistralStandIn(exact(CLIP.pcm)) as standin:
        rc, out, err = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--json")
    assert rc == 3
    assert "refused the API key from MISTRAL_API_KEY (HTTP 401)" in err
    assert json.loads(out)["error"]["message"] in err
    assert "not-the-key" not in out + err


def test_an_error_event_is_shown(cli: Cli) -> None:
    with MistralStandIn(exact(CLIP.pcm), MistralBehaviour(error=(3051, "Audio too long for this tier"))) as standin:
        rc, _, err = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--api-key", "test-key")
    assert rc == 3 and "3051" in err and "Audio too long for this tier" in err


def test_an_error_event_saying_out_of_memory_gets_the_memory_fix(cli: Cli) -> None:
    behaviour = MistralBehaviour(error=(3500, "CUDA out of memory. Tried to allocate 2.00 GiB"))
    with MistralStandIn(exact(CLIP.pcm), behaviour) as standin:
        rc, _, err = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--api-key", "test-key")
    assert rc == 3 and "sent error 3500: CUDA out of memory" in err and "(the server ran out of memory: " in err


def test_the_transcript_cap_stops_the_api_route_too(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from echopanel_setup.smoke import client

    monkeypatch.setattr(client, "_MAX_TEXT_CHARS", 12)
    with MistralStandIn(exact(CLIP.pcm)) as standin:
        rc, _, err = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--api-key", "test-key")
    assert rc == 3 and "this side stopped the transcription after 3 deltas" in err and "memory bound of 12" in err


def test_no_key_is_a_usage_error(cli: Cli) -> None:
    rc, _, err = cli("smoke", "--mode", "api", "--url", "http://127.0.0.1:1")
    assert rc == 2 and "needs a Mistral API key" in err


def test_an_off_grid_configured_delay_is_refused(cli: Cli, monkeypatch, isolated_home: Path) -> None:
    config = _config(
        isolated_home, "VOXTRAL_MODE=api\nVOXTRAL_STREAMING_DELAY_MS=500\nVOXTRAL_MISTRAL_API_KEY=${MY_KEY}\n"
    )
    monkeypatch.setenv("MY_KEY", "test-key")
    rc, _, err = cli("smoke", "--mode", "api", "--fast", "--config", config)
    assert rc == 2 and "nearest: 480" in err


def test_without_the_sdk_the_error_says_how_to_install_it(cli: Cli, monkeypatch) -> None:
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "mistralai":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    rc, _, err = cli("smoke", "--mode", "api", "--url", "http://127.0.0.1:1", "--api-key", "k")
    assert rc == 2 and "pip install 'echopanel-setup[api]'" in err


def test_the_stand_in_checks_each_session_on_its_own_audio(cli: Cli) -> None:
    """Regression (test kit): the Mistral stand-in added every session's audio to the last one's."""
    with MistralStandIn(exact(CLIP.pcm)) as standin:
        first = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--api-key", "test-key")
        second = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--api-key", "test-key")
    assert first[0] == 0 and second[0] == 0, second[2]


def test_a_server_that_never_creates_the_session_is_one_clear_line(cli: Cli, monkeypatch) -> None:
    """Regression: the SDK's handshake timeout (a TimeoutError, hence an OSError) read 'cannot reach URL: '."""
    from echopanel_setup.smoke import client

    monkeypatch.setattr(client.Limits, "defaults", classmethod(lambda cls, done_s=None: cls(2.0, 0.5, 2.0)))
    with MistralStandIn(exact(CLIP.pcm), MistralBehaviour(silent=True)) as standin:
        rc, _, err = cli("smoke", "--mode", "api", "--url", standin.url, "--fast", "--api-key", "test-key")
    assert rc == 3 and "Timeout waiting for session creation" in err and "does not answer" in err
    assert "cannot reach" not in err and err.count("\n") == 1
