"""smoke.runner.resolve: what to test, from the flags first, then EchoPanel's config as EchoPanel reads it
(the file, overridden by the environment, `${NAME}` references resolved)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_kit import serving

from echopanel_setup.errors import UsageError
from echopanel_setup.smoke.runner import SmokeOptions, resolve
from echopanel_setup.url import ServerURL


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "echopanel.env"
    path.write_text(text)
    return str(path)


def test_url_alone_needs_no_config(tmp_path: Path) -> None:
    t = resolve(SmokeOptions(url=ServerURL.parse("ws://127.0.0.1:8001/v1/realtime"), config=str(tmp_path / "none")), {})
    assert (t.mode, str(t.url), t.reason) == ("local", "http://127.0.0.1:8001", "--url")
    assert resolve(SmokeOptions(url=ServerURL.parse("http://gpu.lan:8000")), {}).mode == "remote"


def test_config_file_and_environment(tmp_path: Path) -> None:
    config = _config(tmp_path, "VOXTRAL_VLLM_URL=http://gpu.lan:8000\n")
    assert str(resolve(SmokeOptions(config=config), {}).url) == "http://gpu.lan:8000"
    t = resolve(SmokeOptions(config=config), {"VOXTRAL_VLLM_URL": "http://localhost:9000"})
    assert (t.mode, str(t.url)) == ("local", "http://localhost:9000")


def test_local_mode_defaults_to_port_8001(tmp_path: Path) -> None:
    t = resolve(SmokeOptions(mode="local", config=str(tmp_path / "none")), {})
    assert str(t.url) == "http://localhost:8001"


def test_the_server_serve_started_is_tested_where_no_config_names_one(tmp_path: Path) -> None:
    """`serve --detach --port 8123` then `smoke` (README's step-by-step path, on a GPU host with no EchoPanel
    checkout) said "nothing to test", and `smoke --mode local` asked port 8001 "is the server running?"."""
    none = str(tmp_path / "none")
    serving("http://127.0.0.1:8123")
    for opts in (SmokeOptions(config=none), SmokeOptions(mode="local", config=none)):
        t = resolve(opts, {})
        assert (t.mode, str(t.url)) == ("local", "http://127.0.0.1:8123")
        assert "the server `echopanel-setup serve` started" in t.reason or opts.mode == "local"
    config = _config(tmp_path, "VOXTRAL_VLLM_URL=http://gpu.lan:8000\n")  # what EchoPanel uses comes first
    assert str(resolve(SmokeOptions(config=config), {}).url) == "http://gpu.lan:8000"


def test_vllm_key_from_flag_or_environment(tmp_path: Path) -> None:
    none = str(tmp_path / "none")
    url = ServerURL.parse("http://h:1")
    t = resolve(SmokeOptions(url=url, vllm_api_key="env", config=none), {})
    assert (t.api_key, t.key_source) == ("env", "VLLM_API_KEY")
    assert resolve(SmokeOptions(url=url, config=none), {"VLLM_API_KEY": "not read here"}).api_key is None
    t = resolve(SmokeOptions(url=url, api_key="flag", vllm_api_key="env", config=none), {})
    assert (t.api_key, t.key_source) == ("flag", "--api-key")
    assert "flag" not in repr(t)


def test_api_key_order_and_no_expansion(tmp_path: Path) -> None:
    """EchoPanel expands nothing: a `${VAR}` in its .env is the key it would send, so smoke sends that too."""
    config = _config(
        tmp_path, "VOXTRAL_MODE=api\nVOXTRAL_MISTRAL_API_KEY=${VAULT_KEY}\nVOXTRAL_STREAMING_DELAY_MS=960\n"
    )
    t = resolve(SmokeOptions(config=config), {"VAULT_KEY": "from-ref", "MISTRAL_API_KEY": "generic"})
    assert (t.mode, t.api_key, t.delay_ms) == ("api", "${VAULT_KEY}", 960)
    assert t.key_source == "VOXTRAL_MISTRAL_API_KEY in the EchoPanel config"
    t = resolve(SmokeOptions(config=_config(tmp_path, "VOXTRAL_MODE=api\n")), {"MISTRAL_API_KEY": "generic"})
    assert (t.api_key, t.key_source) == ("generic", "MISTRAL_API_KEY")
    t = resolve(SmokeOptions(config=config), {"VOXTRAL_MISTRAL_API_KEY": "env", "MISTRAL_API_KEY": "generic"})
    assert t.key_source == "VOXTRAL_MISTRAL_API_KEY"
    assert str(t.url) == "https://api.mistral.ai"


def test_usage_errors(tmp_path: Path) -> None:
    none = str(tmp_path / "none")
    with pytest.raises(UsageError, match="nothing to test"):
        resolve(SmokeOptions(config=none), {})
    with pytest.raises(UsageError, match="needs --url"):
        resolve(SmokeOptions(mode="remote", config=none), {})
    with pytest.raises(UsageError, match="needs a Mistral API key"):
        resolve(SmokeOptions(mode="api", config=none), {})
