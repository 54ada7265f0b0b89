"""One client for a vLLM server's plain-HTTP surface: `/health`, `/version`, `/v1/models` (and a POST for
`smoke --http`), with their parsing and every failure classified.

What vLLM answers (vLLM 0.16-0.33 `entrypoints/openai/api_server.py`): `/health` is an empty 200 (503 once the
engine died) and never asks for a key; `/version` is `{"version": …}`; `/v1/models` is an OpenAI model list,
guarded by `--api-key` like every `/v1/*` route. So the key goes to `/v1/*` only.

A server on this machine is never asked through a proxy (HTTP_PROXY would send "localhost" to the
proxy's own host); plain http:// skips loading the CA bundle, most of a client's start-up cost. Callers
decide what a failure means for them (a doctor check, smoke's one sentence, serve's readiness loop): this
module only says what happened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from echopanel_setup import __version__
from echopanel_setup.errors import UsageError
from echopanel_setup.url import ServerURL

_USER_AGENT = f"echopanel-setup/{__version__}"
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"  # RFC 3986 path characters, and % (a prefix already escaped stays as written)
_MAX_BODY = 1_000_000  # no route we ask answers more; a larger body is cut here, not held whole

if TYPE_CHECKING:
    import http.client
    import ssl

    import httpx


class Problem(str, Enum):
    """Why a request got no usable answer."""

    UNREACHABLE = "unreachable"  # refused, DNS, reset: nothing listens there
    TIMEOUT = "timeout"  # connected (or not) but no answer in time
    TLS = "tls"  # the TLS handshake or certificate failed
    PROXY = "proxy"  # the proxy settings in the environment cannot be used (SOCKS without socksio): a usage error
    HTTP = "http"  # an answer, but not the status the route promises
    NOT_VLLM = "not_vllm"  # an answer vLLM would not give (no /health, no model list)
    ECHOPANEL = "echopanel"  # EchoPanel's own backend answered: the URL points EchoPanel at itself


class ServerKind(str, Enum):
    """Who answered `/health`: told apart by that route alone, so EchoPanel's backend is never asked for more."""

    VLLM = "vllm"  # an empty body (200 ready, 503 engine dead)
    ECHOPANEL = "echopanel"  # JSON naming "service": "echopanel" (top level or under "detail"), or a JSON 401
    OTHER = "other"  # something else listens there


def server_kind(health: Answer) -> ServerKind | None:
    """vLLM's `/health` is an empty 200; EchoPanel's is JSON with `"service": "echopanel"`, or a JSON 401 when it wants
    its token (vLLM's --api-key never guards /health). None when nothing answered (pranaysuyash/EchoPanel 3845da5
    server/main.py `/health`)."""
    if not health.reachable:
        return None
    body = health.json()
    detail = body.get("detail")
    if body.get("service") == "echopanel" or (isinstance(detail, dict) and detail.get("service") == "echopanel"):
        return ServerKind.ECHOPANEL
    if health.status == 401 and (body or health.text.strip().startswith(("{", "["))):
        return ServerKind.ECHOPANEL
    return ServerKind.VLLM if not health.body.strip() else ServerKind.OTHER


@dataclass(frozen=True)
class Answer:
    """One request's outcome: the status and body, or the problem and its one-line description."""

    url: str
    status: int | None = None
    body: bytes = b""
    elapsed_s: float = 0.0
    problem: Problem | None = None  # set only when no HTTP answer came (see `Survey` for the others)
    error: str = ""
    sent: float = 0.0  # time.monotonic() when the request left: the moment a server's figures (/metrics) are from

    @property
    def reachable(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; {} when it is not one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_version(answer: Answer) -> str | None:
    """vLLM's version from `/version`, or None."""
    version = answer.json().get("version") if answer.ok else None
    return str(version) if version is not None else None


def parse_models(answer: Answer) -> list[str] | None:
    """The served model names from a 200 `/v1/models`, or None when the body is not an OpenAI model list."""
    try:
        return [str(m["id"]) for m in answer.json()["data"]]
    except (KeyError, TypeError):
        return None


def error_message(answer: Answer) -> str | None:
    """vLLM's error body: `{"error": {"message": …}}` in newer versions, `{"message": …}` in older ones."""
    body = answer.json()
    err = body.get("error")
    if isinstance(err, dict):
        return str(err.get("message")) if err.get("message") is not None else None
    message = body.get("message") or (err if isinstance(err, str) else None)
    return str(message) if message is not None else None


@dataclass(frozen=True)
class Survey:
    """`/health`, `/version` and `/v1/models`, asked at once: what doctor and `serve status` record."""

    health: Answer
    version: str | None
    models: Answer  # not asked (an unreachable Answer) when /health showed EchoPanel's backend

    @property
    def kind(self) -> ServerKind | None:
        return server_kind(self.health)

    @property
    def served(self) -> list[str] | None:
        return parse_models(self.models) if self.models.ok else None

    @property
    def auth_required(self) -> bool:
        return self.models.status == 401

    @property
    def problem(self) -> tuple[Problem, str] | None:
        """What is wrong, first thing first: unreachable, then a /v1/models that is not vLLM's."""
        if not self.health.reachable:
            return self.health.problem or Problem.UNREACHABLE, self.health.error
        if self.kind is ServerKind.ECHOPANEL:
            return Problem.ECHOPANEL, f"{self.health.url} is EchoPanel's own backend, not vLLM"
        if self.models.ok and self.served is None:
            return Problem.NOT_VLLM, f"{self.models.url} did not answer a model list: not a vLLM server?"
        if self.models.reachable and not self.models.ok and not self.auth_required:
            return Problem.NOT_VLLM, f"{self.models.url} answered HTTP {self.models.status}: not a vLLM server?"
        return None


@dataclass(frozen=True)
class Tls:
    """How to trust an https:// / wss:// server: `ca_cert` (a PEM bundle: --ca-cert, else SSL_CERT_FILE as cli
    read it) for a self-signed or private CA, or `insecure` (no verification at all, said so by the caller)."""

    ca_cert: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        """One SSL context for httpx and websockets alike (so the HTTP checks and the WebSocket trust the same)."""
        import ssl

        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_cert:
            try:
                return ssl.create_default_context(cafile=self.ca_cert)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"--ca-cert {self.ca_cert}: not a readable PEM certificate bundle ({exc})") from None
        import certifi

        return ssl.create_default_context(cafile=certifi.where())


def http_client(server: ServerURL, *, timeout: float, tls: Tls | None = None, **extra: Any) -> httpx.Client:
    """The one way an httpx client for a vLLM server is made: no proxy for a loopback server, redirects not followed,
    and no CA bundle for plain http:// (building that SSL context costs ~0.1 s of a `watch --once`). Raises what
    httpx raises for unusable proxy settings (see `unusable_proxy`)."""
    import httpx

    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=not server.is_loopback,
        verify=(tls or Tls()).context() if server.scheme == "https" else False,
        **extra,
    )


class VllmClient:
    """A client for one vLLM server. Use as a context manager; requests never raise for network failures.

    Two transports behind one API. A plain GET to a server no proxy applies to (this machine, or no proxy
    configured: every `watch` sample, doctor probe and readiness poll) goes through the standard library's
    `http.client`: importing httpx costs ~0.1 s, more than a `watch --once` may take for its whole run
    (issue 19). Where a proxy applies, or a request has a body (smoke's multipart upload), httpx does it: its
    proxy support (NO_PROXY, SOCKS with socksio, the platform's settings) is not worth writing again.
    """

    def __init__(
        self, server: ServerURL, *, api_key: str | None = None, timeout: float = 5.0, tls: Tls | None = None
    ) -> None:
        import threading

        self.server = server
        self.timeout = timeout
        self._tls = tls
        self._bearer = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._unusable = ""
        self._http: httpx.Client | None = None
        self._proxied = proxied(server)
        self._idle: list[http.client.HTTPConnection] = []  # kept-alive direct connections, one per thread in use
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        if self._proxied:
            self._httpx()  # now, as before: unusable proxy settings become every answer's PROXY problem
        elif server.scheme == "https":
            self._ssl = (tls or Tls()).context()  # a bad --ca-cert is a UsageError here, not in a request

    def __enter__(self) -> VllmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def get(self, path: str, *, timeout: float | None = None) -> Answer:
        """GET a route; the API key goes only to `/v1/*`."""
        return self._send("GET", path, timeout)

    def post(self, path: str, *, timeout: float | None = None, **kwargs: Any) -> Answer:
        """POST to a route (`files=`, `data=`, `json=` as httpx takes them)."""
        return self._send("POST", path, timeout, **kwargs)

    def health(self, *, timeout: float | None = None) -> Answer:
        return self.get("/health", timeout=timeout)

    def version(self, *, timeout: float | None = None) -> str | None:
        return parse_version(self.get("/version", timeout=timeout))

    def models(self, *, timeout: float | None = None) -> Answer:
        return self.get("/v1/models", timeout=timeout)

    def survey(self, *, timeout: float | None = None) -> Survey:
        """`/health` first, then `/version` and `/v1/models` at once, each within `timeout`. Nothing more is asked
        of EchoPanel's own backend (its other routes answer 500 or 401, and log it)."""
        health = self.get("/health", timeout=timeout)
        if server_kind(health) is ServerKind.ECHOPANEL:
            return Survey(health, None, Answer(self.server.url("/v1/models"), error="not asked: EchoPanel's backend"))
        version, models = self.get_all(("/version", "/v1/models"), timeout=timeout)
        return Survey(health, parse_version(version), models)

    def get_all(self, paths: Sequence[str], *, timeout: float | None = None) -> list[Answer]:
        """GET several routes at once (a thread for each but the first), the answers in the order asked: the
        wait is the slowest route's, not the sum. A plain thread each: concurrent.futures would import logging."""
        import threading

        answers: dict[int, Answer] = {}
        errors: list[BaseException] = []

        def fetch(i: int) -> None:
            try:
                answers[i] = self.get(paths[i], timeout=timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(i,), daemon=True) for i in range(1, len(paths))]
        for thread in threads:
            thread.start()
        if paths:
            fetch(0)
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [answers[i] for i in range(len(paths))]

    def _send(self, method: str, path: str, timeout: float | None, **kwargs: Any) -> Answer:
        url = self.server.url(path)
        limit = self.timeout if timeout is None else timeout
        # The key goes to /v1/* only; credentials in the URL (a reverse proxy's Basic auth) everywhere else.
        bearer = self._bearer if path.startswith("/v1/") else {}
        started = time.monotonic()
        if self._proxied or method != "GET" or kwargs:
            return self._send_httpx(method, url, bearer, limit, started, **kwargs)
        import http.client

        headers = {"User-Agent": _USER_AGENT, "Accept": "*/*", **(bearer or self._basic())}
        conn, kept = self._connection(limit)
        try:
            try:
                return self._exchange(conn, url, headers, started)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not kept:
                    raise
            # The server closed a kept-alive connection between two requests: ask once more, on a new one.
            return self._exchange(self._new_connection(limit), url, headers, started)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError):
                problem, error = Problem.TIMEOUT, f"no answer within {limit:.1f} s"
            else:
                problem, error = (Problem.TLS if is_tls(exc) else Problem.UNREACHABLE), _first_line(exc)
            return Answer(url, elapsed_s=time.monotonic() - started, problem=problem, error=error, sent=started)

    def _exchange(self, conn: http.client.HTTPConnection, url: str, headers: dict[str, str], started: float) -> Answer:
        """One GET on `conn`; the connection goes back to the idle list only when its answer was read whole."""
        try:
            conn.request("GET", quote(urlsplit(url).path, safe=_PATH_SAFE), headers=headers)
            response = conn.getresponse()
            body = response.read(_MAX_BODY)
        except BaseException:
            conn.close()
            raise
        if response.will_close or not response.isclosed():  # closing, or a body longer than we read
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return Answer(url, response.status, body, time.monotonic() - started, sent=started)

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """A kept-alive connection (True) or a new one (False), `timeout` set for its connect and reads."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._new_connection(timeout), False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        host, port = self.server.host, self.server.port
        if self._ssl is not None:
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _basic(self) -> dict[str, str]:
        """The URL's credentials as a Basic `Authorization` header (user:password in UTF-8, as httpx sends them)."""
        if self.server.basic_auth is None:
            return {}
        import base64

        token = base64.b64encode(":".join(self.server.basic_auth).encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def _httpx(self) -> httpx.Client | None:
        """The httpx client, made on first use; None (`_unusable` says why) where the proxy settings are unusable."""
        import httpx

        if self._http is None and not self._unusable:
            try:
                self._http = http_client(self.server, timeout=self.timeout, tls=self._tls)
            except (ImportError, ValueError, httpx.InvalidURL) as exc:
                self._unusable = unusable_proxy(exc)
        return self._http

    def _send_httpx(
        self, method: str, url: str, bearer: dict[str, str], limit: float, started: float, **kwargs: Any
    ) -> Answer:
        import httpx

        client = self._httpx()
        if client is None:
            return Answer(url, problem=Problem.PROXY, error=self._unusable)
        auth = None if bearer else self.server.basic_auth
        try:
            response = client.request(method, url, headers=bearer, auth=auth, timeout=limit, **kwargs)
        except httpx.TimeoutException:
            problem, error = Problem.TIMEOUT, f"no answer within {limit:.1f} s"
        except httpx.ConnectError as exc:
            problem, error = (Problem.TLS if is_tls(exc) else Problem.UNREACHABLE), _first_line(exc)
        except httpx.HTTPError as exc:
            problem, error = Problem.UNREACHABLE, _first_line(exc)
        else:
            body = response.content[:_MAX_BODY]
            return Answer(url, response.status_code, body, time.monotonic() - started, sent=started)
        return Answer(url, elapsed_s=time.monotonic() - started, problem=problem, error=error, sent=started)


def proxied(server: ServerURL) -> bool:
    """Whether httpx would send a request to `server` through a proxy: never for this machine; else when the
    environment (or, on macOS and Windows, the system settings: urllib's `getproxies`, which httpx reads too)
    names one for its scheme. NO_PROXY is left to httpx: a server it exempts is still asked correctly, only slower."""
    if server.is_loopback:
        return False
    from urllib.request import getproxies

    proxies = getproxies()
    return bool(proxies.get(server.scheme) or proxies.get("all"))


PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def unusable_proxy(exc: BaseException) -> str:
    """One sentence for proxy settings httpx refuses when a client is made (`httpx.Client(trust_env=True)`):
    which variable, why, and what to do. Catch `(ImportError, ValueError, httpx.InvalidURL)` around the client.

    httpx raises ImportError for a SOCKS proxy without its socks extra (and names `pip install httpx[socks]`,
    which is only right where pip runs in our environment), InvalidURL for a port that is not a number
    (`HTTPS_PROXY=http://proxy:abc`), ValueError for a scheme it has no transport for.
    """
    import os

    from echopanel_setup.url import redact

    values = {var: os.environ.get(var) or os.environ.get(var.lower()) for var in PROXY_VARS}
    named = [(var, value) for var, value in values.items() if value]
    if isinstance(exc, ImportError):
        socks = [f"{var}={redact(value)}" for var, value in named if value.lower().startswith("socks")]
        return (
            f"{', '.join(socks) or 'a SOCKS proxy'} needs SOCKS support, which is not installed: add it to "
            "echopanel-setup's environment (`pip install socksio`, or `pipx inject echopanel-setup socksio`), "
            f"or unset {', '.join(v.split('=')[0] for v in socks) or 'the proxy variables'}"
        )
    shown = ", ".join(f"{var}={redact(value)}" for var, value in named) or "the proxy settings"
    return f"{shown}: not a usable proxy URL ({_first_line(exc)}); fix it (http://HOST:PORT) or unset it"


def is_tls(exc: BaseException) -> bool:
    """Whether a failure was the TLS handshake's (certificate, protocol), wherever it sits in the exception chain."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper()


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
