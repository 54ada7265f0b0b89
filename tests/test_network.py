"""The vLLM server probe and the `server` check against a REAL loopback HTTP server that answers like
`vllm serve`: /health 200 (or 503) with an empty body, /version JSON, /v1/models guarded by --api-key.

doctor runs as a subprocess; the external probes (Hugging Face, Mistral) fail fast: HF_ENDPOINT points at a
closed loopback port and there is no route to api.mistral.ai here.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, without_socks_extra
from probe_kit import VOXTRAL, OutsideHosts, closed_port

from echopanel_setup.facts import network
from echopanel_setup.facts.model import NetworkFacts
from echopanel_setup.url import ServerURL, redact


def _doctor(url: str, *extra: str, env: dict[str, str] | None = None) -> dict:
    res = run_cli(
        "doctor",
        "--url",
        url,
        "--mode",
        "remote",
        "--json",
        *extra,
        env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", **(env or {})},
        timeout=30,
    )
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def _server_check(doc: dict) -> dict:
    return {c["id"]: c for c in doc["checks"]}["server"]


@pytest.mark.slow
def test_server_ok(vllm) -> None:
    behaviour, url = vllm()
    doc = _doctor(url)
    check = _server_check(doc)
    assert check["status"] == "ok", check
    assert check["required"] is True
    assert "vLLM 0.20.0" in check["summary"] and VOXTRAL in check["summary"]
    server = doc["facts"]["network"]["server"]
    assert server == {
        "url": url,
        "health": 200,
        "version": "0.20.0",
        "models": [VOXTRAL],
        "error": None,
        "auth_required": False,
        "metrics": None,  # this stand-in has no /metrics
        "kind": "vllm",
    }
    assert {path for path, _ in behaviour.requests} == {"/health", "/version", "/v1/models", "/metrics"}
    # remote mode judges neither the Hub nor the Mistral API: neither is asked
    assert doc["facts"]["network"]["hf"] is None and doc["facts"]["network"]["mistral"] is None
    assert {c["id"]: c for c in doc["checks"]}["network.hf"]["status"] == "skip"  # not checked in remote mode


@pytest.mark.slow
def test_server_serving_a_local_model_dir(vllm) -> None:
    """`vllm serve /path/to/Voxtral-Mini-4B-Realtime-2602` serves the model under its path."""
    _, url = vllm(models=["/home/ana/.local/share/echopanel-setup/models/Voxtral-Mini-4B-Realtime-2602"])
    assert _server_check(_doctor(url))["status"] == "ok"


@pytest.mark.slow
def test_server_wants_an_api_key(vllm) -> None:
    behaviour, url = vllm(api_key="test-key-123")
    doc = _doctor(url)
    check = _server_check(doc)
    assert check["status"] == "fail"
    assert "API key" in check["summary"] and "401" in check["summary"]
    assert doc["facts"]["network"]["server"]["auth_required"] is True
    assert "VLLM_API_KEY" in " ".join(check["fix"]["commands"])


@pytest.mark.slow
def test_server_accepts_vllm_api_key(vllm) -> None:
    behaviour, url = vllm(api_key="test-key-123")
    doc = _doctor(url, env={"VLLM_API_KEY": "test-key-123"})
    assert _server_check(doc)["status"] == "ok"
    assert doc["facts"]["network"]["vllm_api_key"] is True
    assert "test-key-123" not in json.dumps(doc)
    # the key goes to /v1/* only, never to /health or /version
    sent = dict(behaviour.requests)
    assert sent["/v1/models"] == "Bearer test-key-123"
    assert sent["/health"] is None and sent["/version"] is None


@pytest.mark.slow
def test_server_refuses_a_wrong_key(vllm) -> None:
    _, url = vllm(api_key="test-key-123")
    check = _server_check(_doctor(url, env={"VLLM_API_KEY": "wrong"}))
    assert check["status"] == "fail" and "refused VLLM_API_KEY" in check["summary"]


@pytest.mark.slow
def test_server_serves_another_model(vllm) -> None:
    _, url = vllm(models=["mistralai/Voxtral-Mini-3B-2507"], version="0.10.1.1")
    check = _server_check(_doctor(url))
    assert check["status"] == "fail"
    assert "mistralai/Voxtral-Mini-3B-2507" in check["summary"]
    assert "not Voxtral Realtime" in check["summary"] and "0.10.1.1" in check["summary"]


@pytest.mark.slow
def test_server_not_ready(vllm) -> None:
    _, url = vllm(health=503)
    doc = _doctor(url)
    check = _server_check(doc)
    assert check["status"] == "fail"
    assert "503" in check["summary"] and "/health" in check["summary"]
    assert doc["facts"]["network"]["server"]["health"] == 503


@pytest.mark.slow
def test_server_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    doc = _doctor(url)
    check = _server_check(doc)
    assert check["status"] == "fail" and "unreachable" in check["summary"]
    assert doc["facts"]["network"]["server"]["health"] is None


@pytest.mark.slow
def test_offline_still_asks_a_loopback_server(vllm) -> None:
    behaviour, url = vllm()
    doc = _doctor(url, "--offline")
    assert doc["facts"]["network"]["offline"] is True
    assert doc["facts"]["network"]["hf"] is None and doc["facts"]["network"]["mistral"] is None
    assert doc["facts"]["network"]["server"]["models"] == [VOXTRAL]
    assert _server_check(doc)["status"] == "ok"
    assert behaviour.requests


@pytest.mark.slow
def test_offline_local_mode_finds_a_server_on_the_configured_port(vllm, tmp_path) -> None:
    """No --url: doctor asks a server that listens on the port from EchoPanel's config."""
    _, url = vllm()
    config = tmp_path / "echopanel.env"
    config.write_text(f"ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_VLLM_URL={url}\n")
    res = run_cli("doctor", "--offline", "--json", "--config", str(config), "--only", "server,port", timeout=30)
    doc = json.loads(res.stdout)
    assert doc["mode"] == "local"
    assert doc["facts"]["network"]["server"]["version"] == "0.20.0"
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["port"]["status"] == "ok"  # held by a vLLM server (it answers /version)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("http://127.0.0.1:8000/v1", "--url 'http://127.0.0.1:8000/v1' must have no path"),
        (
            "127.0.0.1:8000",
            "--url '127.0.0.1:8000' must look like http://HOST:PORT; did you mean http://127.0.0.1:8000?",
        ),
        ("http://gpu-host", "--url 'http://gpu-host' has no port"),
        (
            "http://my host:8000",  # was "--url: host:8000': 'my host' is not…": a sentence cut apart
            "--url 'http://my host:8000': 'my host' is not a host name or IP address (write http://HOST:PORT)",
        ),
        ("http://user:pw@gpu-host", "--url 'http://***@gpu-host' has no port"),
    ],
)
def test_bad_url_is_a_usage_error(bad: str, message: str) -> None:
    res = run_cli("doctor", "--url", bad, "--json", "--offline", timeout=30)
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["kind"] == "usage"
    assert message in json.loads(res.stdout)["error"]["message"]
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(f"echopanel-setup: error: {message}")
    assert "pw" not in res.stderr + res.stdout


@pytest.mark.slow
def test_loopback_server_is_asked_directly_despite_a_proxy(vllm) -> None:
    _, url = vllm()
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    doc = _doctor(url, "--offline", env={"HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy})
    assert _server_check(doc)["status"] == "ok"


# --- the probe functions in-process -------------------------------------------------------------------------------


def test_probe_server_only_when_offline(vllm) -> None:
    _, url = vllm()
    given = NetworkFacts(offline=True)
    facts = network.probe(given, ServerURL.parse(url), endpoints=())
    assert given == NetworkFacts(offline=True)  # a value comes back; a late probe cannot change the input
    assert facts.hf is None and facts.mistral is None and facts.offline
    assert facts.server is not None and facts.server.models == [VOXTRAL] and facts.server.health == 200


def test_probe_external_fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/")
    facts = network.probe(NetworkFacts(), None, endpoints=network.ENDPOINTS)
    assert facts.server is None
    assert facts.hf is not None and facts.hf.reachable is False and facts.hf.error
    assert facts.hf.url == f"http://127.0.0.1:{port}/api/models/{VOXTRAL}"
    assert facts.mistral is not None and facts.mistral.reachable is False


@pytest.mark.slow
def test_not_a_model_list(vllm) -> None:
    """Something that answers /health but is not vLLM (e.g. another service on the port)."""
    behaviour, url = vllm()
    behaviour.models = []
    facts = network.probe(NetworkFacts(), ServerURL.parse(url), endpoints=())
    assert facts.server.models == []
    check = _server_check(_doctor(url))
    assert check["status"] == "fail" and "serves nothing" in check["summary"]


def test_credentials_presence_only(monkeypatch: pytest.MonkeyPatch, isolated_home) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-m")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pass@proxy.corp:3128")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    facts = network.credentials({}, vllm_api_key="v")
    assert facts.mistral_api_key == "MISTRAL_API_KEY"
    assert facts.vllm_api_key is True and network.credentials({}).vllm_api_key is False
    assert facts.hf_token is False
    assert facts.proxies == {"HTTPS_PROXY": "http://***@proxy.corp:3128", "NO_PROXY": "localhost,127.0.0.1"}
    (isolated_home / "hf" / "token").write_text("hf_x")
    assert network.credentials({}).hf_token is True
    assert network.credentials({"VOXTRAL_MISTRAL_API_KEY": "<set>"}).mistral_api_key == "VOXTRAL_MISTRAL_API_KEY"


def test_redact_url() -> None:
    assert redact("http://proxy:3128") == "http://proxy:3128"
    assert redact("http://u:p@proxy:3128") == "http://***@proxy:3128"
    assert redact("http://u@proxy") == "http://***@proxy"
    assert redact("https://h/x?X-Amz-Signature=abc#f") == "https://h/x?…"


@without_socks_extra
def test_a_socks_proxy_without_socksio_is_reported_not_crashed(monkeypatch) -> None:
    """ALL_PROXY=socks5://… without httpx[socks]: the probes say why, nothing crashes."""
    from echopanel_setup.facts import network

    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    facts = network.probe(
        network.credentials({}), ServerURL.parse("http://gpu.example:8000"), endpoints=network.ENDPOINTS
    )
    assert facts.hf is not None and not facts.hf.reachable and "socksio" in (facts.hf.error or "")
    assert facts.server is not None and "socksio" in (facts.server.error or "")


# --- only the outside hosts the mode needs ------------------------------------------------------------------------


HUB, MISTRAL_API = f"/api/models/{VOXTRAL}", "/v1/models"


@pytest.mark.parametrize(
    ("args", "asked"),
    [
        (("--mode", "local"), [HUB]),
        (("--mode", "api"), [MISTRAL_API]),
        (("--mode", "remote", "--url", f"http://127.0.0.1:{closed_port()}"), []),
        (("--mode", "local", "--only", "network.mistral"), []),  # not a local check: nothing to judge
        (("--mode", "api", "--skip", "network.mistral"), []),
        (("--mode", "local", "--offline"), []),
    ],
)
def test_doctor_asks_only_the_outside_hosts_its_checks_judge(cli, outside: OutsideHosts, args, asked) -> None:
    """Regression: every doctor run asked huggingface.co AND api.mistral.ai, whatever the mode."""
    code, out, err = cli("doctor", "--json", *args)
    assert code != 4, out + err
    assert sorted(outside.paths) == sorted(asked)


def test_the_config_decides_the_hosts_when_no_mode_is_given(cli, outside: OutsideHosts, tmp_path) -> None:
    config = tmp_path / ".env"
    config.write_text("VOXTRAL_MODE=api\n")
    code, out, err = cli("doctor", "--json", "--config", str(config))
    assert code != 4, out + err
    assert outside.paths == [MISTRAL_API]
