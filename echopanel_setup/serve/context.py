"""What `serve` plans from: the options, checked once, and the facts gathered for them (doctor's snapshot or
a replayed one, the GPUs to plan for, the model dir, the target vLLM's version).

Everything here either returns a `Context` or stops: `UsageError` for bad input (exit 2), `Refused` where no
command can work on this machine (a result, exit 1, rendered with the alternatives).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from echopanel_setup import knowledge, paths
from echopanel_setup.echopanel import concurrency
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import Facts, GpuDevice
from echopanel_setup.serve import formats, planner, variant
from echopanel_setup.versions import older

MIB = 1024 * 1024
# The lifecycle actions, as the subcommand names (`serve status`) their alias flags (`serve --status`) map to.
ACTIONS = ("status", "logs", "stop")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    gpu_memory: float | None = None
    gpus: int | None = None
    gpu: str | None = None
    session_minutes: float | None = None  # None: 60, shortened if it does not fit
    streams: int | None = None  # None: EchoPanel's concurrency (echopanel/concurrency.py)
    delay_ms: int | None = None
    port: int | None = None
    host: str = "127.0.0.1"
    api_key: str | None = field(default=None, repr=False)
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
    vllm_api_key: str | None = field(default=None, repr=False)  # VLLM_API_KEY, read by cli: lists the models

    @property
    def launching(self) -> bool:
        return self.exec_ or self.detach

    @property
    def as_json(self) -> bool:
        """One JSON document on stdout: `--json`, or the plan with `--format json`."""
        return self.json_out or self.fmt == "json"


def action(opts: ServeOptions) -> str:
    """What this run does: "plan", "exec", "detach", or one of ACTIONS; refuses flags that do not go together."""
    chosen = [name for name in ACTIONS if getattr(opts, name)]
    if len(chosen) > 1 or (chosen and opts.launching):
        flags = [f"--{name}" for name in chosen] + (["--exec/--detach"] if opts.launching else [])
        raise UsageError(f"{' and '.join(flags)} do not go together: pick one")
    if opts.follow and not opts.logs:
        raise UsageError("--follow goes with the log: `echopanel-setup serve logs --follow`")
    if chosen:
        return chosen[0]
    validate(opts)
    return "detach" if opts.detach else "exec" if opts.exec_ else "plan"


# The printed forms whose key comes from the shell that runs them (systemd reads an env file, Kubernetes a Secret).
KEY_FROM_SHELL_FORMATS = ("shell", "json", "docker", "compose")


def _check_shell_key(opts: ServeOptions) -> None:
    """A printed command never holds the key (the terminal, logs and `ps` would show it): it names VLLM_API_KEY,
    which vLLM (or docker's `-e VLLM_API_KEY`, Compose's interpolation) takes from the shell that runs it. Where
    this shell holds no key, or another, the server would not get the key you gave: refuse to print such a
    command, and say how to pass the key. --exec/--detach hand the key to vLLM themselves."""
    if opts.launching or opts.fmt not in KEY_FROM_SHELL_FORMATS or not opts.api_key:
        return
    if opts.vllm_api_key == opts.api_key:
        return
    problem = "is not exported here" if not opts.vllm_api_key else "in this shell is another key"
    raise UsageError(
        f"--format {opts.fmt} takes the key from your shell's VLLM_API_KEY (never printed), and VLLM_API_KEY "
        f"{problem}: the server would not get the key you gave. Run `read -rs VLLM_API_KEY && export VLLM_API_KEY` "
        f'(your key), then `echopanel-setup serve --format {opts.fmt} --api-key "$VLLM_API_KEY"`, and run the '
        "command in that shell"
    )


def validate(opts: ServeOptions) -> None:
    """The planning options, checked before anything is probed."""
    if opts.fmt not in formats.FORMATS:
        raise UsageError(f"--format {opts.fmt}: use one of {', '.join(formats.FORMATS)}")
    if opts.json_out and opts.fmt not in ("shell", "json"):
        raise UsageError(f"--json and --format {opts.fmt} do not go together (--json is --format json)")
    if opts.launching and opts.fmt not in ("shell", "json"):
        raise UsageError(
            f"--format {opts.fmt} describes a server to run elsewhere; --exec/--detach run the shell command here"
        )
    if opts.launching and (opts.facts or opts.gpu_memory or (opts.gpu and not is_index(opts.gpu))):
        raise UsageError(
            "--exec/--detach run on this machine: drop --facts, --gpu NAME and --gpu-memory (they plan for another)"
        )
    if opts.streams is not None and opts.streams < 1:
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
    _check_shell_key(opts)
    if opts.delay_ms is not None:
        variant.check_delay(opts.delay_ms)


class Refused(Exception):
    """No command can work here; carries the refusal for the result (exit 1, with alternatives)."""

    def __init__(self, refusal: planner.Refusal, system: str = "Linux") -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
        self.system = system


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
    concurrency: concurrency.Concurrency | None = None  # EchoPanel's streams, when --streams did not say
    notes: list[str] = field(default_factory=list)  # why the plan has the streams it has

    @property
    def no_version(self) -> str:
        """Why the vLLM version is unknown: not installed where the target Python looks, or that Python could not be
        read at all (it hung or crashed: then nothing says vLLM is missing)."""
        error = self.facts.pyenv.error
        if self.facts.pyenv.ok or not error:
            return "vLLM is not installed in the target environment"
        return f"the target Python could not be read ({error})"


def gather(opts: ServeOptions) -> Context:
    """Doctor's facts (probed offline, or replayed), and the plan request they give."""
    facts, replayed = _facts(opts)
    hypothetical = bool(opts.gpu_memory or (opts.gpu and not is_index(opts.gpu)))
    if not hypothetical:
        _platform_refusal(facts)
    gpus, visible = _gpus(opts, facts, hypothetical)
    version = facts.pyenv.packages.get("vllm") if facts.pyenv.ok else None
    model_dir = (
        # absolute: docker and Compose read a relative path as a named volume, systemd refuses one
        Path(opts.model_dir).expanduser().absolute()
        if opts.model_dir
        else Path(facts.model.path or paths.default_model_dir())
    )
    files = knowledge.load().model.files
    present = all(facts.model.files.get(n) is not None for n in files)
    weights = facts.model.files.get(knowledge.load().model.weights_file)
    arch = planner.read_arch(model_dir / "params.json") if present and not replayed else planner.builtin_arch()
    figure = None if opts.streams else concurrency.of(facts.echopanel)
    request = planner.PlanRequest(
        gpus=gpus,
        arch=arch,
        # A half-downloaded file must not make the plan optimistic: never below the known weights size.
        weights_mib=max(math.ceil((weights or 0) / MIB), knowledge.load().model.weights_mib),
        session_minutes=opts.session_minutes or 60.0,
        streams=figure.streams if figure else opts.streams or 1,
        vllm_version=version,
        tensor_parallel=opts.gpus,
        session_fixed=opts.session_minutes is not None,
        streams_given=opts.streams is not None,
        hypothetical=hypothetical,
    )
    return Context(facts, replayed, hypothetical, visible, version, model_dir, present, not replayed, request, figure)


def plan(opts: ServeOptions, ctx: Context) -> planner.Plan:
    """The memory plan for the gathered context; `Refused` when nothing fits (with who holds a busy GPU)."""
    if ctx.version and not ctx.hypothetical:
        _version_refusal(ctx.version)
    result = planner.plan(ctx.request)
    if ctx.concurrency is not None:
        figure = ctx.concurrency
        if isinstance(result, planner.Refusal):
            result = _fewer_streams(ctx, result)
        if isinstance(result, planner.Plan) and result.streams == figure.streams:
            ctx.notes.append(f"{figure.streams} streams planned (--streams N to change): {figure.why}")
        ctx.notes.extend(filter(None, [figure.note]))
    if isinstance(result, planner.Refusal):
        if result.kind == "tensor-parallel":
            raise UsageError(f"--gpus {opts.gpus}: {result.reason.split(': ', 1)[-1]}")
        if result.kind == "no-gpu" and ctx.facts.gpu.error:
            result.details.append(f"GPU probe: {ctx.facts.gpu.error}")
        if result.kind == "busy":
            result.details[-1:-1] = _holders(ctx.facts, ctx.request.gpus)
        raise Refused(result, ctx.facts.platform.system or "Linux")
    return result


def _fewer_streams(ctx: Context, refusal: planner.Refusal) -> planner.Plan | planner.Refusal:
    """EchoPanel's streams do not fit, but fewer may: plan for the most that do, and say what that costs (a source
    waits behind another). An explicit --streams is never lowered."""
    wanted = ctx.request.streams
    for streams in range(wanted - 1, 0, -1):
        request = replace(ctx.request, streams=streams)
        result = planner.plan(request)
        if isinstance(result, planner.Plan):
            ctx.request = request
            ctx.notes.append(
                f"only {streams} of EchoPanel's {wanted} streams fit{_on(ctx)}: {streams} planned, so a meeting's "
                f"other sources wait behind it and their words arrive late (a GPU with more memory serves them all). "
                f"{ctx.concurrency.why if ctx.concurrency else ''}"
            )
            return result
    return refusal


def _on(ctx: Context) -> str:
    names = sorted({g.name for g in ctx.request.gpus})
    return f" on {', '.join(names)}" if names else ""


def _facts(opts: ServeOptions) -> tuple[Facts, bool]:
    if opts.facts:
        from echopanel_setup.doctor import load_facts

        return load_facts(opts.facts), True
    from echopanel_setup.facts.collect import Options, collect

    return collect(  # a bad --python raises its UsageError before any probe
        Options(python=opts.python, port=opts.port, offline=True, model_dir=opts.model_dir, config=opts.config)
    ), False


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
                "native Windows: vLLM does not run here; run echopanel-setup inside WSL2 (the NVIDIA driver exposes "
                "the GPU to it)",
            ),
            system,
        )


def _version_refusal(version: str) -> None:
    v = knowledge.load().vllm
    if older(version, v.min_version):
        raise Refused(
            planner.Refusal(
                "vllm-version",
                f"vLLM {version} is too old for Voxtral Realtime (needs {v.min_version}, "
                f"{v.recommended_version}+ recommended)",
                ["Install a current vLLM in its own venv: echopanel-setup install vllm"],
            )
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
        cc = base.compute_capability if base else knowledge.load().gpu.full_compute_capability
        return tuple(planner.Gpu(name, total, total, cc) for _ in range(count)), 0
    devices = facts.gpu.visible()
    gpus = [
        planner.Gpu(
            d.name,
            d.memory_total_mib,
            d.memory_free_mib,
            d.compute_capability,
            d.index,
            _others(d),
            d.display_active,
        )
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
                f"--gpu {opts.gpu}: no visible GPU has that index "
                f"({', '.join(str(g.index) for g in gpus) or 'none visible'})"
            )
        gpus = chosen
    return tuple(gpus), len(devices)


def _others(device: GpuDevice) -> tuple[str, ...]:
    """Who else holds the GPU's memory: the processes nvidia-smi names besides vLLM, and memory in use that no listed
    process holds (inside a container nvidia-smi lists only its own processes: another container's job is there,
    unnamed). An unnamed user makes the GPU shared as a named one does: vLLM must not be handed every stream. On a GPU
    that drives a display the unnamed memory is most likely the desktop, which the display already says."""
    named = [p.name or f"pid {p.pid}" for p in device.processes if "vllm" not in p.name.lower()]
    used = device.memory_used_mib
    if used is not None and not device.display_active and all(p.used_mib is not None for p in device.processes):
        unlisted = used - sum(p.used_mib or 0 for p in device.processes)
        if unlisted > knowledge.load().serve.planner.unlisted_mib:
            named.append(f"processes not listed here ({unlisted} MiB)")
    return tuple(dict.fromkeys(named))


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


def is_index(gpu: str) -> bool:
    """`--gpu 1` picks a local GPU; `--gpu 4090` names a model."""
    return gpu.isdigit() and int(gpu) < 64


def _norm(text: str) -> str:
    text = re.sub(r"\b(nvidia|geforce|tesla)\b", "", text.lower())
    return re.sub(r"[^a-z0-9]", "", text)


def _known_gpu(name: str) -> planner.Gpu:
    table = knowledge.load().serve.gpu
    wanted = _norm(name)
    exact = [g for g in table if wanted in {_norm(g.name), *(_norm(a) for a in g.aliases)}]
    found = exact or [g for g in table if wanted and any(wanted in _norm(n) for n in (g.name, *g.aliases))]
    if len(found) != 1:
        names = ", ".join(g.aliases[0] for g in (found or table))
        what = "matches several GPUs" if found else "is not a GPU I know"
        raise UsageError(f"--gpu {name} {what}: {names}; or give the memory with --gpu-memory GIB")
    g = found[0]
    return planner.Gpu(g.name, g.total_mib, g.total_mib, g.compute_capability)
