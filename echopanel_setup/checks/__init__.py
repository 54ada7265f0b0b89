"""The check registry: each check is a pure function of a `Facts` snapshot and the mode.

A check declares, per mode, whether it is `required` (a failure fails doctor) or `advisory` (a failure
is reported but only fails with --strict); modes it does not list skip it. The modules below register
their checks on import, in the order doctor prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from echopanel_setup.facts.model import Facts

MODES = ("local", "remote", "api")
REQUIRED = "required"
ADVISORY = "advisory"


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    CRASHED = "crashed"
    TIMEOUT = "timeout"


@dataclass
class Fix:
    """What to do: prose plus commands a user can paste."""

    text: str
    commands: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What a check function returns."""

    status: Status
    summary: str
    details: list[str] = field(default_factory=list)
    fix: Fix | None = None
    # The check could not look (e.g. --offline): a required check skipped this way is not a pass.
    unchecked: bool = False
    # A step not taken yet rather than a fault of the machine (no EchoPanel config on a CI runner): the result
    # counts as advisory, so --strict does not fail on it.
    advisory: bool = False


@dataclass
class CheckResult:
    id: str
    title: str
    category: str
    status: Status
    required: bool
    summary: str
    details: list[str] = field(default_factory=list)
    fix: Fix | None = None
    duration_ms: float = 0.0
    unchecked: bool = False

    @property
    def counts_as_failure(self) -> bool:
        return self.required and self.status in (Status.FAIL, Status.CRASHED, Status.TIMEOUT)

    @property
    def unverified(self) -> bool:
        """A required check that was skipped because it could not look: doctor cannot call the machine ready."""
        return self.required and self.status is Status.SKIP and self.unchecked

    @property
    def gave_verdict(self) -> bool:
        """A required check that looked and judged (anything but a skip)."""
        return self.required and self.status is not Status.SKIP

    @property
    def is_problem(self) -> bool:
        return self.status in (Status.WARN, Status.FAIL, Status.CRASHED, Status.TIMEOUT)


CheckFn = Callable[[Facts, str], Outcome]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    category: str
    modes: dict[str, str]
    probes: tuple[str, ...]
    fn: CheckFn
    after: tuple[str, ...] = ()


REGISTRY: list[Check] = []


def check(
    id: str,
    title: str,
    category: str,
    probes: tuple[str, ...],
    local: str | None = None,
    remote: str | None = None,
    api: str | None = None,
    after: tuple[str, ...] = (),
) -> Callable[[CheckFn], CheckFn]:
    """Register a check; `local`/`remote`/`api` say how much it matters in each mode.

    `after` names checks whose failure makes this one moot (e.g. no vLLM details on a Mac): it is then
    skipped with that reason, so the output points at the one thing to fix.
    """

    def register(fn: CheckFn) -> CheckFn:
        modes = {m: v for m, v in (("local", local), ("remote", remote), ("api", api)) if v}
        REGISTRY.append(Check(id, title, category, modes, probes, fn, after))
        return fn

    return register


# Print order, by module: what the machine is, then what runs on it, then how it connects.
_MODULE_ORDER = ("platform", "gpu", "stack", "storage", "network", "config", "echopanel", "voxtral_c")


def all_checks() -> list[Check]:
    """Every registered check, in print order (importing the modules registers them).

    Sorted rather than left in import order: a command that imported one module early (install vllm's gate
    imports gpu) would otherwise register its checks first. Checks registered elsewhere (tests) come last.
    """
    from echopanel_setup.checks import platform, gpu, stack, storage, network, config, echopanel, voxtral_c  # noqa: F401, I001

    rank = {module: i for i, module in enumerate(_MODULE_ORDER)}
    REGISTRY.sort(key=lambda c: rank.get(c.fn.__module__.rsplit(".", 1)[-1], len(rank)))  # stable; others last
    return REGISTRY


def run(
    facts: Facts, mode: str, checks: list[Check], moot: Callable[[Check], str | None] | None = None
) -> list[CheckResult]:
    """Evaluate `checks` for `mode`. A check never aborts the run: exceptions become `crashed` results.

    `moot(check)` gives a reason to skip a check that does not apply to the provider EchoPanel uses (the provider
    axis beside the modes: voxtral.c needs none of vLLM's checks)."""
    probe_status = {p.name: p for p in facts.probes}
    results: list[CheckResult] = []
    failed: set[str] = set()
    for c in checks:
        level = c.modes.get(mode)
        start = time.perf_counter()
        blocked = [a for a in c.after if a in failed]
        if level is None:
            outcome = Outcome(Status.SKIP, f"not needed in {mode} mode")
        elif moot is not None and (why := moot(c)):
            outcome = Outcome(Status.SKIP, why)
        elif blocked:
            outcome = Outcome(Status.SKIP, f"moot until {blocked[0]} passes")
        elif stuck := [probe_status[p] for p in c.probes if p in probe_status and probe_status[p].status != "ok"]:
            p = stuck[0]
            status = Status.TIMEOUT if p.status == "timeout" else Status.CRASHED
            outcome = Outcome(status, f"the {p.name} probe {p.status}: {p.error}")
        else:
            try:
                outcome = c.fn(facts, mode)
            except Exception as exc:  # noqa: BLE001 - shown as ☠ crashed, with the error, never a traceback
                outcome = Outcome(Status.CRASHED, f"the check crashed: {type(exc).__name__}: {exc}")
        results.append(
            CheckResult(
                id=c.id,
                title=c.title,
                category=c.category,
                status=outcome.status,
                required=level == REQUIRED and not outcome.advisory,
                summary=outcome.summary,
                details=outcome.details,
                fix=outcome.fix,
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
                unchecked=outcome.unchecked,
            )
        )
        if results[-1].status in (Status.FAIL, Status.CRASHED, Status.TIMEOUT):
            failed.add(c.id)
    return results


def select(checks: list[Check], only: list[str], skip: list[str]) -> list[Check]:
    """Filter by id or id prefix (`gpu` selects every `gpu.*`). Unknown names, or a filter that leaves nothing,
    raise ValueError: an empty run would otherwise report "ready" having checked nothing."""

    def matches(c: Check, name: str) -> bool:
        return c.id == name or c.id.startswith(name + ".")

    for name in [*only, *skip]:
        if not any(matches(c, name) for c in checks):
            raise ValueError(f"unknown check {name!r}; `echopanel-setup doctor --list` shows them")
    chosen = [c for c in checks if not only or any(matches(c, n) for n in only)]
    kept = [c for c in chosen if not any(matches(c, n) for n in skip)]
    if not kept:
        said = " ".join([*(f"--only {n}" for n in only), *(f"--skip {n}" for n in skip)])
        raise ValueError(f"{said} leaves no check to run; `echopanel-setup doctor --list` shows them")
    return kept


def applicable(checks: list[Check], mode: str) -> None:
    """Raise ValueError when none of `checks` runs in `mode` (e.g. `--mode api --only gpu`)."""
    if not any(mode in c.modes for c in checks):
        names = ", ".join(c.id for c in checks[:4]) + (", …" if len(checks) > 4 else "")
        raise ValueError(f"none of the selected checks ({names}) runs in {mode} mode; `doctor --list` shows the matrix")


def exit_code(results: list[CheckResult], strict: bool) -> int:
    """0 ready; 1 when a required check failed or could not look (--offline), when no required check judged
    anything, or with --strict when a required check warned.

    --strict counts required checks' warnings only: advisory ones (no server started yet) are next steps, and
    the CI recipe must pass on a ready machine.
    """
    if any(r.counts_as_failure or r.unverified for r in results):
        return 1
    if not any(r.gave_verdict for r in results):
        return 1
    if strict and any(r.required and r.status is Status.WARN for r in results):
        return 1
    return 0
