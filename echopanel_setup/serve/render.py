"""All of `serve`'s output: the command (or file) alone on stdout, so `serve > unit.service` and
`eval "$(serve)"` work; the plan, progress, notes and warnings on stderr; under `--json` one JSON document on
stdout and nothing else there — or, for a live `logs --follow --json`, one JSON object per line (NDJSON).

`emit` renders a finished `ServeResult`; the other public functions are the live events of a launch (phases,
failures, the retry, "ready"), which cannot wait for the end of a foreground server.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from echopanel_setup import env as env_vars
from echopanel_setup import envconfig, output, ui
from echopanel_setup.serve import launcher, planner
from echopanel_setup.serve.context import Context
from echopanel_setup.serve.prepare import Built
from echopanel_setup.serve.result import Launch, Logs, Planned, Refusal, ServeResult, Stopped

if TYPE_CHECKING:
    from rich.console import Console

SCHEMA_VERSION = 1


def _err() -> Console:
    return ui.console(sys.stderr)


# --- finished results -------------------------------------------------------------------------------------------


def emit(result: ServeResult) -> None:
    """Render what `main.run` returned (human text, or one JSON document with `--json`)."""
    renderers: dict[type, Callable[[Any, bool, int], None]] = {
        Planned: _planned,
        Refusal: _refused,
        Launch: _launched,
        launcher.Status: _status,
        Logs: _logs,
        Stopped: _stopped,
    }
    renderers[type(result.part)](result.part, result.as_json, result.exit_code)


def plan_document(p: Planned, exit_code: int) -> dict[str, Any]:
    """The plan and its command: `--json` and `--format json`."""
    ctx, built = p.ctx, p.built
    cmd, s = built.cmd, built.settings
    return output.document(
        "serve",
        SCHEMA_VERSION,
        exit_code,
        vllm_version=ctx.version,
        flags_source=cmd.flags_source,
        flags_fallback_reason=built.flags_note,
        argv=[*cmd.executable, "serve", cmd.model, *cmd.public_args()],
        env=cmd.env,
        api_key_env=env_vars.VLLM_API_KEY if cmd.keyed else None,
        shell=cmd.shell(),
        skipped_flags=cmd.skipped,
        model_dir=str(ctx.model_dir),
        served_dir=str(built.served_dir),
        delay_ms=built.delay_ms,
        url=built.url,
        served_model_name=s.served_model_name,
        plan=built.plan.summary(),
        model_arch_source=ctx.request.arch.source,
        notes=built.notes,
        replayed_facts=ctx.replayed,
        hypothetical_gpu=ctx.hypothetical,
    )


def _planned(p: Planned, as_json: bool, exit_code: int) -> None:
    if as_json:
        output.write_json(plan_document(p, exit_code))
        return
    print(p.text)
    explain_plan(p.ctx, p.built, p.fmt)


def _refused(r: Refusal, as_json: bool, exit_code: int) -> None:
    refusal = r.refusal
    if as_json:
        output.write_json(
            output.document(
                "serve",
                SCHEMA_VERSION,
                exit_code,
                refused=True,
                kind=refusal.kind,
                reason=refusal.reason,
                details=refusal.details,
                alternatives=r.alternatives,
            )
        )
        return
    con = _err()
    ui.outcome(con, "fail", f"no command: {refusal.reason}", details=refusal.details)
    if r.alternatives:
        con.print(
            "Run Voxtral another way (each with the lines for EchoPanel's config, "
            "`echopanel-setup configure` writes them):"
        )
    for line in r.alternatives:
        con.print(f"  • {ui.esc(line)}")


def explain_plan(ctx: Context, built: Built, fmt: str) -> None:
    """The plan in numbers, on stderr: GPUs, sessions, the memory breakdown, warnings, confidence, flags."""
    con = _err()
    p, b = built.plan, built.plan.breakdown
    gpus = " + ".join(
        f"{g.name} ({g.total_mib} MiB"
        + (f", {g.free_mib} free" if g.free_mib is not None and not ctx.hypothetical else "")
        + ")"
        for g in p.gpus
    )
    source = " (replayed facts)" if ctx.replayed else " (planned for another machine)" if ctx.hypothetical else ""
    con.print(
        f"[bold]Plan[/] for {ui.esc(gpus)}{source} · "
        f"vLLM {ctx.version or ('not installed' if ctx.facts.pyenv.ok else 'unknown')} · "
        f"confidence [bold]{p.confidence}[/]"
    )
    streams = f"{p.streams} stream{'s' if p.streams > 1 else ''} planned"
    if p.max_num_seqs > p.streams:  # a GPU of its own: vLLM may run every stream its share holds
        streams += f", up to {p.max_num_seqs} allowed (--max-num-seqs)"
    else:
        streams += f", room for {p.streams_fit}"
    con.print(
        f"  sessions up to {p.session_minutes:.0f} min (--max-model-len {p.max_model_len}) · {streams} · "
        f"longest session that fits: {p.longest_session_minutes:.0f} min"
    )
    per_gpu = " per GPU" if p.tensor_parallel_size > 1 else ""
    parts = " + ".join(f"{name} {mib}" for name, mib in b.parts())
    con.print(
        f"  memory{per_gpu} (MiB): {ui.esc(parts)} = {b.budget} of {b.usable} usable "
        f"(--gpu-memory-utilization {p.gpu_memory_utilization:.2f})"
    )
    con.print(
        f"  [dim]headroom = spare KV cache + {b.safety} MiB safety; {b.margin} MiB stay outside vLLM's budget "
        "for its CUDA context[/]"
    )
    for w in p.warnings:
        con.print(f"[yellow]! warn[/] {ui.esc(w)}")
    for n in [*p.notes, *built.notes]:
        con.print(f"  {ui.esc(n)}")
    con.print(f"  [dim]confidence {p.confidence}: {ui.esc('; '.join(p.confidence_reasons))}[/]")
    con.print(
        "  [dim]flags: "
        f"{ui.esc(built.cmd.flags_source)}{ui.esc(f' ({built.flags_note})') if built.flags_note else ''}[/]"
    )
    for s in built.cmd.skipped:
        con.print(f"[yellow]! warn[/] not emitted: {ui.esc(s)}")
    if fmt == "shell" and not ctx.hypothetical and not ctx.replayed:
        con.print("  Run it with `echopanel-setup serve --exec` (or --detach), which also checks the server answers.")


def _launched(launch: Launch, as_json: bool, exit_code: int) -> None:
    """The end of a launch: the document of a failed start or of `--detach`; after a foreground run, its last
    NDJSON event (`exited`; `ready` went out live, see `ready`)."""
    outcome = launch.outcome
    foreground_ran = outcome.ok and not launch.detached
    if as_json and foreground_ran:
        output.write_line(
            output.document("serve", SCHEMA_VERSION, exit_code, event="exited", vllm_exit_code=launch.vllm_exit_code)
        )
    elif as_json:
        output.write_json(_launch_document(launch, exit_code))
    elif foreground_ran:
        _err().print(f"vLLM exited with code {launch.vllm_exit_code}.")


def _launch_document(launch: Launch, exit_code: int, **event: str) -> dict[str, Any]:
    record, outcome, built = launch.outcome.record, launch.outcome, launch.built
    failure = outcome.failure
    return output.document(
        "serve",
        SCHEMA_VERSION,
        exit_code,
        **event,
        action="detach" if launch.detached else "exec",
        ok=outcome.ok,
        pid=record.pid,
        url=record.url,
        served_model_name=record.served_model_name,
        log=record.log,
        argv=record.argv,
        env=built.cmd.env,
        vllm_figures=outcome.figures,
        plan=built.plan.summary(),
        failure=None
        if outcome.ok
        else {
            "reason": outcome.reason,
            "id": failure.id if failure else None,
            "title": failure.title if failure else None,
            "line": failure.line if failure else None,
            "line_no": failure.line_no if failure else None,
            "cause": failure.cause if failure else None,
            "fix": failure.fix if failure else None,
            "commands": failure.commands if failure else [],
        },
    )


def _status(st: launcher.Status, as_json: bool, exit_code: int) -> None:
    r = st.record
    if as_json:
        output.write_json(
            output.document(
                "serve status",
                SCHEMA_VERSION,
                exit_code,
                running=st.running,
                ready=st.health == 200,
                pid=r.pid if r else None,
                url=r.url if r else None,
                served_model_name=r.served_model_name if r else None,
                vllm_version=r.vllm_version if r else None,
                detached=r.detached if r else None,
                log=r.log if r else str(launcher.log_path()),
                health=st.health,
                models=st.models,
                phase=st.phase,
                uptime_s=round(st.uptime_s, 1) if st.uptime_s is not None else None,
                streams=r.planned_streams if r else None,
                max_num_seqs=r.flag("--max-num-seqs") if r else None,
                warning=st.error or st.note,  # a server that answers but not fully; a record set aside
            )
        )
        return
    if st.note:
        _err().print(f"[yellow]! warn[/] {ui.esc(st.note)}")
    if not st.running or r is None:
        print("not running: no server started by echopanel-setup is running")
        return
    ready = (
        "ready"
        if st.health == 200
        else f"{launcher.phase_title(st.phase or 'starting')} (/health {st.health or 'no answer'})"
    )
    print(
        f"running, {ready}: pid {r.pid}, {r.url}, up {launcher.duration(st.uptime_s or 0)}, "
        f"vLLM {r.vllm_version or '?'}, {'background' if r.detached else 'foreground'}"
    )
    if st.models is not None:
        print(f"models: {ui.clean(', '.join(st.models))}")  # the server's own ids
    allowed = r.flag("--max-num-seqs")
    if r.planned_streams is not None:
        more = f", vLLM may run up to {allowed} (--max-num-seqs)" if allowed and allowed > r.planned_streams else ""
        print(f"streams: {r.planned_streams} planned{more}")
    print(f"log: {r.log}")
    if st.error:
        _err().print(f"[yellow]! warn[/] {ui.esc(st.error)}")


def log_writer(as_json: bool) -> Callable[[str, str], None]:
    """Where each line of a followed log goes as it comes: the line itself, or one NDJSON event per line."""
    if not as_json:
        return lambda log, line: print(line, flush=True)
    return lambda log, line: output.write_line(
        output.document("serve logs", SCHEMA_VERSION, 0, event="log", log=log, line=line)
    )


def _logs(logs: Logs, as_json: bool, exit_code: int) -> None:
    if logs.followed:
        return
    if as_json:
        output.write_json(output.document("serve logs", SCHEMA_VERSION, exit_code, log=str(logs.log), lines=logs.lines))
        return
    for line in logs.lines:
        print(line)


def _stopped(s: Stopped, as_json: bool, exit_code: int) -> None:
    record = s.record
    if as_json:
        output.write_json(
            output.document(
                "serve stop",
                SCHEMA_VERSION,
                exit_code,
                stopped=record is not None,
                pid=record.pid if record else None,
                seconds=round(s.seconds, 1),
                warning=s.note,
                forced=s.forced,
            )
        )
        return
    if s.note:
        _err().print(f"[yellow]! warn[/] {ui.esc(s.note)}")
    if record is None:
        print("nothing to stop: no server started by echopanel-setup is running")
    else:
        how = " (killed: Ctrl-C cut its shutdown short)" if s.forced else ""
        print(f"stopped vLLM (pid {record.pid}, {record.url}) in {launcher.duration(s.seconds)}{how}")


# --- live events of a launch ------------------------------------------------------------------------------------


def reading_flags(version: str | None, timeout: float) -> None:
    _err().print(
        f"Reading the flags vLLM {version} accepts (`vllm serve --help=all`, once per version, up to {timeout:.0f} s)…"
    )


def starting(built: Built) -> None:
    cmd = built.cmd
    _err().print(
        f"Starting: [cyan]{ui.esc(shlex.join([*cmd.executable, 'serve', cmd.model, *cmd.redacted_args()]))}[/]"
    )


def progress(message: str) -> None:
    """A start-up phase or a wait note."""
    _err().print(f"  {ui.esc(message)}")


def vllm_line(line: str) -> None:
    """A line of vLLM's own log, relayed."""
    _err().print(f"  [dim]{ui.esc(line)}[/]")


def start_failed(outcome: launcher.Outcome) -> None:
    con = _err()
    m = outcome.failure
    if m is None:
        ui.outcome(con, "fail", outcome.reason)
        con.print(f"  Log:   {ui.esc(outcome.record.log)} (`echopanel-setup serve logs`)")
        return
    ui.explained(con, m, log=outcome.record.log)


def no_smaller_plan(reason: str) -> None:
    _err().print(f"  no smaller plan fits: {ui.esc(reason)}")


def retrying(plan: planner.Plan) -> None:
    graphs = "--enforce-eager" if plan.cudagraph_mode == "eager" else f"{plan.cudagraph_mode} graphs"
    line = (
        f"--max-model-len {plan.max_model_len} --gpu-memory-utilization {plan.gpu_memory_utilization:.2f} "
        f"--max-num-batched-tokens {plan.max_num_batched_tokens}, {graphs}"
    )
    _err().print(
        f"Retrying once with the adjusted plan (the failed attempt's log is kept as {launcher.log_path().name}.1): "
        f"{ui.esc(line)}"
    )


def ready(launch: Launch, as_json: bool) -> None:
    """vLLM answers: the human summary, and for a foreground run under --json the NDJSON event `ready` (a
    foreground run is live: `exited` follows when vLLM ends; `--detach` prints one document at its end)."""
    record, f, built = launch.outcome.record, launch.outcome.figures, launch.built
    if as_json and not launch.detached:
        output.write_line(_launch_document(launch, 0, event="ready"))
    b = built.plan.breakdown
    planned_kv_gib = (b.kv + b.headroom) / 1024
    measured = f"vLLM: KV cache {f['kv_memory.gib']} GiB" if "kv_memory.gib" in f else "vLLM printed no KV figures"
    if "kv_tokens.tokens" in f:
        measured += f", {f['kv_tokens.tokens']} tokens"
    if "concurrency.times" in f:
        measured += f", {f['concurrency.times']}x concurrency at {f['concurrency.tokens']} tokens"
    con = _err()
    ui.outcome(
        con,
        "ok",
        f"vLLM is ready at {record.url} (pid {record.pid}): /health 200, /v1/models lists "
        f"{record.served_model_name}, /v1/realtime sent session.created",
    )
    con.print(f"  {ui.esc(measured)} · planned: {planned_kv_gib:.2f} GiB, room for {built.plan.streams_fit} streams")
    held = _held_sessions(f)
    if held is not None and held < built.plan.streams:  # vLLM's own count is the truth the plan estimated
        ui.outcome(
            con,
            "warn",
            f"vLLM's KV cache holds {held:g} sessions of {f['concurrency.tokens']} tokens, fewer than the "
            f"{built.plan.streams} streams planned: the longest sessions will be preempted (a gap in the transcript). "
            "Plan shorter sessions (`echopanel-setup serve --session-minutes N`) or fewer streams (--streams N)",
        )
    con.print(
        f"  EchoPanel: {envconfig.URL}={record.url} (`echopanel-setup configure` writes it); "
        "the flags that worked are recorded."
    )
    if launch.detached:
        con.print(
            "  Running in the background: `echopanel-setup serve status`, `serve logs`, `serve stop`. "
            f"Log: {ui.esc(record.log)}"
        )
    else:
        con.print("Serving in the foreground; Ctrl-C stops vLLM.")


def _held_sessions(figures: dict[str, str]) -> float | None:
    """vLLM's "Maximum concurrency for N tokens per request: X" as a number (None when it printed none)."""
    try:
        return float(figures["concurrency.times"])
    except (KeyError, ValueError):
        return None


STOPPING = "Stopping vLLM… Ctrl-C again stops it at once."  # a foreground server's stop, after the first Ctrl-C


def stop_note(text: str) -> None:
    """What a stop is doing while vLLM shuts down (it can take tens of seconds), on stderr."""
    _err().print(ui.esc(text))


def stopped(halt: launcher.Halt) -> None:
    how = " (killed: Ctrl-C cut its shutdown short)" if halt.forced else ""
    _err().print(f"Stopped in {launcher.duration(halt.seconds)}{how}.")
