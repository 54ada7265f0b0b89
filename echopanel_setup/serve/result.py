"""What one `serve` run produced, for `render`: a plan and its command, a refusal, a launch, or a lifecycle
action's answer (status, logs, stop). Exit 1 outcomes live here; errors (exit 2, 3, 4) are raised instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup.errors import EXIT_FAILED, EXIT_OK
from echopanel_setup.serve import launcher, planner
from echopanel_setup.serve.context import Context
from echopanel_setup.serve.prepare import Built


@dataclass
class Planned:
    """The plan and the command (or file) that runs it, in `fmt`; `text` is None for JSON, which is the document."""

    ctx: Context
    built: Built
    fmt: str
    text: str | None


@dataclass
class Refusal:
    """No command can work: why, and the other ways to run Voxtral where this machine cannot serve at all."""

    refusal: planner.Refusal
    alternatives: list[str]


@dataclass
class Launch:
    """`--exec`/`--detach`: how the last start went, and vLLM's exit code after a foreground run."""

    detached: bool
    built: Built
    outcome: launcher.Outcome
    vllm_exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.ok and self.vllm_exit_code in (None, 0)


@dataclass
class Stopped:
    record: launcher.Record | None  # None: nothing was running
    seconds: float
    note: str | None = None  # an unusable record was set aside
    forced: bool = False  # Ctrl-C cut vLLM's own shutdown short (SIGKILL)


@dataclass
class Logs:
    log: Path
    lines: list[str] = field(default_factory=list)
    followed: bool = False  # the lines went out live (`--follow`), nothing is left to print


Part = Planned | Refusal | Launch | launcher.Status | Logs | Stopped


@dataclass
class ServeResult:
    """One run: its action (plan, exec, detach, status, logs, stop) and what that action produced."""

    action: str
    as_json: bool
    part: Part  # what the action produced

    @property
    def exit_code(self) -> int:
        o = self.part
        if isinstance(o, Refusal):
            return EXIT_FAILED
        if isinstance(o, Launch):
            return EXIT_OK if o.ok else EXIT_FAILED
        if isinstance(o, launcher.Status):
            return EXIT_OK if o.running and o.health == 200 else EXIT_FAILED
        return EXIT_OK
