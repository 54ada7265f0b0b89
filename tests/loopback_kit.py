"""The plumbing every loopback stand-in shares: a WebSocket server on its own asyncio loop, a threaded HTTP server,
JSON answers, and the lifecycle (`with StandIn(...) as s: s.url`).

The stand-ins themselves (smoke_kit, realtime_kit, metrics_kit) hold only what differs: the protocol they speak.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

W = TypeVar("W", bound="WsStandIn")
H = TypeVar("H", bound="HttpStandIn")

# --- WebSocket servers ---------------------------------------------------------------------------------------------


def json_response(status: int, body: Any) -> Response:
    """A plain-HTTP answer from a WebSocket server's `process_request` (the routes beside the socket)."""
    text = json.dumps(body).encode()
    headers = Headers(
        [("Content-Type", "application/json"), ("Content-Length", str(len(text))), ("Connection", "close")]
    )
    return Response(status, HTTPStatus(status).phrase, headers, text)


def empty_response(status: int) -> Response:
    return Response(status, HTTPStatus(status).phrase, Headers([("Content-Length", "0"), ("Connection", "close")]), b"")


class LoopThread:
    """An asyncio loop in a daemon thread, running one websockets server on 127.0.0.1."""

    def __init__(self, port: int = 0, ssl_context: Any = None) -> None:
        self.ssl_context = ssl_context
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None
        self.port = port

    def start(self, handler, process_request) -> None:  # type: ignore[no-untyped-def]
        self.thread.start()

        async def boot():  # type: ignore[no-untyped-def]
            return await serve(
                handler,
                "127.0.0.1",
                self.port,
                process_request=process_request,
                compression=None,
                max_size=2**24,
                # Never stop reading because a handler stopped consuming (websockets pauses past 16 queued frames):
                # a handler that closes mid-stream would then never read the client's close frame, and both sides
                # would wait out the server's 10 s close timeout. `transport.pause_reading()` still stalls on purpose.
                max_queue=None,
                ssl=self.ssl_context,
            )

        self.server = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            # A client that went away without closing its socket leaves a connection half-closed: cut every
            # connection, open or closing, instead of waiting out websockets' 10 s close timeout.
            for connection in list(getattr(self.server, "all_connections", self.server.connections)):  # type: ignore[union-attr]
                connection.transport.abort()
            self.server.close(close_connections=False)  # type: ignore[union-attr]
            await self.server.wait_closed()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class WsStandIn:
    """A WebSocket stand-in's lifecycle: subclasses write `_session` (one connection) and `_http` (the plain-HTTP
    routes, or None to go on with the handshake); `with` starts and stops the server, `.url` is its base."""

    _session: Callable[[ServerConnection], Awaitable[None]]
    _http: Callable[[ServerConnection, Request], Response | None]

    def __init__(self, port: int = 0, ssl_context: Any = None) -> None:
        """`ssl_context`: serve https:// and wss:// with it."""
        self._loop = LoopThread(port, ssl_context)

    @property
    def url(self) -> str:
        return f"{'https' if self._loop.ssl_context else 'http'}://127.0.0.1:{self._loop.port}"

    def __enter__(self: W) -> W:
        self._loop.start(self._session, self._http)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop()


# --- plain HTTP servers --------------------------------------------------------------------------------------------


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps pytest's output clean and answers JSON (no body for `body=None`)."""

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: Any = None) -> None:
        self._reply(status, b"" if body is None else json.dumps(body).encode())

    def _reply(self, status: int, data: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HttpStandIn:
    """A threaded HTTP server on 127.0.0.1 serving `handler` from a daemon thread; `with` starts and stops it, and
    `close()` may stop it earlier (from a request's own thread too: a server that goes away mid-test)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self: H) -> H:
        self.thread.start()
        return self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.httpd.shutdown()
            self.httpd.server_close()

    def __exit__(self, *exc: object) -> None:
        self.close()
