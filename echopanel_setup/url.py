"""`ServerURL`: the address of a vLLM server, parsed once where it enters (a flag, a config value) and
passed on as a value, so no caller re-checks or re-slices a string.

Two readings of the same text:
- `ServerURL.parse` — what our own clients accept (`smoke --url`, `doctor --url`): http(s):// or ws(s)://,
  a route (`/v1/realtime`, `/v1/audio/transcriptions`, `/v1`) reduced to the server's base, and a
  reverse-proxy prefix kept (`https://asr.example.com/vllm`).
- `ServerURL.parse_echopanel` — what EchoPanel's `voxtral_official` provider can use as `VOXTRAL_VLLM_URL`:
  it joins `{URL}/health` and `{URL}/v1/…` by string formatting, so only http(s)://HOST:PORT with no path works
  (pranaysuyash/EchoPanel 3845da5 server/services/provider_voxtral_official.py). `normalise_echopanel` turns a near miss
  (a trailing `/`, a `/v1` suffix) into that form and says what it dropped.

Credentials in a URL (`http://user:password@host`) are kept for the requests (`basic_auth`) and never appear
in `str()`, `display`, `repr()` or an error message; a query string is refused (it is where signed URLs keep
their secrets, and no vLLM route takes one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from echopanel_setup.errors import UsageError

_HTTP = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_DEFAULT_PORT = {"http": 80, "https": 443}
_ROUTE_SUFFIXES = ("/v1/realtime", "/v1/audio/transcriptions", "/v1")
_HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?)$")
_USERINFO = re.compile(r"(//)[^/?#@]*@")
_QUERY = re.compile(r"[?#].*$", re.DOTALL)


@dataclass(frozen=True)
class ServerURL:
    """A vLLM server's HTTP base: scheme, host, port and an optional reverse-proxy prefix (no trailing `/`)."""

    scheme: str  # "http" or "https"
    host: str  # without IPv6 brackets
    explicit_port: int | None = None  # the port as written; `port` fills in the scheme's default
    prefix: str = ""  # "" or "/a/b"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str, *, what: str = "--url") -> ServerURL:
        """Our clients' reading: http(s):// or ws(s)://, a route suffix and a trailing `/` dropped.

        Raises UsageError with one sentence that names `what` (a flag or a variable) and the fix.
        """
        parts = _split(text, what)
        if parts.scheme not in _HTTP or not parts.hostname:
            raise UsageError(
                f"{_subject(what, text)} must look like http://HOST:PORT (or ws://HOST:PORT/v1/realtime){_hint(text)}"
            )
        path = parts.path.rstrip("/")
        for suffix in _ROUTE_SUFFIXES:
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        return cls._build(parts, _HTTP[parts.scheme], path, text, what)

    @classmethod
    def parse_echopanel(cls, text: str, *, what: str = "VOXTRAL_VLLM_URL") -> ServerURL:
        """EchoPanel's reading: http(s)://HOST:PORT and nothing else (a lone trailing `/` is tolerated, as
        before). Use `normalise_echopanel` to accept and repair a `/v1` suffix from a user."""
        parts = _split(text, what)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{_subject(what, text)} must look like http://HOST:PORT{_hint(text)}")
        url = cls._build(parts, parts.scheme, "", text, what)
        if parts.path not in ("", "/"):
            raise UsageError(
                f"{_subject(what, text)} must have no path (EchoPanel adds /health and /v1/… itself): use {url}"
            )
        if url.explicit_port is None:
            raise UsageError(
                f"{_subject(what, text)} has no port (vLLM's port here is {_default_port()}): "
                f"use {url.with_port(_default_port())}"
            )
        return url

    @classmethod
    def _build(cls, parts: SplitResult, scheme: str, prefix: str, text: str, what: str) -> ServerURL:
        host = parts.hostname or ""
        if not _HOST.match(host) or not resolvable_host(host):
            raise UsageError(
                f"{_subject(what, text)}: {host!r} is not a host name or IP address (write http://HOST:PORT)"
            )
        return cls(
            scheme=scheme,
            host=host,
            explicit_port=parts.port,
            prefix=prefix,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def port(self) -> int:
        return self.explicit_port if self.explicit_port is not None else _DEFAULT_PORT[self.scheme]

    @property
    def netloc(self) -> str:
        """HOST[:PORT] as written (IPv6 in brackets), without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.explicit_port is None else f"{host}:{self.explicit_port}"

    @property
    def http_base(self) -> str:
        """`http(s)://HOST[:PORT][/prefix]`: what requests are joined to, and what EchoPanel is given."""
        return f"{self.scheme}://{self.netloc}{self.prefix}"

    @property
    def ws_url(self) -> str:
        """The realtime WebSocket: `ws(s)://HOST[:PORT][/prefix]/v1/realtime`."""
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.netloc}{self.prefix}/v1/realtime"

    @property
    def with_credentials(self) -> str:
        """`http_base` with the user and password it was given (%-quoted), for where the URL is stored as the user
        wrote it (EchoPanel's `.env`): never to be shown."""
        if self.username is None:
            return self.http_base
        from urllib.parse import quote

        auth = quote(self.username, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        return f"{self.scheme}://{auth}@{self.netloc}{self.prefix}"

    @property
    def display(self) -> str:
        """The form to show: the base without credentials (the same as `str()`)."""
        return self.http_base

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) for HTTP Basic auth when the URL carried them, else None."""
        if self.username is None:
            return None
        return (self.username, self.password or "")

    @property
    def is_loopback(self) -> bool:
        """This machine: localhost, 127.0.0.0/8, ::1, or the unspecified 0.0.0.0 / :: (which reach it too).
        Such a server is never asked through a proxy."""
        import ipaddress  # here: `--help` never pays for it

        if self.host.lower() == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(self.host.split("%", 1)[0])
        except ValueError:
            return False
        return ip.is_loopback or ip.is_unspecified

    def same_server(self, other: ServerURL) -> bool:
        """Whether both name the same server: the same base, or this machine spelled two ways (serve records
        http://127.0.0.1:P, EchoPanel's config often says http://localhost:P)."""
        if self.http_base == other.http_base:
            return True
        same_route = (self.scheme, self.port, self.prefix) == (other.scheme, other.port, other.prefix)
        return same_route and self.is_loopback and other.is_loopback

    def url(self, path: str) -> str:
        """The full address of a route, e.g. `url("/health")` (no credentials in it)."""
        return f"{self.http_base}{path}"

    def with_port(self, port: int) -> ServerURL:
        return replace(self, explicit_port=port)

    def __str__(self) -> str:
        return self.http_base


class Normalised(NamedTuple):
    """A URL put into EchoPanel's form, and the sentence saying what changed (None when nothing did)."""

    url: ServerURL
    note: str | None


def normalise_echopanel(text: str, *, what: str = "VOXTRAL_VLLM_URL") -> Normalised:
    """Accept the near misses a user types for EchoPanel — a trailing `/`, a `/v1` suffix — and drop them,
    with a note to show: EchoPanel joins `{URL}/v1/…` by string, so either would make every call a 404.
    Any other path, or a scheme other than http/https, is refused (UsageError)."""
    parts = _split(text, what)
    dropped = parts.path if parts.path.rstrip("/") in ("", "/v1") else ""
    url = ServerURL.parse_echopanel(urlunsplit(parts._replace(path="")) if dropped else text, what=what)
    if not dropped:
        return Normalised(url, None)
    return Normalised(
        url, f"{what}: dropped {dropped!r} from the URL (EchoPanel adds /v1/… itself; with it every request is a 404)"
    )


def is_loopback(text: str) -> bool:
    """Whether a URL still in text form (a config value) names this machine; False when it does not parse."""
    try:
        return ServerURL.parse(text).is_loopback
    except UsageError:
        return False


def resolvable_host(host: str) -> bool:
    """A name the resolver can encode: labels of 1-63 characters (IDNA), at most 253 in all. A longer one made every
    request raise UnicodeError (exit 4) instead of naming the bad URL."""
    if ":" in host:  # an IPv6 address: no labels
        return True
    try:
        return len(host.rstrip(".").encode("idna")) <= 253
    except UnicodeError:
        return False


def _split(text: str, what: str) -> SplitResult:
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise UsageError(
            f"{_subject(what, text)} has no valid port or address (write http://HOST:PORT, the port 1-65535)"
        ) from None
    if parts.query or parts.fragment or text.strip().endswith(("?", "#")):
        raise UsageError(
            f"{_subject(what, text)} must not carry a query (?…) or fragment (#…): vLLM's routes take none"
        )
    if parts.port == 0:
        raise UsageError(f"{_subject(what, text)}: port 0 is not a port a server listens on (use 1-65535)")
    return parts


def redact(text: str) -> str:
    """Text that may be a URL, safe to show: credentials become `***`, a query or fragment `?…`."""
    return _QUERY.sub("?…", _USERINFO.sub(r"\1***@", text.strip()))


_URL_IN_TEXT = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^\s'\"<>]*)")


def scrub(text: str) -> str:
    """Free text (an exception's message) with every URL in it cut to scheme://host/path: a signed CDN URL
    keeps `X-Amz-Signature`, `Expires` and its other secrets in the query, a proxy URL its password in the
    userinfo. Used wherever a library's error text reaches the user."""

    def cut(m: re.Match[str]) -> str:
        authority, slash, path = _QUERY.sub("", m.group(2)).partition("/")
        return m.group(1) + authority.rpartition("@")[2] + slash + path

    return _URL_IN_TEXT.sub(cut, text)


def _hint(text: str) -> str:
    """A scheme-less `HOST:PORT` is the common slip: offer the http:// form."""
    return f"; did you mean http://{redact(text)}?" if "://" not in text and text.strip() else ""


def _subject(what: str, text: str) -> str:
    """`--url 'TEXT'` for a flag, `KEY='TEXT'` for a variable, with secrets redacted."""
    shown = repr(redact(text))
    return f"{what} {shown}" if what.startswith("-") else f"{what}={shown}"


def _default_port() -> int:
    from echopanel_setup import knowledge

    return knowledge.load().server.default_port
