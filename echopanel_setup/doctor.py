"""`doctor`: collect (or replay) facts, pick the mode, run the checks, and compute the exit code."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from echopanel_setup import checks
from echopanel_setup.checks import CheckResult
from echopanel_setup.checks import network as network_checks
from echopanel_setup.checks.common import pick_mode
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.collect import Options, collect
from echopanel_setup.facts.model import Facts


@dataclass
class DoctorRun:
    """Everything one doctor run produced; `report` renders it."""

    facts: Facts
    mode: str
    mode_reason: str
    results: list[CheckResult]
    exit_code: int
    strict: bool
    duration_ms: float
    replayed: bool = False


_MAX_FACTS_BYTES = 16 * 1024 * 1024  # a snapshot is a few kB, a whole --json document some tens


def load_facts(path: str) -> Facts:
    """Read a snapshot written by --save-facts (or a whole --json document); bad files are usage errors. At most
    16 MiB is read: `--facts /dev/zero` was read until the process was killed for memory (a pipe, as from
    `--facts <(…)`, still works)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(_MAX_FACTS_BYTES + 1)
        if len(raw) > _MAX_FACTS_BYTES:
            raise UsageError(f"--facts {path}: larger than 16 MiB, not a facts snapshot")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"--facts {path}: no such file (write one with `echopanel-setup doctor --save-facts FILE`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--facts {path}: cannot read it: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"--facts {path}: not JSON ({exc})") from None
    except RecursionError:  # json's C decoder recurses once per nesting level
        raise UsageError(f"--facts {path}: nested too deeply to be a facts snapshot") from None
    if isinstance(data, dict) and isinstance(data.get("facts"), dict):
        data = data["facts"]
    try:
        return Facts.from_dict(data)
    except ValueError as exc:
        raise UsageError(f"--facts {path}: not a facts snapshot: {exc}") from None


def provider_axis(facts: Facts) -> Callable[[checks.Check], str | None] | None:
    """The checks that do not apply to the provider EchoPanel selects (voxtral_realtime runs no vLLM), or None."""
    from echopanel_setup.checks import voxtral_c

    why = voxtral_c.moot_for_voxtral_c(facts)
    if why is None:
        return None
    elsewhere = voxtral_c.weights_elsewhere(facts)
    return lambda c: why if voxtral_c.is_vllm_only(c) else (elsewhere if c.id in voxtral_c.DOWNLOAD else None)


def save_facts(facts: Facts, path: str) -> None:
    try:
        Path(path).write_text(json.dumps(facts.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--save-facts {path}: cannot write: {exc.strerror or exc}") from None


def needed_endpoints(selected: list[checks.Check], mode: str) -> frozenset[str]:
    """The outside hosts worth a request: those a selected check uses in this mode (the Hub only where a model
    is downloaded here, the Mistral API only in api mode), so doctor contacts no one it will not judge."""
    return frozenset(
        endpoint for c in selected if mode in c.modes and (endpoint := network_checks.ENDPOINT.get(c.id)) is not None
    )


def run(
    opts: Options,
    mode: str | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    strict: bool = False,
    facts_file: str | None = None,
    on_wait: Callable[[list[str]], None] | None = None,
    url_sets_mode: bool = True,
) -> DoctorRun:
    """One doctor run. `url_sets_mode`: a --url without --mode checks that server in remote mode (where it is
    required); `setup` turns it off, its --url names the server it may start itself."""
    start = time.perf_counter()
    try:
        selected = checks.select(checks.all_checks(), only or [], skip or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # A bad --python raises its UsageError (pyenv.BadPythonError) before any probe.
    picked_url = opts.url if url_sets_mode else None
    if facts_file:
        facts = load_facts(facts_file)
    else:

        def needed(f: Facts) -> frozenset[str]:
            return needed_endpoints(selected, pick_mode(f, mode, url=picked_url)[0])

        facts = collect(replace(opts, endpoints=needed), on_wait=on_wait)
    chosen, reason = pick_mode(facts, mode, url=picked_url)
    try:
        checks.applicable(selected, chosen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    axis = None if mode else provider_axis(facts)
    if axis is not None:
        reason = "EchoPanel runs voxtral.c here (voxtral_realtime): vLLM's checks skipped"
    results = checks.run(facts, chosen, selected, moot=axis)
    return DoctorRun(
        facts=facts,
        mode=chosen,
        mode_reason=reason,
        results=results,
        exit_code=checks.exit_code(results, strict),
        strict=strict,
        duration_ms=(time.perf_counter() - start) * 1000,
        replayed=facts_file is not None,
    )
