"""configure's values: its options, the plan it shows before writing, the result it renders, and its refusals.

The keys configure manages are EchoPanel's (`echopanel/settings.py` names them); the plan is decided in `plan.py`,
written by `write.py`, and the whole command runs in `runner.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from echopanel_setup.echopanel import discover, dotenv, settings
from echopanel_setup.envconfig import is_secret
from echopanel_setup.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from echopanel_setup.configure.vllm_url import Heard

VOXTRAL = settings.VOXTRAL
VOXTRAL_C = "voxtral_realtime"  # EchoPanel's voxtral.c provider
SELECTOR = settings.SELECTOR
URL, DELAY, MODE, API_KEY = settings.URL, settings.DELAY, settings.MODE, settings.API_KEY
MASKED = "****"
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
    server: Heard | None = None  # who answered GET /health at the URL written (vLLM modes only)

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
    """configure's live side (render.ConfigureUi)."""

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


class NoCheckout(UsageError):
    """No EchoPanel checkout to write into, and no other target named."""


class NoServer(UsageError):
    """Voxtral on vLLM, but vLLM cannot run here and nothing names a server: configure does not guess one."""


class Fixable(settings.Refused):
    """A refusal that `provider fix` resolves: configure offers it (interactive only, with its diff first)."""

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider
