"""The Hugging Face Hub, through the real huggingface_hub: revision → commit, file metadata, download URLs,
auth headers, and one clear line for each of its error classes.

Everything here honours what huggingface_hub honours: HF_ENDPOINT, HF_TOKEN (or `hf auth login`),
HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT and the usual proxy variables (its httpx2 client trusts the environment).
Our own Range transfers (fetch.py) reuse its session, headers and `hf_raise_for_status`, so an error there
maps through the same classes.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from echopanel_setup.env import header_value
from echopanel_setup.errors import ExternalError, SetupError, UsageError
from echopanel_setup.url import redact, resolvable_host, scrub

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
API_TIMEOUT_S = 30.0
_DNS_MARKERS = (
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "getaddrinfo failed",
    "no address associated",
)


@dataclass(frozen=True)
class Backoff:
    """huggingface_hub's retry rules for its own calls (2.4.0 `utils/_http.py`, `http_backoff`): up to
    `retries` retries of a timeout, a network or protocol error, or a 408/429/500/502/503/504 answer; the wait
    is what a 429 or `Retry-After` asks for (plus 1 s), else `base_s` doubled after each try, at most `max_s`."""

    retries: int = 5
    base_s: float = 1.0
    max_s: float = 8.0

    def wait(self, exc: BaseException, tries: int) -> float:
        asked = asked_wait(exc)
        return asked if asked is not None else min(self.max_s, self.base_s * 2 ** (tries - 1))


@dataclass(frozen=True)
class RemoteFile:
    """One file at one commit, as the Hub describes it: enough to plan, resume and verify."""

    name: str
    size: int
    sha256: str | None  # LFS files: the content's sha256 (also their etag)
    git_sha1: str | None  # regular files: the git blob id (also their etag)

    @property
    def etag(self) -> str:
        return self.sha256 or self.git_sha1 or ""


@dataclass(frozen=True)
class Remote:
    repo: str
    revision: str
    commit: str
    endpoint: str
    gated: bool
    files: dict[str, RemoteFile]


@dataclass(frozen=True)
class Source:
    """Where to GET one file's bytes right now (a signed CDN URL expires: ask again on each retry)."""

    url: str
    headers: dict[str, str]
    etag: str | None
    size: int | None


def endpoint() -> str:
    """The Hub huggingface_hub talks to, as shown and recorded: a mirror's password (`HF_ENDPOINT=https://u:pw@…`)
    stays with huggingface_hub's requests, never in a message or the manifest."""
    from huggingface_hub import constants

    return redact(constants.ENDPOINT.rstrip("/"))


def checked_endpoint() -> str:
    """endpoint(), refused (usage, exit 2) unless it is an http(s) URL with a host and a numeric port: importing
    huggingface_hub's API parses it, and a port like `abc` raises there, deep inside the import."""
    where = endpoint()
    parts = urlsplit(where)
    try:
        _ = parts.port  # a port that is not a number raises here
        numeric_port = True
    except ValueError:
        numeric_port = False
    usable = parts.scheme in ("http", "https") and bool(parts.hostname) and numeric_port
    if not (usable and resolvable_host(parts.hostname or "")):  # a label over 63 characters crashed the resolver
        raise UsageError(
            f"HF_ENDPOINT={where!r} is not an http(s) URL with a host and a numeric port: set it like "
            "https://huggingface.co, or unset it"
        )
    return where


def offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def token_set() -> bool:
    from huggingface_hub import get_token

    try:
        return get_token() is not None
    except Exception:  # noqa: BLE001 - an OIDC exchange failure means "no usable token" here
        return False


def _usable_token() -> None:
    """A token no HTTP header can carry (a line break, a letter outside ASCII) crashed the first request (exit 4)."""
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception:  # noqa: BLE001 - as in token_set: no usable token, the Hub's answer says the rest
        return
    header_value(token, "HF_TOKEN (or the token `hf auth login` saved)")


def _session_defaults() -> None:
    """Give huggingface_hub's shared client a default timeout (some HfApi calls pass none and would wait
    forever), and keep its log warnings off the terminal: every failure reaches the user as our one line."""
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import logging as hf_logging
    from huggingface_hub.utils._http import default_client_factory

    hf_logging.set_verbosity_error()

    def factory() -> httpx2.Client:
        client = default_client_factory()
        client.timeout = httpx2.Timeout(API_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        return client

    set_client_factory(factory)


def retrying(call: Callable[[], T], *, what: str, backoff: Backoff, note: Callable[[str], None]) -> T:
    """`call()`, retried as huggingface_hub retries its own requests (HfApi's metadata calls have no retry of
    their own); each wait is announced, so a rate limit reads as one and not as a hang."""
    tries = 0
    while True:
        try:
            return call()
        except Exception as exc:
            tries += 1
            if tries > backoff.retries or not transient(exc):
                raise
            wait = backoff.wait(exc, tries)
            note(f"{what}: {failure(exc)}; retry {tries} of {backoff.retries} in {wait:g} s")
            time.sleep(wait)


def _usable_proxy() -> None:
    """Make huggingface_hub's client now, so proxy settings its httpx2 refuses (ALL_PROXY=socks5://… without
    socksio, whose hint `pip install httpx[socks]` names a package huggingface_hub does not use; a port that is
    not a number) are one usage line, not a crash inside the first request."""
    import httpx2
    from huggingface_hub import get_session

    from echopanel_setup.vllm_client import unusable_proxy

    try:
        get_session()
    except (ImportError, ValueError, httpx2.InvalidURL) as exc:
        raise UsageError(unusable_proxy(exc)) from None


def resolve(
    repo: str,
    revision: str,
    names: list[str],
    *,
    backoff: Backoff | None = None,
    note: Callable[[str], None] = lambda _: None,
) -> Remote:
    """Revision → commit, then size and hash of each wanted file at that commit (two API calls)."""
    where = checked_endpoint()  # before HfApi is imported: its import parses HF_ENDPOINT and crashes on a bad one
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile as HubFile

    _session_defaults()
    _usable_proxy()
    _usable_token()
    api = HfApi()
    policy = backoff or Backoff()

    def call(what: str, fn: Callable[[], T]) -> T:
        return retrying(fn, what=what, backoff=policy, note=note)

    try:
        info = call(
            "asking the Hub for the commit", lambda: api.model_info(repo, revision=revision, timeout=API_TIMEOUT_S)
        )
        commit = info.sha or ""
        gated = bool(info.gated)
        if gated:
            call("checking access", lambda: api.auth_check(repo))  # GatedRepoError now, not after planning 9 GB
        entries = call("asking the Hub for the file sizes", lambda: api.get_paths_info(repo, names, revision=commit))
    except Exception as exc:  # noqa: BLE001 - mapped to one line, or re-raised
        raise error(exc, repo=repo, revision=revision) from None
    files: dict[str, RemoteFile] = {}
    for e in entries:
        if isinstance(e, HubFile) and e.path in names:
            files[e.path] = RemoteFile(
                e.path, int(e.size), e.lfs.sha256 if e.lfs else None, None if e.lfs else e.blob_id
            )
    missing = [n for n in names if n not in files]
    if missing:
        raise ExternalError(
            f"{repo} at {commit[:12]} has no {', '.join(missing)}: is this the Voxtral Realtime repo? "
            f"(HF_ENDPOINT={where})"
        )
    return Remote(repo, revision, commit, where, gated, files)


def locate(repo: str, commit: str, name: str) -> Source:
    """HEAD the file's resolve URL (huggingface_hub's metadata helper) and say where to GET it.

    The token goes only to the Hub itself; a redirect to a CDN (signed URL) gets no Authorization header,
    as huggingface_hub does.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, name, revision=commit)
    meta = get_hf_file_metadata(url)  # no retries of its own: fetch.py retries, resuming at the byte
    headers = build_hf_headers(headers={"Accept-Encoding": "identity"})
    if _origin(meta.location) != _origin(url):
        headers.pop("authorization", None)
    return Source(meta.location, headers, meta.etag, meta.size)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def proxy_for(url: str) -> str | None:
    """The proxy the environment routes `url` through (what httpx would use), for error messages: any
    user:password in it is masked, since the message lands on terminals and in CI logs."""
    host = urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]  # NO_PROXY, as httpx reads it
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all")
    if proxy is None or "@" not in urlsplit(proxy).netloc:
        return proxy
    parts = urlsplit(proxy)
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def host(url: str) -> str:
    """host[:port] of a URL, never its userinfo."""
    return urlsplit(url).netloc.rpartition("@")[2] or scrub(url)


def transient(exc: BaseException) -> bool:
    """Worth a retry by huggingface_hub's rules: a timeout, a network or protocol error (the connection broke,
    stalled, was refused), or one of the statuses it retries (408, 429, 500, 502, 503, 504)."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils._http import _DEFAULT_RETRY_ON_STATUS_CODES

    if isinstance(exc, OfflineModeIsEnabled):
        return False
    status = _status(exc)
    if status is not None:
        return status in _DEFAULT_RETRY_ON_STATUS_CODES
    return isinstance(
        exc, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError, ConnectionError, TimeoutError)
    )


def _status(exc: BaseException) -> int | None:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return exc.response.status_code
    return None


def asked_wait(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait, read as huggingface_hub reads them: a 429's `RateLimit` header
    with nothing remaining, else `Retry-After` in seconds; plus 1 s, as it adds "to avoid rounding issues"."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import parse_ratelimit_headers
    from huggingface_hub.utils._http import _parse_retry_after

    if not isinstance(exc, HfHubHTTPError) or exc.response is None:
        return None
    headers = exc.response.headers
    limit = parse_ratelimit_headers(headers) if exc.response.status_code == 429 else None
    seconds = limit.reset_in_seconds if limit is not None and limit.remaining == 0 else _parse_retry_after(headers)
    return None if seconds is None else float(seconds) + 1


def failure(exc: BaseException) -> str:
    """A retryable failure in a few words: the host and the status, or what the network did. Never the URL's
    query: a signed CDN URL keeps its secrets there."""
    import http

    status = _status(exc)
    if status is None:
        return describe_network(exc, _request_url(exc) or endpoint())
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    asked = asked_wait(exc)
    wait = f", asking to wait {asked - 1:g} s" if asked is not None else ""
    return f"{host(_request_url(exc) or endpoint())} answered {status} {phrase}{wait}"


def _request_url(exc: BaseException) -> str | None:
    """The URL a failed request went to (httpx2 errors carry it; its `.request` raises when they don't)."""
    for holder in (exc, getattr(exc, "response", None)):
        try:
            request = getattr(holder, "request", None)
        except RuntimeError:
            continue
        if request is not None:
            return str(request.url)
    return None


def describe_network(exc: BaseException, url: str) -> str:
    """A network failure in words: DNS, proxy, refused, timed out."""
    import httpx2

    text = scrub(str(exc)) or type(exc).__name__
    where = host(url)
    proxy = proxy_for(url)
    if isinstance(exc, httpx2.ProxyError) or (proxy and isinstance(exc, httpx2.ConnectError)):
        return f"the proxy {proxy or '?'} failed ({text}): check HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY"
    if any(m in text.lower() for m in _DNS_MARKERS):
        return f"cannot resolve {urlsplit(url).hostname} (DNS): check your network connection, or HF_ENDPOINT"
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer from {where} in time ({type(exc).__name__}): the network or the Hub is slow or down"
    if "refused" in text.lower():
        return f"cannot connect to {where}: connection refused"
    return f"cannot reach {where}: {text}"


def error(exc: BaseException, *, repo: str, revision: str | None = None, name: str | None = None) -> BaseException:
    """Map a huggingface_hub / httpx2 error to one SetupError line; unknown errors come back unchanged."""
    import httpx2
    from huggingface_hub import errors as e

    where = endpoint()
    page = f"{where}/{repo}"
    token = "HF_TOKEN is set" if token_set() else "no token is set: export HF_TOKEN=hf_… or run `hf auth login`"
    if isinstance(exc, SetupError):
        return exc
    if isinstance(exc, e.OfflineModeIsEnabled):
        return ExternalError(
            "HF_HUB_OFFLINE=1 forbids downloading: unset it to download, or copy the files into the model dir"
        )
    if isinstance(exc, e.GatedRepoError):
        return ExternalError(
            f"{repo} is gated: accept its licence at {page} with the account your token belongs to, then run again "
            f"({token})"
        )
    if isinstance(exc, e.RevisionNotFoundError):
        return ExternalError(
            f"revision {revision!r} not found in {repo}: pass a branch, a tag or a full 40-character commit to "
            "--revision"
        )
    if isinstance(exc, e.RemoteEntryNotFoundError):
        return ExternalError(
            f"{name or 'a file'} not found in {repo} at {revision}: the repo changed; run again with --revision main"
        )
    if isinstance(exc, e.DisabledRepoError):
        return ExternalError(f"{repo} is disabled on {where}")
    if isinstance(exc, e.RepositoryNotFoundError):
        return ExternalError(
            f"{repo} not found on {where}: check the endpoint and your token too, the Hub answers 'not found' "
            f"when a token is missing, wrong or lacks access ({token})"
        )
    if isinstance(exc, e.FileMetadataError):
        return ExternalError(
            f"{where} does not answer like the Hugging Face Hub ({_first_line(exc)}): check HF_ENDPOINT and your proxy"
        )
    if isinstance(exc, e.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            return ExternalError(
                "the Hub rejected your token (401 invalid credentials): check HF_TOKEN or run `hf auth login` again"
            )
        if status == 403:
            return ExternalError(
                f"the Hub refused access to {repo} (403): check your token's permissions at {where}/settings/tokens"
            )
        if status == 429:
            return ExternalError(
                "the Hub is rate-limiting this address (429): wait a few minutes and run again (a token raises the "
                "limit)"
            )
        return ExternalError(
            f"the Hub answered {status or 'an error'} for {repo}: try again later ({_first_line(exc)})"
        )
    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return ExternalError(f"{describe_network(exc, where)} (HF_ENDPOINT={where})")
    return exc


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in scrub(str(exc)).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
