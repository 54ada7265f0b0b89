"""`setup`'s voxtral.c path: Voxtral on the Mac itself, through EchoPanel's `voxtral_realtime` provider.

Taken where EchoPanel already selects `voxtral_realtime`, or with `setup --provider voxtral_realtime`; on an Apple
Silicon Mac with the memory Metal needs, setup offers it first (`offer`), before a remote server or the API.
The steps: the machine (Rosetta and too little unified memory stop; BLAS, not real time, is said and goes on) →
`install voxtral-c` → `install voxtral` → `provider check/fix --provider voxtral_realtime` → `configure --provider
voxtral_realtime` → `smoke --client voxtral-c`. Each runs as its own command, as a user would type it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from echopanel_setup import knowledge
from echopanel_setup.checks import Status
from echopanel_setup.checks import voxtral_c as checks
from echopanel_setup.facts import voxtral_c as probe
from echopanel_setup.facts.model import Facts

if TYPE_CHECKING:
    from echopanel_setup.doctor import DoctorRun
    from echopanel_setup.setup_flow import Flow, SetupResult

PROVIDER = probe.PROVIDER
COMMAND = "echopanel-setup setup --provider voxtral_realtime"


def wanted(provider: str | None, mode: str | None, facts: Facts) -> bool:
    """--provider voxtral_realtime, or EchoPanel already selects it (and neither --provider nor --mode asks for the
    vLLM path)."""
    return provider == PROVIDER or (provider is None and mode is None and checks.in_use(facts))


def offer(facts: Facts) -> bool:
    """An Apple Silicon Mac, outside Rosetta, with the unified memory the f16 weights need: voxtral.c comes first."""
    ram = facts.platform.ram_total_mib
    return checks.metal_native(facts) and ram is not None and ram >= knowledge.load().voxtral_c.min_ram_mib


def run(flow: Flow, doctor_run: DoctorRun) -> SetupResult:
    facts = doctor_run.facts
    why = "--provider" if flow.opts.provider == PROVIDER else "EchoPanel selects voxtral_realtime"
    flow._line(
        "→",
        "path",
        f"voxtral.c, no vLLM ({why}): install voxtral-c → install voxtral → provider → configure → smoke voxtral-c",
    )
    if not facts.voxtral_c.probed:  # EchoPanel does not select it yet: look at the toolchain and any build now
        facts.voxtral_c = probe.probe(facts.platform.system, facts.echopanel, force=True)
    if not _machine(flow, facts):
        return flow._result("stopped")
    if not _step(flow, "install voxtral-c", ["install", "voxtral-c"], _built_and_runs(facts)):
        return flow._result("stopped")
    after = flow._install("install voxtral", "model.files", "model.files", ("install", "voxtral"), doctor_run)
    if after is None:
        return flow._result("stopped")
    checkout = flow._checkout()
    if checkout is None:
        flow._fix(
            "voxtral.c is ready; point EchoPanel at it once its checkout is here:", [COMMAND + " --echopanel PATH"]
        )
        return flow._result("stopped")
    where = ["--echopanel", str(checkout)]
    if flow.opts.echopanel_python:
        where += ["--echopanel-python", flow.opts.echopanel_python]
    yes = ["--yes"] if flow.opts.yes else []
    if flow.opts.dry_run:
        for step, args in (
            ("provider", ["provider", "check", "--provider", PROVIDER, *where]),
            ("configure", ["configure", "--provider", PROVIDER, *where, *yes]),
            ("smoke", ["smoke", "--client", "voxtral-c"]),
        ):
            flow._line("–", step, f"dry run: would run `echopanel-setup {' '.join(args)}`")
        return flow._result("dry-run")
    if flow.run_command(_ours("provider", "check", "--provider", PROVIDER, *where)) == 0:
        flow._line("✓", "provider", "EchoPanel's voxtral_realtime can drive voxtral.c")
    elif not _step(flow, "provider", ["provider", "fix", "--provider", PROVIDER, *where, *yes], None):
        return flow._result("stopped")
    if not _step(flow, "configure", ["configure", "--provider", PROVIDER, *where, *yes], None):
        return flow._result("stopped")
    if not _step(flow, "smoke", ["smoke", "--client", "voxtral-c"], None):
        return flow._result("stopped")
    flow.ui.set_up(foreground=False)
    return flow._result("set-up")


def _machine(flow: Flow, facts: Facts) -> bool:
    """doctor's verdicts on this machine for voxtral.c: a failure stops, a warning (BLAS) is shown and goes on."""
    for fn in (checks.speed, checks.memory):
        outcome = fn(facts, "local")
        if outcome.status is Status.FAIL:
            flow._line("✗", "voxtral.c", outcome.summary)
            if outcome.fix:
                flow._fix(outcome.fix.text, outcome.fix.commands)
            return False
        if outcome.status in (Status.OK, Status.WARN):
            flow._line("✓" if outcome.status is Status.OK else "!", "voxtral.c", outcome.summary)
    return True


def _built_and_runs(facts: Facts) -> str | None:
    """What `install voxtral-c` built, when it still runs (None: build it). doctor's probe of the binary EchoPanel
    runs answers when it is that one (replayed facts included); otherwise the binary is asked now."""
    vc = facts.voxtral_c
    build = vc.build
    if build is None:
        return None
    if vc.binary is not None and vc.binary.path == build.binary:
        runs = bool(vc.binary.runs)
    else:
        runs = bool(probe.check_binary(Path(build.binary), "install voxtral-c").runs)
    return f"{build.binary} ({build.backend}, commit {build.commit[:12]})" if runs else None


def _step(flow: Flow, step: str, args: list[str], done: str | None) -> bool:
    """Run `echopanel-setup ARGS` unless `done` says it is done already; a dry run only says what it would run."""
    if done is not None:
        flow._line("–", step, f"already done ({done})")
        return True
    if flow.opts.dry_run:
        flow._line("–", step, f"dry run: would run `echopanel-setup {' '.join(args)}`")
        return True
    flow._line("→", step, f"running `echopanel-setup {' '.join(args)}`")
    if not flow._run_ours(step, args):
        return False
    flow._line("✓", step, "done")
    return True


def _ours(*args: str) -> list[str]:
    from echopanel_setup.setup_flow import ours

    return ours(*args)
