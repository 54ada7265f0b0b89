"""doctor's EchoPanel category, on facts probed from a stand-in checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from echopanel_kit import PROVIDER_CHAT_PCM, make_backend_python, make_checkout
from facts_kit import evaluate, load, text_of

from echopanel_setup.checks import Status
from echopanel_setup.echopanel import discover, probe
from echopanel_setup.facts.model import Facts, ServerFacts
from echopanel_setup.provider import template_text as provider_template

URL = "VOXTRAL_VLLM_URL"
IDS = ["echopanel.checkout", "echopanel.python", "echopanel.provider", "echopanel.url", "echopanel.served_name"]
# The published provider with the one change our fix makes visible to the contract reader: another protocol.
WORKING = PROVIDER_CHAT_PCM.format().replace("/v1/chat/completions", "/v1/realtime")


def _facts(tmp_path: Path, env: str, environ: dict[str, str] | None = None, **kit: object) -> Facts:
    checkout = make_checkout(tmp_path / "EchoPanel", env=env, **kit)  # type: ignore[arg-type]
    make_backend_python(checkout, {"aiohttp": "3.10.5"})
    facts = load("linux-h100-vllm020.json")
    found = discover.find(str(checkout), {}, tmp_path, tmp_path)
    facts.echopanel = probe.probe(found, python=None, env_file=None, environ=environ or {})
    return facts


def test_without_a_checkout_every_check_is_skipped_and_strict_still_passes() -> None:
    facts = load("linux-h100-vllm020.json")
    results, _ = evaluate(facts, "local")
    assert {results[i].status for i in IDS} == {Status.SKIP}
    assert "--echopanel PATH" in results["echopanel.checkout"].summary
    assert not any(results[i].is_problem for i in IDS)


def test_the_published_provider_fails_with_the_fix(tmp_path: Path) -> None:
    facts = _facts(tmp_path, f"ECHOPANEL_ASR_PROVIDER=voxtral_official\n{URL}=http://127.0.0.1:8001\n")
    results, code = evaluate(facts, "local")
    assert results["echopanel.checkout"].status is Status.OK
    assert results["echopanel.python"].status is Status.OK and "aiohttp 3.10.5" in results["echopanel.python"].summary
    provider = results["echopanel.provider"]
    assert provider.status is Status.FAIL and code == 1
    assert "cannot transcribe" in provider.summary and provider.fix is not None
    assert provider.fix.commands == ["echopanel-setup provider fix"]
    assert "falls back to faster_whisper" in text_of(provider)
    assert results["echopanel.url"].status is Status.OK and "from " in results["echopanel.url"].summary


def test_the_selection_names_its_source_and_the_environment_wins(tmp_path: Path) -> None:
    facts = _facts(
        tmp_path,
        "ECHOPANEL_ASR_PROVIDER=faster_whisper\n",
        environ={"ECHOPANEL_ASR_PROVIDER": "voxtral_official"},
        providers={"provider_voxtral_official.py": WORKING},
    )
    results, _ = evaluate(facts, "local")
    provider = results["echopanel.provider"]
    assert provider.status is Status.WARN  # an unknown variant: described, never guessed
    assert "from the environment (it wins over .env)" in provider.summary
    assert "does not know" in provider.summary and "/v1/realtime" in provider.summary


def test_unset_selection_warns(tmp_path: Path) -> None:
    results, _ = evaluate(_facts(tmp_path, "OTHER=1\n"), "local")
    assert results["echopanel.provider"].status is Status.WARN
    assert "never voxtral_official" in results["echopanel.provider"].summary


@pytest.mark.parametrize("env", ["OTHER=1\n", "ECHOPANEL_ASR_PROVIDER=faster_whisper\n"], ids=["unset", "whisper"])
def test_selecting_voxtral_leads_with_provider_fix_where_the_published_variant_cannot_work(
    tmp_path: Path, env: str
) -> None:
    """`configure` alone would be refused for the published voxtral_official: the way on starts with the fix."""
    fix = evaluate(_facts(tmp_path / "published", env), "local")[0]["echopanel.provider"].fix
    assert fix is not None and fix.commands == ["echopanel-setup provider fix", "echopanel-setup configure"]
    assert "cannot transcribe as it is" in fix.text
    ours = {"provider_voxtral_official.py": provider_template()}
    fix = evaluate(_facts(tmp_path / "ours", env, providers=ours), "local")[0]["echopanel.provider"].fix
    assert fix is not None and fix.commands == ["echopanel-setup configure"]


@pytest.mark.parametrize(
    ("mode", "command"),
    [
        ("local", "echopanel-setup configure --mode remote --url http://GPU-HOST:8001"),
        ("remote", "echopanel-setup configure --mode remote --url http://gpu-box:8001"),  # the server doctor checked
        ("api", "echopanel-setup configure --mode api"),
    ],
)
def test_selecting_voxtral_on_a_machine_that_cannot_serve_it_names_the_server(
    tmp_path: Path, mode: str, command: str
) -> None:
    """A bare `configure` where vLLM cannot run here and no URL is set writes nothing (exit 2): the way on carries
    the mode and a server. With a URL already in the file, the bare command works."""
    facts = _facts(tmp_path / "bare", "OTHER=1\n", providers={"provider_voxtral_official.py": provider_template()})
    facts.platform, facts.gpu = load("linux-nogpu.json").platform, load("linux-nogpu.json").gpu
    facts.network.server_url = "http://gpu-box:8001"
    fix = evaluate(facts, mode)[0]["echopanel.provider"].fix
    assert fix is not None and fix.commands == [command]
    keeps = _facts(
        tmp_path / "url",
        f"{URL}=http://gpu-box:8001\n",
        providers={"provider_voxtral_official.py": provider_template()},
    )
    keeps.platform, keeps.gpu = facts.platform, facts.gpu
    fix = evaluate(keeps, "remote")[0]["echopanel.provider"].fix
    assert fix is not None and fix.commands == ["echopanel-setup configure"]


def test_a_missing_dependency_names_the_silent_fallback(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", env="ECHOPANEL_ASR_PROVIDER=voxtral_official\n")
    make_backend_python(checkout)
    facts = load("linux-h100-vllm020.json")
    facts.echopanel = probe.probe(discover.Checkout(checkout, "--echopanel"), python=None, env_file=None, environ={})
    result = evaluate(facts, "local")[0]["echopanel.python"]
    assert result.status is Status.FAIL and "aiohttp not importable" in result.summary
    assert "falls back to faster_whisper" in text_of(result)
    assert result.fix is not None and result.fix.commands == [f"{checkout}/.venv/bin/python -m pip install aiohttp"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8001/v1", "every call is a 404"),
        ("http://127.0.0.1:8001/", "every call is a 404"),
        ("http://localhost:8000", "EchoPanel's own backend"),
        ("ws://gpu:8001", "VOXTRAL_VLLM_URL"),
    ],
)
def test_bad_urls_fail(tmp_path: Path, value: str, expected: str) -> None:
    facts = _facts(tmp_path, f"ECHOPANEL_ASR_PROVIDER=voxtral_official\n{URL}={value}\n")
    result = evaluate(facts, "local")[0]["echopanel.url"]
    assert result.status is Status.FAIL and expected in text_of(result)


def test_an_unset_url_is_the_providers_default_which_is_echopanel_itself(tmp_path: Path) -> None:
    result = evaluate(_facts(tmp_path, "ECHOPANEL_ASR_PROVIDER=voxtral_official\n"), "local")[0]["echopanel.url"]
    assert result.status is Status.FAIL and "the provider's default" in result.summary


def test_served_names_must_include_the_providers(tmp_path: Path) -> None:
    facts = _facts(tmp_path, f"{URL}=http://127.0.0.1:8001\n")
    facts.network.server = ServerFacts(url="http://127.0.0.1:8001", models=["mistralai/Voxtral-Mini-4B-Realtime-2602"])
    result = evaluate(facts, "local")[0]["echopanel.served_name"]
    assert result.status is Status.FAIL and "404" in result.summary
    facts.network.server.models.append("voxtral-mini-transcribe-realtime-2602")
    assert evaluate(facts, "local")[0]["echopanel.served_name"].status is Status.OK


def test_api_mode_fails_where_the_provider_has_no_api_path(tmp_path: Path) -> None:
    """Issue 15: the same rule as configure and setup — `--mode api` cannot work for a provider without one."""
    checkout = make_checkout(
        tmp_path / "EchoPanel",
        env="ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_MODE=api\n",
        providers={"provider_voxtral_official.py": WORKING},  # an unknown variant: it reads no VOXTRAL_MODE
    )
    facts = load("linux-h100-vllm020.json")
    facts.echopanel = probe.probe(
        discover.find(str(checkout), {}, tmp_path, tmp_path), python=None, env_file=None, environ={}
    )
    provider = evaluate(facts, "api")[0]["echopanel.provider"]
    assert provider.status is Status.FAIL and "no Mistral API path" in provider.summary
    assert provider.fix is not None and provider.fix.commands[0] == "echopanel-setup provider fix"
    assert evaluate(facts, "remote")[0]["echopanel.provider"].status is Status.WARN  # unknown, not failed


def test_our_providers_api_only_import_is_needed_in_api_mode_only(tmp_path: Path) -> None:
    """After `provider fix`, a backend Python with websockets but no mistralai serves vLLM: only api mode needs it."""
    from echopanel_setup.provider import TEMPLATE, template_text

    checkout = make_checkout(
        tmp_path / "EchoPanel",
        env=f"ECHOPANEL_ASR_PROVIDER=voxtral_official\n{URL}=http://127.0.0.1:8001\n",
        providers={TEMPLATE: template_text()},
    )
    make_backend_python(checkout, {"websockets": "14.1"})
    facts = load("linux-h100-vllm020.json")
    facts.echopanel = probe.probe(discover.Checkout(checkout, "--echopanel"), python=None, env_file=None, environ={})
    local = evaluate(facts, "local")[0]["echopanel.python"]
    assert local.status is Status.OK and "websockets 14.1" in local.summary, local.summary
    api = evaluate(facts, "api")[0]["echopanel.python"]
    assert api.status is Status.FAIL and "mistralai not importable" in api.summary
