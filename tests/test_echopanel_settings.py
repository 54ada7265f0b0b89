"""The rules for EchoPanel's settings: only keys the provider reads, never a provider that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from echopanel_kit import PROVIDER_CHAT_PCM, make_checkout

from echopanel_setup.echopanel import contract, settings
from echopanel_setup.errors import UsageError

URL, DELAY, MODE = settings.URL, settings.DELAY, settings.MODE
# An unknown variant: another protocol, and it reads VOXTRAL_MODE.
READS_MODE = (
    PROVIDER_CHAT_PCM.format()
    .replace("/v1/chat/completions", "/v1/realtime")
    .replace(
        'self.base_url = os.getenv("VOXTRAL_VLLM_URL"',
        'self.mode = os.getenv("VOXTRAL_MODE", "vllm")\n        self.base_url = os.getenv("VOXTRAL_VLLM_URL"',
    )
)


def _contract(tmp_path: Path, **kit: object) -> contract.Contract:
    return contract.read(make_checkout(tmp_path / "EchoPanel", **kit))  # type: ignore[arg-type]


def test_the_published_variant_is_refused_unless_forced(tmp_path: Path) -> None:
    read = _contract(tmp_path)
    chosen = settings.provider("voxtral_official", read)
    with pytest.raises(settings.Refused) as caught:
        settings.check_selectable(chosen, read, force=False)
    assert caught.value.exit_code == 1
    assert "echopanel-setup provider fix" in str(caught.value) and "--force" in str(caught.value)
    assert settings.check_selectable(chosen, read, force=True)[0].startswith("--force: ")


def test_an_unknown_variant_is_allowed_with_a_note(tmp_path: Path) -> None:
    read = _contract(tmp_path, providers={"provider_voxtral_official.py": READS_MODE})
    chosen = settings.provider("voxtral_official", read)
    assert chosen.variant is None and chosen.has_api_path
    (note,) = settings.check_selectable(chosen, read, force=False)
    assert "does not know" in note and "smoke --client echopanel" in note


def test_a_provider_the_checkout_does_not_register_is_refused(tmp_path: Path) -> None:
    read = _contract(tmp_path)
    with pytest.raises(settings.Refused, match="no provider named 'mlx_whisper'.*fall back to faster_whisper"):
        settings.check_selectable(settings.provider("mlx_whisper", read), read, force=True)


def test_without_a_checkout_the_variant_is_unknown_and_said_so() -> None:
    chosen = settings.provider("voxtral_official", None)
    (note,) = settings.check_selectable(chosen, None, force=False)
    assert "no EchoPanel checkout" in note
    assert chosen.reads(URL) and chosen.reads(DELAY) and not chosen.reads(MODE)


def test_api_mode_needs_an_api_path(tmp_path: Path) -> None:
    read = _contract(tmp_path)
    with pytest.raises(settings.Refused, match="no Mistral API path"):
        settings.check_mode("api", settings.provider("voxtral_official", read))
    settings.check_mode("remote", settings.provider("voxtral_official", read))
    settings.check_mode(
        "api",
        settings.provider(
            "voxtral_official", _contract(tmp_path / "b", providers={"provider_voxtral_official.py": READS_MODE})
        ),
    )


@pytest.mark.parametrize(
    ("text", "value", "noted"),
    [
        ("http://gpu:8001", "http://gpu:8001", False),
        ("http://gpu:8001/", "http://gpu:8001", True),
        ("http://gpu:8001/v1", "http://gpu:8001", True),
        ("https://gpu.example:443/v1/", "https://gpu.example:443", True),
    ],
)
def test_urls_are_normalised_with_a_note(text: str, value: str, noted: bool) -> None:
    got, note = settings.url_value(text, what="--url")
    assert got == value and (note is not None) == noted


@pytest.mark.parametrize("text", ["http://gpu:8001/v1/realtime", "http://gpu:8001/api", "ws://gpu:8001", "ftp://x:1"])
def test_other_paths_and_schemes_are_refused(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings.url_value(text, what="--url")
    assert caught.value.exit_code == 2


def test_only_keys_the_provider_reads_are_written(tmp_path: Path) -> None:
    chosen = settings.provider("voxtral_official", _contract(tmp_path))
    kept, dropped = settings.restrict(
        {settings.SELECTOR: "voxtral_official", URL: "http://h:8001", DELAY: "480", MODE: "vllm", "OLD": None}, chosen
    )
    assert kept == {settings.SELECTOR: "voxtral_official", URL: "http://h:8001", DELAY: "480", "OLD": None}
    assert dropped == [MODE]


def test_read_back_reports_what_echopanel_sees(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"{URL}=http://file:8001\nVOXTRAL_MODE=api\nHF_TOKEN=hf_x\nMY_API_KEY=k\n")
    chosen = settings.provider("voxtral_official", _contract(tmp_path))
    back = settings.read_back(env, [settings.SELECTOR, URL, DELAY, "MY_API_KEY"], {URL: "http://env:8001"}, chosen)
    assert back.seen[URL].value == "http://env:8001" and back.seen[URL].shadowed == "http://file:8001"
    assert back.seen["MY_API_KEY"].value == "<set>" and back.seen[DELAY].source == "unset"
    assert back.overridden_by_environment == [URL] and back.other_keys == 2 and back.unread == [MODE]


def test_migration_carries_only_readable_keys_the_provider_reads(tmp_path: Path) -> None:
    chosen = settings.provider("voxtral_official", _contract(tmp_path))
    old = {
        settings.SELECTOR: "voxtral_official",
        URL: "http://gpu:8000",
        MODE: "api",
        "VOXTRAL_MISTRAL_API_KEY": "${X}",
    }
    assert settings.migratable(old, chosen) == {settings.SELECTOR: "voxtral_official", URL: "http://gpu:8000"}
    path = tmp_path / "echopanel.env"
    path.write_text("A=1\n")
    (tmp_path / "echopanel.env.migrated").write_text("old\n")
    assert settings.retire(path) == tmp_path / "echopanel.env.migrated.2" and not path.exists()
