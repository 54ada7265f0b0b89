"""smoke's view of a vLLM server's plain-HTTP side: is it up, what does it serve (one sentence with the next
step for anything wrong), and the one-shot `/v1/audio/transcriptions` route (`smoke --http`).

The requests and their parsing are `vllm_client`'s; this module words the failures for smoke and setup. `--api-key`
guards every `/v1/*` route, the realtime WebSocket included (vLLM `entrypoints/openai/api_server.py`, 0.16-0.33).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO

from echopanel_setup import knowledge
from echopanel_setup.errors import ExternalError, SetupError, Unreachable, UsageError
from echopanel_setup.smoke.result import Timings, Transcript
from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import Answer, Problem, Tls, VllmClient, error_message, parse_models, parse_version


@dataclass
class ServerInfo:
    version: str | None = None
    models: list[str] = field(default_factory=list)
    waiting_s: float = 0.0


def discover(ep: ServerURL, api_key: str | None, start_hint: str, timeout: float, tls: Tls | None = None) -> ServerInfo:
    """GET /health, /version and /v1/models; one sentence with the next step for anything wrong."""
    info = ServerInfo()
    with VllmClient(ep, api_key=api_key, timeout=timeout, tls=tls) as client:
        health = _answered(client.health(), start_hint, info)
        if health.status == 404:
            raise ExternalError(
                f"{ep.http_base} has no /health (HTTP 404): not a vLLM server; check the host, port and path"
            )
        if health.status is not None and 300 <= health.status < 400:
            raise ExternalError(
                f"{ep.http_base}/health answered HTTP {health.status}, a redirect: --url must name the vLLM server "
                "itself, not an address that forwards elsewhere (check http:// against https://, the port and any "
                "proxy path)"
            )
        if not health.ok:
            raise ExternalError(
                f"{ep.http_base}/health answered HTTP {health.status}: the engine is not ready (still loading, "
                "or it died); read the server log (`echopanel-setup serve --logs`)"
            )
        info.version = parse_version(_answered(client.get("/version"), start_hint, info))
        models = _answered(client.models(), start_hint, info)
    if models.status == 401:
        raise ExternalError(unauthorized(ep.http_base, bool(api_key)))
    if not models.ok:
        raise ExternalError(
            f"{ep.http_base}/v1/models answered HTTP {models.status}: not vLLM's OpenAI-compatible server"
        )
    served = parse_models(models)
    if served is None:
        raise ExternalError(f"{ep.http_base}/v1/models did not answer a model list: not a vLLM server")
    info.models = served
    return info


def _answered(answer: Answer, start_hint: str, info: ServerInfo) -> Answer:
    """The answer, its time counted as waiting on the server; a request that got none raises its sentence."""
    info.waiting_s += answer.elapsed_s
    if answer.reachable:
        return answer
    if answer.problem is Problem.TIMEOUT:
        raise Unreachable(f"{answer.url}: {answer.error} (a firewall, or an overloaded server)")
    raise _no_answer(answer, f"is the server running? {start_hint}".strip())


def _no_answer(answer: Answer, advice: str) -> SetupError:
    """The sentence for a request that got no HTTP answer (timeouts are worded by the caller)."""
    if answer.problem is Problem.PROXY:
        return UsageError(f"the proxy from your environment cannot be used: {answer.error}")
    if answer.problem is Problem.TLS:
        return ExternalError(tls_failed(answer.url, answer.error or ""))
    return Unreachable(f"cannot reach {answer.url} ({answer.error}): {advice}")


def choose_model(url: str, served: list[str], wanted: str | None) -> str:
    """The model name `session.update` must carry: --model if served, else the one Voxtral served (the name EchoPanel
    sends where it is served under several)."""
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
    # `serve` serves one model under two names (the one EchoPanel sends, and the Hub repo id), and vLLM lists each.
    sent = knowledge.load().echopanel.defaults.model_name
    if sent in voxtral:
        return sent
    raise UsageError(f"{url} serves several models ({', '.join(served)}): pick one with --model")


def is_voxtral_realtime(name: str) -> bool:
    repo_name = knowledge.load().model.repo.split("/")[1]
    lowered = name.lower()
    return ("voxtral" in lowered and "realtime" in lowered) or name.rstrip("/").endswith(repo_name)


def transcribe_http(
    ep: ServerURL, model: str, wav: bytes | IO[bytes], api_key: str | None, timeout: float, tls: Tls | None = None
) -> Transcript:
    """One multipart POST to /v1/audio/transcriptions (offline mode in vLLM: one request, one answer). A WAV given as
    an open file is streamed from it in pieces by httpx, never read whole."""
    with VllmClient(ep, api_key=api_key, timeout=timeout, tls=tls) as client:
        answer = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("smoke.wav", wav, "audio/wav")},
            data={"model": model, "response_format": "json"},
        )
    url = answer.url
    if answer.problem is Problem.TIMEOUT:
        raise ExternalError(
            f"{url}: no answer within {timeout:.0f} s: the server is stalled or overloaded "
            "(allow longer with --timeout)"
        )
    if not answer.reachable:
        raise _no_answer(answer, "is the server still running?")
    if answer.status == 401:
        raise ExternalError(unauthorized(ep.http_base, bool(api_key)))
    if answer.status == 404:
        raise ExternalError(
            f"{url} does not exist (HTTP 404): this vLLM has no transcription route for the model; "
            "use the realtime route (drop --http)"
        )
    if not answer.ok:
        said = error_message(answer) or answer.text[:200]
        memory = out_of_memory(said)
        raise ExternalError(f"{url} answered HTTP {answer.status}: {said}" + (f" ({memory})" if memory else ""))
    body = answer.json()
    if not isinstance(body.get("text"), str):
        raise ExternalError(f"{url} answered without a transcript text: not vLLM's transcription API")
    elapsed = answer.elapsed_s
    timings = Timings(total_s=elapsed, waiting_s=elapsed, final_to_done_s=elapsed)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    return Transcript(body["text"], 0, timings, usage, model)


# What a server says when it ran out of memory: PyTorch's "CUDA out of memory" / OutOfMemoryError, "OOM", Python's
# MemoryError. Our choice of words to look for; the fix is explain's for CUDA out of memory (knowledge signature).
_OUT_OF_MEMORY = re.compile(r"out of memory|OutOfMemory|\bOOM\b|MemoryError", re.IGNORECASE)


def out_of_memory(text: str | None) -> str | None:
    """When the server's own words (a close reason, an error event or body) say it ran out of memory: that, and the
    fix; None otherwise."""
    if not text or not _OUT_OF_MEMORY.search(text):
        return None
    fix = next((s.fix for s in knowledge.load().signature if s.id == "cuda-oom"), "")
    return f"the server ran out of memory: {fix[0].lower() + fix[1:] if fix else 'read its log'}"


def tls_failed(url: str, error: str) -> str:
    """The TLS sentence, shared by the HTTP routes and the WebSocket handshake."""
    return (
        f"{url}: the TLS handshake failed ({error}): check https:// against http://; for a self-signed or private "
        "CA certificate pass --ca-cert FILE (or set SSL_CERT_FILE), or --insecure to skip verification"
    )


def unauthorized(base: str, sent_key: bool) -> str:
    """The 401 sentence, shared by the HTTP routes and the WebSocket handshake."""
    if sent_key:
        return (
            f"{base} refused the API key (HTTP 401): use the key the server was started with (--api-key / VLLM_API_KEY)"
        )
    return f"{base} wants an API key (HTTP 401): pass --api-key or set VLLM_API_KEY to the server's --api-key"
