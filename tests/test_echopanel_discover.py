"""Finding EchoPanel's checkout, reading its contract from its files, and the facts that carry both."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from echopanel_kit import PROVIDER_CHAT_PCM, make_backend_python, make_checkout

from echopanel_setup.echopanel import contract, discover, probe
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import Facts

URL = "VOXTRAL_VLLM_URL"


def test_a_checkout_needs_the_files_and_the_project_name(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel")
    assert discover.why_not(checkout) is None
    other = make_checkout(tmp_path / "other", name="some-fastapi-app")
    assert "names project 'some-fastapi-app'" in (discover.why_not(other) or "")
    assert discover.why_not(make_checkout(tmp_path / "Echo", name="EchoPanel")) is None  # case-insensitive (PEP 503)
    (checkout / "server" / "services" / "asr_providers.py").unlink()
    assert discover.why_not(checkout) == "no server/services/asr_providers.py"


def test_order_flag_then_variable_then_cwd_then_usual_places(tmp_path: Path) -> None:
    home = tmp_path / "home"
    usual = make_checkout(home / "Projects" / "EchoPanel")
    flagged = make_checkout(tmp_path / "flagged")
    by_var = make_checkout(tmp_path / "by_var")
    inside = make_checkout(tmp_path / "work" / "EchoPanel")
    deep = inside / "server" / "services"
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    env = {"ECHOPANEL_HOME": str(by_var)}
    assert discover.find(str(flagged), env, deep, home) == discover.Checkout(flagged.resolve(), "--echopanel")
    assert discover.find(None, env, deep, home) == discover.Checkout(by_var.resolve(), "ECHOPANEL_HOME")
    found = discover.find(None, {}, deep, home)
    assert found == discover.Checkout(inside.resolve(), "current directory") and not found.named_by_user
    found = discover.find(None, {}, nowhere, home)
    assert found == discover.Checkout(usual.resolve(), "usual place") and not found.named_by_user
    assert found.env_file == usual.resolve() / ".env"
    assert discover.find(None, {}, nowhere, tmp_path / "empty-home") is None


def test_a_named_checkout_must_be_valid(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--echopanel .*: not an EchoPanel checkout \\(no such directory\\)"):
        discover.find(str(tmp_path / "missing"), {}, tmp_path, tmp_path)
    make_checkout(tmp_path / "fastapi", name="fastapi-app")
    with pytest.raises(UsageError, match="ECHOPANEL_HOME .*names project 'fastapi-app'"):
        discover.find(None, {"ECHOPANEL_HOME": str(tmp_path / "fastapi")}, tmp_path, tmp_path)


def test_several_usual_places_are_listed_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_checkout(home / "EchoPanel")
    make_checkout(home / "code" / "EchoPanel")
    with pytest.raises(discover.AmbiguousCheckout) as caught:
        discover.find(None, {}, tmp_path, home)
    assert caught.value.exit_code == 2
    assert str(home / "EchoPanel") in str(caught.value) and str(home / "code" / "EchoPanel") in str(caught.value)


def test_backend_python(tmp_path: Path) -> None:
    checkout = tmp_path / "EchoPanel"
    assert discover.backend_python(checkout, None) == (checkout / ".venv" / "bin" / "python", "<checkout>/.venv")
    venv = tmp_path / "venv"
    venv.mkdir()
    assert discover.backend_python(checkout, str(venv))[0] == venv / "bin" / "python"


# The contract, read without importing


def test_todays_provider_is_recognised_by_content(tmp_path: Path) -> None:
    read = contract.read(make_checkout(tmp_path / "EchoPanel"))
    assert read.backend_port == 8000
    assert read.default_provider == "faster_whisper" and read.fallback_provider == "faster_whisper"
    assert read.dotenv is not None and read.dotenv.known
    assert read.registered == ["faster_whisper", "voxtral_official", "voxtral_realtime"]
    official = read.provider("voxtral_official")
    assert official is not None and official.variant == "voxtral_official_chat_pcm"
    assert [(e.key, e.default) for e in official.env] == [
        (URL, "http://localhost:8000"),
        ("VOXTRAL_STREAMING_DELAY_MS", "480"),
    ]
    assert sorted(official.endpoints) == ["/health", "/v1/chat/completions", "/v1/models"]
    assert official.model == "voxtral-mini-transcribe-realtime-2602"
    assert official.deps == ["aiohttp"] and not official.auth
    assert official.audio_format == "data:audio/pcm;base64"
    info = contract.variant_info(official.variant)
    assert info is not None and info.works is False and info.api_path is False and info.deps == ("aiohttp",)
    realtime = read.provider("voxtral_realtime")
    assert realtime is not None and realtime.variant == "voxtral_realtime_voxtral_c"
    assert realtime.env[0].default is None and "voxtral.c" in (realtime.env[0].default_expr or "")


def test_an_unknown_variant_is_described_as_read(tmp_path: Path) -> None:
    changed = PROVIDER_CHAT_PCM.format().replace('os.getenv("VOXTRAL_STREAMING_DELAY_MS"', 'os.getenv("MY_DELAY"')
    changed = changed.replace("/v1/chat/completions", "/v1/audio/transcriptions")
    read = contract.read(make_checkout(tmp_path / "EchoPanel", providers={"provider_voxtral_official.py": changed}))
    official = read.provider("voxtral_official")
    assert official is not None and official.variant is None
    assert [e.key for e in official.env] == [URL, "MY_DELAY"]
    assert "/v1/audio/transcriptions" in official.endpoints


def test_a_file_that_does_not_parse_is_named(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", providers={"provider_voxtral_official.py": "def (:\n"})
    (checkout / "server" / "services" / "provider_voxtral_official.py").write_text(
        'ASRProviderRegistry.register("voxtral_official", X)\ndef (:\n'
    )
    read = contract.read(checkout)
    assert read.provider("voxtral_official") is None and "voxtral_official" in read.registered
    assert read.errors and read.errors[0].startswith("provider_voxtral_official.py: SyntaxError")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_and_dirty_state(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", git=True)
    state = contract.git_state(checkout)
    assert state.commit and len(state.commit) == 40 and state.dirty is False
    (checkout / "server" / "services" / "provider_voxtral_official.py").write_text("# changed\n")
    (checkout / ".env").write_text("A=1\n")  # ignored by the checkout's .gitignore, as in EchoPanel
    state = contract.git_state(checkout)
    assert state.dirty is True and state.changed == ["server/services/provider_voxtral_official.py"]
    assert contract.git_state(tmp_path).commit is None


# The facts section


def test_probe_records_the_checkout_contract_python_and_env_without_other_values(tmp_path: Path) -> None:
    checkout = make_checkout(
        tmp_path / "EchoPanel",
        env=f"{URL}=http://gpu:8001\nOPENAI_API_KEY=sk-secret\nHF_TOKEN=hf_secret\nECHOPANEL_ASR_PROVIDER=voxtral_official\n",
    )
    make_backend_python(checkout, {"aiohttp": "3.10.5"})
    found = discover.find(str(checkout), {}, tmp_path, tmp_path)
    facts = probe.probe(found, python=None, env_file=None, environ={URL: "http://env:8001"})
    assert facts.checkout == str(checkout.resolve()) and facts.how == "--echopanel"
    assert facts.python == str(checkout.resolve() / ".venv" / "bin" / "python") and facts.python_error is None
    assert facts.modules == {"aiohttp": "3.10.5"} and facts.python_version
    assert facts.env.values == {URL: "http://gpu:8001", "ECHOPANEL_ASR_PROVIDER": "voxtral_official"}
    assert facts.env.environment == {URL: "http://env:8001"} and facts.env.other_keys == 2
    snapshot = Facts(echopanel=facts).to_dict()
    assert "sk-secret" not in str(snapshot) and "hf_secret" not in str(snapshot)
    assert Facts.from_dict({**snapshot, "platform": {}, "gpu": {}, "pyenv": {}}).echopanel == facts


def test_probe_reports_a_missing_dependency_and_a_missing_python(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel")
    found = discover.find(str(checkout), {}, tmp_path, tmp_path)
    facts = probe.probe(found, python=None, env_file=None, environ={})
    assert facts.python_error == "not found" and facts.modules == {}
    make_backend_python(checkout)
    facts = probe.probe(found, python=None, env_file=None, environ={})
    assert facts.modules == {"aiohttp": None}


def test_probe_without_a_checkout_reads_only_an_explicit_env_file(tmp_path: Path) -> None:
    assert probe.probe(None, python=None, env_file=None, environ={}).env.path is None
    env = tmp_path / "x.env"
    env.write_text(f"{URL}=http://h:8001\nSECRET_TOKEN=t\n")
    facts = probe.probe(None, python=None, env_file=str(env), environ={})
    assert facts.env.values == {URL: "http://h:8001"} and facts.env.other_keys == 1
