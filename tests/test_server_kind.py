"""Telling vLLM from EchoPanel's own backend on `/health` alone (echopanel-contract.md §5): doctor fails, with the
fix, when the URL EchoPanel will use is EchoPanel itself, and asks such a backend nothing but `/health`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_cli
from probe_kit import closed_port

from echopanel_setup.vllm_client import Answer, ServerKind, server_kind

# What EchoPanel's backend answers on GET /health: without a token, and when it wants the Mac app's token.
ECHOPANEL_OK = (200, {"status": "ok", "service": "echopanel", "version": "0.1.0"})
ECHOPANEL_TOKEN = (401, {"detail": "Unauthorized"})
ECHOPANEL_NOT_READY = (503, {"detail": {"status": "loading", "service": "echopanel"}})


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b"", ServerKind.VLLM),
        (503, b"", ServerKind.VLLM),  # vLLM with a dead engine
        (200, json.dumps(ECHOPANEL_OK[1]).encode(), ServerKind.ECHOPANEL),
        (401, json.dumps(ECHOPANEL_TOKEN[1]).encode(), ServerKind.ECHOPANEL),
        (503, json.dumps(ECHOPANEL_NOT_READY[1]).encode(), ServerKind.ECHOPANEL),
        (200, b"<html>nginx</html>", ServerKind.OTHER),
        (None, b"", None),
    ],
)
def test_server_kind(status: int | None, body: bytes, kind: ServerKind | None) -> None:
    assert server_kind(Answer("http://127.0.0.1:8000/health", status=status, body=body)) is kind


class _Backend:
    """A loopback server answering like EchoPanel's backend; it records every path it was asked."""

    def __init__(self, answer: tuple[int, dict]) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                status, body = answer if self.path == "/health" else (500, {"detail": "Internal Server Error"})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator:
    started: list[_Backend] = []

    def start(answer: tuple[int, dict]) -> _Backend:
        started.append(_Backend(answer))
        return started[-1]

    yield start
    for b in started:
        b.close()


@pytest.mark.parametrize("answer", [ECHOPANEL_OK, ECHOPANEL_TOKEN], ids=["no-token", "token"])
def test_doctor_fails_when_the_url_is_echopanel_itself(backend, answer: tuple[int, dict]) -> None:  # type: ignore[no-untyped-def]
    echopanel = backend(answer)
    out = run_cli(
        "doctor", "--url", echopanel.url, "--mode", "remote", "--json",
        env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"},
    )  # fmt: skip
    doc = json.loads(out.stdout)
    check = next(c for c in doc["checks"] if c["id"] == "server")
    assert out.returncode == 1 and check["status"] == "fail"
    assert "is EchoPanel's own backend, not vLLM" in check["summary"]
    assert "echopanel-setup configure --url http://localhost:8001" in check["fix"]["commands"]
    assert doc["facts"]["network"]["server"]["kind"] == "echopanel"
    assert echopanel.paths == ["/health"]  # nothing else is asked of EchoPanel's backend


def test_doctor_fails_when_vllm_holds_echopanels_port_where_echopanel_runs(cli, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from echopanel_kit import make_checkout
    from probe_kit import FakeVllm, serve_vllm

    from echopanel_setup import ports

    server, url = serve_vllm(FakeVllm())
    try:
        taken = int(url.rsplit(":", 1)[1])
        monkeypatch.setattr(ports, "echopanel_backend_port", lambda: taken)  # EchoPanel's 8000, on a free port
        checkout = make_checkout(tmp_path / "EchoPanel", port=taken)
        run = cli("doctor", "--echopanel", str(checkout), "--only", "port", "--offline", "--json")
    finally:
        server.shutdown()
        server.server_close()
    check = next(c for c in run.json()["checks"] if c["id"] == "port")
    assert (
        check["status"] == "fail"
        and f"a vLLM server holds port {taken}, EchoPanel's own backend port" in check["summary"]
    )
    assert "echopanel-setup configure --url http://localhost:8001" in check["fix"]["commands"]
    assert run.json()["facts"]["port"]["echopanel_port_kind"] == "vllm"
