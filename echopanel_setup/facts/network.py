"""Reachability of Hugging Face and the Mistral API, proxies, credential *presence*, and the vLLM server
at the configured URL. Every request shares one time budget (~1.5 s in all) and runs concurrently."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from echopanel_setup import knowledge
from echopanel_setup.facts.model import HttpProbe, NetworkFacts, ServerFacts
from echopanel_setup.url import ServerURL, redact

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def credentials(config_values: dict[str, str]) -> NetworkFacts:
    """Presence of tokens and keys, and the proxies in effect; no request is made."""
    facts = NetworkFacts()
    for var in PROXY_VARS:
        value = os.environ.get(var) or os.environ.get(var.lower())
        if value:
            facts.proxies[var] = value if var == "NO_PROXY" else redact(value)
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    facts.hf_token = bool(os.environ.get("HF_TOKEN")) or (hf_home / "token").is_file()
    for var in ("VOXTRAL_MISTRAL_API_KEY", "MISTRAL_API_KEY"):
        if os.environ.get(var) or (var == "VOXTRAL_MISTRAL_API_KEY" and config_values.get(var) == "<set>"):
            facts.mistral_api_key = var
            break
    facts.vllm_api_key = bool(os.environ.get("VLLM_API_KEY"))
    return facts


def probe(facts: NetworkFacts, server_url: ServerURL | None, external: bool) -> NetworkFacts:
    """`facts` with the HTTP probes filled in, as a new value (`facts` is left as it was, so a probe that
    overruns its timeout cannot change what doctor already reported). `external=False` (offline) keeps only
    a loopback server probe."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    import httpx  # imported here: ~0.1 s that offline runs never pay

    k = knowledge.load()
    budget = k.network.budget_s
    deadline = time.monotonic() + budget
    hf = f"{os.environ.get('HF_ENDPOINT', k.network.hf_endpoint).rstrip('/')}/api/models/{k.model.repo}"
    mistral = f"{k.network.mistral_endpoint}/v1/models"
    # A loopback server is never reached through a proxy, whatever HTTP_PROXY says.
    local_server = server_url is not None and server_url.is_loopback
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(6))
        local_client = stack.enter_context(httpx.Client(timeout=budget, follow_redirects=False, trust_env=False))
        try:
            client = stack.enter_context(httpx.Client(timeout=budget, follow_redirects=False, trust_env=True))
            proxy_error = None
        except ImportError as exc:  # e.g. ALL_PROXY=socks5://… without socksio: say so instead of crashing
            client, proxy_error = (
                None,
                f"{str(exc).splitlines()[0]} (the proxy comes from {', '.join(facts.proxies) or 'the environment'})",
            )
        jobs = {}
        if external and client:
            jobs = {
                name: pool.submit(_probe, client, url, deadline) for name, url in (("hf", hf), ("mistral", mistral))
            }
        server_job = None
        if server_url and (client or local_server):
            server_job = pool.submit(_server, local_client if local_server else client, server_url, deadline)
        reached = {name: job.result() for name, job in jobs.items()}
        server = server_job.result() if server_job else None
    if external and proxy_error:
        reached = {name: HttpProbe(url=url, error=proxy_error) for name, url in (("hf", hf), ("mistral", mistral))}
    if server_url and server is None:
        server = ServerFacts(url=str(server_url), error=proxy_error)
    return replace(facts, hf=reached.get("hf"), mistral=reached.get("mistral"), server=server)


def _probe(client, url: str, deadline: float) -> HttpProbe:  # type: ignore[no-untyped-def]
    return _get(client, url, deadline)[0]


def _get(client, url: str, deadline: float, headers: dict[str, str] | None = None) -> tuple[HttpProbe, str]:  # type: ignore[no-untyped-def]
    """One GET within the shared deadline: the probe record and (for parsing) the body."""
    import httpx

    result = HttpProbe(url=url)
    body = ""
    start = time.monotonic()
    remaining = max(0.05, deadline - start)
    try:
        response = client.get(url, headers=headers, timeout=remaining)
        result.reachable, result.status = True, response.status_code
        body = response.text[:100_000]
    except httpx.TimeoutException:
        result.error = f"no answer within {remaining:.1f} s"
    except httpx.HTTPError as exc:
        result.error = _short(exc)
    result.elapsed_ms = round((time.monotonic() - start) * 1000, 1)
    return result, body


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _server(client, url: ServerURL, deadline: float) -> ServerFacts:  # type: ignore[no-untyped-def]
    """/health, /version and /v1/models of a vLLM server; the API key (if any) goes only to /v1/*."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    base = url.http_base
    facts = ServerFacts(url=base)
    key = os.environ.get("VLLM_API_KEY")
    auth = {"Authorization": f"Bearer {key}"} if key else None
    with ThreadPoolExecutor(3) as pool:
        (health, _), (version, version_body), (models, models_body) = pool.map(
            lambda args: _get(client, *args),
            [(f"{base}/health", deadline), (f"{base}/version", deadline), (f"{base}/v1/models", deadline, auth)],
        )
    if not health.reachable:
        facts.error = health.error
        return facts
    facts.health = health.status
    try:
        facts.version = json.loads(version_body).get("version") if version.status == 200 else None
    except (ValueError, AttributeError):
        facts.version = None
    if models.status == 401:
        facts.auth_required = True
    elif models.status == 200:
        try:
            facts.models = [m["id"] for m in json.loads(models_body)["data"]]
        except (ValueError, KeyError, TypeError):
            facts.error = f"{base}/v1/models did not answer a model list: not a vLLM server?"
    elif models.reachable:
        facts.error = f"{base}/v1/models answered HTTP {models.status}: not a vLLM server?"
    return facts
