"""`echopanel-setup serve`: gather the inputs (doctor's facts, the model, the EchoPanel config, the target
vLLM's flags), plan, build, render, and optionally launch and supervise.

Output discipline: the command (or file) alone on stdout, so `serve > unit.service` and `eval "$(serve)"`
work; the plan, notes and warnings on stderr; with --json one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from echopanel_setup import envconfig, knowledge, paths
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, ExternalError, SetupError, UsageError
from echopanel_setup.facts.model import Facts
from echopanel_setup.serve import builder, flags, formats, launcher, planner, variant

MIB = 1024 * 1024


@dataclass
class ServeOptions:
    gpu_memory: float | None = None
    gpus: int | None = None
    gpu: str | None = None
    session_minutes: float | None = None  # None: 60, shortened if it does not fit
    streams: int = 1
    delay_ms: int | None = None
    port: int | None = None
    host: str = "127.0.0.1"
    api_key: str | None = None
    served_model_name: str | None = None
    fmt: str = "shell"
    exec_: bool = False
    detach: bool = False
    status: bool = False
    logs: bool = False
    stop: bool = False
    lines: int = 100
    follow: bool = False
    python: str | None = None
    model_dir: str | None = None
    facts: str | None = None
    config: str | None = None
    json_out: bool = False
    timeout: float | None = None
    image: str | None = None
    verbose: bool = False


def _err():  # type: ignore[no-untyped-def]
    from echopanel_setup.report import console

    return console(sys.stderr)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def run(opts: ServeOptions) -> int:
    actions = [name for name, on in (("--status", opts.status), ("--logs", opts.logs), ("--stop", opts.stop)) if on]
    if len(actions) > 1 or (actions and (opts.exec_ or opts.detach)):
        raise UsageError(
            f"{' and '.join(actions + (['--exec/--detach'] if opts.exec_ or opts.detach else []))} do not go together: pick one"
        )
    if opts.status:
        return _status(opts.json_out)
    if opts.logs:
        return _logs(opts.lines, opts.follow)
    if opts.stop:
        return _stop(opts.json_out)
    _validate(opts)
    if opts.exec_ or opts.detach:
        _refuse_if_running()  # before planning: our own server's memory would read as a busy GPU
    try:
        ctx = _gather(opts)
        if ctx.version and not ctx.hypothetical:
            _version_refusal(ctx.version)
        result = planner.plan(ctx.request)
        if isinstance(result, planner.Refusal):
            if result.kind == "tensor-parallel":
                raise UsageError(f"--gpus {opts.gpus}: {result.reason.split(': ', 1)[-1]}")
            if result.kind == "no-gpu" and ctx.facts.gpu.error:
                result.details.append(f"GPU probe: {ctx.facts.gpu.error}")
            if result.kind == "busy":
                result.details[-1:-1] = _holders(ctx.facts, ctx.request.gpus)
            raise Refused(result, ctx.facts.platform.system or "Linux")
    except Refused as refused:
        _print_refusal(refused, opts.json_out or opts.fmt == "json")
        return EXIT_FAILED
    built = _build(opts, ctx, result)
    if opts.exec_ or opts.detach:
        return _launch(opts, ctx, built)
    return _print(opts, ctx, built)


def _validate(opts: ServeOptions) -> None:
    if opts.fmt not in formats.FORMATS:
        raise UsageError(f"--format {opts.fmt}: use one of {', '.join(formats.FORMATS)}")
    if opts.json_out and opts.fmt not in ("shell", "json"):
        raise UsageError(f"--json and --format {opts.fmt} do not go together (--json is --format json)")
    launching = opts.exec_ or opts.detach
    if launching and opts.fmt not in ("shell", "json"):
        raise UsageError(
            f"--format {opts.fmt} describes a server to run elsewhere; --exec/--detach run the shell command here"
        )
    if launching and (opts.facts or opts.gpu_memory or (opts.gpu and not _is_index(opts.gpu))):
        raise UsageError(
            "--exec/--detach run on this machine: drop --facts, --gpu NAME and --gpu-memory (they plan for another)"
        )
    if opts.streams < 1:
        raise UsageError("--streams must be 1 or more")
    if opts.session_minutes is not None and not (math.isfinite(opts.session_minutes) and opts.session_minutes > 0):
        raise UsageError(f"--session-minutes {opts.session_minutes:g}: give a number of minutes more than 0, e.g. 60")
    if opts.gpu_memory is not None and not (math.isfinite(opts.gpu_memory) and opts.gpu_memory > 0):
        raise UsageError(f"--gpu-memory {opts.gpu_memory:g}: give the GPU's memory in GiB, more than 0, e.g. 24")
    if opts.timeout is not None and not math.isfinite(opts.timeout):
        raise UsageError(f"--timeout {opts.timeout:g}: give the seconds to wait for /health, e.g. 900")
    for flag, value in (("--served-model-name", opts.served_model_name), ("--api-key", opts.api_key)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag} is empty: give a value, or leave the option out")
    if opts.port is not None and not 1 <= opts.port <= 65535:
        raise UsageError(f"--port {opts.port}: use 1-65535")
    if opts.delay_ms is not None:
        variant.check_delay(opts.delay_ms)


# --- gathering the inputs -------------------------------------------------------------------------------------------


@dataclass
class Context:
    facts: Facts
    replayed: bool
    hypothetical: bool
    visible_gpus: int
    version: str | None
    model_dir: Path
    model_present: bool
    local_model: bool  # the model dir is on this machine (not a replayed snapshot)
    request: planner.PlanRequest


def _gather(opts: ServeOptions) -> Context:
    facts, replayed = _facts(opts)
    hypothetical = bool(opts.gpu_memory or (opts.gpu and not _is_index(opts.gpu)))
    if not hypothetical:
        _platform_refusal(facts)
    gpus, visible = _gpus(opts, facts, hypothetical)
    version = facts.pyenv.packages.get("vllm") if facts.pyenv.ok else None
    model_dir = (
        Path(opts.model_dir).expanduser() if opts.model_dir else Path(facts.model.path or paths.default_model_dir())
    )
    files = knowledge.load()["model"]["files"]
    present = all(facts.model.files.get(n) is not None for n in files)
    weights = facts.model.files.get(knowledge.load()["model"]["weights_file"])
    arch = planner.read_arch(model_dir / "params.json") if present and not replayed else planner.builtin_arch()
    request = planner.PlanRequest(
        gpus=gpus,
        arch=arch,
        # A half-downloaded file must not make the plan optimistic: never below the known weights size.
        weights_mib=max(math.ceil((weights or 0) / MIB), int(knowledge.load()["model"]["weights_mib"])),
        session_minutes=opts.session_minutes or 60.0,
        streams=opts.streams,
        vllm_version=version,
        tensor_parallel=opts.gpus,
        session_fixed=opts.session_minutes is not None,
        hypothetical=hypothetical,
    )
    return Context(facts, replayed, hypothetical, visible, version, model_dir, present, not replayed, request)


def _facts(opts: ServeOptions) -> tuple[Facts, bool]:
    if opts.facts:
        from echopanel_setup.doctor import load_facts

        return load_facts(opts.facts), True
    from echopanel_setup.facts.collect import Options, collect
    from echopanel_setup.facts.pyenv import BadPythonError

    try:
        return collect(
            Options(python=opts.python, port=opts.port, offline=True, model_dir=opts.model_dir, config=opts.config)
        ), False
    except BadPythonError as exc:
        raise UsageError(str(exc)) from None


class Refused(Exception):
    """No command can work here; carries the refusal to print."""

    def __init__(self, refusal: planner.Refusal, system: str = "Linux") -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
        self.system = system


def _platform_refusal(facts: Facts) -> None:
    system = facts.platform.system
    if system == "Darwin":
        raise Refused(
            planner.Refusal(
                "platform",
                "macOS: vLLM has no Metal (Apple GPU) path for Voxtral Realtime, and its experimental CPU build is far "
                "slower than real time",
                ["Plan for a Linux GPU server instead with --gpu NAME or --gpu-memory GIB (e.g. --format docker)."],
            ),
            system,
        )
    if system == "Windows":
        raise Refused(
            planner.Refusal(
                "platform",
                "native Windows: vLLM does not run here; run echopanel-setup inside WSL2 (the NVIDIA driver exposes the GPU to it)",
            ),
            system,
        )


def _gpus(opts: ServeOptions, facts: Facts, hypothetical: bool) -> tuple[tuple[planner.Gpu, ...], int]:
    """(the GPUs to plan for, how many vLLM would see here)."""
    count = opts.gpus or 1
    if hypothetical:
        base = _known_gpu(opts.gpu) if opts.gpu else None
        if opts.gpu_memory:
            total = round(opts.gpu_memory * 1024)
            name = f"{base.name} with {opts.gpu_memory:g} GiB" if base else f"a {opts.gpu_memory:g} GiB GPU"
        else:
            assert base is not None  # hypothetical means --gpu NAME or --gpu-memory
            total, name = base.total_mib, base.name
        # A GPU known only by its memory is assumed to be a current one (compute capability 8.0+).
        cc = base.compute_capability if base else knowledge.load()["gpu"]["full_compute_capability"]
        return tuple(planner.Gpu(name, total, total, cc) for _ in range(count)), 0
    from echopanel_setup.checks.common import visible_devices

    devices = visible_devices(facts)
    gpus = [
        planner.Gpu(d.name, d.memory_total_mib, d.memory_free_mib, d.compute_capability, d.index)
        for d in devices
        if d.memory_total_mib
    ]
    if devices and not gpus:
        raise Refused(
            planner.Refusal(
                "no-gpu",
                f"{devices[0].name} does not report its memory (unified memory?), so nothing can be planned from it",
                ["Plan with the memory vLLM may use: --gpu-memory GIB (and run the printed command yourself)."],
            )
        )
    if opts.gpu is not None:
        chosen = [g for g in gpus if g.index == int(opts.gpu)]
        if not chosen:
            raise UsageError(
                f"--gpu {opts.gpu}: no visible GPU has that index ({', '.join(str(g.index) for g in gpus) or 'none visible'})"
            )
        gpus = chosen
    return tuple(gpus), len(devices)


def _holders(facts: Facts, gpus: tuple[planner.Gpu, ...]) -> list[str]:
    """One line per GPU naming the processes that hold its memory, as nvidia-smi reported them."""
    indices = {g.index for g in gpus}
    lines = []
    for dev in facts.gpu.devices:
        if dev.index in indices and dev.processes:
            held = "; ".join(
                f"pid {p.pid} {p.name or '?'}: {p.used_mib if p.used_mib is not None else '?'} MiB"
                for p in dev.processes
            )
            lines.append(f"on GPU {dev.index}: {held}")
    return lines


def _is_index(gpu: str) -> bool:
    """`--gpu 1` picks a local GPU; `--gpu 4090` names a model."""
    return gpu.isdigit() and int(gpu) < 64


def _norm(text: str) -> str:
    text = re.sub(r"\b(nvidia|geforce|tesla)\b", "", text.lower())
    return re.sub(r"[^a-z0-9]", "", text)


def _known_gpu(name: str) -> planner.Gpu:
    table = knowledge.load()["serve"]["gpu"]
    wanted = _norm(name)
    exact = [g for g in table if wanted in {_norm(g["name"]), *(_norm(a) for a in g["aliases"])}]
    found = exact or [g for g in table if wanted and any(wanted in _norm(n) for n in (g["name"], *g["aliases"]))]
    if len(found) != 1:
        names = ", ".join(g["aliases"][0] for g in (found or table))
        what = "matches several GPUs" if found else "is not a GPU I know"
        raise UsageError(f"--gpu {name} {what}: {names}; or give the memory with --gpu-memory GIB")
    g = found[0]
    return planner.Gpu(g["name"], int(g["total_mib"]), int(g["total_mib"]), g["compute_capability"])


# --- planning, building, rendering -----------------------------------------------------------------------------------


@dataclass
class Built:
    plan: planner.Plan
    cmd: builder.ServeCommand
    settings: builder.ServeSettings
    served_dir: Path
    delay_ms: int | None
    flagset: flags.FlagSet
    flags_note: str | None  # why the built-in flag list was used, if it was
    notes: list[str]


def _print(opts: ServeOptions, ctx: Context, built: Built) -> int:
    doc = _document(ctx, built)
    dep = _deployment(opts, ctx, built)
    out = formats.render("json" if opts.json_out else opts.fmt, built.cmd, built.plan, built.settings, dep, doc)
    print(out)
    if not (opts.json_out or opts.fmt == "json"):
        _explain_plan(ctx, built, opts.fmt)
    return EXIT_OK


def _version_refusal(version: str) -> None:
    from echopanel_setup.checks.common import version as parse

    v = knowledge.load()["vllm"]
    if parse(version) and parse(version) < parse(v["min_version"]):  # type: ignore[operator]
        raise Refused(
            planner.Refusal(
                "vllm-version",
                f"vLLM {version} is too old for Voxtral Realtime (needs {v['min_version']}, {v['recommended_version']}+ recommended)",
                ["Install a current vLLM in its own venv: echopanel-setup install vllm"],
            )
        )


def _build(opts: ServeOptions, ctx: Context, plan: planner.Plan) -> Built:
    notes: list[str] = []
    served_dir, delay = _served_dir(opts, ctx, notes)
    executable = builder.resolve_executable(ctx.facts.pyenv) if ctx.version and not ctx.replayed else None

    def reading(timeout: float) -> None:
        _err().print(
            f"Reading the flags vLLM {ctx.version} accepts (`vllm serve --help=all`, once per version, up to {timeout:.0f} s)…"
        )

    flagset, why_builtin = flags.learn(executable, ctx.version, reading)
    port = opts.port or _config_port(ctx.facts) or int(knowledge.load()["server"]["default_port"])
    settings = builder.ServeSettings(
        model=str(served_dir) if ctx.model_present else knowledge.load()["model"]["repo"],
        model_is_local=ctx.model_present,
        served_model_name=opts.served_model_name or knowledge.load()["model"]["repo"],
        host=opts.host,
        port=port,
        api_key=opts.api_key,
        revision=ctx.facts.model.commit,
        visible_gpus=ctx.visible_gpus,
    )
    cmd = builder.build(plan, settings, flagset, executable or _replayed_executable(ctx))
    plan = _known_good(ctx, plan, cmd)
    if not ctx.model_present:
        notes.append(
            f"The model is not in {ctx.model_dir}: this command makes vLLM download it from the Hub (17.7 GB with the "
            "second copy). `echopanel-setup install voxtral` fetches only the 8.9 GB vLLM needs, verified."
        )
    return Built(plan, cmd, settings, served_dir, delay, flagset, why_builtin, notes)


def _replayed_executable(ctx: Context) -> list[str] | None:
    """On a replayed machine, its venv's vllm (a path there), else plain `vllm`."""
    py = ctx.facts.pyenv
    if ctx.replayed and py.prefix and py.is_venv:
        return [str(Path(py.prefix) / "bin" / "vllm")]
    return None


def _config_port(facts: Facts) -> int | None:
    url = facts.config.values.get(envconfig.URL)
    if url and envconfig.is_local_url(url) and envconfig.validate_url(url) is None:
        from urllib.parse import urlsplit

        return urlsplit(url).port
    return None


def _served_dir(opts: ServeOptions, ctx: Context, notes: list[str]) -> tuple[Path, int | None]:
    """The dir vLLM should load: the model dir, or the variant for a delay other than the model's own."""
    from echopanel_setup.facts.local import read_tekken_delay

    requested = opts.delay_ms
    configured = ctx.facts.config.values.get(envconfig.DELAY)
    if requested is None and configured:
        if envconfig.validate_delay(configured) is None:
            requested = int(configured)
        else:
            notes.append(
                f"{envconfig.DELAY}={configured} in the EchoPanel config is not a valid delay; serving the model's own."
            )
    own = (
        read_tekken_delay(ctx.model_dir / variant.TEKKEN)
        if ctx.local_model
        else (ctx.facts.model.delay_ms if not ctx.facts.model.serve_dir else None)
    )
    record = ctx.local_model and not ctx.hypothetical
    if requested is None or requested == own:
        if record and paths.read_state().get("serve_dir"):
            paths.write_state({"serve_dir": None})
        return ctx.model_dir, own
    target = variant.variant_dir(ctx.model_dir, requested)
    if ctx.local_model and ctx.model_present:
        v = variant.ensure(ctx.model_dir, requested)
        notes.append(
            f"Delay {requested} ms: serving {'the new' if v.created else 'the existing'} variant {v.path} (links to the verified "
            f"files, its own tekken.json); the model dir stays untouched."
        )
        if record:
            paths.write_state({"serve_dir": str(v.path)})
        target = v.path
    else:
        notes.append(
            f"Delay {requested} ms needs the variant {target}: run `echopanel-setup serve --delay-ms {requested}` on that machine to create it."
        )
    says = configured or str(knowledge.load()["delay"]["default_ms"])
    if says != str(requested):
        where = (
            f"its config says {envconfig.DELAY}={configured}"
            if configured
            else f"with no {envconfig.DELAY} it uses {says} ms"
        )
        notes.append(
            f"EchoPanel must use the same delay, but {where}: `echopanel-setup configure --delay-ms {requested}` sets it."
        )
    return target, requested


def _good_key(plan: planner.Plan, version: str | None) -> str:
    return f"{' + '.join(g.name for g in plan.gpus)} | vLLM {version or '?'}"


def _known_good(ctx: Context, plan: planner.Plan, cmd: builder.ServeCommand) -> planner.Plan:
    """Confidence is high when this exact command already started on this GPU with this vLLM."""
    good = paths.read_state().get("serve_good") or {}
    entry = good.get(_good_key(plan, ctx.version)) if isinstance(good, dict) else None
    if not ctx.hypothetical and isinstance(entry, dict) and entry.get("args") == cmd.redacted_args():
        return replace(
            plan,
            confidence="high",
            confidence_reasons=[f"these flags started on this GPU with this vLLM ({entry.get('recorded_at')})"],
        )
    return plan


def _deployment(opts: ServeOptions, ctx: Context, built: Built) -> formats.Deployment:
    return formats.Deployment(
        image=opts.image or formats.image_for(ctx.version),
        models_root=str(ctx.model_dir.parent),
        served_dir_name=built.served_dir.name,
        model_dir_name=ctx.model_dir.name,
    )


def _document(ctx: Context, built: Built) -> dict[str, Any]:
    cmd, s = built.cmd, built.settings
    return {
        "schema_version": 1,
        "command": "serve",
        "vllm_version": ctx.version,
        "flags_source": cmd.flags_source,
        "flags_fallback_reason": built.flags_note,
        "argv": [*cmd.executable, "serve", cmd.model, *cmd.args],
        "env": cmd.env,
        "shell": cmd.shell(),
        "skipped_flags": cmd.skipped,
        "model_dir": str(ctx.model_dir),
        "served_dir": str(built.served_dir),
        "delay_ms": built.delay_ms,
        "url": f"http://{_connect_host(s.host)}:{s.port}",
        "served_model_name": s.served_model_name,
        "plan": built.plan.summary(),
        "model_arch_source": ctx.request.arch.source,
        "notes": built.notes,
        "replayed_facts": ctx.replayed,
        "hypothetical_gpu": ctx.hypothetical,
    }


def _connect_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, host)


# --- explaining ---------------------------------------------------------------------------------------------------


def _print_refusal(refused: Refused, as_json: bool) -> None:
    from echopanel_setup.checks.common import alternatives

    r = refused.refusal
    # Alternatives where this machine cannot serve at all; a fix of its own (fewer streams, newer vLLM) otherwise.
    alts = (
        alternatives(refused.system) if r.kind in ("platform", "no-gpu", "compute-capability", "memory", "busy") else []
    )
    if as_json:
        print(
            json.dumps(
                {
                    "schema_version": 1,
                    "command": "serve",
                    "refused": True,
                    "kind": r.kind,
                    "reason": r.reason,
                    "details": r.details,
                    "alternatives": alts,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    con = _err()
    con.print(f"[bold red]✗ fail[/] no command: {_esc(r.reason)}")
    for line in r.details:
        con.print(f"    [dim]{_esc(line)}[/]")
    if alts:
        con.print(
            "Run Voxtral another way (each with the lines for EchoPanel's config, `echopanel-setup configure` writes them):"
        )
    for line in alts:
        con.print(f"  • {_esc(line)}")


def _explain_plan(ctx: Context, built: Built, fmt: str) -> None:
    con = _err()
    p, b = built.plan, built.plan.breakdown
    gpus = " + ".join(
        f"{g.name} ({g.total_mib} MiB{f', {g.free_mib} free' if g.free_mib is not None and not ctx.hypothetical else ''})"
        for g in p.gpus
    )
    source = " (replayed facts)" if ctx.replayed else " (planned for another machine)" if ctx.hypothetical else ""
    con.print(
        f"[bold]Plan[/] for {_esc(gpus)}{source} · vLLM {ctx.version or 'not installed'} · confidence [bold]{p.confidence}[/]"
    )
    streams = f"{p.streams} stream{'s' if p.streams > 1 else ''}"
    con.print(
        f"  sessions up to {p.session_minutes:.0f} min (--max-model-len {p.max_model_len}) · {streams} planned, "
        f"room for {p.streams_fit} · longest session that fits: {p.longest_session_minutes:.0f} min"
    )
    per_gpu = " per GPU" if p.tensor_parallel_size > 1 else ""
    parts = " + ".join(f"{name} {mib}" for name, mib in b.parts())
    con.print(
        f"  memory{per_gpu} (MiB): {_esc(parts)} = {b.budget} of {b.usable} usable (--gpu-memory-utilization {p.gpu_memory_utilization:.2f})"
    )
    con.print(
        f"  [dim]headroom = spare KV cache + {b.safety} MiB safety; {b.margin} MiB stay outside vLLM's budget for its CUDA context[/]"
    )
    for w in p.warnings:
        con.print(f"[yellow]! warn[/] {_esc(w)}")
    for n in [*p.notes, *built.notes]:
        con.print(f"  {_esc(n)}")
    con.print(f"  [dim]confidence {p.confidence}: {_esc('; '.join(p.confidence_reasons))}[/]")
    con.print(
        f"  [dim]flags: {_esc(built.cmd.flags_source)}{_esc(f' ({built.flags_note})') if built.flags_note else ''}[/]"
    )
    for s in built.cmd.skipped:
        con.print(f"[yellow]! warn[/] not emitted: {_esc(s)}")
    if fmt == "shell" and not ctx.hypothetical and not ctx.replayed:
        con.print("  Run it with `echopanel-setup serve --exec` (or --detach), which also checks the server answers.")


# --- launching ------------------------------------------------------------------------------------------------------


def _refuse_if_running() -> None:
    if (other := launcher.running()) is not None:
        raise SetupError(
            f"the server echopanel-setup started is still running (pid {other.pid}, {other.url}): see "
            "`echopanel-setup serve --status`, or stop it with `echopanel-setup serve --stop` first"
        )


def _launch(opts: ServeOptions, ctx: Context, built: Built) -> int:
    launcher.check_port(built.settings.port)
    if not ctx.model_present:
        raise SetupError(f"no model in {ctx.model_dir}: run `echopanel-setup install voxtral` first")
    if ctx.version is None:
        raise SetupError(
            "vLLM is not installed in the target environment: run `echopanel-setup install vllm` (or pass --python)"
        )
    _explain_plan(ctx, built, "exec")
    live: list[tuple[subprocess.Popen[bytes], launcher.Record]] = []  # the vLLM to stop if Ctrl-C comes
    try:
        return _supervise(opts, ctx, built, live)
    except BaseException:  # Ctrl-C, or anything unexpected: never leave a half-started vLLM behind
        if live:
            proc, record = live[-1]
            _err().print("Stopping vLLM…")
            took = launcher.stop_group(record.pid, proc)
            launcher.clear_record(record.pid)
            _err().print(f"Stopped in {launcher.duration(took)}.")
        raise


def _supervise(
    opts: ServeOptions, ctx: Context, built: Built, live: list[tuple[subprocess.Popen[bytes], launcher.Record]]
) -> int:
    """Start, watch, retry once on a memory error, then (foreground) relay the log until vLLM exits."""
    con = _err()
    timeout = opts.timeout or float(knowledge.load()["serve"]["launch"]["health_timeout_s"])
    url = f"http://{_connect_host(built.settings.host)}:{built.settings.port}"
    echo = (lambda line: con.print(f"  [dim]{_esc(line)}[/]")) if opts.verbose else None
    request = ctx.request
    for attempt in (1, 2):
        con.print(
            f"Starting: [cyan]{_esc(shlex.join([*built.cmd.executable, 'serve', built.cmd.model, *built.cmd.redacted_args()]))}[/]"
        )
        proc, record = launcher.start(built.cmd, opts.api_key, url, built.settings.served_model_name, opts.detach)
        live.append((proc, record))
        outcome = launcher.wait_ready(
            proc,
            record,
            built.settings.served_model_name,
            opts.api_key,
            timeout,
            lambda m: con.print(f"  {_esc(m)}"),
            echo,
        )
        if outcome.ok:
            break
        launcher.stop_group(record.pid, proc)
        launcher.clear_record(record.pid)
        live.clear()
        if outcome.timed_out:
            raise ExternalError(
                f"vLLM did not become ready: {outcome.reason}; its log: {record.log} (`echopanel-setup explain` it)"
            )
        _print_failure(outcome)
        retry = _retry(ctx, request, built, outcome) if attempt == 1 else None
        if retry is None:
            if outcome.failure:
                for command in outcome.failure.commands:
                    con.print(f"         [cyan]{_esc(command)}[/]")
            return EXIT_FAILED
        request, built = retry
        con.print(
            f"Retrying once with the adjusted plan (the failed attempt's log is kept as {launcher.log_path().name}.1): "
            f"{_esc(_plan_line(built.plan))}"
        )
    launcher.record_success(_good_key(built.plan, ctx.version), built.cmd, outcome.figures, built.plan.summary())
    if opts.detach:
        live.clear()  # ready in the background: from here on, Ctrl-C leaves it running
        _print_ready(opts, built, record, outcome.figures)
        return EXIT_OK
    _print_ready(opts, built, record, outcome.figures)
    con.print("Serving in the foreground; Ctrl-C stops vLLM.")
    code = launcher.follow(
        proc,
        record,
        lambda line: con.print(f"  [dim]{_esc(line)}[/]") if opts.verbose or launcher.notable(line) else None,
    )
    live.clear()
    launcher.clear_record(record.pid)
    con.print(f"vLLM exited with code {code}.")
    return EXIT_OK if code == 0 else EXIT_FAILED


def _plan_line(plan: planner.Plan) -> str:
    graphs = "--enforce-eager" if plan.cudagraph_mode == "eager" else f"{plan.cudagraph_mode} graphs"
    return f"--max-model-len {plan.max_model_len} --gpu-memory-utilization {plan.gpu_memory_utilization:.2f} --max-num-batched-tokens {plan.max_num_batched_tokens}, {graphs}"


def _retry(
    ctx: Context, request: planner.PlanRequest, built: Built, outcome: launcher.Outcome
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
        _err().print(f"  no smaller plan fits: {_esc(new_plan.reason)}")
        return None
    cmd = builder.build(new_plan, built.settings, built.flagset, built.cmd.executable)
    return adjusted, replace(built, plan=new_plan, cmd=cmd)


def _print_failure(outcome: launcher.Outcome) -> None:
    con = _err()
    m = outcome.failure
    if m is None:
        con.print(f"[bold red]✗ fail[/] {_esc(outcome.reason)}")
        con.print(f"  Log:   {_esc(outcome.record.log)} (`echopanel-setup serve --logs`)")
        return
    con.print(f"[bold red]✗ fail[/] {_esc(m.title)} ({m.id}, log line {m.line_no})")
    con.print(f"  [dim]{_esc(m.line)}[/]")
    con.print(f"  Cause: {_esc(m.cause)}")
    con.print(f"  Fix:   {_esc(m.fix)}")
    if m.suggestion:
        con.print(f"  Try:   {_esc(m.suggestion)}")
    con.print(f"  Log:   {_esc(outcome.record.log)}")


def _print_ready(opts: ServeOptions, built: Built, record: launcher.Record, f: dict[str, str]) -> None:
    b = built.plan.breakdown
    planned_kv_gib = (b.kv + b.headroom) / 1024
    measured = f"vLLM: KV cache {f['kv_memory.gib']} GiB" if "kv_memory.gib" in f else "vLLM printed no KV figures"
    if "kv_tokens.tokens" in f:
        measured += f", {f['kv_tokens.tokens']} tokens"
    if "concurrency.times" in f:
        measured += f", {f['concurrency.times']}x concurrency at {f['concurrency.tokens']} tokens"
    if opts.json_out:
        print(
            json.dumps(
                {
                    "schema_version": 1,
                    "command": "serve --detach" if opts.detach else "serve --exec",
                    "ok": True,
                    "pid": record.pid,
                    "url": record.url,
                    "served_model_name": record.served_model_name,
                    "log": record.log,
                    "argv": record.argv,
                    "env": built.cmd.env,
                    "vllm_figures": f,
                    "plan": built.plan.summary(),
                },
                indent=2,
            )
        )
        sys.stdout.flush()
    con = _err()
    con.print(
        f"[green]✓ ok[/] vLLM is ready at {record.url} (pid {record.pid}): /health 200, /v1/models lists "
        f"{_esc(record.served_model_name)}, /v1/realtime sent session.created"
    )
    con.print(f"  {_esc(measured)} · planned: {planned_kv_gib:.2f} GiB, room for {built.plan.streams_fit} streams")
    con.print(
        f"  EchoPanel: {envconfig.URL}={record.url} (`echopanel-setup configure` writes it); the flags that worked are recorded."
    )
    if opts.detach:
        con.print(
            f"  Running in the background. `echopanel-setup serve --status`, `--logs`, `--stop`. Log: {_esc(record.log)}"
        )


# --- --status, --logs, --stop -------------------------------------------------------------------------------------


def _status(as_json: bool) -> int:
    st = launcher.status()
    if as_json:
        print(json.dumps(st.to_dict(), indent=2))
        return EXIT_OK if st.running and st.health == 200 else EXIT_FAILED
    con = _err()
    if not st.running or st.record is None:
        print("not running: no server started by echopanel-setup is running")
        return EXIT_FAILED
    r = st.record
    ready = (
        "ready"
        if st.health == 200
        else f"{launcher.phase_title(st.phase or 'starting')} (/health {st.health or 'no answer'})"
    )
    print(
        f"running, {ready}: pid {r.pid}, {r.url}, up {launcher.duration(st.uptime_s or 0)}, vLLM {r.vllm_version or '?'}, "
        f"{'background' if r.detached else 'foreground'}"
    )
    if st.models is not None:
        print(f"models: {', '.join(st.models)}")
    print(f"log: {r.log}")
    if st.error:
        con.print(f"[yellow]! warn[/] {_esc(st.error)}")
    return EXIT_OK if st.health == 200 else EXIT_FAILED


def _logs(lines: int, follow: bool) -> int:
    log, tail = launcher.tail(lines)
    try:
        for line in tail:
            print(line, flush=follow)
        if follow:
            launcher.follow_log(log, lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends
    return EXIT_OK


def _stop(as_json: bool) -> int:
    record, took = launcher.stop()
    if as_json:
        print(
            json.dumps(
                {
                    "schema_version": 1,
                    "command": "serve --stop",
                    "stopped": record is not None,
                    "pid": record.pid if record else None,
                    "seconds": round(took, 1),
                },
                indent=2,
            )
        )
        return EXIT_OK
    if record is None:
        print("nothing to stop: no server started by echopanel-setup is running")
    else:
        print(f"stopped vLLM (pid {record.pid}, {record.url}) in {launcher.duration(took)}")
    return EXIT_OK
