"""vllm_client against real loopback servers: what a vLLM server answers, and each way a request can fail."""

from __future__ import annotations

import base64
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import without_socks_extra
from loopback_kit import HttpStandIn, QuietHandler
from probe_kit import VOXTRAL, closed_port

from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import Problem, VllmClient, error_message, parse_models


def test_survey_of_a_vllm_server(vllm) -> None:
    behaviour, url = vllm(api_key="k-1")
    with VllmClient(ServerURL.parse(url), api_key="k-1", timeout=5) as client:
        survey = client.survey()
    assert (survey.health.status, survey.version, survey.served, survey.problem) == (200, "0.20.0", [VOXTRAL], None)
    sent = dict(behaviour.requests)
    assert sent["/v1/models"] == "Bearer k-1" and sent["/health"] is None and sent["/version"] is None


def test_an_answer_says_when_its_request_left(vllm) -> None:
    """`sent` is what watch dates a /metrics page by: get_all starts the other routes' threads before it."""
    _, url = vllm()
    before = time.monotonic()
    with VllmClient(ServerURL.parse(url), timeout=5) as client:
        answers = client.get_all(["/health", "/version", "/v1/models"])
    assert [a.status for a in answers] == [200, 200, 200]
    assert all(before <= a.sent <= a.sent + a.elapsed_s <= time.monotonic() for a in answers)


def test_a_keyed_server_without_the_key(vllm) -> None:
    _, url = vllm(api_key="k-1")
    with VllmClient(ServerURL.parse(url), timeout=5) as client:
        survey = client.survey()
    assert survey.auth_required and survey.served is None and survey.problem is None


def test_credentials_in_the_url_are_basic_auth_and_the_key_wins_on_v1(vllm) -> None:
    behaviour, url = vllm()
    server = ServerURL.parse(url.replace("http://", "http://alice:s3cret@"))
    with VllmClient(server, api_key="k-1", timeout=5) as client:
        assert client.health().ok and client.models().ok
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert behaviour.requests == [("/health", basic), ("/v1/models", "Bearer k-1")]


def test_a_prefix_is_sent_escaped(vllm) -> None:
    """A reverse proxy's prefix with a space or a non-ASCII letter goes out %-escaped (http.client refuses it raw)."""
    behaviour, url = vllm()
    with VllmClient(ServerURL.parse(f"{url}/my vllm/pr%C3%A4fix/ä"), timeout=5) as client:
        assert client.health().status == 404
    assert behaviour.requests[0][0] == "/my%20vllm/pr%C3%A4fix/%C3%A4/health"


def test_nothing_listening_is_unreachable() -> None:
    with VllmClient(ServerURL.parse(f"http://127.0.0.1:{closed_port()}"), timeout=2) as client:
        survey = client.survey()
    assert not survey.health.reachable and survey.health.problem is Problem.UNREACHABLE
    assert survey.problem == (Problem.UNREACHABLE, survey.health.error) and survey.health.error


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = ServerURL.parse(f"http://127.0.0.1:{listener.getsockname()[1]}")
        with VllmClient(url, timeout=0.3) as client:
            answer = client.health()
    assert answer.problem is Problem.TIMEOUT and answer.error == "no answer within 0.3 s"


def test_https_to_a_plain_http_server_is_a_tls_failure(vllm) -> None:
    _, url = vllm()
    with VllmClient(ServerURL.parse(url.replace("http://", "https://")), timeout=5) as client:
        answer = client.health()
    assert answer.problem is Problem.TLS, answer


class _NotVllm(BaseHTTPRequestHandler):
    """A web server that answers every path with a page (another service on the port)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body = b"<html>hello</html>" if self.path != "/v1/models" else b'{"error": {"message": "no such route"}}'
        self.send_response(200 if self.path != "/v1/models" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_another_service_is_not_vllm() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotVllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with VllmClient(ServerURL.parse(f"http://127.0.0.1:{server.server_port}"), timeout=5) as client:
            survey = client.survey()
    finally:
        server.shutdown()
        server.server_close()
    assert survey.health.ok and survey.version is None and survey.served is None
    assert survey.problem is not None and survey.problem[0] is Problem.NOT_VLLM
    assert survey.problem[1].endswith("/v1/models answered HTTP 404: not a vLLM server?")
    assert error_message(survey.models) == "no such route" and parse_models(survey.models) is None


def test_loopback_bypasses_the_proxy(vllm, monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = vllm()
    dead = f"http://127.0.0.1:{closed_port()}"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, dead)
    with VllmClient(ServerURL.parse(url), timeout=5) as client:
        assert client.survey().served == [VOXTRAL]


@without_socks_extra
def test_an_unusable_proxy_is_classified_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with VllmClient(ServerURL.parse("http://gpu.example:8001"), timeout=1) as client:
        answer = client.health()
    assert answer.problem is Problem.PROXY and "socksio" in answer.error


def test_a_proxy_port_that_is_not_a_number_is_classified_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """`HTTPS_PROXY=http://proxy:abc` made httpx raise InvalidURL when the client was built: exit 4 in smoke."""
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy:abc")
    with VllmClient(ServerURL.parse("https://gpu.example:8001"), timeout=1) as client:
        answer = client.health()
    assert answer.problem is Problem.PROXY
    assert answer.error.startswith("HTTPS_PROXY=http://***@proxy:abc: not a usable proxy URL")
    assert "pw" not in answer.error


class _Counting(QuietHandler):
    """HTTP/1.1 with keep-alive; counts the connections it accepted. `drop` closes each connection after its
    answer without saying so (what a server's idle timeout does to a kept-alive connection)."""

    protocol_version = "HTTP/1.1"
    connections = 0
    drop = False

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._send(200)
        self.close_connection = self.drop


@pytest.mark.parametrize("drop", [False, True])
def test_plain_gets_keep_one_connection_and_survive_the_server_closing_it(drop: bool) -> None:
    handler = type("Handler", (_Counting,), {"drop": drop})
    with HttpStandIn(handler) as server, VllmClient(ServerURL.parse(server.url), timeout=5) as client:
        answers = [client.health() for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert handler.connections == (3 if drop else 1)


class _Proxy(QuietHandler):
    """An HTTP proxy that answers every request itself, recording the absolute URLs it was asked for."""

    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.asked.append(self.path)
        self._send(200)


def test_a_remote_server_is_asked_through_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with HttpStandIn(_Proxy) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with VllmClient(ServerURL.parse("http://gpu.example:8001"), timeout=5) as client:
            answer = client.health()
    assert answer.ok and _Proxy.asked == ["http://gpu.example:8001/health"]
