"""The plain-HTTP side of a vLLM server: where it is, whether it is up, what it serves, and the one-shot
`/v1/audio/transcriptions` route (`smoke --http`).

vLLM answers `/health` (200, or 503 when the engine died) without a key, `/version` with
`{"version": …}`, and `/v1/models` with an OpenAI model list; `--api-key` guards every `/v1/*` route,
the realtime WebSocket included (reference voxtral-vllm.md §2.6 and addendum 2).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from echopanel_setup import knowledge
from echopanel_setup.errors import ExternalError, UsageError
from echopanel_setup.smoke.result import Timings, Transcript
from echopanel_setup.url import ServerURL


@dataclass
class ServerInfo:
    version: str | None = None
    models: list[str] = field(default_factory=list)
    waiting_s: float = 0.0


def discover(ep: ServerURL, api_key: str | None, start_hint: str, timeout: float) -> ServerInfo:
    """GET /health, /version and /v1/models; one sentence with the next step for anything wrong."""
    info = ServerInfo()
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with http_client(ep, timeout) as client:
        health = _get(client, f"{ep.http_base}/health", {}, start_hint, timeout, info)
        if health.status_code == 404:
            raise ExternalError(
                f"{ep.http_base} has no /health (HTTP 404): not a vLLM server; check the host, port and path"
            )
        if health.status_code != 200:
            raise ExternalError(
                f"{ep.http_base}/health answered HTTP {health.status_code}: the engine is not ready (still loading, or it died); "
                "read the server log (`echopanel-setup serve --logs`)"
            )
        version = _get(client, f"{ep.http_base}/version", {}, start_hint, timeout, info)
        if version.status_code == 200:
            info.version = _json(version).get("version")
        models = _get(client, f"{ep.http_base}/v1/models", auth, start_hint, timeout, info)
    if models.status_code == 401:
        raise ExternalError(unauthorized(ep.http_base, bool(api_key)))
    if models.status_code != 200:
        raise ExternalError(
            f"{ep.http_base}/v1/models answered HTTP {models.status_code}: not vLLM's OpenAI-compatible server"
        )
    try:
        info.models = [str(m["id"]) for m in _json(models)["data"]]
    except (KeyError, TypeError):
        raise ExternalError(f"{ep.http_base}/v1/models did not answer a model list: not a vLLM server") from None
    return info


def choose_model(url: str, served: list[str], wanted: str | None) -> str:
    """The model name `session.update` must carry: --model if served, else the one Voxtral served."""
    if wanted:
        if wanted not in served:
            raise UsageError(f"--model {wanted}: {url} does not serve it; it serves: {', '.join(served) or 'nothing'}")
        return wanted
    if not served:
        raise ExternalError(f"{url} serves no model yet")
    if len(served) == 1:
        return served[0]
    voxtral = [m for m in served if is_voxtral_realtime(m)]
    if len(voxtral) == 1:
        return voxtral[0]
    raise UsageError(f"{url} serves several models ({', '.join(served)}): pick one with --model")


def is_voxtral_realtime(name: str) -> bool:
    repo_name = knowledge.load().model.repo.split("/")[1]
    lowered = name.lower()
    return ("voxtral" in lowered and "realtime" in lowered) or name.rstrip("/").endswith(repo_name)


def transcribe_http(ep: ServerURL, model: str, wav: bytes, api_key: str | None, timeout: float) -> Transcript:
    """One multipart POST to /v1/audio/transcriptions (offline mode in vLLM: one request, one answer)."""
    import httpx

    url = f"{ep.http_base}/v1/audio/transcriptions"
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with http_client(ep, timeout) as client:
            started = time.monotonic()
            response = client.post(
                url,
                headers=auth,
                files={"file": ("smoke.wav", wav, "audio/wav")},
                data={"model": model, "response_format": "json"},
            )
    except httpx.TimeoutException:
        raise ExternalError(
            f"{url}: no answer within {timeout:.0f} s: the server is stalled or overloaded (allow longer with --timeout)"
        ) from None
    except httpx.HTTPError as exc:
        raise ExternalError(f"{url}: {_first_line(exc)}") from None
    elapsed = time.monotonic() - started
    if response.status_code == 401:
        raise ExternalError(unauthorized(ep.http_base, bool(api_key)))
    if response.status_code == 404:
        raise ExternalError(
            f"{url} does not exist (HTTP 404): this vLLM has no transcription route for the model; use the realtime route (drop --http)"
        )
    body = _json(response)
    if response.status_code != 200:
        raise ExternalError(
            f"{url} answered HTTP {response.status_code}: {_error_message(body) or response.text[:200]}"
        )
    if not isinstance(body.get("text"), str):
        raise ExternalError(f"{url} answered without a transcript text: not vLLM's transcription API")
    timings = Timings(total_s=elapsed, waiting_s=elapsed, final_to_done_s=elapsed)
    return Transcript(
        body["text"], 0, timings, body.get("usage") if isinstance(body.get("usage"), dict) else None, model
    )


def http_client(base: ServerURL, timeout: float):  # type: ignore[no-untyped-def]
    """An httpx client for one vLLM server. A loopback server is never reached through a proxy (HTTP_PROXY
    would send "localhost" to the proxy's own host); plain http:// skips loading the CA bundle (no TLS is
    spoken, no redirect followed), which is most of a client's start-up cost."""
    import httpx

    try:
        return httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            trust_env=not base.is_loopback,
            verify=base.scheme == "https",
            auth=base.basic_auth,
        )
    except ImportError as exc:  # a SOCKS proxy in ALL_PROXY without httpx's socks extra
        raise UsageError(
            f"the proxy from your environment cannot be used: {_first_line(exc)} (or unset ALL_PROXY/HTTPS_PROXY)"
        ) from None


def _get(client, url: str, headers: dict[str, str], start_hint: str, timeout: float, info: ServerInfo):  # type: ignore[no-untyped-def]
    """One GET; the time it takes counts as waiting on the server."""
    import httpx

    started = time.monotonic()
    try:
        return client.get(url, headers=headers)
    except httpx.ConnectError as exc:
        raise ExternalError(f"cannot reach {url} ({_first_line(exc)}): is the server running? {start_hint}") from None
    except httpx.TimeoutException:
        raise ExternalError(f"{url}: no answer within {timeout:.0f} s (a firewall, or an overloaded server)") from None
    except httpx.HTTPError as exc:
        raise ExternalError(f"{url}: {_first_line(exc)}") from None
    finally:
        info.waiting_s += time.monotonic() - started


def _json(response) -> dict:  # type: ignore[no-untyped-def, type-arg]
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_message(body: dict) -> str | None:  # type: ignore[type-arg]
    """vLLM's error body: `{"error": {"message": …}}` in newer versions, `{"message": …}` in older ones."""
    err = body.get("error")
    if isinstance(err, dict):
        return err.get("message")
    return body.get("message") or (err if isinstance(err, str) else None)


def unauthorized(base: str, sent_key: bool) -> str:
    """The 401 sentence, shared by the HTTP routes and the WebSocket handshake."""
    if sent_key:
        return (
            f"{base} refused the API key (HTTP 401): use the key the server was started with (--api-key / VLLM_API_KEY)"
        )
    return f"{base} wants an API key (HTTP 401): pass --api-key or set VLLM_API_KEY to the server's --api-key"


def _first_line(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
