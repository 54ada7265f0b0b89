"""smoke.server: URL forms, and `smoke --http` through vLLM's multipart /v1/audio/transcriptions, against
a real loopback HTTP server that decodes the uploaded WAV and checks its audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli
from smoke_kit import (
    VOXTRAL,
    VllmBehaviour,
    VllmHttpStandIn,
    close_to,
    exact,
    tone_pcm,
    write_wav,
)

from echopanel_setup.errors import UsageError
from echopanel_setup.smoke import audio, server
from echopanel_setup.url import ServerURL

CLIP = audio.bundled()


@pytest.mark.parametrize(
    ("url", "http_base", "ws_url"),
    [
        ("http://gpu:8000", "http://gpu:8000", "ws://gpu:8000/v1/realtime"),
        ("ws://gpu:8000/v1/realtime", "http://gpu:8000", "ws://gpu:8000/v1/realtime"),
        ("https://asr.example.com/vllm/", "https://asr.example.com/vllm", "wss://asr.example.com/vllm/v1/realtime"),
        ("wss://asr.example.com/v1", "https://asr.example.com", "wss://asr.example.com/v1/realtime"),
        ("http://[::1]:8000/", "http://[::1]:8000", "ws://[::1]:8000/v1/realtime"),
    ],
)
def test_endpoint_forms(url: str, http_base: str, ws_url: str) -> None:
    parsed = ServerURL.parse(url)
    assert (parsed.http_base, parsed.ws_url) == (http_base, ws_url)


@pytest.mark.parametrize("url", ["gpu:8000", "ftp://gpu", "http://gpu:99999", "http://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError):
        ServerURL.parse(url)


def test_http_route_with_the_bundled_clip(cli: Cli) -> None:
    with VllmHttpStandIn(exact(CLIP.pcm)) as standin:
        rc, out, err = cli("smoke", "--url", standin.url, "--http", "--json")
        assert standin.seen.model == VOXTRAL
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["route"] == "http" and doc["wer"]["value"] == 0.0 and doc["timings_ms"]["final_to_done"] is not None


def test_http_route_with_a_44k_stereo_file(cli: Cli, tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", tone_pcm(1.0, 44100, 2), 44100, 2)
    with VllmHttpStandIn(close_to(tone_pcm(1.0, 16000, 1, side=())), VllmBehaviour(transcript="tones")) as standin:
        rc, _, err = cli(
            "smoke",
            "--url",
            standin.url,
            "--http",
            "--audio",
            str(tmp_path / "in.wav"),
            "--expect",
            "tones",
        )
    assert rc == 0, err


def test_http_route_errors(cli: Cli) -> None:
    with VllmHttpStandIn(exact(b"something else"), VllmBehaviour(api_key="k")) as standin:
        rc_key, _, err_key = cli("smoke", "--url", standin.url, "--http")
        rc_audio, _, err_audio = cli("smoke", "--url", standin.url, "--http", "--api-key", "k")
    assert rc_key == 3 and "wants an API key (HTTP 401)" in err_key
    assert rc_audio == 3 and "HTTP 400: stand-in: got" in err_audio


def test_http_route_missing(monkeypatch, capsys) -> None:
    standin = VllmHttpStandIn(exact(CLIP.pcm))
    with standin:
        ep = ServerURL.parse(standin.url + "/nothing-here")
        with pytest.raises(Exception, match="HTTP 404"), audio.wav_file(CLIP) as wav:
            server.transcribe_http(ep, VOXTRAL, wav, None, 5)


def test_choose_model() -> None:
    assert server.choose_model("u", ["a"], None) == "a"
    assert server.choose_model("u", ["x", VOXTRAL], None) == VOXTRAL
    assert server.choose_model("u", ["x", "y"], "y") == "y"
    with pytest.raises(UsageError, match="several models"):
        server.choose_model("u", ["x", "y"], None)
    # What `serve` starts: the name EchoPanel sends and the Hub repo id, one model under two names (vLLM lists
    # each). smoke refused it ("serves several models: pick one with --model"); it takes the one EchoPanel sends.
    both = ["voxtral-mini-transcribe-realtime-2602", "mistralai/Voxtral-Mini-4B-Realtime-2602"]
    assert server.choose_model("u", both, None) == server.choose_model("u", both[::-1], None) == both[0]
    with pytest.raises(UsageError, match="it serves: x"):
        server.choose_model("u", ["x"], "z")
