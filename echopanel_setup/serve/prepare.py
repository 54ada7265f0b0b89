"""From a plan to the command to run: the dir vLLM loads (a delay variant where the delay differs), the flags
the target vLLM accepts, the port, and the confidence a recorded good start on this GPU gives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from echopanel_setup import envconfig, knowledge, paths, ports
from echopanel_setup.facts.model import Facts
from echopanel_setup.serve import builder, flags, formats, planner, variant
from echopanel_setup.serve.context import Context, ServeOptions


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

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the server."""
        return f"http://{connect_host(self.settings.host)}:{self.settings.port}"

    def rebuilt(self, plan: planner.Plan) -> Built:
        """The same server with another plan (a retry after a memory failure)."""
        return replace(self, plan=plan, cmd=builder.build(plan, self.settings, self.flagset, self.cmd.executable))


def build(opts: ServeOptions, ctx: Context, plan: planner.Plan, reading: Callable[[str | None, float], None]) -> Built:
    """`reading(version, timeout)` is told before the slow `vllm serve --help=all` runs."""
    notes: list[str] = list(ctx.notes)
    served_dir, delay = _served_dir(opts, ctx, notes)
    executable = builder.resolve_executable(ctx.facts.pyenv) if ctx.version and not ctx.replayed else None
    flagset, why_builtin = flags.learn(
        executable, ctx.version, lambda timeout: reading(ctx.version, timeout), ctx.no_version
    )
    choice = ports.vllm_port(
        opts.port,
        envconfig.configured_url(ctx.facts.config.values),
        echopanel_port=_echopanel_port(ctx.facts),
    )
    if choice.note:
        notes.append(choice.note)
    names = served_names(ctx.facts, opts.served_model_name, notes)
    if opts.api_key:
        notes.append(
            "EchoPanel sends no API key: with --api-key every request it makes is refused (401). Leave the key out for "
            "a server EchoPanel uses and keep it on 127.0.0.1; from another machine reach it through "
            "`echopanel-setup tunnel start HOST`."
        )
    settings = builder.ServeSettings(
        model=str(served_dir) if ctx.model_present else knowledge.load().model.repo,
        model_is_local=ctx.model_present,
        served_model_name=names[0],
        also_served=names[1:],
        host=opts.host,
        port=choice.port,
        api_key=opts.api_key,
        revision=ctx.facts.model.commit,
        visible_gpus=ctx.visible_gpus,
    )
    if not (ctx.hypothetical or ctx.replayed or ctx.facts.echopanel.checkout):
        notes.append(tunnel_note(choice.port))
    cmd = builder.build(plan, settings, flagset, executable or _replayed_executable(ctx))
    plan = _known_good(ctx, plan, cmd)
    if not ctx.model_present:
        notes.append(
            f"The model is not in {ctx.model_dir}: this command makes vLLM download it from the Hub (17.7 GB with the "
            "second copy). `echopanel-setup install voxtral` fetches only the 8.9 GB vLLM needs, verified."
        )
    return Built(plan, cmd, settings, served_dir, delay, flagset, why_builtin, notes)


def tunnel_note(port: int) -> str:
    """No EchoPanel checkout here (a GPU host): how the machine that runs EchoPanel reaches this server safely."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "USER"
    return (
        "EchoPanel is not on this machine: on the machine that runs it, "
        f"`echopanel-setup tunnel start {user}@{socket.gethostname() or 'THIS-HOST'} --remote-port {port}` brings this "
        f"server to its 127.0.0.1:{ports.default_port()} over ssh (this server stays on its loopback, no API key)"
    )


def deployment(opts: ServeOptions, ctx: Context, built: Built) -> formats.Deployment:
    """What the container formats need beyond the command."""
    return formats.Deployment(
        image=opts.image or formats.image_for(ctx.version),
        models_root=str(ctx.model_dir.parent),
        served_dir_name=built.served_dir.name,
        model_dir_name=ctx.model_dir.name,
    )


def connect_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to `host` from this machine: the wildcard addresses become
    loopback, and an IPv6 literal gets its brackets (`http://::1:8001` is no URL)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def good_key(plan: planner.Plan, version: str | None) -> str:
    """The key a good start is recorded under: these GPUs with this vLLM."""
    return f"{' + '.join(g.name for g in plan.gpus)} | vLLM {version or '?'}"


def _echopanel_port(facts: Facts) -> int | None:
    """EchoPanel's backend port when its checkout is on this machine (found, or named by --echopanel), else None."""
    if not facts.echopanel.checkout:
        return None
    contract = facts.echopanel.contract
    return (contract.backend_port if contract else None) or ports.echopanel_backend_port()


def echopanel_model(facts: Facts) -> str:
    """The model name EchoPanel's Voxtral provider sends: read from its checkout, else the knowledge default."""
    contract = facts.echopanel.contract
    provider = contract.provider("voxtral_official") if contract else None
    return (provider.model if provider else None) or knowledge.load().echopanel.defaults.model_name


def served_names(facts: Facts, explicit: str | None, notes: list[str]) -> tuple[str, ...]:
    """`--served-model-name`: EchoPanel's name first (vLLM echoes the first in its answers), then the Hub id, so
    EchoPanel and clients that ask for the repo id are both served. An explicit name wins, with a warning when
    EchoPanel's is not among it."""
    wanted = echopanel_model(facts)
    if explicit:
        if explicit != wanted:
            notes.append(
                f"--served-model-name {explicit}: EchoPanel asks for {wanted!r}, so every request it makes gets 404 "
                f"(leave the option out to serve both {wanted} and {knowledge.load().model.repo})"
            )
        return (explicit,)
    repo = knowledge.load().model.repo
    return (wanted,) if wanted == repo else (wanted, repo)


def _replayed_executable(ctx: Context) -> list[str] | None:
    """On a replayed machine, its venv's vllm (a path there), else plain `vllm`."""
    py = ctx.facts.pyenv
    if ctx.replayed and py.prefix and py.is_venv:
        return [str(Path(py.prefix) / "bin" / "vllm")]
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
    if own is None and not ctx.model_present:  # not downloaded: vLLM loads the Hub's files, at the model's own delay
        own = knowledge.load().delay.default_ms
    # Only a server started here (--exec/--detach) is recorded: a printed command may never run, and doctor and
    # configure must keep judging by what really serves.
    record = ctx.local_model and not ctx.hypothetical and opts.launching
    if requested is None or requested == own:
        if record and paths.read_state().get("serve_dir"):
            paths.write_state({"serve_dir": None})
        return ctx.model_dir, own
    target = variant.variant_dir(ctx.model_dir, requested)
    if ctx.local_model and ctx.model_present:
        v = variant.ensure(ctx.model_dir, requested)
        notes.append(
            f"Delay {requested} ms: serving {'the new' if v.created else 'the existing'} variant {v.path} (links to "
            "the verified files, its own tekken.json); the model dir stays untouched."
        )
        if record:
            paths.write_state({"serve_dir": str(v.path)})
        target = v.path
    else:
        notes.append(
            f"Delay {requested} ms needs the variant {target}: run `echopanel-setup serve --delay-ms {requested}` "
            "on that machine to create it."
        )
    says = configured or str(knowledge.load().delay.default_ms)
    if says != str(requested):
        where = (
            f"its config says {envconfig.DELAY}={configured}"
            if configured
            else f"with no {envconfig.DELAY} it uses {says} ms"
        )
        notes.append(
            f"EchoPanel must use the same delay, but {where}: "
            f"`echopanel-setup configure --delay-ms {requested}` sets it."
        )
    return target, requested


def _known_good(ctx: Context, plan: planner.Plan, cmd: builder.ServeCommand) -> planner.Plan:
    """Confidence is high when this exact command already started on this GPU with this vLLM."""
    good = paths.read_state().get("serve_good") or {}
    entry = good.get(good_key(plan, ctx.version)) if isinstance(good, dict) else None
    if not ctx.hypothetical and isinstance(entry, dict) and entry.get("args") == cmd.redacted_args():
        return replace(
            plan,
            confidence="high",
            confidence_reasons=[f"these flags started on this GPU with this vLLM ({entry.get('recorded_at')})"],
        )
    return plan
