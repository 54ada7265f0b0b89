"""Network and service checks: Hugging Face, the Mistral API, the vLLM server, keys and client packages.

Signals: one bounded round of HTTP requests (skipped with --offline), credential presence (never
values), and the client packages in echopanel-setup's own environment.
"""

from __future__ import annotations

from echopanel_setup import knowledge, ports
from echopanel_setup.checks import ADVISORY, REQUIRED, Fix, Outcome, Status, check
from echopanel_setup.facts import network
from echopanel_setup.facts.model import Facts, HttpProbe
from echopanel_setup.versions import older

OFFLINE = Outcome(Status.SKIP, "skipped (--offline)", unchecked=True)
ENDPOINT = {"network.hf": network.HF, "network.mistral": network.MISTRAL}  # the outside host each check judges


def _proxy_details(facts: Facts) -> list[str]:
    return [f"{k}={v}" for k, v in facts.network.proxies.items()]


def _endpoint(facts: Facts, probe: HttpProbe | None, name: str, status: Status, fix: Fix, note: str = "") -> Outcome:
    """Shared verdict for an external endpoint: skipped offline, `status` when unreachable, else its latency."""
    if facts.network.offline:
        return OFFLINE
    if probe is None:
        return Outcome(Status.SKIP, "not probed")
    details = [f"URL: {probe.url}", *_proxy_details(facts)]
    if not probe.reachable:
        return Outcome(status, f"{name} unreachable: {probe.error}", details, fix)
    return Outcome(Status.OK, f"reachable in {probe.elapsed_ms:.0f} ms{note}", details)


@check("network.hf", "Hugging Face Hub", "network", ("network",), local=ADVISORY, after=("platform.verdict",))
def hf(facts: Facts, mode: str) -> Outcome:
    """The Hub answers (any HTTP status counts: 401/404 still prove the route works); token presence."""
    token = (
        "HF_TOKEN set"
        if facts.network.hf_token
        else "no HF token (the repo is public; set HF_TOKEN if downloads are refused)"
    )
    fix = Fix("The model download needs it; check the network, proxy (HTTPS_PROXY) or HF_ENDPOINT mirror.", [])
    return _endpoint(facts, facts.network.hf, "Hugging Face", Status.WARN, fix, f"; {token}")


@check("network.mistral", "Mistral API", "network", ("network",), api=REQUIRED)
def mistral(facts: Facts, mode: str) -> Outcome:
    """api.mistral.ai answers (401 without a key still proves it is reachable)."""
    fix = Fix("Check the network or proxy (HTTPS_PROXY).", [])
    return _endpoint(facts, facts.network.mistral, "api.mistral.ai", Status.FAIL, fix)


@check("api.key", "Mistral API key", "network", (), api=REQUIRED)
def api_key(facts: Facts, mode: str) -> Outcome:
    """VOXTRAL_MISTRAL_API_KEY (EchoPanel's name) or MISTRAL_API_KEY, presence only."""
    var = facts.network.mistral_api_key
    if var:
        return Outcome(Status.OK, f"{var} is set")
    return Outcome(
        Status.FAIL,
        "no Mistral API key (VOXTRAL_MISTRAL_API_KEY or MISTRAL_API_KEY)",
        ["Create one at https://console.mistral.ai/api-keys"],
        Fix(
            "Export it, then write EchoPanel's config:",
            ["export VOXTRAL_MISTRAL_API_KEY=…", "echopanel-setup configure --mode api"],
        ),
    )


@check("api.sdk", "Mistral SDK", "network", ("client",), api=REQUIRED)
def api_sdk(facts: Facts, mode: str) -> Outcome:
    """`mistralai[realtime]` in echopanel-setup's environment (smoke's API mode uses it)."""
    pk = facts.client.packages
    fix = Fix("Install the optional extra:", ["pip install 'echopanel-setup[api]'"])
    if pk.get("mistralai") is None:
        return Outcome(Status.FAIL, "mistralai is not installed", [], fix)
    ws = pk.get("websockets")
    if ws is None or older(ws, "13"):
        return Outcome(
            Status.FAIL, f"mistralai {pk['mistralai']} without its realtime extra (websockets ≥ 13)", [], fix
        )
    return Outcome(Status.OK, f"mistralai {pk['mistralai']}, websockets {pk['websockets']}")


@check("client.websockets", "Realtime client", "network", ("client",), local=ADVISORY, remote=ADVISORY)
def client(facts: Facts, mode: str) -> Outcome:
    """`websockets` in our environment, for `smoke` against /v1/realtime."""
    installed = facts.client.packages.get("websockets")
    if installed is None:
        return Outcome(
            Status.WARN,
            "websockets is not installed: `smoke` cannot open /v1/realtime",
            [],
            Fix("", ["pip install websockets"]),
        )
    return Outcome(Status.OK, f"websockets {installed}")


@check("server", "vLLM server", "network", ("network",), local=ADVISORY, remote=REQUIRED, after=("platform.verdict",))
def server(facts: Facts, mode: str) -> Outcome:
    """/health, /version and /v1/models at the configured URL: is it up, and does it serve Voxtral?"""
    s = facts.network.server
    repo = knowledge.load().model.repo
    start = (
        Fix("Start one here:", ["echopanel-setup serve"])
        if mode == "local"
        else Fix(
            "Start vLLM on the GPU host (`echopanel-setup serve` there), and check the URL:",
            [f"echopanel-setup configure --mode remote --url {ports.example_url()}"],
        )
    )
    if s is None:
        if mode == "remote" and not facts.network.server_url:
            return Outcome(Status.FAIL, "no server URL: set VOXTRAL_VLLM_URL or pass --url", [], start)
        if facts.network.offline and mode == "remote":
            return Outcome(
                Status.SKIP,
                f"skipped (--offline): {facts.network.server_url} not asked",
                fix=Fix("Run without --offline to check the server:", ["echopanel-setup doctor --mode remote"]),
                unchecked=True,
            )
        return Outcome(Status.WARN, f"no vLLM server running on port {facts.port.port} yet", [], start)
    if s.health is None:
        return Outcome(Status.FAIL if mode == "remote" else Status.WARN, f"{s.url} unreachable: {s.error}", [], start)
    if s.kind == "echopanel":
        return Outcome(
            Status.FAIL,
            f"{s.url} is EchoPanel's own backend, not vLLM: EchoPanel would send its audio to itself and show no "
            "transcript",
            ["Told apart on /health alone: vLLM answers an empty 200, EchoPanel JSON naming itself (or a JSON 401)."],
            Fix(
                f"Serve vLLM on its own port ({ports.default_port()}) and point EchoPanel at it:",
                ["echopanel-setup serve", f"echopanel-setup configure --url {ports.local_url()}"],
            ),
        )
    if s.health != 200:
        return Outcome(
            Status.FAIL,
            f"{s.url}/health answered {s.health}: the engine is not ready (still loading, or dead)",
            [],
            Fix("Read the server log:", ["echopanel-setup serve --logs"]),
        )
    if s.auth_required:
        if facts.network.vllm_api_key:
            return Outcome(
                Status.FAIL,
                f"{s.url} refused VLLM_API_KEY (401): wrong key",
                [],
                Fix("Use the key the server was started with (--api-key).", []),
            )
        return Outcome(
            Status.FAIL,
            f"{s.url} wants an API key (401 on /v1/models)",
            [],
            Fix("Export the server's key:", ["export VLLM_API_KEY=…"]),
        )
    if s.error:
        return Outcome(Status.FAIL, s.error, [], start)
    served = s.models or []
    if not any(
        "voxtral" in m.lower() and "realtime" in m.lower() or m.rstrip("/").endswith(repo.split("/")[1]) for m in served
    ):
        return Outcome(
            Status.FAIL,
            f"{s.url} (vLLM {s.version or '?'}) serves {', '.join(served) or 'nothing'}, not Voxtral Realtime",
            [],
            start,
        )
    return Outcome(Status.OK, f"{s.url}: vLLM {s.version or '?'} serving {', '.join(served)}")


@check("server.live", "Live streams", "network", ("network",), local=ADVISORY, remote=ADVISORY, after=("server",))
def server_live(facts: Facts, mode: str) -> Outcome:
    """One /metrics sample judged as `watch` judges it: queued streams, KV cache, preemptions, errors since start."""
    s = facts.network.server
    if s is None or s.health is None:
        return Outcome(Status.SKIP, "no server answered")
    if s.metrics is None:
        return Outcome(Status.SKIP, f"{s.url}/metrics did not answer: nothing to judge")
    from echopanel_setup.metrics import derive, sample  # only with a sample: doctor's start-up stays lean

    judged = derive.derive(None, sample.from_facts(s.metrics), derive.Context(health=s.health))
    problems = [x for x in judged.signals if x.status in (derive.WARN, derive.FAIL)]
    status = {derive.FAIL: Status.FAIL, derive.WARN: Status.WARN}.get(judged.worst, Status.OK)
    shown = [x for x in judged.signals if x.id in ("streams", "queue", "step", "kv") and x.value not in ("?", "–")]
    summary = " · ".join(f"{x.title.lower()} {x.value}" for x in shown) or "no realtime figures on this page"
    if problems:
        summary = problems[0].said
    fix = next((x.fix for x in problems if x.fix), None)
    return Outcome(
        status,
        summary,
        [x.said for x in problems[1:]] + ["one sample: run `echopanel-setup watch` for rates and trends"],
        Fix(fix) if fix else None,
    )
