"""Reachability of Hugging Face and the Mistral API, proxies, credential *presence*, and the vLLM server
at the configured URL. Every request shares one time budget (~1.5 s in all) and runs concurrently."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from echopanel_setup import envconfig, knowledge
from echopanel_setup.facts.model import HttpProbe, NetworkFacts, ServerFacts
from echopanel_setup.url import ServerURL, redact, scrub

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
HF, MISTRAL = "hf", "mistral"  # the outside endpoints doctor can ask: the Hub, and the Mistral API
ENDPOINTS = frozenset({HF, MISTRAL})


def credentials(config_values: dict[str, str], *, vllm_api_key: str | None = None) -> NetworkFacts:
    """Presence of tokens and keys, and the proxies in effect; no request is made."""
    facts = NetworkFacts()
    for var in PROXY_VARS:
        value = os.environ.get(var) or os.environ.get(var.lower())
        if value:
            facts.proxies[var] = value if var == "NO_PROXY" else redact(value)
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    facts.hf_token = bool(os.environ.get("HF_TOKEN")) or (hf_home / "token").is_file()
    for var in knowledge.load().smoke.api.key_vars:  # the variables smoke reads a Mistral key from, first wins
        if os.environ.get(var) or (var == envconfig.API_KEY and config_values.get(var) == envconfig.MASK):
            facts.mistral_api_key = var
            break
    facts.vllm_api_key = bool(vllm_api_key)
    return facts


def probe(
    facts: NetworkFacts, server_url: ServerURL | None, endpoints: Collection[str], api_key: str | None = None
) -> NetworkFacts:
    """`facts` with the HTTP probes filled in, as a new value (`facts` is left as it was, so a probe that
    overruns its timeout cannot change what doctor already reported). `endpoints` names the outside hosts to
    ask (`HF`, `MISTRAL`): only those a check that will run needs, none when offline."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx  # imported here: ~0.1 s that offline runs never pay

    k = knowledge.load()
    budget = k.network.budget_s
    deadline = time.monotonic() + budget
    urls = {
        HF: f"{os.environ.get('HF_ENDPOINT', k.network.hf_endpoint).rstrip('/')}/api/models/{k.model.repo}",
        MISTRAL: f"{k.network.mistral_endpoint}/v1/models",
    }
    asked = {name: url for name, url in urls.items() if name in endpoints}
    found: dict[str, HttpProbe] = {}
    with ThreadPoolExecutor(3) as pool:
        server = pool.submit(_server, server_url, deadline, api_key) if server_url else None
        if asked:
            try:
                with httpx.Client(timeout=budget, follow_redirects=False, trust_env=True) as client:
                    jobs = {name: pool.submit(_probe, client, url, deadline) for name, url in asked.items()}
                    found = {name: job.result() for name, job in jobs.items()}
            except (ImportError, ValueError, httpx.InvalidURL) as exc:  # ALL_PROXY=socks5://…, HTTPS_PROXY=…:abc
                from echopanel_setup.vllm_client import unusable_proxy

                error = unusable_proxy(exc)
                found = {name: HttpProbe(url=redact(url), error=error) for name, url in asked.items()}
        server_facts = server.result() if server else None
    return replace(facts, hf=found.get(HF), mistral=found.get(MISTRAL), server=server_facts)


def _probe(client, url: str, deadline: float) -> HttpProbe:
    """One GET within the shared deadline: is it reachable, and what status."""
    import httpx

    result = HttpProbe(url=redact(url))  # HF_ENDPOINT may carry a password (a mirror's Basic auth): never kept
    start = time.monotonic()
    remaining = max(0.05, deadline - start)
    try:
        response = client.get(url, timeout=remaining)
        result.reachable, result.status = True, response.status_code
    except httpx.TimeoutException:
        result.error = f"no answer within {remaining:.1f} s"
    except httpx.HTTPError as exc:
        result.error = _short(exc)
    except (httpx.InvalidURL, UnicodeError) as exc:  # HF_ENDPOINT=http://host:abc, or a host label the resolver
        # cannot encode (over 63 characters): the URL, not the proxy, is what to fix
        result.error = f"{redact(url)} is not a usable URL ({_short(exc)}): check HF_ENDPOINT"
    result.elapsed_ms = round((time.monotonic() - start) * 1000, 1)
    return result


def _short(exc: Exception) -> str:
    text = scrub(str(exc)) or type(exc).__name__
    return text.splitlines()[0][:200]


def _server(url: ServerURL, deadline: float, api_key: str | None) -> ServerFacts:
    """/health, /version, /v1/models and /metrics of a vLLM server, within what is left of the shared budget."""
    from echopanel_setup.vllm_client import ServerKind, VllmClient  # not on an --offline run's path

    with VllmClient(url, api_key=api_key, timeout=max(0.05, deadline - time.monotonic())) as client:
        survey = client.survey()
        page = (
            client.get("/metrics", timeout=max(0.05, deadline - time.monotonic()))
            if survey.health.ok and survey.kind is not ServerKind.ECHOPANEL
            else None
        )
    facts = ServerFacts(url=url.http_base, health=survey.health.status, version=survey.version)
    facts.auth_required = survey.auth_required
    facts.kind = survey.kind.value if survey.kind else None
    facts.models = survey.served
    if problem := survey.problem:
        facts.error = problem[1]
    if page is not None and page.ok:  # one sample for `server.live` (not guarded by --api-key)
        from echopanel_setup.metrics import sample

        facts.metrics = sample.to_facts(sample.from_text(page.text, 0.0, time.time()))
    return facts
