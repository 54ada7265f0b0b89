"""EchoPanel's `voxtral_realtime` against a voxtral.c stand-in built with the system compiler (tests/voxtralc_kit.py):
the published variant (our stand-in of it, tests/echopanel_kit.py) fails as the real one does; ours, driven the way
EchoPanel drives it (2 s VAD windows, two sources), puts the text in final segments with one process per source."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import voxtralc_kit as kit
from echopanel_kit import make_checkout, voxtral_c_provider

from echopanel_setup.provider import TEMPLATES, echopanel_harness, template_text

pytestmark = pytest.mark.skipif(not kit.compiler_available(), reason="needs make and a C compiler")
WORDS = " ".join(f"w{n:02d}" for n in range(80))  # the stand-in prints one word per 0.5 s of audio
FILE = TEMPLATES["voxtral_realtime"]
_packages = itertools.count()


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kit.build(kit.make_repo(tmp_path_factory.mktemp("vc") / "voxtral.c"), "blas")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return kit.make_model(tmp_path / "voxtral-model", WORDS)


def load(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path, *, vad: bool = True, **env: str
) -> Any:
    """The checkout's voxtral_realtime in this process, configured like EchoPanel (short waits)."""
    monkeypatch.setenv("ECHOPANEL_VOXTRAL_BIN", str(binary))
    monkeypatch.setenv("ECHOPANEL_VOXTRAL_MODEL", str(model))
    env = {"ECHOPANEL_VOXTRAL_STREAMING_DELAY": "0.5", **env}
    for key, value in env.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    package = f"echopanel_vc_{next(_packages)}"
    mod = echopanel_harness.load_provider(checkout, package=package, module="provider_voxtral_realtime")
    provider = echopanel_harness.make_provider(mod, package, vad=vad, name="voxtral_realtime")
    provider.audio_source = sys.modules[f"{package}.services.asr_providers"].AudioSource
    return provider


def ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path, **env: str) -> Any:
    checkout = make_checkout(tmp_path / "EchoPanel", providers={FILE: template_text("voxtral_realtime")})
    provider = load(checkout, monkeypatch, binary, model, **env)
    provider.time_scale = 0.1
    provider.settle_s = 0.15
    return provider


async def vad(provider: Any, pcm: bytes, source: str = "system", *, unload: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    await echopanel_harness.feed_vad(provider, io.BytesIO(pcm), provider.audio_source(source), 2.0, 8.0, out)
    if unload:
        await provider.unload()
    return out


def finals(segments: list[dict[str, Any]]) -> list[str]:
    return " ".join(s["text"] for s in segments if s["is_final"] and not s["text"].startswith("[")).split()


def statuses(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in segments if s["text"].startswith("[")]


@pytest.mark.slow
def test_the_published_variant_fails_against_voxtral_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    """--silent suppresses the banner it waits for: it kills the process and raises (EchoPanel's pipeline dies)."""
    checkout = make_checkout(tmp_path / "EchoPanel", providers={FILE: voxtral_c_provider(ready_timeout_s=0.6)})
    provider = load(checkout, monkeypatch, binary, model)
    with pytest.raises(RuntimeError, match="failed to become ready"):
        asyncio.run(vad(provider, kit.pcm(2.0), unload=False))
    assert len(kit.runs(model)) == 1 and "--silent" in kit.runs(model)[0]


@pytest.mark.slow
def test_the_published_variant_reads_lines_voxtral_c_never_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    """Even past the banner (here: a stand-in without --silent's effect), text never comes: no newline before EOF,
    and the process is stopped after every window (one model load per 2 s)."""
    source = voxtral_c_provider(ready_timeout_s=0.6).replace('"--silent"]', '"--debug"]')
    source = source.replace('b"Model loaded.", ', 'b"Model loaded.", b"Loading", ')
    checkout = make_checkout(tmp_path / "EchoPanel", providers={FILE: source})
    provider = load(checkout, monkeypatch, binary, model)
    segments = asyncio.run(vad(provider, kit.pcm(4.0), unload=False))
    assert finals(segments) == []
    assert len(kit.runs(model)) == 2, "one process per 2 s window"


@pytest.mark.slow
def test_ours_puts_the_text_in_final_segments_with_one_process_across_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model)
    segments = asyncio.run(vad(provider, kit.pcm(7.0)))
    words = finals(segments)
    assert len(words) >= 14, "every word of the 7 s of audio (one per 0.5 s)"
    assert words == WORDS.split()[: len(words)], "each word once, in order"
    assert not statuses(segments)
    runs = kit.runs(model)
    assert len(runs) == 1, "one voxtral.c across the windows"
    assert "--stdin -I 0.5 --silent" in runs[0]
    last = ""
    for seg in segments:  # each partial extends the one before it; the final holds them all
        assert seg["text"].startswith(last), (last, seg["text"])
        last = "" if seg["is_final"] else seg["text"]


@pytest.mark.slow
def test_ours_with_vad_off_one_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model)

    async def stream() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        await echopanel_harness.feed_stream(
            provider, io.BytesIO(kit.pcm(5.0)), provider.audio_source("system"), 8.0, out
        )
        await provider.unload()
        return out

    words = finals(asyncio.run(stream()))
    assert len(words) >= 10 and words == WORDS.split()[: len(words)]
    assert len(kit.runs(model)) == 1


@pytest.mark.slow
def test_ours_two_sources_at_once_one_process_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model)

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system, mic = await asyncio.gather(
            vad(provider, kit.pcm(5.0), "system", unload=False), vad(provider, kit.pcm(3.0), "mic", unload=False)
        )
        await provider.unload()
        return system, mic

    system, mic = asyncio.run(both())
    assert finals(system)[:10] == WORDS.split()[:10] and len(finals(system)) >= 10
    assert finals(mic)[:6] == WORDS.split()[:6] and len(finals(mic)) >= 6
    assert {s["source"] for s in system} == {"system"} and {s["source"] for s in mic} == {"mic"}
    assert len(kit.runs(model)) == 2, "one process per source"


@pytest.mark.slow
def test_ours_waits_for_a_slow_load_without_any_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model, VOXTRAL_STANDIN_LOAD_MS="700")
    segments = asyncio.run(vad(provider, kit.pcm(3.0)))
    assert finals(segments)[:6] == WORDS.split()[:6]


@pytest.mark.slow
def test_a_dead_process_gives_one_status_segment_and_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model)

    async def scenario() -> list[dict[str, Any]]:
        source = provider.audio_source("system")
        out = await vad(provider, kit.pcm(2.5), unload=False)
        os.kill(provider._sources["system"].proc.process.pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        for _ in range(3):
            out += await vad(provider, kit.pcm(2.5), unload=False)
            await asyncio.sleep(0.15)
        health = await provider.health()
        assert isinstance(health, dict) and health["processes_started"] == 2
        await provider.unload()
        assert source is not None
        return out

    with caplog.at_level(logging.WARNING):
        segments = asyncio.run(scenario())
    shown = statuses(segments)
    assert len(shown) == 1 and "voxtral.c exited" in shown[0]["text"]
    assert shown[0]["confidence"] >= 0.3 and len(shown[0]["text"].split()) >= 2 and shown[0]["is_final"]
    assert sum("voxtral.c exited" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    assert len(kit.runs(model)) == 2
    assert finals(segments), "text again after the restart"


def test_missing_weights_give_one_status_segment_never_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = kit.make_model(tmp_path / "empty", WORDS, safetensors=False)
    provider = ours(tmp_path, monkeypatch, binary, empty)
    assert provider.is_available is False

    async def twice() -> tuple[list[dict[str, Any]], Any]:
        out = await vad(provider, kit.pcm(2.0), unload=False)
        out += await vad(provider, kit.pcm(2.0), unload=False)
        return out, await provider.health()

    with caplog.at_level(logging.WARNING):
        segments, health = asyncio.run(twice())
    assert [s["text"][:40] for s in segments] == ["[voxtral_realtime: no consolidated.safet"]
    assert segments[0]["confidence"] >= 0.3
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    assert health["status"] == "unavailable" and health["available"] is False
    assert kit.runs(empty) == []


def test_the_interval_setting_is_voxtral_c_s_dash_i(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", providers={FILE: template_text("voxtral_realtime")})
    with caplog.at_level(logging.WARNING):
        assert load(checkout, monkeypatch, binary, model).settings.command()[-3:] == ["-I", "0.5", "--silent"]
        unset = load(checkout, monkeypatch, binary, model, ECHOPANEL_VOXTRAL_STREAMING_DELAY="")
        assert unset.settings.interval_s == 1.0, "voxtral.c's README: 1.0-2.0 for live use"
        assert not caplog.records
        bad = load(checkout, monkeypatch, binary, model, ECHOPANEL_VOXTRAL_STREAMING_DELAY="fast")
    assert bad.settings.interval_s == 1.0
    assert any("not a positive number" in r.getMessage() for r in caplog.records)
    low = load(checkout, monkeypatch, binary, model, ECHOPANEL_VOXTRAL_STREAMING_DELAY="0.2")
    assert low.settings.interval_s == 0.2 and "wastes most of the GPU time" in low.settings.problems[0]


@pytest.mark.slow
def test_an_idle_process_is_closed_and_a_new_one_started_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model)
    provider.idle_close_s = 2.0  # scaled by time_scale: 0.2 s

    async def scenario() -> list[dict[str, Any]]:
        out = await vad(provider, kit.pcm(2.0), unload=False)
        await asyncio.sleep(0.6)
        assert (await provider.health())["processes"] == {}
        out += await vad(provider, kit.pcm(2.0), unload=False)
        await provider.unload()
        return out

    segments = asyncio.run(scenario())
    assert len(kit.runs(model)) == 2
    assert finals(segments)


# --- `provider check|fix|revert --provider voxtral_realtime` and `smoke --client echopanel` on it -------------------


def provider(cli: Any, *argv: str) -> Any:
    return cli("provider", *argv, "--provider", "voxtral_realtime", "--echopanel-python", sys.executable)


@pytest.mark.slow
def test_check_fix_check_revert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, binary: Path) -> None:
    from echopanel_setup.provider import records
    from echopanel_setup.smoke import audio

    reference = audio.bundled().reference or ""
    model = kit.make_model(tmp_path / "voxtral-model", reference)
    monkeypatch.setenv("VOXTRAL_STANDIN_SECONDS_PER_WORD", "0.1")  # the stand-in's pace: every word within 1.4 s
    checkout = make_checkout(tmp_path / "EchoPanel")
    file = checkout / "server/services" / FILE
    original = file.read_bytes()

    doc = provider(cli, "check", "--echopanel", str(checkout), "--json").json()
    assert doc["exit_code"] == 1 and doc["variant"]["id"] == "voxtral_realtime_voxtral_c"
    assert "--silent" in doc["reason"] and any("not run against voxtral.c" in n for n in doc["notes"])

    run = provider(cli, "fix", "--echopanel", str(checkout), "--yes")
    assert run.code == 0, run.out
    assert "replaced with echopanel-setup's voxtral_realtime" in run.out
    assert "install voxtral-c" in run.out, "no ECHOPANEL_VOXTRAL_BIN yet: EchoPanel would fall back; say what to do"
    assert file.read_text(encoding="utf-8") == template_text("voxtral_realtime")
    assert file.with_name(FILE + ".orig").read_bytes() == original
    assert records.find(file) is not None

    (checkout / ".env").write_text(
        f"ECHOPANEL_VOXTRAL_BIN={binary}\nECHOPANEL_VOXTRAL_MODEL={model}\nECHOPANEL_VOXTRAL_STREAMING_DELAY=0.5\n",
        encoding="utf-8",
    )
    doc = provider(cli, "check", "--echopanel", str(checkout), "--json").json()
    assert doc["exit_code"] == 0, doc["error"]
    assert doc["variant"]["id"] == "voxtral_realtime_setup" and doc["load"]["available"] is True
    assert doc["smoke"]["passed"] and doc["smoke"]["how"] == "run"
    assert doc["smoke"]["transcript"] == reference
    assert len(kit.runs(model)) == 2, "one process per feed (VAD windows, then one stream), not one per window"

    run = provider(cli, "revert", "--echopanel", str(checkout), "--yes")
    assert run.code == 0 and file.read_bytes() == original


@pytest.mark.slow
def test_smoke_echopanel_runs_the_configured_voxtral_realtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, binary: Path
) -> None:
    """The published variant through EchoPanel's own code: no transcript, while voxtral.c alone works."""
    from echopanel_setup.smoke import audio

    model = kit.make_model(tmp_path / "voxtral-model", audio.bundled().reference or "")
    monkeypatch.setenv("VOXTRAL_STANDIN_SECONDS_PER_WORD", "0.1")
    checkout = make_checkout(
        tmp_path / "EchoPanel",
        env=f"ECHOPANEL_ASR_PROVIDER=voxtral_realtime\nECHOPANEL_VOXTRAL_BIN={binary}\nECHOPANEL_VOXTRAL_MODEL={model}\n",
        providers={FILE: voxtral_c_provider(ready_timeout_s=0.5)},
    )
    run = cli(
        "smoke", "--client", "echopanel", "--echopanel", str(checkout), "--echopanel-python", sys.executable, "--fast"
    )
    assert run.code == 1, run.out
    assert "voxtral.c:  works alone" in run.out
    assert (
        "voxtral.c works, but EchoPanel cannot use it: `echopanel-setup provider fix --provider voxtral_realtime`"
        in run.out
    )
    assert "failed to become ready" in run.out


# --- `smoke --client voxtral-c`: the binary alone ----------------------------------------------------------------


def test_smoke_voxtral_c_reports_wer_load_first_text_and_rtf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, binary: Path
) -> None:
    from echopanel_setup.smoke import audio

    reference = audio.bundled().reference or ""
    model = kit.make_model(tmp_path / "model", reference)
    monkeypatch.setenv("VOXTRAL_STANDIN_SECONDS_PER_WORD", "0.1")
    # A load of 0.4 s that also outlasts the bundled clip (150 KiB) filling the pipe, and a reader slower than the
    # writer, however late a loaded machine schedules our writer (with a fixed sleep alone, a writer starting after
    # the load met a reader that drained each write: the pipe never filled and the load was not measured).
    monkeypatch.setenv("VOXTRAL_STANDIN_LOAD_MS", "400")
    monkeypatch.setenv("VOXTRAL_STANDIN_LOAD_UNTIL_FULL", "1")
    monkeypatch.setenv("VOXTRAL_STANDIN_RTF", "0.05")
    run = cli("smoke", "--client", "voxtral-c", "--voxtral-bin", str(binary), "--voxtral-model", str(model), "--json")
    doc = run.json()
    assert run.code == 0, doc
    assert doc["argv"][1:] == ["-d", str(model), "--stdin", "-I", "1", "--silent"]
    assert doc["interval_s"]["from"].startswith("default")
    assert doc["transcript"] == reference and doc["wer"] == 0.0
    assert doc["load_s"] >= 0.4, "the load is when voxtral.c first drained the full pipe"
    assert doc["load_s"] + doc["finish_s"] <= doc["wall_s"] + 0.002, "first text, finish and RTF leave the load out"
    assert 0 <= doc["first_text_s"] <= doc["finish_s"]
    assert doc["rtf"] == pytest.approx(doc["finish_s"] / audio.bundled().duration_s, abs=0.001)
    assert doc["rtf"] >= 0.05, "the processing is in the RTF"


def test_smoke_voxtral_c_takes_echopanel_s_settings(tmp_path: Path, cli: Any, binary: Path) -> None:
    model = kit.make_model(tmp_path / "model", "alpha beta")
    checkout = make_checkout(
        tmp_path / "EchoPanel",
        env=f"ECHOPANEL_VOXTRAL_BIN={binary}\nECHOPANEL_VOXTRAL_MODEL={model}\nECHOPANEL_VOXTRAL_STREAMING_DELAY=0.5\n",
    )
    run = cli("smoke", "--client", "voxtral-c", "--echopanel", str(checkout), "--expect", "alpha beta")
    assert run.code == 0, run.out
    assert f"{binary} -d {model} --stdin -I 0.5 --silent" in run.out
    assert "ECHOPANEL_VOXTRAL_STREAMING_DELAY" in run.out and "WER:        0.0%" in run.out


def test_smoke_voxtral_c_says_why_it_failed(tmp_path: Path, cli: Any) -> None:
    """A binary that cannot load its model: exit 1, its last stderr line in the verdict."""
    fake = tmp_path / "voxtral"
    fake.write_text("#!/bin/sh\necho 'vox_load: bad header' >&2\necho \"Failed to load model from $2\" >&2\nexit 1\n")
    fake.chmod(0o755)
    model = kit.make_model(tmp_path / "model", "x")
    run = cli("smoke", "--client", "voxtral-c", "--voxtral-bin", str(fake), "--voxtral-model", str(model))
    assert run.code == 1
    assert f"voxtral.c failed: exit 1: Failed to load model from {model}" in run.out


def test_smoke_voxtral_c_defaults_to_what_install_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, binary: Path
) -> None:
    from echopanel_setup import paths
    from echopanel_setup.facts import voxtral_c
    from echopanel_setup.facts.model import VoxtralCBuild

    model = kit.make_model(tmp_path / "model", "alpha beta")
    voxtral_c.write_build(
        VoxtralCBuild(checkout=str(binary.parent), commit="0" * 40, backend="blas", binary=str(binary))
    )
    paths.write_state({"model_dir": str(model)})
    monkeypatch.chdir(tmp_path)  # no EchoPanel checkout here
    run = cli("smoke", "--client", "voxtral-c", "--expect", "alpha beta")
    assert run.code == 0, run.out
    assert "recorded by install voxtral-c" in run.out and f"-d {model}" in run.out


@pytest.mark.slow
def test_a_cancelled_call_still_closes_the_idle_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path, model: Path
) -> None:
    provider = ours(tmp_path, monkeypatch, binary, model)
    provider.idle_close_s = 2.0  # scaled by time_scale: 0.2 s

    async def scenario() -> dict[str, Any]:
        async def endless() -> Any:
            while True:
                yield kit.pcm(0.1)
                await asyncio.sleep(0.01)

        async def call() -> None:
            async for _ in provider.transcribe_stream(endless(), 16000, provider.audio_source("system")):
                pass

        task = asyncio.ensure_future(call())
        await asyncio.sleep(0.3)
        task.cancel()  # EchoPanel stopping the session mid-window
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.8)
        return dict(await provider.health())

    health = asyncio.run(scenario())
    assert health["processes"] == {} and health["processes_started"] == 1
