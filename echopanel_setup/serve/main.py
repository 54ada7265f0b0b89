"""`echopanel-setup serve`: one run, from options to a `ServeResult` that `render.emit` prints.

Gather the inputs (`context`), plan, build the command (`prepare`), then either hand back the command in
the chosen format or launch and supervise it (`supervise`); `status`, `logs` and `stop` act on the server
launched earlier. Errors are raised (`SetupError` and its subclasses carry the exit code); a refusal or a
failed start is a result with exit code 1.
"""

from __future__ import annotations

from echopanel_setup import knowledge
from echopanel_setup.serve import context, formats, launcher, prepare, render, supervise
from echopanel_setup.serve.context import ServeOptions
from echopanel_setup.serve.result import Launch, Part, Planned, Refusal, ServeResult

__all__ = ["ServeOptions", "run"]


def run(opts: ServeOptions) -> ServeResult:
    action = context.action(opts)
    part: Part
    if action == "status":
        part = supervise.status(opts.vllm_api_key)
    elif action == "logs":
        part = supervise.logs(opts.lines, opts.follow, render.log_writer(opts.json_out))
    elif action == "stop":
        part = supervise.stop()
    else:
        part = _plan_or_launch(opts)
    return ServeResult(action, opts.json_out if action in context.ACTIONS else opts.as_json, part)


def _plan_or_launch(opts: ServeOptions) -> Planned | Refusal | Launch:
    if not opts.launching:
        return _plan(opts)
    with launcher.start_lock():  # one start at a time, from this check until this process ends
        aside = launcher.set_aside_unusable()  # an unreadable record names no server: said with the plan
        supervise.refuse_if_running()  # before planning: our own server's memory would read as a busy GPU
        return _plan(opts, [aside] if aside else [])


def _plan(opts: ServeOptions, notes: list[str] | None = None) -> Planned | Refusal | Launch:
    try:
        ctx = context.gather(opts)
        plan = context.plan(opts, ctx)
    except context.Refused as refused:
        return Refusal(refused.refusal, _alternatives(refused))
    built = prepare.build(opts, ctx, plan, render.reading_flags)
    built.notes.extend(notes or [])
    if opts.launching:
        return supervise.launch(opts, ctx, built)
    text = None
    if not opts.as_json:
        text = formats.render(opts.fmt, built.cmd, built.plan, built.settings, prepare.deployment(opts, ctx, built), {})
    return Planned(ctx, built, opts.fmt, text)


def _alternatives(refused: context.Refused) -> list[str]:
    """Other ways to run Voxtral where this machine cannot serve at all; a fix of its own (fewer streams, a newer
    vLLM) is in the refusal's details otherwise."""
    kinds = ("platform", "no-gpu", "compute-capability", "memory", "busy")
    return knowledge.load().alternatives(refused.system) if refused.refusal.kind in kinds else []
