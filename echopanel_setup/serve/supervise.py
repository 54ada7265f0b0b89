"""The life of the server `serve` starts: launch it (`--exec` in the foreground, `--detach` in the background),
watch it become ready, retry once after a memory failure, and answer `status`, `logs` and `stop` later.

Long-running commands, decided once (issue 14) for `serve` now and `tunnel` and `watch` later:
the lifecycle is a set of subcommands, `X start|status|logs|stop` (for `serve`, the bare command with
`--exec`/`--detach` is the start, since it shares all the planning options; `serve --status`, `--logs` and
`--stop` stay as aliases of `serve status`, `serve logs` and `serve stop`). What a started process needs
later (its pid and start time, argv with secrets redacted, URL, log path) is recorded in our state dir,
never in EchoPanel's files, so `status`/`logs`/`stop` work from any shell and survive our own exit. A live
output under `--json` (`serve logs --follow`, a foreground `serve --exec`, later `watch`) writes NDJSON: one
envelope (`output.document`) per line and event, through `output.write_line`; every other run prints exactly
one JSON document, and an error after NDJSON lines is one more line (`cli.main`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from echopanel_setup import knowledge
from echopanel_setup.errors import ExternalError, SetupError
from echopanel_setup.serve import launcher, planner, render
from echopanel_setup.serve.context import Context, ServeOptions
from echopanel_setup.serve.prepare import Built, good_key
from echopanel_setup.serve.result import Launch, Logs, Stopped


def refuse_if_running() -> None:
    """Before planning a launch: our own server's memory would read as a busy GPU."""
    if (other := launcher.running()) is not None:
        raise SetupError(
            f"the server echopanel-setup started is still running (pid {other.pid}, {other.url}): see "
            "`echopanel-setup serve status`, or stop it with `echopanel-setup serve stop` first"
        )


def launch(opts: ServeOptions, ctx: Context, built: Built) -> Launch:
    """Start vLLM here and supervise it; a foreground run returns when vLLM exits."""
    launcher.check_port(built.settings.port)
    if not ctx.model_present:
        raise SetupError(f"no model in {ctx.model_dir}: run `echopanel-setup install voxtral` first")
    if ctx.version is None:
        raise SetupError(f"{ctx.no_version}: run `echopanel-setup install vllm` (or pass --python)")
    render.explain_plan(ctx, built, "exec")
    live: list[tuple[subprocess.Popen[bytes], launcher.Record]] = []  # the vLLM to stop if Ctrl-C comes
    try:
        return _supervise(opts, ctx, built, live)
    except BaseException:  # Ctrl-C, or anything unexpected: never leave a half-started vLLM behind
        if live:
            proc, record = live[-1]
            halt = launcher.stop_group(record.pid, proc, render.stop_note, render.STOPPING)
            launcher.clear_record(record.pid)
            render.stopped(halt)
        raise


def _supervise(
    opts: ServeOptions, ctx: Context, built: Built, live: list[tuple[subprocess.Popen[bytes], launcher.Record]]
) -> Launch:
    """Start, watch, retry once on a memory error, then (foreground) relay the log until vLLM exits."""
    timeout = opts.timeout or knowledge.load().serve.launch.health_timeout_s
    name = built.settings.served_model_name
    request = ctx.request
    for attempt in (1, 2):
        render.starting(built)
        proc, record = launcher.start(built.cmd, opts.api_key, built.url, name, opts.detach, built.plan.streams)
        live.append((proc, record))
        echo = render.vllm_line if opts.verbose else None
        outcome = launcher.wait_ready(proc, record, name, opts.api_key, timeout, render.progress, echo)
        if outcome.ok:
            break
        halt = launcher.stop_group(record.pid, proc, render.stop_note)
        launcher.clear_record(record.pid)
        live.clear()
        if halt.forced:  # Ctrl-C while the failed start was being stopped: the user wants out, not a retry
            raise KeyboardInterrupt
        if outcome.timed_out:
            raise ExternalError(
                f"vLLM did not become ready: {outcome.reason}; its log: {record.log} (`echopanel-setup explain` it)"
            )
        render.start_failed(outcome)
        retry = _retry(request, built, outcome) if attempt == 1 else None
        if retry is None:
            return Launch(opts.detach, built, outcome)
        request, built = retry
        render.retrying(built.plan)
    launcher.record_success(good_key(built.plan, ctx.version), built.cmd, outcome.figures, built.plan.summary())
    result = Launch(opts.detach, built, outcome)
    if opts.detach:
        live.clear()  # ready in the background: from here on, Ctrl-C leaves it running
        render.ready(result, opts.as_json)
        return result
    render.ready(result, opts.as_json)
    result.vllm_exit_code = launcher.follow(
        proc, record, lambda line: render.vllm_line(line) if opts.verbose or launcher.notable(line) else None
    )
    live.clear()
    launcher.clear_record(record.pid)
    return result


def _retry(
    request: planner.PlanRequest, built: Built, outcome: launcher.Outcome
) -> tuple[planner.PlanRequest, Built] | None:
    """For a memory failure, the adjusted request and command; None when no retry can help."""
    failure = outcome.failure
    if failure is None:
        return None
    adjusted = planner.adjust(request, failure.id, failure.groups, built.plan)
    if adjusted is None:
        return None
    new_plan = planner.plan(adjusted)
    if isinstance(new_plan, planner.Refusal):
        render.no_smaller_plan(new_plan.reason)
        return None
    return adjusted, built.rebuilt(new_plan)


def logs(lines: int, follow: bool, write: Callable[[str, str], None]) -> Logs:
    """The end of the log; with `follow`, each line goes to `write(log, line)` as vLLM writes it, until Ctrl-C."""
    log, tail, offset = launcher.tail(lines)
    if not follow:
        return Logs(log, tail)
    try:
        for line in tail:
            write(str(log), line)
        launcher.follow_log(log, lambda line: write(str(log), line), offset)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends
    return Logs(log, followed=True)


def status(api_key: str | None) -> launcher.Status:
    return launcher.status(api_key)


def stop() -> Stopped:
    record, halt, note = launcher.stop(render.stop_note)
    return Stopped(record, halt.seconds, note, halt.forced)
