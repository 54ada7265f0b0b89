"""`smoke --client echopanel`: EchoPanel's own provider run in its Python (or its protocol replayed) against a
server that speaks vLLM's chat route and realtime WebSocket on one port (tests/realtime_kit.py)."""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

import pytest
from conftest import Cli
from echopanel_kit import make_backend_python, make_checkout
from realtime_kit import ChatFront, RealtimeModel, speech

from echopanel_setup.provider import TEMPLATE, template_text

pytestmark = pytest.mark.slow
SCRIPT = "please call stella. ask her to bring these things."


def run_main(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """`echopanel-setup ARGV` in this process (conftest's runner), as (exit code, stdout, stderr)."""
    run = Cli(monkeypatch, capsys)(*argv)
    return run.code, run.out, run.err


@pytest.fixture
def clip_file(tmp_path: Path) -> tuple[Path, object]:
    clip = speech(SCRIPT)
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(clip.pcm)
    return path, clip


def smoke(monkeypatch, capsys, checkout: Path, clip: Path, text: str, *extra: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    args = ["--echopanel", str(checkout), "--audio", str(clip), "--expect", text, "--fast", *extra]
    return run_main(monkeypatch, capsys, "smoke", *args)


def test_published_provider_runs_and_the_server_works_but_echopanel_cannot_use_it(
    tmp_path: Path, clip_file, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    path, clip = clip_file
    with RealtimeModel(clip.vocabulary) as model, ChatFront(model) as server:
        checkout = make_checkout(tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL={server.url}\n")
        code, out, err = smoke(monkeypatch, capsys, checkout, path, clip.text, "--echopanel-python", sys.executable)
    assert code == 1, out + err
    assert out.splitlines()[0].startswith("Client:     echopanel")
    assert "its own code in" in out
    assert "Invalid or corrupted audio data" in out, "vLLM's own reason, from the provider's DEBUG log"
    assert "the server works, but EchoPanel cannot use it" in out
    assert server.posts and server.posts[0]["body"]["model"] == "voxtral-mini-transcribe-realtime-2602"


def test_url_overrides_the_checkouts_setting(tmp_path: Path, clip_file, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`--url` (parsed once into a ServerURL) reaches the replay as the URL EchoPanel would be given."""
    path, clip = clip_file
    with RealtimeModel(clip.vocabulary) as model, ChatFront(model) as server:
        checkout = make_checkout(tmp_path / "EchoPanel", env="VOXTRAL_VLLM_URL=http://127.0.0.1:9\n")
        code, out, err = smoke(
            monkeypatch, capsys, checkout, path, clip.text, "--echopanel-python", sys.executable, "--url", server.url
        )
    assert code == 1, out + err
    assert "the server works, but EchoPanel cannot use it" in out
    assert server.posts


def test_replay_when_its_python_cannot_run_it(tmp_path: Path, clip_file, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path, clip = clip_file
    with RealtimeModel(clip.vocabulary) as model, ChatFront(model) as server:
        checkout = make_checkout(tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL={server.url}\n")
        make_backend_python(checkout)  # a bare venv: no aiohttp, so EchoPanel would fall back to faster_whisper
        code, out, _ = smoke(monkeypatch, capsys, checkout, path, clip.text, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["how"] == "replay" and "unavailable" in doc["fallback_reason"]
    steps = [(s["what"].split(" (")[0], s["status"]) for s in doc["steps"]]
    assert steps[:3] == [("GET /health", 200), ("GET /v1/models", 200), ("POST /v1/chat/completions", 400)]
    assert "no transcript" in doc["steps"][2]["echopanel_shows"]
    post = server.posts[0]
    assert post["headers"]["Content-Type"] == "application/json" and "Authorization" not in post["headers"]
    assert len(post["body"]["messages"][0]["content"][0]["audio_url"]["url"]) > 15360  # 480 ms chunks, base64
    assert doc["server_works"] is True and doc["verdict"].startswith("the server works, but EchoPanel cannot use it")


def test_after_fix_echopanel_transcribes(tmp_path: Path, clip_file, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path, clip = clip_file
    with RealtimeModel(clip.vocabulary) as model:
        checkout = make_checkout(
            tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL={model.url}/v1/\n", providers={TEMPLATE: template_text()}
        )
        code, out, err = smoke(monkeypatch, capsys, checkout, path, clip.text, "--echopanel-python", sys.executable)
    assert code == 0, out + err
    assert "VAD on, 2 s windows: please call stella. ask her to bring these things." in out
    assert "VAD off, one stream: please call stella. ask her to bring these things." in out
    assert "WER:        0.0%" in out and "✓ EchoPanel transcribes with this server" in out


def test_realtime_client_without_a_checkout(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run_main(monkeypatch, capsys, "smoke", "--client", "echopanel")
    assert code == 2 and "--echopanel PATH" in err


def test_url_flag_is_what_echopanel_is_given_and_no_password_is_shown(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checkout = make_checkout(tmp_path / "EchoPanel", providers={TEMPLATE: template_text()})
    url = f"http://kit:s3cret-pw@127.0.0.1:{port}"
    args = ["--echopanel", str(checkout), "--echopanel-python", sys.executable, "--url", url, "--fast", "--json"]
    code, out, err = run_main(monkeypatch, capsys, "smoke", *args)
    doc = json.loads(out)
    assert doc["url"] == f"http://127.0.0.1:{port}" and doc["url_from"] == "--url"
    assert "s3cret-pw" not in out + err
    # Nothing answers at the URL: "server unreachable" is exit 3, as with --client realtime (it was 1).
    assert code == 3 and doc["exit_code"] == 3 and doc["verdict"].startswith("nothing answers at")


def test_which_client_smoke_runs_is_decided_in_smoke_not_in_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14's thin CLI: cli/smoke.py parses and dispatches; the choice (and its refusals) is smoke's own."""
    from echopanel_setup.errors import UsageError
    from echopanel_setup.smoke.runner import choose_client

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ECHOPANEL_HOME", raising=False)
    plain = {"mode_given": False, "http": False, "streams": None, "duration": None, "echopanel": None}
    assert choose_client(None, **plain) == ("realtime", "no EchoPanel checkout found")
    assert choose_client("voxtral-c", **plain) == ("voxtral-c", "--client")
    assert choose_client(None, **{**plain, "streams": 3}) == ("realtime", "--streams")
    assert choose_client(None, **{**plain, "http": True}) == ("realtime", "--mode/--http")
    with pytest.raises(UsageError, match="--duration goes with --streams"):
        choose_client(None, **{**plain, "duration": 5.0})
    with pytest.raises(UsageError, match="drop --client"):
        choose_client("echopanel", **{**plain, "streams": 2})
