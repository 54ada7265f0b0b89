"""The provider `provider fix` installs, driven the way EchoPanel drives it, against a realtime stand-in that
behaves like the model in time (tests/realtime_kit.py): every word once across 2 s windows and in one stream,
partials cumulative, two sources at once, the last window before silence, failures shown once, rollover."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from echopanel_kit import make_checkout
from realtime_kit import ModelBehaviour, RealtimeModel, Speech, speech, words_of

from echopanel_setup.provider import TEMPLATE, echopanel_harness, template_text

pytestmark = pytest.mark.slow  # each test streams seconds of (time-scaled) audio through a real WebSocket
SCRIPT = "please call stella. ask her to bring these things with her from the store. six spoons of fresh snow peas."
_packages = itertools.count()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "EchoPanel", providers={TEMPLATE: template_text()})


def load(checkout: Path, monkeypatch: pytest.MonkeyPatch, url: str, *, vad: bool = True, **env: str) -> Any:
    """Our provider from the stand-in checkout, in this process, configured like EchoPanel (fast waits)."""
    monkeypatch.setenv("VOXTRAL_VLLM_URL", url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    package = f"echopanel_standin_{next(_packages)}"
    mod = echopanel_harness.load_provider(checkout, package=package)
    provider = echopanel_harness.make_provider(mod, package, vad=vad)
    provider.time_scale = 0.1
    provider.settle_s = 0.15
    provider.audio_source = mod.AudioSource
    return provider


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def vad(provider: Any, clip: Speech, source: str = "system", speed: float = 8.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    await echopanel_harness.feed_vad(provider, io.BytesIO(clip.pcm), provider.audio_source(source), 2.0, speed, out)
    await provider.unload()
    return out


async def stream(provider: Any, clip: Speech, source: str = "system", speed: float = 8.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    await echopanel_harness.feed_stream(provider, io.BytesIO(clip.pcm), provider.audio_source(source), speed, out)
    await provider.unload()
    return out


def assert_cumulative(segments: list[dict[str, Any]]) -> None:
    """Each partial extends the one before it until a final ends the utterance, and the final holds them all."""
    last = ""
    for seg in segments:
        if seg["text"].startswith("["):
            continue
        assert seg["text"].startswith(last), (last, seg["text"])
        last = "" if seg["is_final"] else seg["text"]


def test_two_second_windows_give_every_word_once(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = speech(SCRIPT)
    cut = [w for w, s, e in clip.words if int(s / 2) != int(e / 2)]
    assert cut, "the clip must have words that straddle a window edge"
    with RealtimeModel(clip.vocabulary) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip))
    assert words_of(segments) == clip.text.split()
    assert_cumulative(segments)
    assert len(model.sessions) == 1, "one session kept across the windows"
    finals = [s for s in segments if s["is_final"]]
    assert [f["text"] for f in finals][:2] == [
        "please call stella.",
        "ask her to bring these things with her from the store.",
    ]
    assert all(f["language"] == "en" and f["source"] == "system" for f in finals)
    assert all(0 <= f["t0"] <= f["t1"] <= clip.duration_s + 1 for f in finals)


def test_one_stream_with_vad_off(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = speech(SCRIPT)
    with RealtimeModel(clip.vocabulary) as model:
        segments = run(stream(load(checkout, monkeypatch, model.url, vad=False), clip))
    assert words_of(segments) == clip.text.split()
    assert_cumulative(segments)
    assert sum(1 for s in segments if s["is_final"]) == 3


def test_chunks_that_split_samples(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = speech("alpha bravo charlie delta.")

    async def odd_chunks(provider: Any) -> list[Any]:
        async def audio() -> Any:
            for offset in range(0, len(clip.pcm), 3201):  # an odd size: every other chunk starts mid-sample
                yield clip.pcm[offset : offset + 3201]

        segments = [s async for s in provider.transcribe_stream(audio(), 16000, provider.audio_source("mic"))]
        await provider.unload()
        return segments

    with RealtimeModel(clip.vocabulary) as model:
        segments = run(odd_chunks(load(checkout, monkeypatch, model.url, vad=False)))
    assert words_of(segments) == clip.text.split()
    assert model.sessions[0].pcm.startswith(clip.pcm[: len(clip.pcm) // 2 * 2]), "every sample, in order"


def test_two_sources_at_once(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vocabulary: dict[str, float] = {}
    system = speech("alpha bravo charlie delta echo.", vocabulary=vocabulary)
    mic = speech("one two three four five six.", lead_s=0.3, vocabulary=vocabulary)
    with RealtimeModel(vocabulary) as model:
        provider = load(checkout, monkeypatch, model.url)

        async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            out_sys: list[dict[str, Any]] = []
            out_mic: list[dict[str, Any]] = []
            await asyncio.gather(
                echopanel_harness.feed_vad(
                    provider, io.BytesIO(system.pcm), provider.audio_source("system"), 2.0, 8.0, out_sys
                ),
                echopanel_harness.feed_vad(
                    provider, io.BytesIO(mic.pcm), provider.audio_source("mic"), 2.0, 8.0, out_mic
                ),
            )
            await provider.unload()
            return out_sys, out_mic

        got_sys, got_mic = run(both())
    assert words_of(got_sys) == system.text.split()
    assert words_of(got_mic) == mic.text.split()
    assert {s["source"] for s in got_mic} == {"mic"}
    assert len(model.sessions) == 2


def test_last_window_before_silence_comes_out_in_that_window(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Speech ends 0.4 s into the second window; then 6 s of silence that EchoPanel's VAD skips, then speech again.
    clip = speech("red green blue yellow | | purple orange.", gap_s=0.1)
    with RealtimeModel(clip.vocabulary) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip))
    assert words_of(segments) == clip.text.split()
    last_word_window = int(clip.words[3][2] / 2)
    in_that_window = [s for s in segments if s["window"] == last_word_window and s["is_final"]]
    assert in_that_window and in_that_window[-1]["text"].endswith("yellow")


def test_window_ending_mid_speech_then_silence_loses_nothing(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Words run right up to the 2 s edge, the next windows are silent (skipped): the tail is flushed in the
    # background and shown at the start of the next call.
    clip = speech("red green blue yellow purple | | orange.", gap_s=0.05, lead_s=0.22)
    assert 1.9 < clip.words[4][2] <= 2.0
    with RealtimeModel(clip.vocabulary) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip, speed=4.0))
    assert words_of(segments) == clip.text.split()


def test_rollover_before_max_model_len_loses_no_audio(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = " ".join(f"w{n % 9}" + ("." if n % 6 == 5 else "") for n in range(48))
    clip = speech(script, pause_s=0.5)
    behaviour = ModelBehaviour(max_model_len=260)  # 260 positions: about 17 s of audio per session
    with RealtimeModel(clip.vocabulary, behaviour) as model:
        provider = load(checkout, monkeypatch, model.url, vad=False)
        segments = run(stream(provider, clip, speed=10.0))
        health = provider._stats
    assert len(model.sessions) >= 2, "rolled over to a new session"
    assert all(s.ended != "max_model_len" for s in model.sessions)
    assert model.samples == len(clip.pcm) // 2 + health["padding_samples"]
    assert words_of(segments) == clip.text.split()


def _status(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in segments if s["text"].startswith("[voxtral_official:")]


def _check_status(segments: list[dict[str, Any]], caplog: pytest.LogCaptureFixture, needle: str) -> None:
    status = _status(segments)
    assert len(status) == 1, [s["text"] for s in status]
    assert needle in status[0]["text"]
    assert status[0]["is_final"] and status[0]["confidence"] >= 0.3 and len(status[0]["text"].split()) >= 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "voxtral_official" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_401_gives_one_status_segment_and_one_warning(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clip = speech(SCRIPT)
    with RealtimeModel(clip.vocabulary, ModelBehaviour(api_key="s3cret")) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip))
    _check_status(segments, caplog, "VOXTRAL_VLLM_API_KEY")
    assert "s3cret" not in caplog.text


def test_key_from_env_is_sent(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = speech("alpha bravo charlie.")
    with RealtimeModel(clip.vocabulary, ModelBehaviour(api_key="s3cret")) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url, VOXTRAL_VLLM_API_KEY="s3cret"), clip))
    assert words_of(segments) == clip.text.split()
    assert set(model.auth) == {"Bearer s3cret"}


def test_error_event_gives_one_status_segment_and_one_warning(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clip = speech(SCRIPT)
    behaviour = ModelBehaviour(error_after_samples=(40000, "processing_error", "CUDA out of memory"))
    with RealtimeModel(clip.vocabulary, behaviour) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip, speed=4.0))
    _check_status(segments, caplog, "CUDA out of memory")
    assert len(model.sessions) >= 2, "a new session after the error"
    assert words_of(segments)[-3:] == clip.text.split()[-3:], "transcribing again after the error"


def test_dropped_connection_gives_one_status_segment_and_reconnects(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clip = speech(SCRIPT)
    with RealtimeModel(clip.vocabulary, ModelBehaviour(drop_after_samples=40000)) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip, speed=4.0))
    _check_status(segments, caplog, "closed the session")
    assert len(model.sessions) >= 2
    assert words_of(segments)[-3:] == clip.text.split()[-3:]


def test_name_not_served(checkout: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clip = speech("alpha bravo charlie.")
    with RealtimeModel(clip.vocabulary, ModelBehaviour(models=["mistralai/Voxtral-Mini-4B-Realtime-2602"])) as model:
        segments = run(vad(load(checkout, monkeypatch, model.url), clip))
    _check_status(segments, caplog, "--served-model-name voxtral-mini-transcribe-realtime-2602")
    assert model.sessions == []


def test_unreachable_server_and_silent_warm_up(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = load(checkout, monkeypatch, f"http://127.0.0.1:{port}/v1/")

    async def warm_up_then_speak() -> tuple[list[Any], list[dict[str, Any]]]:
        async def silence() -> Any:
            yield bytes(32000)

        warm = [seg async for seg in provider.transcribe_stream(silence())]  # EchoPanel's start-up warm-up
        return warm, await vad(provider, speech("alpha bravo charlie."))

    warm, segments = run(warm_up_then_speak())
    assert warm == []
    _check_status(segments, caplog, f"cannot reach vLLM at http://127.0.0.1:{port}")
    health = run(provider.health())
    assert isinstance(health, dict) and health["vllm_healthy"] is False


def test_health_is_a_dict_with_reachability(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = speech("alpha bravo.")
    with RealtimeModel(clip.vocabulary) as model:
        provider = load(checkout, monkeypatch, model.url)
        run(vad(provider, clip))
        health = run(provider.health())
    assert health["vllm_healthy"] is True and health["model"] == "voxtral-mini-transcribe-realtime-2602"
    assert health["max_model_len"] == 4096 and health["sessions_opened"] == 1


@pytest.fixture(scope="session")
def websockets_14(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """websockets 14.1, the version EchoPanel pins, in a directory to put first on PYTHONPATH."""
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("websockets-14.1")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "websockets==14.1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot install websockets 14.1 here: {done.stderr.strip()[-200:]}")
    return target


@pytest.mark.parametrize("feed", ["vad", "stream"])
def test_harness_runs_the_provider_with_websockets_14(checkout: Path, websockets_14: Path, feed: str) -> None:
    """EchoPanel pins websockets==14.1: the installed provider, run by the harness in another Python process as
    `smoke --client echopanel` runs it, transcribes with that version too."""
    import json
    import os
    import subprocess
    import sys

    clip = speech(SCRIPT)
    pcm = checkout / "clip.pcm"
    pcm.write_bytes(clip.pcm)
    with RealtimeModel(clip.vocabulary) as model:
        env = {**os.environ, "PYTHONPATH": str(websockets_14), "VOXTRAL_VLLM_URL": model.url}
        done = subprocess.run(
            [
                sys.executable,
                echopanel_harness.__file__,
                "--checkout",
                str(checkout),
                "--pcm",
                str(pcm),
                "--feed",
                feed,
                "--speed",
                "8",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    version = subprocess.run(
        [sys.executable, "-c", "import websockets; print(websockets.__version__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert version == "14.1"
    segments = [e for e in events if e["event"] == "segment"]
    assert words_of(segments) == clip.text.split()
    assert any(e["event"] == "log" and e["level"] == "DEBUG" for e in events), "DEBUG lines are collected"
    assert [e for e in events if e["event"] == "health"][0]["value"]["vllm_healthy"] is True


def test_api_mode_streams_to_mistral_with_the_delay_as_target(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from realtime_kit import MistralModel

    clip = speech(SCRIPT)
    with MistralModel(clip.vocabulary, api_key="k-123") as api:
        provider = load(
            checkout,
            monkeypatch,
            "http://127.0.0.1:9/unused",
            VOXTRAL_MODE="api",
            MISTRAL_API_KEY="k-123",
            VOXTRAL_MISTRAL_SERVER_URL=api.url,
            VOXTRAL_STREAMING_DELAY_MS="720",
        )
        segments = run(vad(provider, clip))
    assert words_of(segments) == clip.text.split()
    assert api.session_updates[0]["target_streaming_delay_ms"] == 720
    assert set(api.auth) == {"Bearer k-123"}


def test_api_mode_without_the_sdk_says_so(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] == "mistralai"] + ["mistralai"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import mistralai…` now fails, as where it is not installed
    provider = load(checkout, monkeypatch, "http://127.0.0.1:9", VOXTRAL_MODE="api", VOXTRAL_MISTRAL_API_KEY="k")
    segments = run(vad(provider, speech("alpha bravo charlie.")))
    _check_status(segments, caplog, "not available: mistralai[realtime] is not installed")
    assert "pip install 'mistralai[realtime]'" in _status(segments)[0]["text"]
