"""configure's decisions: the provider and mode, then every value, from the flags, then the file (and an accepted
migration), then the machine's facts. Nothing is written here: the `Plan` says what would be, and why."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from typing import TextIO

from echopanel_setup import envconfig, knowledge, ports
from echopanel_setup.configure import api_key, vllm_url, voxtral_realtime
from echopanel_setup.configure.result import (
    DELAY,
    MAC_NOTE,
    MODE,
    SELECTOR,
    URL,
    VOXTRAL,
    VOXTRAL_C,
    Advice,
    ConfigureOptions,
    Fixable,
    Migration,
    NoServer,
    Plan,
)
from echopanel_setup.configure.write import read_target, target_path
from echopanel_setup.echopanel import contract as contract_mod
from echopanel_setup.echopanel import discover, dotenv, settings
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import Facts
from echopanel_setup.url import is_loopback, redact

_OURS = re.compile(r"^(?:VOXTRAL|ECHOPANEL)_")  # the provider's own settings (not XDG_*, HOME, MISTRAL_API_KEY)


def make_plan(
    opts: ConfigureOptions,
    facts: Facts,
    environ: Mapping[str, str],
    checkout: discover.Checkout | None,
    migration: Migration | None = None,
    stdin: TextIO | None = None,
) -> Plan:
    """Decide every value from the flags, then the file (and an accepted migration), then the machine's facts."""
    path = target_path(opts, checkout)
    old_text, read_only = read_target(path)
    existing = dict(dotenv.parse(old_text).values)
    if migration is not None and migration.accepted:
        existing = {**migration.values, **existing}  # the .env's own lines win over the retired file's
    reasons: dict[str, str] = {}
    advice: list[Advice] = []
    notes: list[str] = []
    selected = environ.get(SELECTOR) or existing.get(SELECTOR)  # as EchoPanel sees it: the environment wins
    name, mode = _provider_and_mode(opts, facts, existing, environ, selected, reasons)
    contract = contract_mod.read(checkout.path, [*contract_mod.VOXTRAL_PROVIDERS, name]) if checkout else None
    chosen = settings.provider(name, contract)
    if name == VOXTRAL and mode is None:
        raise NoServer(_no_server(reasons.pop("mode"), chosen, facts, selected))
    try:
        notes.extend(settings.check_selectable(chosen, contract, force=opts.force))
        if name == VOXTRAL:
            settings.check_mode(mode, chosen)
    except settings.Refused as refused:
        raise (Fixable(str(refused), name) if _fixable(chosen) else refused) from None
    updates: dict[str, str | None] = {SELECTOR: name}
    shell_refs: dict[str, str] = {}
    server: vllm_url.Heard | None = None
    if name == VOXTRAL:
        assert mode is not None
        updates[DELAY] = str(_delay(opts, existing, facts, mode, reasons))
        if chosen.reads(MODE):
            updates[MODE] = "api" if mode == "api" else None
        if mode == "api":
            api_key.decide(opts, chosen, existing, environ, stdin, updates, shell_refs, reasons, advice)
        else:
            url = vllm_url.choose(opts, existing, environ, mode, reasons, notes, contract)
            updates[URL] = url
            if opts.shell and redact(url) != url:
                notes.append(f"{URL} carries a user and password, so --shell does not print it: export {URL} yourself")
            server = vllm_url.probe(url)
            # A loopback URL is served on this machine whatever --mode says (`--mode remote` with the user's own
            # tunnel): where vLLM cannot run here, "start one" is no way on.
            why_not = _why_not_local(facts) if server.local else None
            vllm_url.advise(server, why_not, chosen.has_api_path, notes, advice)
            _delay_advice(facts, mode, int(updates[DELAY] or 0), advice)
    elif name == VOXTRAL_C:
        voxtral_realtime.decide(opts, existing, updates, reasons, notes, advice)
        voxtral_realtime.require(updates, force=opts.force)
    if migration is not None and migration.accepted:
        own = dotenv.parse(old_text).values
        for key, value in migration.values.items():
            if key not in own and updates.get(key) == value and reasons.get(key, "").startswith("kept from"):
                reasons[key] = f"carried from the retired {migration.source.name}"
    kept, dropped = settings.restrict(updates, chosen)
    shell_refs = {k: v for k, v in shell_refs.items() if k in kept}
    for key in dropped:
        reasons[key] = f"not written: {name} as this EchoPanel has it does not read {key}"
    if facts.platform.system == "Darwin":
        notes.append(MAC_NOTE)
    if read_only and path is not None and not opts.shell:
        notes.append(f"{path} is read-only ({stat.S_IMODE(path.stat().st_mode):04o}): configure replaces it, mode kept")
    new_text = dotenv.merge(old_text, {k: v for k, v in kept.items() if not (opts.shell and k in shell_refs)})
    managed = [SELECTOR, *(k for k in (*_provider_keys(chosen), *kept) if _OURS.match(k) and k != SELECTOR)]
    return Plan(
        path=path,
        checkout=checkout,
        provider=name,
        variant=chosen.describe(),
        mode=mode,
        reasons=reasons,
        updates=kept,
        dropped=dropped,
        managed=list(dict.fromkeys(managed)),
        advice=advice,
        notes=notes,
        old_text=old_text,
        new_text=new_text,
        read_only=read_only,
        migration=migration,
        shell_refs=shell_refs,
        chosen=chosen,
        server=server,
    )


def _fixable(chosen: settings.Provider) -> bool:
    """`provider fix` replaces this provider with one that works (and that has an API path)."""
    return (
        chosen.name in (VOXTRAL, VOXTRAL_C)
        and chosen.variant is not None
        and not chosen.variant.works
        and chosen.variant.fix.startswith("echopanel-setup provider fix")
    )


def _provider_keys(chosen: settings.Provider) -> list[str]:
    if chosen.contract is not None:
        return [e.key for e in chosen.contract.env]
    return list(settings.PUBLISHED_READS) if chosen.name == VOXTRAL else []


def _provider_and_mode(
    opts: ConfigureOptions,
    facts: Facts,
    existing: dict[str, str],
    environ: Mapping[str, str],
    selected: str | None,
    reasons: dict[str, str],
) -> tuple[str, str | None]:
    """(provider, mode). Nothing in the flags asks for a provider: EchoPanel's voxtral_realtime stays selected, and
    otherwise Voxtral on vLLM in the mode the flags, the file, a running server or tunnel, or this machine point to.
    A mode of None for voxtral_official means none of them does (`reasons["mode"]` says why): make_plan stops."""
    providers = knowledge.load().echopanel.providers
    if opts.provider and opts.provider not in providers:
        raise UsageError(f"--provider {opts.provider!r}: use one of {', '.join(providers)}")
    if opts.provider and opts.provider != VOXTRAL:
        if opts.mode:
            raise UsageError(f"--mode is for the Voxtral provider ({VOXTRAL}); {opts.provider} has no mode")
        reasons["provider"] = "--provider"
        return opts.provider, None
    if selected == VOXTRAL_C and not (opts.provider or opts.mode or opts.url):
        reasons["provider"] = "EchoPanel selects it now; --provider or --mode chooses another"
        return VOXTRAL_C, None
    mode, why = _mode(opts, facts, existing, environ)
    if opts.provider:
        reasons["provider"] = "--provider"
    reasons["mode"] = why
    return VOXTRAL, mode


def _mode(
    opts: ConfigureOptions, facts: Facts, existing: dict[str, str], environ: Mapping[str, str]
) -> tuple[str | None, str]:
    """(mode, why); mode None when nothing points at Voxtral and this machine cannot serve it. A URL EchoPanel
    already has counts, from the file or from this environment (a backend started here reads it first)."""
    if opts.mode:
        return opts.mode, "--mode"
    tunnel = vllm_url.running_tunnel()
    if opts.url:
        if tunnel is not None and vllm_url.through(opts.url, tunnel.local_port):
            return "remote", f"--url is the tunnel to {tunnel.host}"
        return ("local" if is_loopback(opts.url) else "remote"), "--url"
    if existing.get(MODE) == "api":
        return "api", f"{MODE}=api in the existing file"
    if tunnel is not None and (not existing.get(URL) or vllm_url.through(existing[URL], tunnel.local_port)):
        return "remote", f"the running tunnel to {tunnel.host} (`echopanel-setup tunnel status`)"
    if existing.get(SELECTOR, VOXTRAL) == VOXTRAL and existing.get(URL):
        return ("local" if is_loopback(existing[URL]) else "remote"), f"{URL} in the existing file"
    if environ.get(URL):
        return ("local" if is_loopback(environ[URL]) else "remote"), f"{URL} in this environment"
    if vllm_url.running_server() is not None:
        return "local", "the vLLM server `echopanel-setup serve` started on this machine"
    why_not = _why_not_local(facts)
    return (None, why_not) if why_not else ("local", "doctor found Linux with an NVIDIA GPU")


def _why_not_local(facts: Facts) -> str | None:
    """Why vLLM cannot serve Voxtral on this machine, or None when it can."""
    system = facts.platform.system
    if system == "Linux" and facts.gpu.devices:
        return None
    if system == "Darwin":
        return "macOS: vLLM cannot serve Voxtral on the Apple GPU"
    if system == "Windows":
        return "native Windows: vLLM does not run here (WSL2 can)"
    return f"{system or 'this system'} without an NVIDIA GPU: vLLM cannot serve Voxtral here"


def _no_server(why_not: str, chosen: settings.Provider, facts: Facts, selected: str | None) -> str:
    """configure never guesses a server, nor a provider the user did not ask for: where vLLM cannot run here and
    nothing names a server, it writes nothing and says which flag or command names one."""
    from echopanel_setup.checks import voxtral_c

    ways = [
        f"name one with `echopanel-setup configure --mode remote --url {ports.example_url()}`",
        "forward one with `echopanel-setup tunnel start [user@]GPU-HOST` and run configure again",
    ]
    if chosen.has_api_path:
        ways.append("use Mistral's API with `echopanel-setup configure --mode api`")
    if voxtral_c.metal_native(facts):
        ways.append("run voxtral.c on this Mac with `echopanel-setup configure --provider voxtral_realtime`")
    keeps = f"EchoPanel keeps {SELECTOR}={selected}" if selected else f"{SELECTOR} stays unset"
    return (
        f"nothing written: {why_not}, and no vLLM server is known (no --url, no server or tunnel of ours running, no "
        f"{URL} in the file or this environment), so {keeps}. To use Voxtral, {', '.join(ways[:-1])}, or {ways[-1]}"
    )


def check_values(opts: ConfigureOptions) -> None:
    """Bad flag values are usage errors before anything is looked for."""
    voxtral_c_flags = [
        f
        for f, v in (
            ("--voxtral-bin", opts.voxtral_bin),
            ("--voxtral-model", opts.voxtral_model),
            ("--interval", opts.interval),
        )
        if v is not None
    ]
    if voxtral_c_flags and opts.provider != VOXTRAL_C:
        raise UsageError(f"{', '.join(voxtral_c_flags)}: only with --provider {VOXTRAL_C} (voxtral.c's settings)")
    if opts.interval is not None and not opts.interval > 0:
        raise UsageError(
            f"--interval {opts.interval:g}: voxtral.c's -I is a positive number of seconds (1.0-2.0 suits live use)"
        )
    if opts.delay_ms is not None and (problem := envconfig.validate_delay(str(opts.delay_ms))):
        raise UsageError(f"--delay-ms: {problem.split('=', 1)[1]}")
    if opts.url:
        settings.url_value(opts.url, what="--url")


def _delay(opts: ConfigureOptions, existing: dict[str, str], facts: Facts, mode: str, reasons: dict[str, str]) -> int:
    if opts.delay_ms is not None:
        reasons[DELAY] = "--delay-ms"
        return opts.delay_ms
    current = existing.get(DELAY)
    if current and envconfig.validate_delay(current) is None:
        reasons[DELAY] = "kept from the existing file"
        return int(current)
    served = facts.model.delay_ms
    if mode == "local" and served is not None and envconfig.validate_delay(str(served)) is None:
        reasons[DELAY] = "what the local model dir serves"
        return served
    reasons[DELAY] = "the model card's recommended default"
    return knowledge.load().delay.default_ms


def _delay_advice(facts: Facts, mode: str, delay: int, advice: list[Advice]) -> None:
    """The delay EchoPanel will ask for against the one the local model dir serves (vLLM reads it once)."""
    served = facts.model.delay_ms
    if mode == "local" and _why_not_local(facts) is None and served is not None and served != delay:
        advice.append(
            Advice(
                f"EchoPanel will ask for {delay} ms, but the model dir serves {served} ms (vLLM reads "
                "audio.transcription_delay_ms from tekken.json once, at start-up). Serve the matching variant:",
                [f"echopanel-setup serve --delay-ms {delay}"],
            )
        )
