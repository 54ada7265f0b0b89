"""The "EchoPanel" category: the user's EchoPanel as it really is — its checkout, the Python its backend runs on,
the provider it will select and where that comes from, the URL it will call, and the model name it will send.

Signals: `facts.echopanel` (the checkout, the contract read from its files, its `.env` read by its own parser, the
environment that overrides it, the backend Python's answers) and the vLLM server's `/v1/models`. Required only where
a checkout is found or `--echopanel` is given; elsewhere (a GPU host, a CI runner) each check is skipped with the
reason, which `--strict` does not count.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING

from echopanel_setup import ports
from echopanel_setup.checks import REQUIRED, CheckFn, Fix, Outcome, Status, check
from echopanel_setup.echopanel import keys
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import EchoPanelFacts, Facts, ProviderContract
from echopanel_setup.url import normalise_echopanel

if TYPE_CHECKING:
    from echopanel_setup.echopanel import settings

CATEGORY = "echopanel"
NO_CHECKOUT = Outcome(
    Status.SKIP,
    "no EchoPanel checkout on this machine (pass --echopanel PATH or set ECHOPANEL_HOME to check one)",
)


def _with_checkout(id: str, title: str, probes: tuple[str, ...] = ("echopanel",)) -> Callable[[CheckFn], CheckFn]:
    """Register an EchoPanel check: required in every mode where a checkout is found, skipped (NO_CHECKOUT) where
    none is, so the check itself starts from a checkout."""

    def register(fn: CheckFn) -> CheckFn:
        @wraps(fn)
        def run(facts: Facts, mode: str) -> Outcome:
            return NO_CHECKOUT if facts.echopanel.checkout is None else fn(facts, mode)

        return check(id, title, CATEGORY, probes, local=REQUIRED, remote=REQUIRED, api=REQUIRED)(run)

    return register


def _selected(ep: EchoPanelFacts) -> tuple[str | None, str]:
    """(ECHOPANEL_ASR_PROVIDER as the backend will see it, where it comes from)."""
    if keys.SELECTOR in ep.env.environment:
        return ep.env.environment[keys.SELECTOR], "the environment (it wins over .env)"
    if keys.SELECTOR in ep.env.values:
        return ep.env.values[keys.SELECTOR], ep.env.path or ".env"
    return None, "unset"


def _voxtral(ep: EchoPanelFacts) -> ProviderContract | None:
    selected, _ = _selected(ep)
    contract = ep.contract
    return contract.provider(selected or keys.VOXTRAL) if contract else None


def _needed(provider: ProviderContract, mode: str) -> list[str]:
    """The modules the provider needs in this mode. A known variant's list comes from the knowledge file: the file's
    imports also count lazy ones that only api mode reaches (our provider's `mistralai`), which must not fail a
    vLLM setup. An unknown variant needs every module it imports."""
    from echopanel_setup import knowledge  # with a checkout only: start-up stays lean without one

    info = knowledge.load().echopanel.variants.get(provider.variant) if provider.variant else None
    if info is None:
        return provider.deps
    api_only = [d for d in provider.deps if d not in info.deps] if mode == "api" and info.api_path else []
    return [*info.deps, *api_only]


@_with_checkout("echopanel.checkout", "EchoPanel checkout")
def checkout(facts: Facts, mode: str) -> Outcome:
    """Found, read without importing it; its git state, backend port and `.env` loader."""
    ep = facts.echopanel
    details = []
    if ep.git.commit:
        dirty = f", changed: {', '.join(ep.git.changed)}" if ep.git.dirty else ", clean"
        details.append(f"git {ep.git.commit[:12]}{dirty}")
    contract = ep.contract
    if contract is not None:
        details.append(
            f"backend port {contract.backend_port or 'unknown'}; providers: {', '.join(contract.registered)}"
        )
        details.extend(f"could not read {e}" for e in contract.errors)
        if contract.dotenv is None or not contract.dotenv.known:
            details.append("its .env loader is not the one this tool knows: what it reads from .env is unverified")
    return Outcome(Status.OK, f"{ep.checkout} ({ep.how})", details)


@_with_checkout("echopanel.python", "EchoPanel backend Python")
def python(facts: Facts, mode: str) -> Outcome:
    """The backend's interpreter exists and imports the selected Voxtral provider's dependencies (asked in a
    subprocess; EchoPanel is never imported here)."""
    ep = facts.echopanel
    where = f"{ep.python} ({ep.python_source})"
    if ep.python_error:
        return Outcome(
            Status.FAIL,
            f"{where}: {ep.python_error}",
            ["EchoPanel's dev launch and scripts run the backend with <checkout>/.venv/bin/python."],
            Fix(
                "Name the interpreter that runs EchoPanel's backend:",
                ["echopanel-setup doctor --echopanel-python PATH"],
            ),
        )
    provider = _voxtral(ep)
    needed = _needed(provider, mode) if provider is not None else []
    missing = [m for m, v in ep.modules.items() if v is None and m in needed]
    if missing and provider is not None:
        from echopanel_setup.echopanel import settings  # with a checkout only: start-up stays lean without one

        fallback = settings.fallback_note(ep.contract)
        return Outcome(
            Status.FAIL,
            f"{', '.join(missing)} not importable in {ep.python}: {provider.name} will not load",
            [f"Without it the provider is 'not available'; {fallback}."],
            Fix("Install it into the backend's Python:", [f"{ep.python} -m pip install {' '.join(missing)}"]),
        )
    found = ", ".join(f"{m} {v or '(version unknown)'}" for m, v in ep.modules.items() if v is not None)
    return Outcome(Status.OK, f"Python {ep.python_version} at {where}" + (f"; {found}" if found else ""))


@_with_checkout("echopanel.provider", "EchoPanel ASR provider")
def provider(facts: Facts, mode: str) -> Outcome:
    """ECHOPANEL_ASR_PROVIDER as the backend will see it and where it comes from; the variant found and whether it
    can work; EchoPanel's silent fallback named."""
    ep = facts.echopanel
    from echopanel_setup.echopanel import settings  # with a checkout only: start-up stays lean without one

    selected, source = _selected(ep)
    fallback = settings.fallback_note(ep.contract)
    details = [*ep.env.notes, f"EchoPanel reads it from its environment or {ep.env.path}; {fallback}."]
    configure = _select_voxtral(settings.provider(keys.VOXTRAL, ep.contract), _configure(facts, mode))
    if selected is None:
        return Outcome(
            Status.WARN,
            f"{keys.SELECTOR} is unset: EchoPanel picks a provider by hardware, never {keys.VOXTRAL}",
            details,
            configure,
        )
    if ep.contract is not None and selected not in ep.contract.registered:
        return Outcome(
            Status.FAIL,
            f"{keys.SELECTOR}={selected} (from {source}) names no provider this EchoPanel registers",
            [f"It registers: {', '.join(ep.contract.registered)}", *details],
            configure,
        )
    if selected not in keys.VOXTRAL_PROVIDERS:
        return Outcome(
            Status.WARN,
            f"{keys.SELECTOR}={selected} (from {source}): EchoPanel will not use Voxtral",
            details,
            configure,
        )
    chosen = settings.provider(selected, ep.contract)
    variant = chosen.variant
    if variant is not None and not variant.works:
        fix = Fix("Install a provider that works, then check again:", [variant.fix]) if variant.fix else None
        return Outcome(
            Status.FAIL,
            f"{keys.SELECTOR}={selected} (from {source}), but this variant cannot transcribe: {variant.reason}",
            [f"Variant: {variant.title} (source: {variant.source})", *details],
            fix,
        )
    if mode == "api" and selected == keys.VOXTRAL and not chosen.has_api_path:
        return Outcome(
            Status.FAIL,
            f"api mode, but {selected} as this EchoPanel has it has no Mistral API path ({chosen.describe()})",
            details,
            Fix(
                "Install the provider echopanel-setup ships (it has one), or check a vLLM server instead:",
                ["echopanel-setup provider fix", f"echopanel-setup doctor --mode remote --url {ports.example_url()}"],
            ),
        )
    summary = f"{keys.SELECTOR}={selected} (from {source}); {chosen.describe()}"
    if ep.provider_drift and selected == keys.VOXTRAL:
        return Outcome(Status.WARN, ep.provider_drift, [summary, *details], Fix("", ["echopanel-setup provider check"]))
    if variant is None:
        details.insert(0, "An unknown variant: `echopanel-setup smoke --client echopanel` shows what it really does.")
        return Outcome(Status.WARN, summary, details)
    return Outcome(Status.OK, summary, details)


def _select_voxtral(official: settings.Provider, configure: str) -> Fix:
    """How to make EchoPanel use Voxtral: `configure`, after `provider fix` where the checkout's voxtral_official is
    a variant that cannot work (configure refuses to select it, and would send the user back here)."""
    variant = official.variant
    if variant is not None and not variant.works and variant.fix:
        return Fix(
            f"Its {keys.VOXTRAL} cannot transcribe as it is ({variant.reason}): replace it, then select Voxtral:",
            [variant.fix, configure],
        )
    return Fix("Select Voxtral:", [configure])


def _configure(facts: Facts, mode: str) -> str:
    """`configure` as it will run: bare where it finds a server itself (vLLM can run here, or EchoPanel already has a
    URL); else with the mode and a server, since a bare one writes nothing there and stops (exit 2)."""
    from echopanel_setup.checks.config import configure_command  # a sibling check module: loaded by the registry

    env = facts.echopanel.env
    can_serve = facts.platform.system == "Linux" and bool(facts.gpu.devices)
    if (mode == "local" and can_serve) or keys.URL in env.values or keys.URL in env.environment:
        return "echopanel-setup configure"
    if mode == "local":  # a server elsewhere: doctor's local URL is no server from there
        return f"echopanel-setup configure --mode remote --url {ports.example_url()}"
    return configure_command(facts, mode)


def _configured_url(ep: EchoPanelFacts, provider: ProviderContract) -> tuple[str, str]:
    """(VOXTRAL_VLLM_URL as the backend will see it, where it comes from)."""
    if keys.URL in ep.env.environment:
        return ep.env.environment[keys.URL], "the environment"
    if keys.URL in ep.env.values:
        return ep.env.values[keys.URL], ep.env.path or ".env"
    return provider.default(keys.URL) or "", "the provider's default"


@_with_checkout("echopanel.url", "EchoPanel's vLLM URL")
def url(facts: Facts, mode: str) -> Outcome:
    """VOXTRAL_VLLM_URL as EchoPanel will use it: a base EchoPanel can append /v1/... to, and not its own backend."""
    ep = facts.echopanel
    provider = _voxtral(ep)
    if provider is None or not provider.reads(keys.URL):
        return Outcome(Status.SKIP, f"the selected provider reads no {keys.URL}")
    value, source = _configured_url(ep, provider)
    fix = Fix("Point EchoPanel at the vLLM server:", ["echopanel-setup configure --url http://HOST:8001"])
    try:
        parsed, note = normalise_echopanel(value, what=keys.URL)
    except UsageError as exc:
        return Outcome(Status.FAIL, f"{value!r} (from {source}): {exc}", [], fix)
    if note:
        return Outcome(
            Status.FAIL,
            f"{keys.URL}={value} (from {source}): EchoPanel joins paths by string, so every call is a 404",
            [note],
            fix,
        )
    port = ep.contract.backend_port if ep.contract else None
    if parsed.is_loopback and port is not None and parsed.port == port:
        return Outcome(
            Status.FAIL,
            f"{keys.URL}={value} (from {source}) is EchoPanel's own backend (port {port})",
            [
                "EchoPanel would talk to itself: its /health answers 200 (or 401 with the app's token) and every "
                "transcription request fails, silently."
            ],
            fix,
        )
    return Outcome(Status.OK, f"{value} (from {source})")


@_with_checkout("echopanel.served_name", "Model name EchoPanel sends", ("echopanel", "network"))
def served_name(facts: Facts, mode: str) -> Outcome:
    """The server's /v1/models lists the name the provider sends (else every request is a 404)."""
    ep = facts.echopanel
    provider = _voxtral(ep)
    if provider is None or provider.model is None:
        return Outcome(Status.SKIP, "the selected provider sends no model name this tool could read")
    server = facts.network.server
    if server is None or server.models is None:
        return Outcome(Status.SKIP, f"no vLLM server answered /v1/models; EchoPanel sends {provider.model!r}")
    if provider.model in server.models:
        return Outcome(Status.OK, f"{server.url} serves {provider.model!r}")
    return Outcome(
        Status.FAIL,
        f"{server.url} serves {', '.join(server.models) or 'nothing'}, not {provider.model!r}: every request is a 404",
        [],
        Fix(
            "Serve it under EchoPanel's name too (several names are allowed):",
            [f"echopanel-setup serve  # adds --served-model-name {provider.model} …"],
        ),
    )
