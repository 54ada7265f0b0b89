"""`setup` with an EchoPanel checkout: its provider must be one that can work (`provider fix` offered, applied only
with consent or --yes), and "set up" comes only after EchoPanel's own provider transcribed (smoke echopanel)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import Cli
from echopanel_kit import make_checkout
from realtime_kit import ChatFront, ModelBehaviour, RealtimeModel

from echopanel_setup.echopanel import dotenv
from echopanel_setup.provider import template_text
from echopanel_setup.smoke import audio

pytestmark = pytest.mark.slow
CLIP = audio.bundled()
FILE = Path("server/services/provider_voxtral_official.py")


def serve_clip() -> tuple[RealtimeModel, ChatFront]:
    model = RealtimeModel({}, ModelBehaviour(script=(CLIP.pcm, CLIP.reference or "")))
    return model, ChatFront(model)


def setup(cli: Cli, checkout: Path, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return cli(
        "setup",
        "--mode",
        "remote",
        "--url",
        url,
        "--echopanel",
        str(checkout),
        "--echopanel-python",
        sys.executable,
        *extra,
    )


def test_setup_fixes_the_provider_with_yes_and_ends_with_echopanel_transcribing(cli: Cli, tmp_path: Path) -> None:
    model, front = serve_clip()
    with model, front:
        checkout = make_checkout(tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL={front.url}\n")
        run = setup(cli, checkout, front.url, "--yes")
    assert run.code == 0, run.out + run.err
    assert "/v1/chat/completions" in run.out, "the published provider's problem is named"
    assert "replaced by echopanel-setup's realtime provider" in run.out
    assert f"a vLLM server answers at {front.url} (GET /health: 200)" in run.out, "configure's step asked /health"
    assert "smoke echopanel  EchoPanel transcribes with this server" in run.out, run.out
    assert run.out.rstrip().splitlines()[-1].startswith("Voxtral is set up for EchoPanel.")
    assert (checkout / FILE).read_text(encoding="utf-8") == template_text()
    settings = dotenv.read(checkout / ".env").values  # configure wrote EchoPanel's .env, which the last smoke read
    assert settings["ECHOPANEL_ASR_PROVIDER"] == "voxtral_official" and settings["VOXTRAL_VLLM_URL"] == front.url


def test_declining_the_provider_fix_never_ends_in_set_up(cli: Cli, tmp_path: Path) -> None:
    model, front = serve_clip()
    with model, front:
        checkout = make_checkout(tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL={front.url}\n")
        original = (checkout / FILE).read_bytes()
        run = setup(cli, checkout, front.url)  # no terminal to ask and no --yes: not applied
    assert run.code == 1
    assert "stop  provider" in run.out and "echopanel-setup provider fix" in run.out
    assert "set up" not in run.out.lower().split("echopanel-setup setup")[-1]
    assert (checkout / FILE).read_bytes() == original
