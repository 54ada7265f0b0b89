"""The rules for EchoPanel's settings, shared by configure, setup and doctor.

Only the keys the provider found actually reads are written, and a provider variant known not to work is never
selected (today's published `voxtral_official` posts raw PCM to `/v1/chat/completions`, which no stock vLLM accepts:
selecting it would switch a working EchoPanel to silence). After writing, the file is read back with EchoPanel's own
parser, so what we report is what EchoPanel's backend will see — including the environment variables that win over
the file when the backend starts from a shell that has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup import knowledge
from echopanel_setup.echopanel import contract as contract_mod
from echopanel_setup.echopanel import dotenv
from echopanel_setup.echopanel.keys import API_KEY, DELAY, KEYS, MODE, SELECTOR, URL, VOXTRAL
from echopanel_setup.envconfig import MASK, is_secret
from echopanel_setup.errors import SetupError
from echopanel_setup.facts.model import Contract, ProviderContract
from echopanel_setup.url import normalise_echopanel, redact

# Today's published voxtral_official reads these (pranaysuyash/EchoPanel 3845da5
# server/services/provider_voxtral_official.py); used only when no checkout tells us otherwise.
PUBLISHED_READS = (URL, DELAY)
FALLBACK_NOTE = (
    "if the provider cannot load at start-up (e.g. its dependencies are missing), EchoPanel silently falls back to "
    "{fallback} and says so only in its log"
)


class Refused(SetupError):
    """A selection that cannot work (exit 1): the reason, and the way out."""

    exit_code = 1


@dataclass(frozen=True)
class Provider:
    """The provider a selection names, as this checkout has it: its contract (None without a checkout or when the
    file is missing) and its known variant (None when unknown)."""

    name: str
    contract: ProviderContract | None
    variant: knowledge.ProviderVariant | None

    def reads(self, key: str) -> bool:
        """Whether the provider reads `key`. Without a checkout: what the published provider reads."""
        if self.contract is None:
            return self.name == VOXTRAL and key in PUBLISHED_READS
        return self.contract.reads(key)

    @property
    def has_api_path(self) -> bool:
        """It can use Mistral's hosted API: as the knowledge file says for a known variant, else only when it reads
        VOXTRAL_MODE (an unknown variant is never assumed to have one)."""
        if self.variant is not None:
            return self.variant.api_path
        return self.contract is not None and self.contract.reads(MODE)

    def describe(self) -> str:
        """One line: the variant's title, or what an unknown variant was read to do."""
        if self.variant is not None:
            return self.variant.title
        if self.contract is None:
            return f"{self.name} (not read: no checkout)"
        c = self.contract
        parts = [f"reads {', '.join(e.key for e in c.env) or 'no variables'}"]
        if c.endpoints:
            parts.append(f"calls {', '.join(c.endpoints)}")
        if c.model:
            parts.append(f"sends model {c.model!r}")
        return f"{c.name}, a variant this tool does not know ({c.file}: {'; '.join(parts)})"


def provider(name: str, contract: Contract | None) -> Provider:
    found = contract.provider(name) if contract else None
    return Provider(name, found, contract_mod.variant_info(found.variant) if found else None)


def check_selectable(chosen: Provider, contract: Contract | None, *, force: bool) -> list[str]:
    """Notes for selecting `chosen`; Refused when it is known not to work (unless `force`), or when the checkout
    does not register it at all."""
    notes = []
    if contract is not None and chosen.name not in contract.registered:
        registered = ", ".join(contract.registered) or "none"
        raise Refused(
            f"this EchoPanel has no provider named {chosen.name!r} (it registers: {registered}); "
            f"{SELECTOR}={chosen.name} would make it fall back to {contract.fallback_provider or 'another provider'}"
        )
    variant = chosen.variant
    if variant is not None and not variant.works:
        way_out = f"run `{variant.fix}`, then configure again" if variant.fix else "there is no fix in this tool yet"
        message = f"{chosen.name} as this EchoPanel has it cannot transcribe: {variant.reason}"
        if not force:
            raise Refused(
                f"{message}. Writing it would switch EchoPanel to silence; {way_out} (--force writes it anyway)"
            )
        notes.append(f"--force: {message}")
    elif chosen.contract is not None and variant is None:
        notes.append(
            f"{chosen.describe()}: whether it works is not known; "
            "`echopanel-setup smoke --client echopanel` shows what it really does"
        )
    elif chosen.contract is None and contract is None:
        notes.append(
            "no EchoPanel checkout to read, so the provider's variant is unknown: the published voxtral_official "
            "cannot transcribe against vLLM (`echopanel-setup provider check --echopanel PATH` tells)"
        )
    return notes


def check_mode(mode: str | None, chosen: Provider) -> None:
    """`--mode api` only for a provider with an API path."""
    if mode == "api" and not chosen.has_api_path:
        if chosen.contract is None and chosen.variant is None:  # nothing read: not known to have one
            raise Refused(
                f"--mode api: no EchoPanel checkout to read, so whether its {chosen.name} has a Mistral API path is "
                "unknown (the published one has none): name the checkout with --echopanel PATH (after "
                "`echopanel-setup provider fix` there it has one), or use --mode local or --mode remote with a vLLM "
                "server"
            )
        raise Refused(
            f"{chosen.name} has no Mistral API path ({chosen.describe()}; it reads no {MODE}): "
            "use --mode local or --mode remote with a vLLM server, or `echopanel-setup provider fix` for one that has"
        )


def url_value(text: str, *, what: str) -> tuple[str, str | None]:
    """(VOXTRAL_VLLM_URL as EchoPanel needs it, a note when a trailing `/` or `/v1` was dropped). UsageError (exit 2)
    for another path or a scheme other than http/https. A user and password in the URL are kept (a server behind
    Basic auth): the value is written as the user gave it, and shown only with `url.redact`."""
    normalised = normalise_echopanel(text, what=what)
    return normalised.url.with_credentials, normalised.note


def restrict(updates: Mapping[str, str | None], chosen: Provider) -> tuple[dict[str, str | None], list[str]]:
    """`updates` without the keys `chosen` does not read (the selector always stays): (kept, dropped key names).
    A key to remove (None) is kept whatever it is: removing a stale line is never wrong."""
    kept: dict[str, str | None] = {}
    dropped = []
    for key, value in updates.items():
        if key == SELECTOR or value is None or chosen.reads(key):
            kept[key] = value
        else:
            dropped.append(key)
    return kept, dropped


@dataclass
class ReadBack:
    """What EchoPanel's backend will see after the write, for the keys we manage."""

    path: Path
    seen: dict[str, dotenv.Seen]  # secrets masked
    other_keys: int
    overridden_by_environment: list[str]  # names only
    notes: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # managed-looking keys in the file that the provider ignores


def read_back(path: Path, keys: list[str], environ: Mapping[str, str], chosen: Provider | None = None) -> ReadBack:
    """Parse `path` with EchoPanel's parser and report `keys` as its process will hold them."""
    env = dotenv.read(path)
    seen = {}
    for key, item in dotenv.effective(env, environ, keys).items():
        if is_secret(key) and item.value:
            item = dotenv.Seen(key, MASK, item.source, MASK if item.shadowed else None)
        elif key == URL and item.value:  # a password in the URL is kept in the file, never shown
            item = dotenv.Seen(key, redact(item.value), item.source, item.shadowed and redact(item.shadowed))
        seen[key] = item
    overridden = [k for k in keys if k in environ]
    unread = []
    if chosen is not None:
        unread = [k for k in (MODE, API_KEY, URL, DELAY) if k in env.values and not chosen.reads(k)]
    return ReadBack(
        path, seen, sum(1 for k in env.values if k not in keys), overridden, dotenv.notes(env, keys), unread
    )


def fallback_note(contract: Contract | None) -> str:
    return FALLBACK_NOTE.format(fallback=(contract.fallback_provider if contract else None) or "faster_whisper")


def migratable(old_values: Mapping[str, str], chosen: Provider) -> dict[str, str]:
    """The values of a retired per-user `echopanel.env` worth carrying into `.env`: keys `chosen` reads, with
    values EchoPanel can read back (no `${...}` references, nothing empty)."""
    keys = [SELECTOR, *(e.key for e in chosen.contract.env)] if chosen.contract else [SELECTOR, *PUBLISHED_READS]
    return {k: v for k, v in old_values.items() if k in keys and v and "${" not in v}


def retire(old: Path) -> Path:
    """Rename a per-user `echopanel.env` to `echopanel.env.migrated` (never deleted: it is the user's)."""
    target = old.with_name(old.name + ".migrated")
    n = 1
    while target.exists():
        n += 1
        target = old.with_name(f"{old.name}.migrated.{n}")
    old.rename(target)
    return target


def values_seen(path: Path | None, environ: Mapping[str, str], keys: tuple[str, ...] = KEYS) -> dict[str, str]:
    """`keys` as EchoPanel's backend will hold them: the file read by its parser, the environment winning. A path that
    is not a regular file reads as empty (a FIFO must not block a read)."""
    env = dotenv.read(path) if path is not None and path.is_file() else dotenv.DotEnv()
    return {k: s.value for k, s in dotenv.effective(env, environ, keys).items() if s.value is not None}
