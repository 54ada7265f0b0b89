"""`configure`: write EchoPanel's settings where EchoPanel reads them — `<checkout>/.env` — by EchoPanel's own rules.

EchoPanel's backend reads only its process environment and `<checkout>/.env`, with its own parser (EchoPanel's
`server/main.py`, reproduced in `echopanel/dotenv.py`). So configure finds the checkout (`echopanel/discover.py`), reads
the provider it will select from the checkout's files (`echopanel/contract.py`), writes only the keys that provider
reads, refuses a selection known not to work (`echopanel/settings.py`), merges into the user's `.env` keeping every
other line, and reads the result back with EchoPanel's parser to show what the backend will really see — including
the environment variables that will win over the file.

`--output FILE` writes another file by the same rules; `--shell` prints `export` lines for the shell that starts the
backend (secrets only as references, never literals). The per-user `echopanel.env` earlier versions wrote (EchoPanel
never read it) is offered for migration into `.env`, then renamed `echopanel.env.migrated`.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import shlex
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from echopanel_setup import envconfig, knowledge, paths, ports
from echopanel_setup.echopanel import contract as contract_mod
from echopanel_setup.echopanel import discover, dotenv, settings
from echopanel_setup.echopanel.probe import is_secret
from echopanel_setup.errors import EXIT_OK, ExternalError, UsageError
from echopanel_setup.facts.model import Contract, Facts
from echopanel_setup.url import ServerURL, is_loopback

if TYPE_CHECKING:
    from echopanel_setup.tunnel.records import TunnelRecord

VOXTRAL = settings.VOXTRAL
VOXTRAL_C = "voxtral_realtime"  # EchoPanel's voxtral.c provider
VC_BIN, VC_MODEL, VC_INTERVAL = "ECHOPANEL_VOXTRAL_BIN", "ECHOPANEL_VOXTRAL_MODEL", "ECHOPANEL_VOXTRAL_STREAMING_DELAY"
SELECTOR = settings.SELECTOR
URL, DELAY, MODE, API_KEY = settings.URL, settings.DELAY, settings.MODE, settings.API_KEY
FALLBACK_KEY = "MISTRAL_API_KEY"  # our provider's fallback for the API key, read from the environment only
SHELL_KEY_REF = "${" + FALLBACK_KEY + "}"
MASKED = "****"
_OURS = re.compile(r"^(?:VOXTRAL|ECHOPANEL)_")  # the provider's own settings (not XDG_*, HOME, MISTRAL_API_KEY)
MAC_NOTE = (
    "macOS: the EchoPanel app adopts a backend that already answers on its port, and a backend the app starts itself "
    "gets no provider setting; start the backend from the checkout (e.g. its scripts/run-dev-all.sh, or "
    "`.venv/bin/python -m uvicorn server.main:app`) so it reads .env and uses the provider chosen here"
)


@dataclass(frozen=True, kw_only=True)
class ConfigureOptions:
    mode: str | None = None
    provider: str | None = None
    url: str | None = None
    delay_ms: int | None = None
    api_key: str | None = field(default=None, repr=False)  # a key, or "-" to read one line from stdin
    output: str | None = None  # another file than <checkout>/.env
    facts: str | None = None
    shell: bool = False  # only the export lines; nothing is written
    dry_run: bool = False
    yes: bool = False  # no questions: the checkout found by search, the write, the migration
    force: bool = False  # select a provider variant known not to work; a URL at EchoPanel's own port
    voxtral_bin: str | None = None  # voxtral_realtime: the voxtral.c binary (default: what install voxtral-c built)
    voxtral_model: str | None = None  # voxtral_realtime: the weights dir (default: install voxtral's)
    interval: float | None = None  # voxtral_realtime: voxtral.c's -I in seconds, written only when given
    echopanel: str | None = None
    echopanel_python: str | None = None


@dataclass
class Advice:
    """A warning with the commands that fix it."""

    text: str
    commands: list[str] = field(default_factory=list)


@dataclass
class Migration:
    """The retired per-user `echopanel.env`: the values worth carrying into `.env` (keys the provider reads)."""

    source: Path
    values: dict[str, str]
    accepted: bool = False
    retired_to: Path | None = None


@dataclass
class Plan:
    """What configure will write, and why; nothing is written until `apply`."""

    path: Path | None  # None: --shell with no file to start from
    checkout: discover.Checkout | None
    provider: str
    variant: str  # what the selected provider is, in words
    mode: str | None  # None for providers without a vLLM/API choice
    reasons: dict[str, str]  # key (or "mode"/"provider") -> why this value
    updates: dict[str, str | None]  # None removes the key
    dropped: list[str]  # keys decided but not written: the provider does not read them
    managed: list[str]  # the keys reported back: the selector and the provider's own settings
    advice: list[Advice]
    notes: list[str]
    old_text: str
    new_text: str
    read_only: bool = False  # the file has no write permission: it is replaced anyway, and said so
    migration: Migration | None = None
    shell_refs: dict[str, str] = field(default_factory=dict)  # --shell only: secrets as references
    chosen: settings.Provider | None = field(default=None, repr=False)  # the provider as this checkout has it

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text

    @property
    def values(self) -> dict[str, str]:
        """The managed keys as EchoPanel's parser reads the resulting file."""
        parsed = dotenv.parse(self.new_text).values
        return {k: parsed[k] for k in self.managed if k in parsed}

    @property
    def secret(self) -> bool:
        """A literal secret is in the managed keys: the file must be private."""
        return any(is_secret(k) and v for k, v in self.values.items())

    @property
    def removed(self) -> list[str]:
        """Managed keys the existing file sets and the plan removes."""
        old = dotenv.parse(self.old_text).values
        return [key for key, value in self.updates.items() if value is None and key in old]


class PlanUi(Protocol):
    """configure's live side (configure_render.ConfigureUi)."""

    @property
    def interactive(self) -> bool:
        """Someone can answer a question (a terminal both ways, not --json)."""
        ...

    def show(self, plan: Plan) -> None:
        """The plan, before anything is written."""
        ...

    def confirm(self, plan: Plan) -> bool:
        """Write it?"""
        ...

    def ask(self, question: str) -> bool:
        """A yes/no question (only called when `interactive`); the default answer is no."""
        ...

    def preview(self, text: str) -> None:
        """A diff of something else configure offers to change (EchoPanel's provider file)."""
        ...


@dataclass(kw_only=True)
class ConfigureResult:
    """action: shell (--shell) | dry-run | unchanged | declined (the user said no) | written."""

    plan: Plan
    action: str
    backup: Path | None = None  # where the previous file was kept (our state dir), when one was replaced
    readback: settings.ReadBack | None = None  # what EchoPanel will see, after the write
    fixed_provider: Path | None = None  # `provider fix` ran, with consent: the original kept there

    @property
    def exit_code(self) -> int:
        return EXIT_OK


# --- where to write -------------------------------------------------------------------------------------------------


class NoCheckout(UsageError):
    """No EchoPanel checkout to write into, and no other target named."""


class Fixable(settings.Refused):
    """A refusal that `provider fix` resolves: configure offers it (interactive only, with its diff first)."""

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


def require_target(opts: ConfigureOptions, checkout: discover.Checkout | None, system: str) -> None:
    """NoCheckout when configure has nowhere to write: no checkout found, no --output, no --shell."""
    if checkout is None and not opts.output and not opts.shell:
        mac = f". {MAC_NOTE}" if system == "Darwin" else ""
        raise NoCheckout(
            "no EchoPanel checkout found (looked at --echopanel, ECHOPANEL_HOME, this directory and its parents, "
            f"~/{', ~/'.join(discover.USUAL_PLACES)}): pass --echopanel PATH, or write the settings to a file with "
            f"--output FILE, or print them for the shell that starts EchoPanel's backend with --shell{mac}"
        )


def target_path(opts: ConfigureOptions, checkout: discover.Checkout | None) -> Path | None:
    if opts.output:
        return Path(opts.output).expanduser()
    return checkout.env_file if checkout is not None else None


def read_target(path: Path | None) -> tuple[str, bool]:
    """(the file's text, whether it is read-only). Only a regular file (or a link to one) is read: a FIFO would block,
    a device or a directory is not a settings file, and none of them may be replaced by one."""
    if path is None:
        return "", False
    try:
        st = path.stat()
    except FileNotFoundError:
        return "", False
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: {_kind(st.st_mode)}, not a regular file; name the settings file itself (--output)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # rewriting it would drop the bytes EchoPanel's reader ignores
        raise UsageError(f"{path}: not UTF-8 text; configure would lose bytes rewriting it: fix or move it") from None
    return text, not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _kind(mode: int) -> str:
    for test, word in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "a special file"


# --- the plan -------------------------------------------------------------------------------------------------------


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
    name, mode = _provider_and_mode(opts, facts, existing, reasons)
    contract = contract_mod.read(checkout.path, [*contract_mod.VOXTRAL_PROVIDERS, name]) if checkout else None
    chosen = settings.provider(name, contract)
    try:
        notes.extend(settings.check_selectable(chosen, contract, force=opts.force))
        if name == VOXTRAL:
            settings.check_mode(mode, chosen)
    except settings.Refused as refused:
        raise (Fixable(str(refused), name) if _fixable(chosen) else refused) from None
    updates: dict[str, str | None] = {SELECTOR: name}
    shell_refs: dict[str, str] = {}
    if name == VOXTRAL:
        assert mode is not None
        updates[DELAY] = str(_delay(opts, existing, facts, mode, reasons))
        if chosen.reads(MODE):
            updates[MODE] = "api" if mode == "api" else None
        if mode == "api":
            _api_key(opts, chosen, existing, environ, stdin, updates, shell_refs, reasons, advice)
        else:
            url = _url(opts, existing, mode, reasons, notes, contract)
            updates[URL] = url
            _local_advice(facts, mode, url, int(updates[DELAY] or 0), advice)
    elif name == VOXTRAL_C:
        _voxtral_c(opts, existing, updates, reasons, notes, advice)
        missing = [
            what
            for key, what in ((VC_BIN, "a voxtral.c binary"), (VC_MODEL, "the Voxtral weights"))
            if key not in updates
        ]
        if missing and not opts.force:  # EchoPanel would silently fall back to faster_whisper
            raise settings.Refused(
                f"{VOXTRAL_C} needs {' and '.join(missing)} before EchoPanel can use it, or EchoPanel silently falls "
                "back to faster_whisper: run `echopanel-setup install voxtral-c` / `echopanel-setup install voxtral`, "
                "then configure again (--force writes the selection anyway)"
            )
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
    opts: ConfigureOptions, facts: Facts, existing: dict[str, str], reasons: dict[str, str]
) -> tuple[str, str | None]:
    providers = knowledge.load().echopanel.providers
    if opts.provider and opts.provider not in providers:
        raise UsageError(f"--provider {opts.provider!r}: use one of {', '.join(providers)}")
    if opts.provider and opts.provider != VOXTRAL:
        if opts.mode:
            raise UsageError(f"--mode is for the Voxtral provider ({VOXTRAL}); {opts.provider} has no mode")
        reasons["provider"] = "--provider"
        return opts.provider, None
    mode, why = _mode(opts, facts, existing)
    if mode is None:
        if opts.provider == VOXTRAL:
            raise UsageError(
                f"this machine cannot run vLLM ({why}): add --mode remote --url {ports.example_url()}, or --mode api"
            )
        alternative = _local_alternative(facts.platform.system)
        reasons["provider"] = (
            f"{why}; {alternative.title} runs here (RTF ≈ {alternative.rtf}). "
            f"For Voxtral instead: --mode remote --url {ports.example_url()}, or --mode api"
        )
        return alternative.id, None
    if opts.provider:
        reasons["provider"] = "--provider"
    reasons["mode"] = why
    return VOXTRAL, mode


def _mode(opts: ConfigureOptions, facts: Facts, existing: dict[str, str]) -> tuple[str | None, str]:
    """(mode, why); mode None when nothing points at Voxtral and this machine cannot serve it."""
    if opts.mode:
        return opts.mode, "--mode"
    tunnel = _running_tunnel()
    if opts.url:
        if tunnel is not None and _through(opts.url, tunnel.local_port):
            return "remote", f"--url is the tunnel to {tunnel.host}"
        return ("local" if is_loopback(opts.url) else "remote"), "--url"
    if existing.get(MODE) == "api":
        return "api", f"{MODE}=api in the existing file"
    if tunnel is not None and (not existing.get(URL) or _through(existing[URL], tunnel.local_port)):
        return "remote", f"the running tunnel to {tunnel.host} (`echopanel-setup tunnel status`)"
    if existing.get(SELECTOR, VOXTRAL) == VOXTRAL and existing.get(URL):
        return ("local" if is_loopback(existing[URL]) else "remote"), f"{URL} in the existing file"
    if _running_server() is not None:
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


def _local_alternative(system: str) -> knowledge.Alternative:
    """The first alternative in compat.toml that is an EchoPanel provider and runs on this platform."""
    key = {"Darwin": "darwin", "Windows": "windows"}.get(system, "linux")
    providers = knowledge.load().echopanel.providers
    return next(a for a in knowledge.load().alternative if a.id in providers and key in a.platforms)


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


def _voxtral_c(
    opts: ConfigureOptions,
    existing: dict[str, str],
    updates: dict[str, str | None],
    reasons: dict[str, str],
    notes: list[str],
    advice: list[Advice],
) -> None:
    """voxtral_realtime's settings: absolute paths to the binary and the weights (the flags, else a usable value
    already in the file, else what `install voxtral-c` built and `install voxtral` verified), and voxtral.c's `-I`
    only when the user gives one. What is not there yet is advice, never a guess."""
    from echopanel_setup.facts import voxtral_c
    from echopanel_setup.install import voxtral as install_voxtral

    build = voxtral_c.read_build()
    binary = _voxtral_c_path(
        VC_BIN,
        opts.voxtral_bin,
        "--voxtral-bin",
        existing,
        Path(build.binary) if build is not None and build.binary else None,
        "built by `echopanel-setup install voxtral-c`",
        Path.is_file,
        reasons,
    )
    if binary is not None:
        updates[VC_BIN] = binary
    else:
        advice.append(
            Advice(
                f"no voxtral.c binary yet, so {VC_BIN} is not written: until there is one EchoPanel silently falls "
                "back to faster_whisper. Build it, then configure again:",
                ["echopanel-setup install voxtral-c", "echopanel-setup configure --provider voxtral_realtime"],
            )
        )
    model = _voxtral_c_path(
        VC_MODEL,
        opts.voxtral_model,
        "--voxtral-model",
        existing,
        install_voxtral.choose_dir(None)[0],
        "install voxtral's model dir (it holds consolidated.safetensors)",
        lambda p: (p / "consolidated.safetensors").is_file(),
        reasons,
    )
    if model is not None:
        updates[VC_MODEL] = model
    else:
        advice.append(
            Advice(
                f"no Voxtral weights yet (consolidated.safetensors, tekken.json), so {VC_MODEL} is not written. "
                "Download them (~8.9 GB), then configure again:",
                ["echopanel-setup install voxtral", "echopanel-setup configure --provider voxtral_realtime"],
            )
        )
    if opts.interval is not None:
        updates[VC_INTERVAL] = f"{opts.interval:g}"
        reasons[VC_INTERVAL] = "--interval: voxtral.c's -I, the encoder processing interval in seconds"
        if opts.interval < 0.5:
            advice.append(
                Advice(
                    f"--interval {opts.interval:g}: voxtral.c's README says an encoder interval below 0.5 s wastes "
                    "most of the GPU time; 1.0-2.0 suits live use:",
                    ["echopanel-setup configure --provider voxtral_realtime --interval 1.0"],
                )
            )
    elif (current := existing.get(VC_INTERVAL)) is not None and not _positive(current):
        notes.append(
            f"{VC_INTERVAL}={current} in the file is not a positive number of seconds: voxtral.c refuses it as -I "
            "and EchoPanel's provider cannot start it; set one with --interval 1.0 (1.0-2.0 suits live use)"
        )


def _voxtral_c_path(
    key: str,
    flag_value: str | None,
    flag: str,
    existing: dict[str, str],
    installed: Path | None,
    installed_why: str,
    usable: Callable[[Path], bool],
    reasons: dict[str, str],
) -> str | None:
    """An absolute path for `key`: the flag (which must be usable), else the file's when absolute and usable, else
    the installed one when usable; None when there is none."""
    if flag_value is not None:
        path = Path(flag_value).expanduser().absolute()
        if not usable(path):
            what = "a voxtral.c binary" if key == VC_BIN else "a dir with consolidated.safetensors"
            raise UsageError(f"{flag} {flag_value}: not {what}")
        reasons[key] = flag
        return str(path)
    current = existing.get(key)
    if current and Path(current).is_absolute() and usable(Path(current)):
        reasons[key] = "kept from the existing file"
        return current
    if installed is not None and usable(installed):
        reasons[key] = installed_why + (f" (the file's {current} is not usable)" if current else "")
        return str(installed.absolute())
    return None


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


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


def _running_server() -> ServerURL | None:
    """The URL of the vLLM server `serve --exec/--detach` started and that still runs (its record in our state dir)."""
    from echopanel_setup.serve import launcher

    record = launcher.running()
    if record is None:
        return None
    try:
        return ServerURL.parse(record.url)
    except UsageError:
        return None


def _running_tunnel() -> TunnelRecord | None:
    """The ssh tunnel of ours that runs now (`tunnel start`): EchoPanel here reaches the far end's vLLM through it."""
    from echopanel_setup.tunnel import records

    return records.current()


def _through(url: str, local_port: int) -> bool:
    """`url` is this machine's end of the tunnel."""
    try:
        parsed = ServerURL.parse(url)
    except UsageError:
        return False
    return parsed.is_loopback and parsed.port == local_port


def _url(
    opts: ConfigureOptions,
    existing: dict[str, str],
    mode: str,
    reasons: dict[str, str],
    notes: list[str],
    contract: Contract | None,
) -> str:
    """--url, else the server we started here (its real port), else our running tunnel, else the file's, else vLLM's
    default port here."""
    own = (contract.backend_port if contract else None) or ports.echopanel_backend_port()
    if opts.url:
        url, note = settings.url_value(opts.url, what="--url")
        if note:
            notes.append(note)
        parsed = ServerURL.parse(url)
        if mode == "local" and not parsed.is_loopback:
            raise UsageError(f"--url {url} is not on this machine: use --mode remote for a server elsewhere")
        if contract is not None and parsed.is_loopback and parsed.port == own and not opts.force:
            raise UsageError(
                f"--url {url} is EchoPanel's own backend (port {own} on this machine): EchoPanel would talk to "
                f"itself. vLLM's port here is {ports.default_port()} (`echopanel-setup serve`); --force writes it "
                "anyway"
            )
        reasons[URL] = "--url"
        return url
    running = _running_server() if mode == "local" else None
    if running is not None:
        reasons[URL] = "the server `echopanel-setup serve` started here (`serve status`)"
        return ports.local_url(running.port)
    if (tunnel := _running_tunnel()) is not None:
        reasons[URL] = f"the running tunnel to {tunnel.host}:{tunnel.remote_port} (`echopanel-setup tunnel status`)"
        return tunnel.url
    if kept := _existing_url(existing.get(URL), mode, own if contract is not None else None, notes):
        reasons[URL] = "kept from the existing file"
        return kept
    if mode == "remote":
        raise UsageError(f"--mode remote needs --url {ports.example_url()} (the vLLM server EchoPanel should use)")
    reasons[URL] = "vLLM's default port on this machine"
    return ports.local_url()


def _existing_url(current: str | None, mode: str, own: int | None, notes: list[str]) -> str | None:
    """The file's URL when it still fits the mode: normalised (a `/v1` or trailing `/` broke every call), never
    EchoPanel's own backend (`own`: its port, where a checkout says it runs here)."""
    if not current:
        return None
    try:
        url, note = settings.url_value(current, what=f"{URL} in the file")
    except UsageError as exc:
        notes.append(f"{exc}; replaced")
        return None
    parsed = ServerURL.parse(url)
    if parsed.is_loopback != (mode == "local"):
        return None
    if own is not None and parsed.is_loopback and parsed.port == own:
        notes.append(f"{URL}={current} is EchoPanel's own backend (port {own}), not vLLM; replaced")
        return None
    if note:
        notes.append(note)
    return url


def _local_advice(facts: Facts, mode: str, url: str, delay: int, advice: list[Advice]) -> None:
    if mode != "local":
        return
    served = facts.model.delay_ms
    if why_not := _why_not_local(facts):
        advice.append(
            Advice(
                f"{why_not}; unless {url} is a tunnel to a GPU host, EchoPanel will find no server there. Point it at "
                "a vLLM server elsewhere, or at Mistral's API:",
                [
                    f"echopanel-setup configure --mode remote --url {ports.example_url()}",
                    "echopanel-setup configure --mode api",
                ],
            )
        )
    elif served is not None and served != delay:
        advice.append(
            Advice(
                f"EchoPanel will ask for {delay} ms, but the model dir serves {served} ms (vLLM reads "
                "audio.transcription_delay_ms from tekken.json once, at start-up). Serve the matching variant:",
                [f"echopanel-setup serve --delay-ms {delay}"],
            )
        )


def _api_key(
    opts: ConfigureOptions,
    chosen: settings.Provider,
    existing: dict[str, str],
    environ: Mapping[str, str],
    stdin: TextIO | None,
    updates: dict[str, str | None],
    shell_refs: dict[str, str],
    reasons: dict[str, str],
    advice: list[Advice],
) -> None:
    """A key given now goes into `.env` (private, 0600); --shell prints only a reference to MISTRAL_API_KEY; otherwise
    the file's key stays, or the environment's is used where it is, or configure says how to provide one."""
    if opts.shell:
        if opts.api_key:
            raise UsageError(
                "--shell never prints a key: export MISTRAL_API_KEY=… in the shell that starts EchoPanel's backend "
                "(the exports refer to it), or store the key in .env with `configure --mode api --api-key -`"
            )
        shell_refs[API_KEY] = SHELL_KEY_REF
        updates[API_KEY] = SHELL_KEY_REF
        reasons[API_KEY] = f"a reference to {FALLBACK_KEY} in that shell (--shell prints no secret)"
        return
    key = opts.api_key
    if key == "-":
        key = (stdin or sys.stdin).readline().strip()
        if not key:
            raise UsageError(
                "--api-key -: standard input was empty; pipe the key in, e.g. `pass show mistral | echopanel-setup "
                "configure --mode api --api-key -`"
            )
        reasons[API_KEY] = "read from standard input (written; the file is made private, 0600)"
    elif key:
        reasons[API_KEY] = "--api-key (written; the file is made private, 0600)"
        advice.append(
            Advice(
                "A key on the command line stays in your shell history; `--api-key -` reads it from standard input "
                "instead."
            )
        )
    if key:
        updates[API_KEY] = key
        return
    if existing.get(API_KEY):
        reasons[API_KEY] = "kept from the existing file"
        return
    if environ.get(API_KEY):
        reasons[API_KEY] = f"EchoPanel's backend reads {API_KEY} from its environment; nothing written"
        return
    if environ.get(FALLBACK_KEY) and chosen.reads(FALLBACK_KEY):
        reasons[API_KEY] = (
            f"not written: the provider falls back to {FALLBACK_KEY}, set in this shell — start EchoPanel's backend "
            "from a shell that has it, or store the key with --api-key -"
        )
        return
    advice.append(
        Advice(
            "No Mistral API key: API mode needs one (https://console.mistral.ai/api-keys). Store it in .env (the file "
            "becomes 0600), or export it in the shell that starts EchoPanel's backend:",
            [
                "echopanel-setup configure --mode api --api-key -   # reads the key from standard input",
                f"export {FALLBACK_KEY}=…",
            ],
        )
    )


# --- the retired per-user file --------------------------------------------------------------------------------------


def legacy_migration(checkout: discover.Checkout | None, name: str | None) -> Migration | None:
    """The per-user `echopanel.env` earlier versions wrote, when it exists and holds keys the provider reads."""
    legacy = paths.legacy_echopanel_env()
    if not legacy.is_file():
        return None
    try:
        old = dotenv.read(legacy).values
    except OSError:
        return None
    chosen_name = name or old.get(SELECTOR) or VOXTRAL
    contract = contract_mod.read(checkout.path, [*contract_mod.VOXTRAL_PROVIDERS, chosen_name]) if checkout else None
    return Migration(legacy, settings.migratable(old, settings.provider(chosen_name, contract)))


# --- writing --------------------------------------------------------------------------------------------------------


def apply(plan: Plan) -> tuple[Path | None, bool]:
    """Write the plan under the file's lock: the file is read again there and the updates merged into what it holds
    now, so a concurrent configure's keys (or the user's edit) are never lost. Returns (backup or None, changed)."""
    assert plan.path is not None
    try:
        with dotenv.locked(plan.path):
            current, _ = read_target(plan.path)
            text = dotenv.merge(current, plan.updates)
            if text == current:
                return None, False
            return dotenv.write_atomic(plan.path, text, private=plan.secret), True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # the disk, not the user's input
            raise ExternalError(
                f"{plan.path}: cannot write it: {exc.strerror or exc} (the previous file is untouched); free some "
                "space and run configure again"
            ) from None
        raise UsageError(f"{plan.path}: cannot write it: {exc.strerror or exc}") from None


def masked(text: str) -> str:
    """`text` with the value of every line whose key names a secret replaced (diffs show context lines too)."""
    out = []
    for line in dotenv.parse(text).lines:
        if line.key is not None and is_secret(line.key.lstrip(dotenv.BOM)) and line.value:
            out.append(line.text.split("=", 1)[0] + "=" + MASKED + line.ending)
        else:
            out.append(line.text + line.ending)
    return "".join(out)


def diff(plan: Plan) -> str:
    name = str(plan.path) if plan.path else ".env"
    return "".join(
        difflib.unified_diff(
            masked(plan.old_text).splitlines(keepends=True),
            masked(plan.new_text).splitlines(keepends=True),
            fromfile=f"{name} (now)",
            tofile=f"{name} (after configure)",
        )
    )


def shell(plan: Plan) -> str:
    """`export` lines for the shell that starts EchoPanel's backend: the managed keys of the result, secrets only as
    `"${MISTRAL_API_KEY}"`, a removed key as `unset`. Safe to `eval` whatever the values hold."""
    values: dict[str, str | None] = {k: v for k, v in plan.values.items() if not is_secret(k)}
    values.update({k: None for k, v in plan.updates.items() if v is None})
    lines = []
    for key, value in values.items():
        lines.append(f"unset {key}" if value is None else f"export {key}={shlex.quote(value)}")
    lines.extend(f'export {key}="{ref}"' for key, ref in plan.shell_refs.items())
    return "".join(f"{line}\n" for line in lines)


def collect_facts(opts: ConfigureOptions, checkout: discover.Checkout | None) -> Facts:
    """What doctor knows (offline: no network), or a saved snapshot when --facts is given."""
    from echopanel_setup import doctor
    from echopanel_setup.facts.collect import Options, collect

    if opts.facts:
        return doctor.load_facts(opts.facts)
    path = target_path(opts, checkout)
    return collect(
        Options(
            offline=True,
            config=str(path) if path else None,
            echopanel=str(checkout.path) if checkout else None,
            echopanel_python=opts.echopanel_python,
        )
    )


def _confirm_checkout(opts: ConfigureOptions, checkout: discover.Checkout | None, ui: PlanUi) -> bool:
    """A checkout found by looking around (not named by --echopanel/ECHOPANEL_HOME) is shown and confirmed before
    anything is written into it; --yes skips the question, and without anyone to ask configure refuses."""
    if checkout is None or checkout.named_by_user or opts.output or opts.shell or opts.dry_run or opts.yes:
        return True
    if not ui.interactive:
        raise UsageError(
            f"found {discover.describe(checkout)}: confirm writing its .env with --yes, or name it with --echopanel "
            f"{checkout.path}"
        )
    return ui.ask(f"Write EchoPanel's settings into {checkout.env_file}?")


def _offer_fix(opts: ConfigureOptions, checkout: discover.Checkout | None, ui: PlanUi, refused: Fixable) -> Path:
    """The provider cannot work as it is: offer `provider fix` (its diff first), and apply it only with a yes — never
    on --yes alone, never without someone to ask."""
    from echopanel_setup.provider import command as pc

    if checkout is None or opts.shell or opts.dry_run or not ui.interactive:
        raise refused
    if not ui.ask(f"{refused}. Install echopanel-setup's working provider now (`provider fix`; the diff comes first)?"):
        raise refused
    fix = pc.ProviderOptions(
        action="fix", provider=refused.provider, echopanel=str(checkout.path), echopanel_python=opts.echopanel_python
    )
    done = pc.run(fix, ask=ui.ask, show=lambda r: ui.preview(r.diff or ""))
    if done.exit_code != 0 or done.orig is None:
        raise settings.Refused(f"`provider fix` did not apply: {done.reason or done.outcome}")
    return done.orig


def run(
    opts: ConfigureOptions,
    ui: PlanUi,
    *,
    facts: Facts | None = None,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
) -> ConfigureResult:
    """Find the target, plan, show, confirm (unless --yes), write under the lock, read back what EchoPanel sees."""
    environ = os.environ if environ is None else environ
    check_values(opts)
    checkout = discover.find(opts.echopanel, environ, Path.cwd(), Path.home())
    facts = facts or collect_facts(opts, checkout)
    require_target(opts, checkout, facts.platform.system)
    if not _confirm_checkout(opts, checkout, ui):
        return ConfigureResult(plan=_empty_plan(checkout), action="declined")
    migration = None if opts.shell else legacy_migration(checkout, opts.provider)
    if migration is not None and not opts.dry_run:
        carry = f"Carry {', '.join(migration.values)} from" if migration.values else "Nothing to carry from"
        migration.accepted = opts.yes or (
            ui.interactive
            and ui.ask(
                f"{carry} the retired {migration.source} (EchoPanel never read it) into "
                f"{target_path(opts, checkout)}; rename it {migration.source.name}.migrated?"
            )
        )
    fixed = None
    try:
        plan = make_plan(opts, facts, environ, checkout, migration, stdin)
    except Fixable as refused:
        fixed = _offer_fix(opts, checkout, ui, refused)
        plan = make_plan(opts, facts, environ, checkout, migration, stdin)
    if opts.shell:
        return ConfigureResult(plan=plan, action="shell", fixed_provider=fixed)
    ui.show(plan)
    if opts.dry_run:
        return ConfigureResult(plan=plan, action="dry-run", fixed_provider=fixed)
    assert plan.path is not None
    backup, action = None, "unchanged"
    if plan.changed:
        if not opts.yes and opts.api_key != "-" and not ui.confirm(plan):  # a key piped on stdin: no one to ask
            return ConfigureResult(plan=plan, action="declined", fixed_provider=fixed)
        backup, changed = apply(plan)
        action = "written" if changed else "unchanged"
    if migration is not None and migration.accepted:
        migration.retired_to = settings.retire(migration.source)
    readback = settings.read_back(plan.path, plan.managed, environ, plan.chosen)
    return ConfigureResult(plan=plan, action=action, backup=backup, readback=readback, fixed_provider=fixed)


def _empty_plan(checkout: discover.Checkout | None) -> Plan:
    """The plan of a run declined before planning (the user said no to the checkout found)."""
    return Plan(
        path=checkout.env_file if checkout else None,
        checkout=checkout,
        provider="",
        variant="",
        mode=None,
        reasons={},
        updates={},
        dropped=[],
        managed=[SELECTOR],
        advice=[],
        notes=[],
        old_text="",
        new_text="",
    )
