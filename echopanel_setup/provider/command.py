"""`provider check|fix|revert`: what EchoPanel's Voxtral provider is, replacing it with ours, putting it back.

Two providers: `voxtral_official` (ours speaks vLLM's `/v1/realtime`) and `voxtral_realtime` (ours runs voxtral.c,
one resident process per source). Both go through the same steps below; what differs per provider is data
(`PROVIDERS`, `OUR_VARIANTS`, `_AFTER_LOAD`).

`fix` writes only over a known variant (recognised by content against the knowledge file) unless `--force`, shows
the diff first, keeps the original beside it as `.orig` (never overwritten by a later fix) and a copy in our state
dir, writes atomically, records what it did (sha256 before and after), then loads the new module on its own in
EchoPanel's Python; if that fails the original is put back and the run exits 1. `revert` restores the original
byte for byte from the record, and refuses when the file changed since the fix unless `--force`.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echopanel_setup import __version__, paths, proc
from echopanel_setup.echopanel import contract, discover
from echopanel_setup.echopanel.keys import DELAY, MODE, SELECTOR, URL
from echopanel_setup.errors import UsageError
from echopanel_setup.fileio import replace_file
from echopanel_setup.provider import TEMPLATES, echopanel_harness, records, template_text

PROVIDERS = TEMPLATES
OUR_VARIANTS = {"voxtral_official": "voxtral_official_realtime_setup", "voxtral_realtime": "voxtral_realtime_setup"}
# What "it loads but reports itself unavailable" means for each of our providers, right after `fix`.
_UNAVAILABLE = {
    "voxtral_official": (
        "websockets is missing in EchoPanel's Python: {python} -m pip install 'websockets==14.1' (EchoPanel pins "
        "that version); until then EchoPanel falls back to faster_whisper"
    ),
    "voxtral_realtime": (
        "installed, but EchoPanel falls back to faster_whisper until it finds voxtral.c and the weights: "
        "`echopanel-setup install voxtral-c`, `echopanel-setup install voxtral`, then "
        "`echopanel-setup configure --provider voxtral_realtime` (ECHOPANEL_VOXTRAL_BIN, ECHOPANEL_VOXTRAL_MODEL)"
    ),
}
IMPORT_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class ProviderOptions:
    action: str  # check | fix | revert
    provider: str = "voxtral_official"
    echopanel: str | None = None
    echopanel_python: str | None = None
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    against_server: bool = (
        True  # check: also run EchoPanel's provider against its server (setup checks before configure)
    )


@dataclass
class LoadCheck:
    """The provider module loaded alone in EchoPanel's Python (a timed subprocess)."""

    python: str
    ok: bool
    available: bool | None = None
    seconds: float = 0.0
    message: str = ""  # the import error, or why it was not run
    ran: bool = True


@dataclass
class ProviderResult:
    action: str
    provider: str
    checkout: Path
    how_found: str
    file: Path
    outcome: str  # fixed | already | dry-run | declined | refused | restored | reverted | checked
    exit_code: int
    variant: str | None = None  # the file's variant before the action
    variant_title: str | None = None
    works: bool | None = None
    reason: str = ""  # why it was refused, failed, or cannot work
    diff: str = ""
    orig: Path | None = None
    orig_created: bool = False
    record: records.FixRecord | None = None
    load: LoadCheck | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # check: keys, endpoints, model, deps as read
    smoke: Any = None  # check: the smoke --client echopanel run against EchoPanel's server
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # done, but EchoPanel will not transcribe: what to do


Ask = Callable[[str], bool]  # a yes/no question to the user
Show = Callable[[ProviderResult], None]


def run(opts: ProviderOptions, ask: Ask | None = None, show: Show | None = None) -> ProviderResult:
    """Run one action. `show(preview)` gets the diff before anything is written; `ask(question)` then asks for
    consent (not with --yes or --dry-run)."""
    if opts.provider not in PROVIDERS:
        raise UsageError(f"--provider {opts.provider}: only {', '.join(PROVIDERS)} can be fixed")
    checkout = discover.find(opts.echopanel, os.environ, Path.cwd(), Path.home())
    if checkout is None:
        raise UsageError(
            "no EchoPanel checkout found (looked at --echopanel, ECHOPANEL_HOME, this directory and its parents, "
            "~/EchoPanel, ~/Projects/EchoPanel, ~/src/EchoPanel, ~/code/EchoPanel): pass --echopanel PATH"
        )
    file = checkout.path / contract.PROVIDERS_DIR / f"provider_{opts.provider}.py"
    result = ProviderResult(opts.action, opts.provider, checkout.path, checkout.how, file, "checked", 0)
    _describe(result)
    if opts.action == "fix":
        return _fix(opts, result, ask, show)
    if opts.action == "revert":
        return _revert(opts, result, ask, show)
    return _check(opts, result)


def _describe(result: ProviderResult) -> None:
    """The file's variant as the contract reader recognises it, and what the knowledge file says of it."""
    read = contract.read(result.checkout, wanted=[result.provider])
    found = read.provider(result.provider)
    if found is None:
        return
    result.variant = found.variant
    info = contract.variant_info(found.variant)
    if info is not None:
        result.variant_title, result.works = info.title, info.works
        result.reason = "" if info.works else info.reason
    result.facts = {
        "sha256": found.sha256,
        "reads": {e.key: e.default for e in found.env},
        "endpoints": found.endpoints,
        "model": found.model,
        "deps": list(info.deps) if info is not None else found.deps,  # a known variant's own list: API-only ones out
        "sends_auth": found.auth,
    }


def _python(opts: ProviderOptions, checkout: Path) -> Path:
    return discover.backend_python(checkout, opts.echopanel_python)[0]


def load_check(python: Path, checkout: Path, module: str = "provider_voxtral_official") -> LoadCheck:
    """Load the provider module alone in EchoPanel's Python, with a timeout (never in our own process)."""
    if not python.exists():
        return LoadCheck(str(python), False, ran=False, message=f"EchoPanel's Python {python} does not exist")
    started = time.monotonic()
    try:
        done = proc.run(
            [str(python), echopanel_harness.__file__, "--checkout", str(checkout), "--module", module, "--import-only"],
            timeout=IMPORT_TIMEOUT_S,
            cwd=str(checkout),
            env=echopanel_env(checkout),  # is_available depends on EchoPanel's settings (VOXTRAL_MODE)
        )
    except subprocess.TimeoutExpired:
        return LoadCheck(str(python), False, seconds=IMPORT_TIMEOUT_S, message=f"no answer in {IMPORT_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return LoadCheck(str(python), False, ran=False, message=f"cannot run {python}: {exc.strerror or exc}")
    seconds = time.monotonic() - started
    events = []
    for line in done.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    loaded = next((e for e in events if e.get("event") == "loaded"), None)
    if loaded is not None and done.returncode == 0:
        return LoadCheck(str(python), True, bool(loaded.get("available")), seconds)
    error = next((e for e in events if e.get("event") == "error"), None)
    message = str(error["message"]) if error else (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return LoadCheck(str(python), False, seconds=seconds, message=message)


# --- fix ----------------------------------------------------------------------------------------------------------


def _fix(opts: ProviderOptions, result: ProviderResult, ask: Ask | None, show: Show | None) -> ProviderResult:
    new = template_text(opts.provider).encode("utf-8")
    old = result.file.read_bytes() if result.file.is_file() else None
    result.orig = result.file.with_name(result.file.name + ".orig")
    if old == new:
        result.outcome, result.record = "already", records.find(result.file)
        result.notes.append(f"already echopanel-setup's {opts.provider} provider (this version): nothing to do")
        return result
    record = records.find(result.file)
    ours_unchanged = record is not None and old is not None and records.sha256(old) == record.sha256_after
    if not opts.force and not ours_unchanged:
        refusal = _refusal(result, old)
        if refusal:
            result.outcome, result.exit_code, result.reason = "refused", 1, refusal
            return result
    question = f"Replace {result.file} with echopanel-setup's provider?"
    if not _shown_and_agreed(result, opts, old, new, show, ask, question, "not applied (nothing was written)"):
        return result
    _apply(result, old, new, record)
    result.outcome = "fixed"
    result.load = load_check(_python(opts, result.checkout), result.checkout, result.file.stem)
    if result.load.ran and not result.load.ok:
        _undo(result, old)
        result.outcome, result.exit_code = "restored", 1
        result.reason = f"the new provider does not load in EchoPanel's Python: {result.load.message}"
    elif result.load.ran and result.load.available is False and opts.provider == "voxtral_realtime":
        result.notes.append(_UNAVAILABLE[opts.provider])  # a setting to make, not a broken install: fix succeeded
    elif result.load.ran and result.load.available is False:
        result.exit_code = 1
        result.reason = _UNAVAILABLE[opts.provider].format(python=result.load.python)
    elif not result.load.ran:
        result.notes.append(f"{result.load.message}: the new provider's import was not checked")
    elif opts.provider == "voxtral_official":
        _offer_api_sdk(opts, result, ask)
    return result


def _offer_api_sdk(opts: ProviderOptions, result: ProviderResult, ask: Ask | None) -> None:
    """VOXTRAL_MODE=api needs Mistral's SDK in EchoPanel's Python: offer to install it, only with consent."""
    assert result.load is not None
    if echopanel_env(result.checkout).get(MODE, "").strip().lower() != "api":
        return
    python = result.load.python
    if _imports(python, "mistralai.extra.realtime"):
        return
    install = [python, "-m", "pip", "install", "mistralai[realtime]"]
    shown = f"{python} -m pip install 'mistralai[realtime]'"
    question = (
        f"VOXTRAL_MODE=api: the provider sends the meeting's audio to Mistral's servers, and needs Mistral's SDK in "
        f"EchoPanel's Python. Install it now ({shown})?"
    )
    if opts.yes or ask is None or not ask(question):  # --yes applies the fix; installing software needs a "yes" here
        result.exit_code = 1
        result.reason = f"API mode needs Mistral's SDK in EchoPanel's Python: {shown} (audio then leaves this machine)"
        return
    try:
        done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess(install, 1, "", str(exc))
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        result.exit_code, result.reason = 1, f"{shown} failed: {last}"
    else:
        result.notes.append(f"installed mistralai[realtime] in {python}: in API mode the audio goes to Mistral")


def _imports(python: str, module: str) -> bool:
    try:
        done = proc.run([python, "-c", f"import {module}"], timeout=IMPORT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _refusal(result: ProviderResult, old: bytes | None) -> str:
    """Why `fix` will not write over this file without --force ('' when it may)."""
    rel = result.file.relative_to(result.checkout)
    if old is None:
        return f"{rel} does not exist in this checkout; --force adds ours"
    info = contract.variant_info(result.variant)
    if result.variant == OUR_VARIANTS[result.provider]:
        return (
            f"{rel} is echopanel-setup's provider, but not as `provider fix` wrote it here (edited, or another "
            "version without a record): --force replaces it (the current file is kept as a backup)"
        )
    if info is None:
        return (
            f"{rel} is not a version echopanel-setup knows (sha256 {records.sha256(old)[:12]}…): it may hold your own "
            "changes; read it, then --force replaces it (it is kept as .orig)"
        )
    if info.provider != result.provider or not info.fix.startswith("echopanel-setup provider fix"):
        return f"{rel} is {info.title}, which `provider fix` does not replace; --force does"
    return ""


def _shown_and_agreed(
    result: ProviderResult,
    opts: ProviderOptions,
    before: bytes | None,
    after: bytes,
    show: Show | None,
    ask: Ask | None,
    question: str,
    declined: str,
) -> bool:
    """Show the change, then go on only past --dry-run and with consent (--yes or a yes); else say why on `result`.

    fix and revert both write into the user's checkout, so both follow this one order: diff first, never a write
    without it being seen or agreed to.
    """
    result.diff = _diff(before, after, str(result.file.relative_to(result.checkout)))
    if show is not None:
        show(result)
    if opts.dry_run:
        result.outcome = "dry-run"
        return False
    if not opts.yes and (ask is None or not ask(question)):
        result.outcome, result.exit_code, result.reason = "declined", 1, declined
        return False
    return True


def _diff(old: bytes | None, new: bytes, name: str) -> str:
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"a/{name}", f"b/{name}"))


def _apply(result: ProviderResult, old: bytes | None, new: bytes, record: records.FixRecord | None) -> None:
    """.orig (only if none yet), our backup, the atomic write, the record."""
    assert result.orig is not None
    mode = result.file.stat().st_mode & 0o7777 if result.file.exists() else 0o644
    backup = records.keep_backup(old) if old is not None else None
    if old is not None and not result.orig.exists():
        replace_file(result.orig, old, mode)
        result.orig_created = True
    elif result.orig.exists():
        result.notes.append(f"{result.orig.name} already holds the original from an earlier fix: kept as it is")
    replace_file(result.file, new, mode)
    first = record if record is not None and result.orig.exists() and not result.orig_created else None
    before = first.sha256_before if first else records.sha256(old or b"")
    result.record = records.FixRecord(
        path=str(result.file.resolve()),
        checkout=str(result.checkout),
        provider=result.provider,
        sha256_before=before,
        sha256_after=records.sha256(new),
        orig=str(result.orig),
        backup=first.backup if first else str(backup or ""),
        variant_before=first.variant_before if first else result.variant,
        fixed_at=paths.timestamp(),
        tool_version=__version__,
    )
    records.save(result.record)
    flag = "" if result.provider == "voxtral_official" else f" --provider {result.provider}"
    result.notes.append(
        f"`git status` will show {result.file.name} modified and {result.orig.name} untracked; "
        f"`echopanel-setup provider revert{flag}` puts the original back"
    )


def _undo(result: ProviderResult, old: bytes | None) -> None:
    """Put back exactly what was there before this run (file, .orig, record)."""
    assert result.orig is not None
    if old is None:
        result.file.unlink(missing_ok=True)
    else:
        replace_file(result.file, old, result.file.stat().st_mode & 0o7777)
    if result.orig_created:
        result.orig.unlink(missing_ok=True)
    records.forget(result.file)
    result.record = None


# --- revert -------------------------------------------------------------------------------------------------------


def _revert(opts: ProviderOptions, result: ProviderResult, ask: Ask | None, show: Show | None) -> ProviderResult:
    record = records.find(result.file)
    if record is None:
        result.outcome, result.exit_code = "refused", 1
        result.reason = f"no `provider fix` of {result.file} is recorded: nothing to revert"
        return result
    result.record, result.orig = record, Path(record.orig)
    current = result.file.read_bytes() if result.file.is_file() else None
    if current is not None and records.sha256(current) != record.sha256_after and not opts.force:
        result.outcome, result.exit_code = "refused", 1
        result.reason = (
            f"{result.file.name} changed since `provider fix` (sha256 {records.sha256(current)[:12]}…, fix wrote "
            f"{record.sha256_after[:12]}…): --force puts the original back anyway (the current file is then lost)"
        )
        return result
    original = _original(record)
    if original is None:
        result.outcome, result.exit_code = "refused", 1
        result.reason = (
            f"the original is gone: neither {record.orig} nor {record.backup} holds sha256 {record.sha256_before[:12]}…"
        )
        return result
    question = f"Put the original {result.file.name} back?"
    if not _shown_and_agreed(
        result, opts, current, original, show, ask, question, "not reverted (nothing was written)"
    ):
        return result
    mode = result.file.stat().st_mode & 0o7777 if result.file.exists() else 0o644
    replace_file(result.file, original, mode)
    Path(record.orig).unlink(missing_ok=True)
    records.forget(result.file)
    result.outcome = "reverted"
    result.notes.append(
        f"{result.file.name} is the original again (sha256 {record.sha256_before[:12]}…, byte-identical)"
    )
    _selected_but_broken(result)
    return result


def _selected_but_broken(result: ProviderResult) -> None:
    """After a revert: where EchoPanel's `.env` or environment still selects this provider and the original is a
    variant known not to work, EchoPanel now transcribes nothing, in silence. Say so, and the way on."""
    restored = contract.read(result.checkout, wanted=[result.provider]).provider(result.provider)
    info = contract.variant_info(restored.variant if restored else None)
    if info is None or info.works or echopanel_env(result.checkout).get(SELECTOR, "").strip() != result.provider:
        return
    flag = "" if result.provider == "voxtral_official" else f" --provider {result.provider}"
    result.warnings.append(
        f"EchoPanel is set to {result.provider} ({SELECTOR} in its .env or environment) and the original cannot "
        f"work ({info.reason}): EchoPanel will now show no transcript. `echopanel-setup provider fix{flag}` puts "
        "ours back, or `echopanel-setup configure --provider NAME` selects another provider"
    )


def _original(record: records.FixRecord) -> bytes | None:
    for place in (record.orig, record.backup):
        try:
            data = Path(place).read_bytes()
        except OSError:
            continue
        if records.sha256(data) == record.sha256_before:
            return data
    return None


# --- check --------------------------------------------------------------------------------------------------------


def _check(opts: ProviderOptions, result: ProviderResult) -> ProviderResult:
    if not result.file.is_file():
        result.exit_code, result.reason = (
            1,
            f"no {result.file.relative_to(result.checkout)}: EchoPanel has no {result.provider}",
        )
        return result
    if drift := records.drift(result.file):
        result.notes.append(drift)
    result.load = load_check(_python(opts, result.checkout), result.checkout, result.file.stem)
    if result.variant is None:
        result.notes.append(
            "not a version echopanel-setup knows: described as read; its own code runs against the server"
        )
    if result.load.ran and not result.load.ok:
        result.exit_code, result.reason = 1, f"it does not load in EchoPanel's Python: {result.load.message}"
    elif result.load.ran and result.load.available is False:
        result.exit_code = 1
        missing = (
            "no voxtral.c binary or weights where ECHOPANEL_VOXTRAL_BIN and ECHOPANEL_VOXTRAL_MODEL point "
            "(`echopanel-setup configure --provider voxtral_realtime`)"
            if result.provider == "voxtral_realtime"
            else "a dependency is missing"
        )
        unavailable = f"it loads but reports itself unavailable ({missing}): EchoPanel falls back to faster_whisper"
        if result.reason:  # a known variant's own reason comes first: it needs `fix` either way
            result.notes.append(unavailable)
        else:
            result.reason = unavailable
    if result.provider == "voxtral_official":
        _api_sdk(result)
        if note := _delay_mismatch(result.checkout):
            result.notes.append(note)
    if opts.against_server and not _known_to_hang(result):
        _against_server(opts, result)
    if result.works is False:
        result.exit_code = 1
    return result


def _known_to_hang(result: ProviderResult) -> bool:
    """A voxtral_realtime known not to work is not run: the published one waits 120 s per window for a banner that
    `--silent` suppresses, so running it would only prove, minutes later, what the knowledge file already says."""
    if result.provider != "voxtral_realtime" or result.works is not False:
        return False
    result.notes.append(
        "not run against voxtral.c: it would wait 120 s for a banner --silent suppresses "
        "(`echopanel-setup smoke --client echopanel` runs it anyway)"
    )
    return True


def _api_sdk(result: ProviderResult) -> None:
    """In API mode the provider needs Mistral's SDK in EchoPanel's Python: say how to install it, and what it means."""
    env = echopanel_env(result.checkout)
    if env.get(MODE, "").strip().lower() != "api" or result.load is None or not result.load.ran:
        return
    info = contract.variant_info(result.variant)
    if info is not None and not info.api_path:
        result.exit_code, result.reason = 1, "VOXTRAL_MODE=api is set, but this provider has no Mistral API path"
        return
    if not _imports(result.load.python, "mistralai.extra.realtime"):
        result.exit_code = 1
        result.reason = (
            f"VOXTRAL_MODE=api needs Mistral's SDK in EchoPanel's Python: {result.load.python} -m pip install "
            "'mistralai[realtime]' (in API mode the meeting's audio leaves this machine for Mistral's servers)"
        )


def _delay_mismatch(checkout: Path) -> str | None:
    """vLLM's delay is fixed when it starts (tekken.json of the dir it serves); EchoPanel's VOXTRAL_STREAMING_DELAY_MS
    should say the same, or our provider appends too little silence to flush the last words (or waits too long)."""
    from urllib.parse import urlsplit

    from echopanel_setup.facts.local import read_tekken_delay
    from echopanel_setup.serve import launcher

    record = launcher.Record.read()
    env = echopanel_env(checkout)
    try:
        ours = urlsplit(env.get(URL, "http://127.0.0.1:8001")).port
        served_port = urlsplit(record.url).port if record else None
        model = Path(record.argv[record.argv.index("serve") + 1]) if record else None
    except (ValueError, IndexError):
        return None
    if record is None or model is None or served_port != ours:
        return None
    served = read_tekken_delay(model / "tekken.json")
    raw = env.get(DELAY, "480").strip()
    if served is None or raw == str(served):
        return None
    return (
        f"vLLM was started with a {served} ms delay (its serve record, {model}), but EchoPanel's "
        f"VOXTRAL_STREAMING_DELAY_MS is {raw}: set it to {served} (`echopanel-setup configure --delay-ms {served}`)"
    )


def _against_server(opts: ProviderOptions, result: ProviderResult) -> None:
    """What EchoPanel gets from the server (or voxtral.c) it is set to use: `smoke --client echopanel`, at full
    speed, with this provider."""
    from echopanel_setup import knowledge
    from echopanel_setup.smoke import audio
    from echopanel_setup.smoke import echopanel as ep_smoke

    run = ep_smoke.run(
        echopanel=str(result.checkout),
        echopanel_python=opts.echopanel_python,
        provider=result.provider,
        url=None,
        clip=audio.bundled(),
        max_wer=knowledge.load().smoke.max_wer,
        fast=True,
    )
    result.smoke = run
    if not run.passed:
        result.exit_code = 1
        if result.reason:
            return
        first = next((f"EchoPanel shows {line!r}" for f in run.feeds for line in f.status_lines), "")
        step = next((f"{s.what} → {s.status} {s.detail}" for s in run.steps if s.status != 200), "")
        result.reason = first or step or run.verdict


def echopanel_env(checkout: Path) -> dict[str, str]:
    """EchoPanel's environment: ours, plus its `.env` read by EchoPanel's rules (the environment always wins)."""
    from echopanel_setup.echopanel import dotenv

    env = dict(os.environ)
    for key, value in dotenv.read(checkout / ".env").values.items():
        env.setdefault(key, value)
    return env
