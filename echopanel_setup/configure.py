"""`configure`: write EchoPanel's env config, with defaults taken from what doctor found.

The user's file is merged, never rewritten: unknown keys, comments and order stay; the previous file is
kept as `.bak`; the replacement is atomic; a literal API key makes the file 0600, and an API key that
already lives in the environment is written as a `${NAME}` reference instead of being copied.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from echopanel_setup import envconfig, knowledge, paths, ports
from echopanel_setup.errors import EXIT_OK, ExternalError, UsageError
from echopanel_setup.facts.model import Facts
from echopanel_setup.url import ServerURL, is_loopback

VOXTRAL = "voxtral_official"
HEADER = "# EchoPanel configuration, written by `echopanel-setup configure` (check it with `echopanel-setup doctor`)."


@dataclass(frozen=True, kw_only=True)
class ConfigureOptions:
    mode: str | None = None
    provider: str | None = None
    url: str | None = None
    delay_ms: int | None = None
    api_key: str | None = field(default=None, repr=False)  # a key, or "-" to read one line from stdin
    output: str | None = None
    facts: str | None = None
    shell: bool = False  # only the export lines; nothing is written
    dry_run: bool = False
    yes: bool = False


@dataclass
class Advice:
    """A warning with the commands that fix it."""

    text: str
    commands: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What configure will write, and why; nothing is written until `apply`."""

    path: Path
    provider: str
    mode: str | None  # None for providers other than voxtral_official
    reasons: dict[str, str]  # key (or "mode"/"provider") -> why this value
    updates: dict[str, str | None]  # None removes the key
    advice: list[Advice]
    old_text: str
    new_text: str

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text

    @property
    def values(self) -> dict[str, str]:
        """EchoPanel's keys in the resulting file."""
        parsed = envconfig.parse(self.new_text).values
        return {k: parsed[k] for k in envconfig.KEYS if k in parsed}

    @property
    def secret(self) -> bool:
        return envconfig.has_secret(envconfig.parse(self.new_text).values)

    @property
    def removed(self) -> list[str]:
        """EchoPanel's keys the existing file has and the plan removes."""
        old = envconfig.parse(self.old_text).values
        return [key for key, value in self.updates.items() if value is None and key in old]


class PlanUi(Protocol):
    """configure's live side (configure_render.ConfigureUi): the plan before anything is written, and the
    question whether to write it."""

    def show(self, plan: Plan) -> None: ...

    def confirm(self, plan: Plan) -> bool: ...


@dataclass(kw_only=True)
class ConfigureResult:
    """action: shell (--shell) | dry-run | unchanged | declined (the user said no) | written."""

    plan: Plan
    action: str
    backup: Path | None = None  # where the previous file was kept, when one was replaced

    @property
    def exit_code(self) -> int:
        return EXIT_OK


def output_path(opts: ConfigureOptions) -> Path:
    return Path(opts.output).expanduser() if opts.output else paths.echopanel_config_path()


def make_plan(opts: ConfigureOptions, facts: Facts, environ: Mapping[str, str], stdin: TextIO | None = None) -> Plan:
    """Decide every value from the flags, then the existing file, then doctor's facts."""
    path = output_path(opts)
    old_text = _read_existing(path)
    existing = envconfig.parse(old_text).values
    reasons: dict[str, str] = {}
    advice: list[Advice] = []

    provider, mode = _provider_and_mode(opts, facts, existing, reasons)
    updates: dict[str, str | None] = {envconfig.PROVIDER: provider}
    if provider == VOXTRAL:
        assert mode is not None
        delay = _delay(opts, existing, facts, mode, reasons)
        updates[envconfig.DELAY] = str(delay)
        if mode == "api":
            updates[envconfig.MODE] = "api"
            _api_key(opts, existing, environ, stdin, updates, reasons, advice)
        else:
            updates[envconfig.MODE] = None
            updates[envconfig.URL] = _url(opts, existing, mode, reasons, ports.local_url())
            served = facts.model.delay_ms
            if mode == "local" and (why_not := _why_not_local(facts)):
                advice.append(
                    Advice(
                        f"{why_not}; unless {updates[envconfig.URL]} is a tunnel to a GPU host, EchoPanel will find no "
                        "server there. Point it at a vLLM server elsewhere, or at Mistral's API:",
                        [
                            f"echopanel-setup configure --mode remote --url {ports.example_url()}",
                            "echopanel-setup configure --mode api",
                        ],
                    )
                )
            elif mode == "local" and served is not None and served != delay:
                advice.append(
                    Advice(
                        f"EchoPanel will ask for {delay} ms, but the model dir serves {served} ms (vLLM reads "
                        "audio.transcription_delay_ms from tekken.json once, at start-up). Serve the matching variant:",
                        [f"echopanel-setup serve --delay-ms {delay}"],
                    )
                )
    try:
        new_text = envconfig.merge(old_text or HEADER + "\n", updates)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Plan(path, provider, mode, reasons, updates, advice, old_text, new_text)


def _read_existing(path: Path) -> str:
    if path.is_dir():
        raise UsageError(f"--output {path}: is a directory; name the env file itself")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file; move it away or pass --output FILE") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None


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
    if opts.url:
        return ("local" if is_loopback(opts.url) else "remote"), "--url"
    if existing.get(envconfig.MODE) == "api":
        return "api", f"{envconfig.MODE}=api in the existing file"
    if existing.get(envconfig.PROVIDER, VOXTRAL) == VOXTRAL and existing.get(envconfig.URL):
        url = existing[envconfig.URL]
        return ("local" if is_loopback(url) else "remote"), f"{envconfig.URL} in the existing file"
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


def _delay(opts: ConfigureOptions, existing: dict[str, str], facts: Facts, mode: str, reasons: dict[str, str]) -> int:
    if opts.delay_ms is not None:
        if problem := envconfig.validate_delay(str(opts.delay_ms)):
            raise UsageError(f"--delay-ms: {problem.split('=', 1)[1]}")
        reasons[envconfig.DELAY] = "--delay-ms"
        return opts.delay_ms
    current = existing.get(envconfig.DELAY)
    if current and envconfig.validate_delay(current) is None:
        reasons[envconfig.DELAY] = "kept from the existing file"
        return int(current)
    served = facts.model.delay_ms
    if mode == "local" and served is not None and envconfig.validate_delay(str(served)) is None:
        reasons[envconfig.DELAY] = "what the local model dir serves"
        return served
    reasons[envconfig.DELAY] = "the model card's recommended default"
    return knowledge.load().delay.default_ms


def _url(opts: ConfigureOptions, existing: dict[str, str], mode: str, reasons: dict[str, str], default: str) -> str:
    if opts.url:
        url = _echopanel_url(opts.url)
        if mode == "local" and not url.is_loopback:
            raise UsageError(f"--url {url} is not on this machine: use --mode remote for a server elsewhere")
        reasons[envconfig.URL] = "--url"
        return str(url)
    current = existing.get(envconfig.URL)
    if current and envconfig.validate_url(current) is None and is_loopback(current) == (mode == "local"):
        reasons[envconfig.URL] = "kept from the existing file"
        return current
    if mode == "remote":
        raise UsageError(f"--mode remote needs --url {ports.example_url()} (the vLLM server EchoPanel should use)")
    reasons[envconfig.URL] = "vLLM's default port on this machine"
    return default


def _echopanel_url(text: str) -> ServerURL:
    """EchoPanel wants http(s)://host:port: accept the ws:// URL or a /v1/realtime path and reduce it."""
    with contextlib.suppress(UsageError):  # if it does not parse, parse_echopanel names the problem
        text = ServerURL.parse(text).http_base
    return ServerURL.parse_echopanel(text, what="--url")


def _api_key(
    opts: ConfigureOptions,
    existing: dict[str, str],
    environ: Mapping[str, str],
    stdin: TextIO | None,
    updates: dict[str, str | None],
    reasons: dict[str, str],
    advice: list[Advice],
) -> None:
    """A key given now is written (the file becomes 0600); otherwise keep the file's, else refer to the
    environment's, else say how to provide one."""
    key = opts.api_key
    if key == "-":
        key = (stdin or sys.stdin).readline().strip()
        if not key:
            raise UsageError(
                "--api-key -: standard input was empty; pipe the key in, e.g. `pass show mistral | echopanel-setup "
                "configure --mode api --api-key -`"
            )
        reasons[envconfig.API_KEY] = "read from standard input (written; the file is made private, 0600)"
    elif key:
        reasons[envconfig.API_KEY] = "--api-key (written; the file is made private, 0600)"
        advice.append(
            Advice(
                "A key on the command line stays in your shell history; `--api-key -` reads it from standard input "
                "instead."
            )
        )
    if key:
        updates[envconfig.API_KEY] = key
        return
    if existing.get(envconfig.API_KEY):
        reasons[envconfig.API_KEY] = "kept from the existing file"
        return
    if environ.get(envconfig.API_KEY):
        reasons[envconfig.API_KEY] = f"EchoPanel reads {envconfig.API_KEY} from the environment; nothing written"
        return
    if environ.get("MISTRAL_API_KEY"):
        updates[envconfig.API_KEY] = "${MISTRAL_API_KEY}"
        reasons[envconfig.API_KEY] = "a reference to MISTRAL_API_KEY in your environment (the key itself is not copied)"
        return
    advice.append(
        Advice(
            "No Mistral API key: EchoPanel's API mode needs one (https://console.mistral.ai/api-keys). Export it, or "
            "store it here:",
            [
                "export MISTRAL_API_KEY=…",
                "echopanel-setup configure --mode api --api-key -   # reads the key from standard input",
            ],
        )
    )


def apply(plan: Plan) -> Path | None:
    """Write the plan (atomically, with a backup); returns the backup's path, or None for a new file."""
    try:
        return envconfig.write_atomic(plan.path, plan.new_text, plan.secret)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # the disk, not the user's input
            raise ExternalError(
                f"{plan.path}: cannot write it: {exc.strerror or exc} (the previous file is untouched); free some "
                "space and run configure again"
            ) from None
        raise UsageError(f"{plan.path}: cannot write it: {exc.strerror or exc}") from None


def is_literal_secret(key: str, value: str) -> bool:
    """A secret written out (not a `${VAR}` reference): never shown, in any output."""
    return envconfig.is_secret(key) and envconfig.reference(value) is None


def masked(text: str) -> str:
    """`text` with literal secret values replaced, for diffs and logs: EchoPanel's key and any other line of
    the user's file whose name says it is a secret (`OPENAI_API_KEY`, `HF_TOKEN`, …), since unchanged
    lines show up in a diff's context too."""
    lines = []
    for line in text.splitlines(keepends=True):
        parsed = envconfig.parse(line).values
        secret = any(is_literal_secret(k, v) for k, v in parsed.items())
        lines.append(line.split("=", 1)[0] + "=****" + ("\n" if line.endswith("\n") else "") if secret else line)
    return "".join(lines)


def diff(plan: Plan) -> str:
    return "".join(
        difflib.unified_diff(
            masked(plan.old_text).splitlines(keepends=True),
            masked(plan.new_text).splitlines(keepends=True),
            fromfile=f"{plan.path} (now)",
            tofile=f"{plan.path} (after configure)",
        )
    )


def shell(plan: Plan) -> str:
    """`export` lines for `eval "$(echopanel-setup configure --shell)"`: the resulting EchoPanel keys."""
    values: dict[str, str | None] = dict(plan.values)
    values.update({k: None for k, v in plan.updates.items() if v is None})
    return envconfig.shell_exports(values)


def collect_facts(opts: ConfigureOptions) -> Facts:
    """What doctor knows (offline: no network), or a saved snapshot when --facts is given."""
    from echopanel_setup import doctor
    from echopanel_setup.facts.collect import Options, collect

    if opts.facts:
        return doctor.load_facts(opts.facts)
    return collect(Options(offline=True, config=str(output_path(opts))))


def run(opts: ConfigureOptions, ui: PlanUi, *, facts: Facts | None = None) -> ConfigureResult:
    """Plan; then (unless --shell or --dry-run) show it, confirm through `ui` unless --yes, and write it."""
    plan = make_plan(opts, facts or collect_facts(opts), os.environ)
    if opts.shell:
        return ConfigureResult(plan=plan, action="shell")
    ui.show(plan)
    if opts.dry_run:
        return ConfigureResult(plan=plan, action="dry-run")
    if not plan.changed:
        return ConfigureResult(plan=plan, action="unchanged")
    if not opts.yes and opts.api_key != "-" and not ui.confirm(plan):  # a key piped on stdin: no one to ask
        return ConfigureResult(plan=plan, action="declined")
    return ConfigureResult(plan=plan, action="written", backup=apply(plan))
