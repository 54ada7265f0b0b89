"""`configure --provider voxtral_realtime`: EchoPanel's voxtral.c provider selected in <checkout>/.env with absolute
ECHOPANEL_VOXTRAL_BIN / ECHOPANEL_VOXTRAL_MODEL from what `install voxtral-c` and `install voxtral` left, voxtral.c's
`-I` only when given — and refused while the checkout's voxtral_realtime is the published one that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Cli, CliRun
from echopanel_kit import make_checkout

from echopanel_setup import paths
from echopanel_setup.echopanel import dotenv
from echopanel_setup.facts import voxtral_c
from echopanel_setup.facts.model import VoxtralCBuild
from echopanel_setup.provider import TEMPLATES, template_text

FACTS = Path(__file__).parent / "fixtures" / "facts" / "macos-arm64.json"
OURS = {TEMPLATES["voxtral_realtime"]: template_text("voxtral_realtime")}


def configure(cli: Cli, checkout: Path, *args: str) -> CliRun:
    return cli(
        "configure", "--facts", str(FACTS), "--echopanel", str(checkout), "--provider", "voxtral_realtime", *args
    )


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, Path]:
    """What install voxtral-c and install voxtral record: a binary and a model dir with the weights file."""
    binary = tmp_path / "voxtral.c" / "voxtral"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    model = tmp_path / "model"
    model.mkdir()
    (model / "consolidated.safetensors").write_bytes(b"x")
    voxtral_c.write_build(
        VoxtralCBuild(checkout=str(binary.parent), commit="0" * 40, backend="mps", binary=str(binary))
    )
    paths.write_state({"model_dir": str(model)})
    return binary, model


def env_of(checkout: Path) -> dict[str, str]:
    return dict(dotenv.read(checkout / ".env").values)


def test_refused_while_the_published_variant_is_there(cli: Cli, tmp_path: Path, installed: tuple[Path, Path]) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", env="KEEP=1\n")
    run = configure(cli, checkout, "--yes")
    assert run.code == 1
    assert "provider fix --provider voxtral_realtime" in run.err and "--force" in run.err
    assert env_of(checkout) == {"KEEP": "1"}, "nothing written"
    forced = configure(cli, checkout, "--yes", "--force")
    assert forced.code == 0 and env_of(checkout)["ECHOPANEL_ASR_PROVIDER"] == "voxtral_realtime"


def test_ours_gets_absolute_paths_from_the_installs_and_no_interval(
    cli: Cli, tmp_path: Path, installed: tuple[Path, Path]
) -> None:
    binary, model = installed
    checkout = make_checkout(
        tmp_path / "EchoPanel", env="KEEP=1\nVOXTRAL_VLLM_URL=http://127.0.0.1:8001\n", providers=OURS
    )
    run = configure(cli, checkout, "--yes")
    assert run.code == 0, run.out + run.err
    assert env_of(checkout) == {
        "KEEP": "1",
        "VOXTRAL_VLLM_URL": "http://127.0.0.1:8001",
        "ECHOPANEL_ASR_PROVIDER": "voxtral_realtime",
        "ECHOPANEL_VOXTRAL_BIN": str(binary),
        "ECHOPANEL_VOXTRAL_MODEL": str(model),
    }
    assert "built by `echopanel-setup install voxtral-c`" in run.out


def test_the_interval_only_when_given_and_a_warning_below_half_a_second(
    cli: Cli, tmp_path: Path, installed: tuple[Path, Path]
) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", providers=OURS)
    run = configure(cli, checkout, "--yes", "--interval", "0.3")
    assert run.code == 0 and env_of(checkout)["ECHOPANEL_VOXTRAL_STREAMING_DELAY"] == "0.3"
    assert "below 0.5 s wastes most of the GPU time; 1.0-2.0 suits live use" in run.out
    again = configure(cli, checkout, "--yes")
    assert again.code == 0 and env_of(checkout)["ECHOPANEL_VOXTRAL_STREAMING_DELAY"] == "0.3", "kept, not defaulted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--interval", "0"), "positive number of seconds"),
        (("--voxtral-bin", "/nowhere/voxtral"), "not a voxtral.c binary"),
    ],
)
def test_bad_values_are_usage_errors(cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", providers=OURS)
    run = configure(cli, checkout, "--yes", *args)
    assert run.code == 2 and message in run.err


def test_voxtral_c_flags_need_the_provider(cli: Cli, tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel")
    run = cli("configure", "--facts", str(FACTS), "--echopanel", str(checkout), "--interval", "1.0", "--yes")
    assert run.code == 2 and "only with --provider voxtral_realtime" in run.err


def test_nothing_installed_yet_is_refused_not_a_silent_fallback(cli: Cli, tmp_path: Path) -> None:
    """Selecting voxtral_realtime without a binary or weights would make EchoPanel fall back to faster_whisper in
    silence: refused (exit 1) with the installs to run; --force writes the selection and says what is missing."""
    checkout = make_checkout(tmp_path / "EchoPanel", providers=OURS)
    before = (checkout / ".env").read_bytes() if (checkout / ".env").exists() else None
    run = configure(cli, checkout, "--yes")
    assert run.code == 1 and "falls back to faster_whisper" in run.err
    assert "install voxtral-c" in run.err and "a voxtral.c binary and the Voxtral weights" in run.err
    assert ((checkout / ".env").read_bytes() if (checkout / ".env").exists() else None) == before
    forced = configure(cli, checkout, "--yes", "--force")
    assert forced.code == 0
    assert "ECHOPANEL_VOXTRAL_BIN" not in env_of(checkout) and "ECHOPANEL_VOXTRAL_MODEL" not in env_of(checkout)
    assert "echopanel-setup install voxtral-c" in forced.out and "echopanel-setup install voxtral" in forced.out


@pytest.mark.parametrize("facts", ["macos-arm64", "linux-4090-desktop"])
def test_a_plain_configure_keeps_voxtral_realtime_where_echopanel_selects_it(
    cli: Cli, tmp_path: Path, installed: tuple[Path, Path], facts: str
) -> None:
    """No --provider, --mode or --url: EchoPanel's selection stays (a GPU box is not a reason to switch to vLLM, a Mac
    without vLLM is not a reason to stop); --mode still chooses the vLLM path."""
    binary, _ = installed
    checkout = make_checkout(tmp_path / "EchoPanel", env="ECHOPANEL_ASR_PROVIDER=voxtral_realtime\n", providers=OURS)
    snapshot = str(FACTS.with_name(f"{facts}.json"))
    run = cli("configure", "--facts", snapshot, "--echopanel", str(checkout), "--yes")
    assert run.code == 0, run.err
    assert env_of(checkout)["ECHOPANEL_VOXTRAL_BIN"] == str(binary)
    assert env_of(checkout)["ECHOPANEL_ASR_PROVIDER"] == "voxtral_realtime"
    assert "EchoPanel selects it now" in run.out
