"""The `echopanel-setup` command line: thin Typer commands that parse arguments and call the modules.

Imports of anything heavy happen inside the commands, so `--help` and `doctor` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from echopanel_setup import __version__, env
from echopanel_setup.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, SetupError, UsageError
from echopanel_setup.url import ServerURL

if TYPE_CHECKING:
    from collections.abc import Callable

    from echopanel_setup.serve.context import ServeOptions
    from echopanel_setup.smoke.runner import SmokeOptions
    from echopanel_setup.tunnel.main import TunnelOptions
    from echopanel_setup.ui import Spinner
    from echopanel_setup.vllm_client import Tls

_APP_SETTINGS = {
    "name": "echopanel-setup",
    "help": "Get EchoPanel transcribing live with Voxtral Realtime: check, install, serve, smoke-test, configure.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}
app = typer.Typer(**_APP_SETTINGS)  # type: ignore[arg-type]
install_app = typer.Typer(
    help="Install the Voxtral model, the vLLM runtime, or voxtral.c.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(install_app, name="install")
serve_app = typer.Typer(rich_markup_mode=None)
app.add_typer(serve_app, name="serve")
provider_app = typer.Typer(
    help="EchoPanel's Voxtral providers (voxtral_official, voxtral_realtime): check one, replace it with one that "
    "works (fix), put it back (revert).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(provider_app, name="provider")
tunnel_app = typer.Typer(
    help="An ssh tunnel to a GPU host elsewhere: EchoPanel here reaches its vLLM at http://127.0.0.1:PORT.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(tunnel_app, name="tunnel")


class Mode(str, Enum):
    local = "local"
    remote = "remote"
    api = "api"


class Client(str, Enum):
    echopanel = "echopanel"
    realtime = "realtime"
    voxtral_c = "voxtral-c"


_ProviderName = Annotated[
    str,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="The EchoPanel provider: voxtral_official (vLLM, the default) or voxtral_realtime (voxtral.c).",
    ),
]
_Checkout = Annotated[
    str | None,
    typer.Option(
        "--echopanel",
        metavar="PATH",
        help="EchoPanel's checkout (default: ECHOPANEL_HOME, the current directory or a parent, ~/EchoPanel, "
        "~/Projects/EchoPanel, ~/src/EchoPanel, ~/code/EchoPanel).",
    ),
]
_CheckoutPython = Annotated[
    str | None,
    typer.Option(
        "--echopanel-python",
        metavar="PYTHON",
        help="The Python (or venv) EchoPanel's backend runs on (default: <checkout>/.venv).",
    ),
]
_EnvFile = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="An EchoPanel .env to read, by EchoPanel's rules (default: the checkout's .env; its environment wins).",
    ),
]
_Json = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else on stdout.")]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the diff; write nothing.")]
_Yes = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (after the diff).")]
_Force = Annotated[bool, typer.Option("--force", help="Also over a file echopanel-setup does not recognise.")]


def _version(value: bool) -> None:
    if value:
        print(f"echopanel-setup {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Get EchoPanel transcribing live with Voxtral Realtime: check, install, serve, smoke-test, configure."""


def _echopanel_url(text: str) -> ServerURL:
    """`--url` where it stands for EchoPanel's VOXTRAL_VLLM_URL: http(s)://HOST:PORT, parsed once here."""
    return ServerURL.parse_echopanel(text, what="--url")


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def doctor(
    mode: Annotated[
        Mode | None,
        typer.Option(help="Which checks are required (default: from the EchoPanel config, else the hardware)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema_version 1) and nothing else.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Warnings of required checks fail too (exit 1).")] = False,
    offline: Annotated[bool, typer.Option(help="No network probes (a loopback vLLM server is still asked).")] = False,
    python: Annotated[str | None, typer.Option(help="The Python (or venv) that runs vLLM.")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The port vLLM listens on (default 8001, or the config's).")
    ] = None,
    url: Annotated[
        ServerURL | None,
        typer.Option(
            parser=_echopanel_url,
            metavar="URL",
            help="A vLLM server to check; without --mode, checks it in remote mode (default: VOXTRAL_VLLM_URL).",
        ),
    ] = None,
    model_dir: Annotated[
        str | None, typer.Option(help="Where the model is (default: where `install voxtral` put it).")
    ] = None,
    config: _EnvFile = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these checks (ids or prefixes, comma-separated).")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option(help="Skip these checks (ids or prefixes, comma-separated).")
    ] = None,
    list_checks: Annotated[bool, typer.Option("--list", help="Print the mode × check matrix and exit.")] = False,
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    facts: Annotated[str | None, typer.Option(help="Replay a saved facts snapshot instead of probing.")] = None,
    cache: Annotated[
        bool,
        typer.Option(help="Reuse the last reading of the target Python while none of its import directories changed."),
    ] = True,
    save_facts: Annotated[str | None, typer.Option(help="Write the facts snapshot (no secrets) to FILE.")] = None,
    report: Annotated[bool, typer.Option(help="Print a redacted Markdown report to paste into a bug report.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Details for every check, and probe timings.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Problems only.")] = False,
) -> None:
    """Check this machine for Voxtral Realtime and say what to do next. Also the CI preflight (--json --strict).

    Exit codes: 0 ready · 1 a required check failed or could not look (or warned, with --strict) · 2 bad input ·
    4 internal error.
    """
    from echopanel_setup import doctor as doctor_mod
    from echopanel_setup import report as report_mod
    from echopanel_setup.checks import all_checks
    from echopanel_setup.facts.collect import Options

    if list_checks:
        report_mod.render_matrix(all_checks())
        return
    opts = Options(
        python=python,
        port=port,
        offline=offline,
        model_dir=model_dir,
        config=config,
        url=url,
        use_cache=cache,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        vllm_api_key=env.vllm_api_key(),
    )
    with _spinner(enabled=not (json_out or quiet or report) and sys.stderr.isatty()) as on_wait:
        run = doctor_mod.run(
            opts,
            mode=mode.value if mode else None,
            only=_split(only),
            skip=_split(skip),
            strict=strict,
            facts_file=facts,
            on_wait=on_wait,
        )
    if save_facts:
        doctor_mod.save_facts(run.facts, save_facts)
    if json_out:
        report_mod.write_json(run)
    elif report:
        report_mod.render_report(run)
    else:
        report_mod.render_human(run, verbose=verbose, quiet=quiet)
    raise typer.Exit(run.exit_code)


class _spinner:
    """A stderr spinner that names the probes still running; only on a TTY, only after a short wait."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.status: Spinner | None = None

    def __enter__(self) -> Callable[[list[str]], None] | None:
        return self.update if self.enabled else None

    def update(self, pending: list[str]) -> None:
        if self.status is None:
            from echopanel_setup import ui

            self.status = ui.spinner()
            self.status.start()
        self.status.update(f"probing: {', '.join(pending)}")

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()


@app.command()
def explain(
    logfile: Annotated[
        str, typer.Argument(help="A vLLM log or traceback file (plain or .gz), or - for standard input.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Search the whole log, also when its last 4 MiB explain the failure.")
    ] = False,
) -> None:
    """Name a known vLLM failure in a log and say how to fix it. Exit 0 recognised, 1 not recognised."""
    from echopanel_setup import explain_render
    from echopanel_setup.explain import ExplainOptions, run

    result = run(ExplainOptions(log=logfile, full=full))
    explain_render.render(result, json_out=json_out)
    raise typer.Exit(result.exit_code)


@install_app.command("voxtral")
def install_voxtral(
    dir: Annotated[
        str | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Where the model goes (default: the per-user data dir, or where an earlier install put it).",
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            metavar="REV", help="Branch, tag or 40-character commit (default: main, or the commit already installed)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (files, sizes, disk space) and write nothing.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash the installed files and name any damaged one (exit 1).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before downloading.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    stall_timeout: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="Seconds without a byte before a transfer counts as stalled and is resumed.",
        ),
    ] = 30.0,
    retries: Annotated[
        int,
        typer.Option(min=0, max=100, metavar="N", help="Resumed retries in a row without progress before giving up."),
    ] = 5,
) -> None:
    """Download the three files vLLM needs (~8.9 GB): resumable at the byte, verified, recorded for doctor and serve.

    Exit codes: 0 installed (or already) · 1 --verify found damage, or not enough disk · 2 bad input or unwritable dir ·
    3 Hub or network refused (401, gated, not found, offline, disk full) · 130 interrupted (run again to resume).
    """
    from echopanel_setup.install import render, voxtral
    from echopanel_setup.install.progress import Ui

    opts = voxtral.VoxtralOptions(
        dir=dir, revision=revision, dry_run=dry_run, verify=verify, yes=yes, stall_s=stall_timeout, retries=retries
    )
    result = voxtral.run(opts, Ui(json_mode=json_out))
    render.voxtral(result, json_out=json_out)
    raise typer.Exit(result.exit_code)


class SetupProvider(str, Enum):
    voxtral_official = "voxtral_official"
    voxtral_realtime = "voxtral_realtime"


class VoxtralCBackend(str, Enum):
    mps = "mps"
    blas = "blas"


@install_app.command("voxtral-c")
def install_voxtral_c(
    dir: Annotated[
        str | None,
        typer.Option(
            "--dir", metavar="DIR", help="Where to clone voxtral.c (default: the per-user data dir, or the recorded)."
        ),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Clone from here: a mirror or a local clone (default: the GitHub URL)."),
    ] = None,
    ref: Annotated[
        str | None,
        typer.Option(metavar="COMMIT", help="Commit, tag or branch (default: the known-good commit pinned here)."),
    ] = None,
    backend: Annotated[
        VoxtralCBackend | None,
        typer.Option(help="mps (Metal, Apple Silicon) or blas (default: mps on Apple Silicon, else blas)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the preconditions, print the commands, change nothing.")
    ] = False,
    facts: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Decide from a saved doctor facts snapshot instead of probing this machine."),
    ] = None,
    echopanel: _Checkout = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (progress and notes go to stderr).")
    ] = False,
) -> None:
    """Clone antirez/voxtral.c at a known-good commit, build it (make mps|blas) and check that it runs.

    Exit codes: 0 built (or already) · 1 a precondition is not met (Rosetta, no compiler, make, OpenBLAS, git, disk)
    or the folder is not ours · 2 bad input · 3 clone, fetch or build failed (the first error line and the log
    named) · 130 interrupted.
    """
    from echopanel_setup.install import render, voxtral_c
    from echopanel_setup.install.progress import Ui

    opts = voxtral_c.VoxtralCOptions(
        dir=dir,
        repo=repo,
        ref=ref,
        backend=backend.value if backend else None,
        dry_run=dry_run,
        facts=facts,
        echopanel=echopanel,
    )
    result = voxtral_c.run(opts, Ui(json_mode=json_out))
    render.voxtral_c(result, json_out=json_out)
    raise typer.Exit(result.exit_code)


@install_app.command("vllm")
def install_vllm(
    venv: Annotated[
        str | None,
        typer.Option(
            metavar="DIR", help="The venv to create or repair (default: the per-user data dir, or the one recorded)."
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            metavar="SPEC",
            help="vLLM version or specifier, e.g. 0.20.1 or '>=0.20,<0.30' (default: from the knowledge file).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the exact installer commands and create nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before installing.")] = False,
    python: Annotated[
        str | None, typer.Option(metavar="PATH", help="The interpreter a new venv is made from (default: this one).")
    ] = None,
    facts: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Decide from a saved doctor facts snapshot instead of probing this machine."),
    ] = None,
    find_links: Annotated[
        list[str] | None,
        typer.Option("--find-links", metavar="DIR", help="Also look for packages in this folder or URL (repeatable)."),
    ] = None,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Use only --find-links, not the package index (offline installs).")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (progress and notes go to stderr).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Install even on a GPU with too little memory for the model.")
    ] = False,
) -> None:
    """Install vLLM and mistral_common[audio] in a dedicated venv (uv when on PATH, else pip), then check it.

    --python naming another interpreter than an existing venv's rebuilds the venv (with consent, or --yes).

    Exit codes: 0 installed and doctor's checks pass · 1 refused (macOS, no NVIDIA GPU, compute capability < 7.5,
    too little GPU memory without --force, not enough disk, a rebuild not agreed to) or a check fails afterwards ·
    2 bad input (a Python older than vLLM supports) · 3 the installer failed · 130 interrupted.
    """
    from echopanel_setup.install import render, vllm
    from echopanel_setup.install.progress import Ui

    opts = vllm.VllmOptions(
        venv=venv,
        version=version,
        dry_run=dry_run,
        yes=yes,
        facts=facts,
        python=python,
        find_links=tuple(find_links or ()),
        no_index=no_index,
        force=force,
    )
    result = vllm.run(opts, Ui(json_mode=json_out))
    render.vllm(result, json_out=json_out)
    raise typer.Exit(result.exit_code)


class ServeFormat(str, Enum):
    shell = "shell"
    json = "json"
    docker = "docker"
    compose = "compose"
    systemd = "systemd"
    kubernetes = "kubernetes"


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    gpu_memory: Annotated[
        float | None,
        typer.Option("--gpu-memory", metavar="GIB", help="Plan for a GPU with this much memory (another machine)."),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Use N GPUs with tensor parallelism (default: the fewest that fit)."),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Plan for this GPU model (e.g. 4090, L4, H100), or use local GPU index N."),
    ] = None,
    session_minutes: Annotated[
        float | None,
        typer.Option(
            metavar="MINUTES", help="Longest session to allow, minutes [default: 60, shortened if it does not fit]."
        ),
    ] = None,
    streams: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Concurrent transcription streams to plan for [default: EchoPanel's sources per meeting, 2, or "
            "ECHOPANEL_MAX_ACTIVE_SOURCES_PER_SESSION from its config].",
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        typer.Option(
            metavar="MS",
            help="Streaming delay in ms (default: EchoPanel's config, else the model's 480); served from a variant "
            "dir.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port to listen on (default: the config's URL unless it is EchoPanel's 8000, else 8001).",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 serves other machines (add --api-key).")
    ] = "127.0.0.1",
    api_key: Annotated[str | None, typer.Option(help="Require this key on /v1/* (not /health).")] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="Model name clients send (default: the Hub repo id EchoPanel uses).")
    ] = None,
    fmt: Annotated[
        ServeFormat,
        typer.Option(
            "--format",
            help="Output: the shell command, JSON, docker run, Compose, a systemd unit, or Kubernetes objects.",
        ),
    ] = ServeFormat.shell,
    exec_: Annotated[
        bool,
        typer.Option(
            "--exec",
            help="Run it here in the foreground: port check, start-up phases, /health, /v1/models, realtime session; "
            "Ctrl-C stops it.",
        ),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Like --exec, but leave it running in the background.")
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="Same as `serve status`.")] = False,
    logs: Annotated[bool, typer.Option("--logs", help="Same as `serve logs`.")] = False,
    lines: Annotated[int, typer.Option(min=0, metavar="N", help="With --logs: as in `serve logs`.")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="With --logs: as in `serve logs`.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Same as `serve stop`.")] = False,
    python: Annotated[str | None, typer.Option(help="The Python (or venv) that runs vLLM.")] = None,
    model_dir: Annotated[
        str | None, typer.Option(help="Where the model is (default: where `install voxtral` put it).")
    ] = None,
    facts: Annotated[
        str | None,
        typer.Option(help="Plan from a saved doctor snapshot (`doctor --save-facts`) instead of probing."),
    ] = None,
    config: _EnvFile = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="With --exec/--detach: seconds to wait for /health [default: 900].")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="Container image for docker/compose/kubernetes [default: vllm/vllm-openai:v<installed vLLM>]."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout (the plan, the launch result or the status).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="With --exec/--detach: show every vLLM log line.")
    ] = False,
) -> None:
    """Print (or run) the `vllm serve` command for this GPU and this vLLM, with a memory plan.

    The server it starts is managed with `serve status`, `serve logs` and `serve stop`.

    Exit codes: 0 ok · 1 nothing fits / the server failed to start · 2 bad input · 3 not ready in time · 130 Ctrl-C.
    """
    if ctx.invoked_subcommand is not None:
        _refuse_group_options(ctx)
        return
    from echopanel_setup.serve.context import ServeOptions

    opts = ServeOptions(
        gpu_memory=gpu_memory,
        gpus=gpus,
        gpu=gpu,
        session_minutes=session_minutes,
        streams=streams,
        delay_ms=delay_ms,
        port=port,
        host=host,
        api_key=api_key,
        served_model_name=served_model_name,
        fmt=fmt.value,
        exec_=exec_,
        detach=detach,
        status=status,
        logs=logs,
        lines=lines,
        follow=follow,
        stop=stop,
        python=python,
        model_dir=model_dir,
        facts=facts,
        config=config,
        json_out=json_out,
        timeout=timeout,
        image=image,
        verbose=verbose,
        vllm_api_key=env.vllm_api_key(),
    )
    _serve(opts)


def _refuse_group_options(ctx: typer.Context) -> None:
    """`serve --json status` must not drop --json silently: a subcommand's options come after its name.

    For every command group whose own callback takes options (`serve`, and later `tunnel`, `watch`)."""
    given = [
        p.opts[0]
        for p in ctx.command.params
        if p.name and getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    ]
    if given:
        sub = f"{ctx.info_name} {ctx.invoked_subcommand}"
        raise UsageError(
            f"{', '.join(given)} before `{ctx.invoked_subcommand}`: give `{sub}` its options after its name "
            f"(see `echopanel-setup {sub} --help`)"
        )


_SERVE_JSON_HELP = "One JSON document on stdout."


@serve_app.command("status")
def serve_status(json_out: Annotated[bool, typer.Option("--json", help=_SERVE_JSON_HELP)] = False) -> None:
    """Is the server `serve` started running and ready?

    Its pid, URL, served models, uptime and log, for a server started with `serve --exec` or `--detach`.

    Exit codes: 0 running and ready · 1 not running, or not ready yet.
    """
    from echopanel_setup.serve.context import ServeOptions

    _serve(ServeOptions(status=True, json_out=json_out, vllm_api_key=env.vllm_api_key()))


@serve_app.command("logs")
def serve_logs(
    lines: Annotated[int, typer.Option(min=0, metavar="N", help="How many lines from the end (0: all).")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="One JSON document; with --follow one JSON object per line (NDJSON)."),
    ] = False,
) -> None:
    """Print the end of the server's log.

    The log of the vLLM that `serve --exec` or `--detach` started (the last start's).

    Exit codes: 0 printed (Ctrl-C ends --follow) · 1 no log yet.
    """
    from echopanel_setup.serve.context import ServeOptions

    _serve(ServeOptions(logs=True, lines=lines, follow=follow, json_out=json_out))


@serve_app.command("stop")
def serve_stop(json_out: Annotated[bool, typer.Option("--json", help=_SERVE_JSON_HELP)] = False) -> None:
    """Stop the server `serve` started.

    vLLM and its engine processes, started by `serve --exec` or `--detach`: SIGINT, then SIGTERM, then SIGKILL.

    Exit codes: 0 stopped, or nothing was running.
    """
    from echopanel_setup.serve.context import ServeOptions

    _serve(ServeOptions(stop=True, json_out=json_out))


def _serve(opts: ServeOptions) -> None:
    """Run `serve` (or one of its lifecycle actions) and render its result."""
    from echopanel_setup.serve import main, render

    result = main.run(opts)
    render.emit(result)
    raise typer.Exit(result.exit_code)


@app.command()
def smoke(
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="local/remote: a vLLM server; api: Mistral's hosted API (default: from the EchoPanel config)."
        ),
    ] = None,
    url: Annotated[
        ServerURL | None,
        typer.Option(
            parser=ServerURL.parse,
            metavar="URL",
            help="The vLLM server (http(s):// or ws(s)://); alone, no config is needed. In api mode: the API's base "
            "URL.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="vLLM's --api-key (default: VLLM_API_KEY), or the Mistral key in api mode. Never printed.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The model name to ask for (default: the one the server serves; in api mode the pinned API model).",
        ),
    ] = None,
    audio: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Your own WAV or FLAC (any rate, any channels) instead of the bundled clip."),
    ] = None,
    expect: Annotated[
        str | None, typer.Option(metavar="TEXT", help="The words spoken in --audio, to score it.")
    ] = None,
    max_wer: Annotated[
        float | None,
        typer.Option(min=0.0, metavar="X", help="Fail (exit 1) above this word error rate (default 0.3)."),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Send the audio at full speed instead of pacing it like a live microphone.")
    ] = False,
    http: Annotated[
        bool,
        typer.Option(
            "--http", help="Use the one-shot HTTP route /v1/audio/transcriptions instead of the realtime WebSocket."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            metavar="SECONDS",
            help="Seconds to wait for the transcript after the end of the audio (default 30); the whole exchange "
            "gets one deadline: the session's start, the audio's length and this.",
        ),
    ] = None,
    config: _EnvFile = None,
    client: Annotated[
        Client | None,
        typer.Option(
            help="echopanel: run (or replay) the provider EchoPanel is set to, in its own code; realtime: a good "
            "/v1/realtime client; voxtral-c: voxtral.c alone (default: echopanel when an EchoPanel checkout is "
            "found)."
        ),
    ] = None,
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    voxtral_bin: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="voxtral-c: the voxtral binary (default: EchoPanel's ECHOPANEL_VOXTRAL_BIN, else install "
            "voxtral-c's).",
        ),
    ] = None,
    voxtral_model: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="voxtral-c: the weights dir (default: EchoPanel's ECHOPANEL_VOXTRAL_MODEL, else install voxtral's).",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            metavar="SECONDS",
            help="voxtral-c: voxtral.c's -I, the encoder interval (default: EchoPanel's "
            "ECHOPANEL_VOXTRAL_STREAMING_DELAY, else 1.0).",
        ),
    ] = None,
    ca_cert: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="PEM bundle to trust for an https:// server with a self-signed or private-CA certificate "
            "(default: SSL_CERT_FILE).",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the https:// server's certificate at all.")
    ] = False,
    streams: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Run N realtime sessions at once, each paced like a live microphone with the clip looped: does the "
            "server carry N streams in real time (lag, kept up, WER per stream; serve's plan compared)?",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="With --streams: seconds of audio per stream (default 30)."),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (also when the test fails or the server errs) and nothing else on stdout.",
        ),
    ] = False,
) -> None:
    """Transcribe a short clip through the server, as EchoPanel would, and report accuracy and latency.

    Exit codes: 0 pass · 1 word error rate over --max-wer · 2 bad input · 3 server unreachable, refused (401) or failed.
    """
    from echopanel_setup.smoke import render, runner

    if duration is not None and streams is None:
        raise UsageError("--duration goes with --streams N (the seconds of audio each stream sends)")
    if streams is not None and client not in (None, Client.realtime):
        raise UsageError("--streams opens realtime sessions itself: drop --client")
    if client is None and mode is None and not http and streams is None:
        from echopanel_setup.smoke.echopanel import default_client

        chosen, why = default_client(echopanel)
    else:
        chosen = client.value if client else "realtime"
        why = "--client" if client else ("--streams" if streams is not None else "--mode/--http")
    if chosen == "echopanel":
        base = url.http_base if url is not None else None
        _smoke_echopanel(why, echopanel, echopanel_python, base, audio, expect, max_wer, fast, json_out)
    if chosen == "voxtral-c":
        _smoke_voxtral_c(echopanel, voxtral_bin, voxtral_model, interval, audio, expect, max_wer, json_out)
    if not json_out:
        print(f"Client:     realtime ({why})")
    opts = runner.SmokeOptions(
        mode=mode.value if mode else None,
        url=url,
        api_key=api_key,
        vllm_api_key=env.vllm_api_key(),
        model=model,
        audio=audio,
        expect=expect,
        max_wer=max_wer,
        fast=fast,
        http=http,
        timeout=timeout,
        config=config,
        tls=_tls(ca_cert, insecure),
    )
    if streams is not None:
        _smoke_streams(opts, streams, duration, json_out)
    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        result = runner.run(opts, status=status)
    if json_out:
        from echopanel_setup import output

        output.write_json(render.to_document(result))
    else:
        render.render_human(result)
    raise typer.Exit(result.exit_code)


def _tls(ca_cert: str | None, insecure: bool) -> Tls | None:
    """--ca-cert (else SSL_CERT_FILE) and --insecure, for https:// servers."""
    from echopanel_setup.vllm_client import Tls

    if ca_cert and insecure:
        raise UsageError("--ca-cert and --insecure exclude each other: trust a certificate, or skip verification")
    ca = ca_cert or env.ssl_cert_file()
    return Tls(ca_cert=ca, insecure=insecure) if ca or insecure else None


def _smoke_streams(opts: SmokeOptions, streams: int, duration: float | None, json_out: bool) -> NoReturn:
    """`smoke --streams N`: N sessions at once; one report, its exit code."""
    from echopanel_setup.smoke import render, streams_render
    from echopanel_setup.smoke import streams as streams_mod

    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        result = streams_mod.run(opts, streams, duration, status)
    if json_out:
        from echopanel_setup import output

        output.write_json(streams_render.to_document(result))
    else:
        streams_render.render_human(result)
    raise typer.Exit(result.exit_code)


@provider_app.command("check")
def provider_check(
    provider: _ProviderName = "voxtral_official",
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    json_out: _Json = False,
) -> None:
    """What EchoPanel's provider is, and whether it can work. Exit 1 when it cannot."""
    _provider("check", provider, echopanel, echopanel_python, json_out, False, False, False)


@provider_app.command("fix")
def provider_fix(
    provider: _ProviderName = "voxtral_official",
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    dry_run: _DryRun = False,
    yes: _Yes = False,
    force: _Force = False,
    json_out: _Json = False,
) -> None:
    """Replace EchoPanel's provider with echopanel-setup's realtime one (the original is kept as .orig).

    Exit codes: 0 done (or nothing to do) · 1 refused, declined, or the new provider does not load · 2 bad input.
    """
    _provider("fix", provider, echopanel, echopanel_python, json_out, dry_run, yes, force)


@provider_app.command("revert")
def provider_revert(
    provider: _ProviderName = "voxtral_official",
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    dry_run: _DryRun = False,
    yes: _Yes = False,
    force: _Force = False,
    json_out: _Json = False,
) -> None:
    """Put EchoPanel's original provider back, byte for byte. Exit 1 if it changed since `fix` (--force overrides)."""
    _provider("revert", provider, echopanel, echopanel_python, json_out, dry_run, yes, force)


def _provider(
    action: str,
    provider: str,
    echopanel: str | None,
    echopanel_python: str | None,
    json_out: bool,
    dry_run: bool,
    yes: bool,
    force: bool,
) -> None:
    from echopanel_setup import output
    from echopanel_setup.provider import command, render

    opts = command.ProviderOptions(action, provider, echopanel, echopanel_python, dry_run, yes, force)

    def ask(question: str) -> bool:
        if json_out or not sys.stdin.isatty():
            raise UsageError(
                f"`provider {action}` asks before writing: pass --yes to apply, or --dry-run to see the diff"
            )
        return typer.confirm(question, default=False, err=True)

    result = command.run(opts, ask=ask, show=None if json_out else render.show_diff)
    if json_out:
        output.write_json(render.to_document(result))
    else:
        render.render_human(result)
    raise typer.Exit(result.exit_code)


def _smoke_voxtral_c(
    echopanel: str | None,
    binary: str | None,
    model: str | None,
    interval: float | None,
    audio: str | None,
    expect: str | None,
    max_wer: float | None,
    json_out: bool,
) -> None:
    from echopanel_setup import knowledge, output
    from echopanel_setup.smoke import render, runner, voxtralc, voxtralc_render

    clip = runner.load_clip(runner.SmokeOptions(audio=audio, expect=expect))
    limit = knowledge.load().smoke.max_wer if max_wer is None else max_wer
    target = voxtralc.target(binary=binary, model=model, interval=interval, echopanel=echopanel)
    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        if status is not None:
            status(f"running {target.binary} on the clip (the model loads first)")
        result = voxtralc.run(target, clip, max_wer=limit)
    if json_out:
        output.write_json(voxtralc_render.to_document(result))
    else:
        voxtralc_render.render_human(result)
    raise typer.Exit(result.exit_code)


def _smoke_echopanel(
    why: str,
    echopanel: str | None,
    echopanel_python: str | None,
    url: str | None,  # the server's http(s) base
    audio: str | None,
    expect: str | None,
    max_wer: float | None,
    fast: bool,
    json_out: bool,
) -> None:
    from echopanel_setup import knowledge, output
    from echopanel_setup.smoke import echopanel as ep_smoke
    from echopanel_setup.smoke import echopanel_render, render, runner

    if not json_out:
        print(f"Client:     echopanel ({why}; --client realtime or voxtral-c tests the server or voxtral.c alone)")
    clip = runner.load_clip(runner.SmokeOptions(audio=audio, expect=expect))
    limit = knowledge.load().smoke.max_wer if max_wer is None else max_wer
    with render.progress(enabled=not json_out and sys.stderr.isatty()) as status:
        result = ep_smoke.run(
            echopanel=echopanel,
            echopanel_python=echopanel_python,
            url=url,  # what EchoPanel would be given as VOXTRAL_VLLM_URL
            clip=clip,
            max_wer=limit,
            fast=fast,
            say=status,
        )
    if json_out:
        output.write_json(echopanel_render.to_document(result))
    else:
        echopanel_render.render_human(result)
    raise typer.Exit(result.exit_code)


@app.command()
def watch(
    url: Annotated[
        ServerURL | None,
        typer.Option(
            metavar="URL",
            parser=ServerURL.parse,
            help="The vLLM server (default: the one `serve` started, else VOXTRAL_VLLM_URL, else localhost).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="vLLM's --api-key for /v1/models (default: VLLM_API_KEY; '-' reads it from stdin). Never printed.",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Seconds between samples (default 5; --once: 2, or 0 for one sample)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Take what one verdict needs (two samples an interval apart), report, exit.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option("--for", metavar="SECONDS", help="Stop after this many seconds.")
    ] = None,
    config: _EnvFile = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="--once: one JSON document; live: one JSON line per sample (NDJSON)."),
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show the formula behind each figure.")] = False,
) -> None:
    """Watch a running server: are EchoPanel's streams keeping up, is anything queued, when do sessions end.

    Exit codes: 0 healthy (warnings allowed) · 1 a verdict failed at some sample · 2 bad input · 3 the server
    was unreachable at the end.
    """
    from echopanel_setup import output
    from echopanel_setup.watch import render, runner

    opts = runner.WatchOptions(url=url, api_key=api_key, interval=interval, once=once, duration=duration, config=config)
    if once:
        result = runner.run(opts)
    elif json_out:
        result = runner.run(opts, lambda tick, r: output.write_line(render.tick_line(tick, r)))
    elif sys.stdout.isatty():
        with render.live_view(verbose) as show:
            result = runner.run(opts, show)
    else:
        result = runner.run(opts, lambda tick, r: print(render.plain_line(tick, sys.stdout), flush=True))
    if once and json_out:
        output.write_json(render.to_document(result))
    elif once:
        render.render_once(result, verbose)
    elif json_out:
        output.write_line(render.end_line(result))
    raise typer.Exit(result.exit_code)


@app.command()
def configure(
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="local/remote: a vLLM server; api: Mistral's hosted API (default: from the existing file, else the "
            "hardware)."
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="ECHOPANEL_ASR_PROVIDER: voxtral_official, voxtral_realtime (voxtral.c), mlx_whisper or whisper_cpp.",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="The vLLM server, http://HOST:PORT (default: http://localhost:8001 in local mode)."
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        typer.Option(
            metavar="MS",
            help="Streaming delay: 240-1200 in steps of 80, or 2400 (default 480, or what the model dir serves).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="API mode: the Mistral key to store in .env (- reads it from standard input). Default: none written; "
            "the provider falls back to MISTRAL_API_KEY in its environment.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Write this file (by EchoPanel's .env rules) instead of <checkout>/.env."),
    ] = None,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell",
            help="Print export lines for the shell that starts EchoPanel's backend (a key only as "
            "${MISTRAL_API_KEY}); writes nothing.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the values and the diff; write nothing.")] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask: write into the checkout found, migrate the old echopanel.env."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Select a provider variant known not to work, or a URL at EchoPanel's own port, anyway.",
        ),
    ] = False,
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    voxtral_bin: Annotated[
        str | None,
        typer.Option(
            metavar="PATH", help="voxtral_realtime: ECHOPANEL_VOXTRAL_BIN (default: what install voxtral-c built)."
        ),
    ] = None,
    voxtral_model: Annotated[
        str | None,
        typer.Option(
            metavar="DIR", help="voxtral_realtime: ECHOPANEL_VOXTRAL_MODEL (default: install voxtral's model dir)."
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="voxtral_realtime: ECHOPANEL_VOXTRAL_STREAMING_DELAY, voxtral.c's -I (encoder interval; 1.0-2.0 "
            "suits live use). Written only when given.",
        ),
    ] = None,
    facts: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Take the machine's facts from a saved doctor snapshot instead of probing."),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (secrets masked); it asks nothing (a checkout found by looking needs --yes).",
        ),
    ] = False,
) -> None:
    """Write EchoPanel's settings into <checkout>/.env, where its backend reads them, by its own .env rules.

    Only the keys the checkout's provider reads; every other line kept; atomic, locked, the previous version backed up
    in echopanel-setup's state dir; then read back: what EchoPanel will see, and which environment variables win.

    Exit codes: 0 written or already up to date · 1 refused (a provider variant that cannot work, --mode api without an
    API path) · 2 bad value, no checkout, or a target that is not a regular file · 3 the disk is full.
    """
    from echopanel_setup.configure import render as configure_render
    from echopanel_setup.configure import runner as configure_mod
    from echopanel_setup.configure.result import ConfigureOptions

    if shell and json_out:
        raise UsageError("--shell and --json exclude each other: pick one")
    opts = ConfigureOptions(
        mode=mode.value if mode else None,
        provider=provider,
        url=url,
        delay_ms=delay_ms,
        api_key=api_key,
        output=output,
        facts=facts,
        shell=shell,
        dry_run=dry_run,
        yes=yes,
        force=force,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        voxtral_bin=voxtral_bin,
        voxtral_model=voxtral_model,
        interval=interval,
    )
    result = configure_mod.run(opts, configure_render.ConfigureUi(json_mode=json_out))
    configure_render.render(result, json_out=json_out)
    raise typer.Exit(result.exit_code)


@app.command()
def setup(
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="local (vLLM here), remote (a vLLM server elsewhere) or api (Mistral). Default: from the config, else "
            "the hardware."
        ),
    ] = None,
    url: Annotated[
        ServerURL | None,
        typer.Option(
            parser=ServerURL.parse,
            metavar="URL",
            help="The vLLM server (remote mode), or the API's base URL (api mode).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="The vLLM server's --api-key, or the Mistral key in api mode (stored in EchoPanel's config, 0600); "
            "- reads it from standard input.",
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        typer.Option(metavar="MS", help="Streaming delay for serve and configure (240-1200 in steps of 80, or 2400)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Answer yes to the installers and to configure.")] = False,
    exec_: Annotated[
        bool, typer.Option("--exec", help="Start vLLM in the foreground; it keeps running after setup.")
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Start vLLM in the background (serve --detach).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run doctor and say what each step would do; change nothing.")
    ] = False,
    python: Annotated[str | None, typer.Option(metavar="PATH", help="The Python (or venv) that runs vLLM.")] = None,
    facts: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Take the machine's facts from a saved doctor snapshot instead of probing."),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            help="Ask nothing of Hugging Face or the Mistral API and download nothing; the vLLM server is still asked."
        ),
    ] = False,
    echopanel: _Checkout = None,
    echopanel_python: _CheckoutPython = None,
    provider: Annotated[
        SetupProvider | None,
        typer.Option(
            help="voxtral_realtime: Voxtral on this machine with voxtral.c (install voxtral-c, install voxtral, "
            "provider, configure, smoke); default: the provider EchoPanel selects.",
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document with every step; the steps' progress goes to stderr."),
    ] = False,
) -> None:
    """The guided path: doctor → install → serve → smoke → provider → configure → smoke echopanel; done steps skipped.

    Stops at the first blocker with its fix. On an Apple Silicon Mac it offers voxtral.c first (--provider
    voxtral_realtime), then --mode remote or api; without an NVIDIA GPU it points to --mode remote or api.
    Exit codes: 0 set up · 1 stopped at a step (its fix is printed) · 2 bad input · 3 external failure.
    """
    from echopanel_setup import setup_flow, setup_render

    opts = setup_flow.SetupOptions(
        mode=mode.value if mode else None,
        url=url,
        api_key=api_key,
        vllm_api_key=env.vllm_api_key(),
        delay_ms=delay_ms,
        yes=yes,
        exec_=exec_,
        detach=detach,
        dry_run=dry_run,
        facts=facts,
        offline=offline,
        python=python,
        echopanel=echopanel,
        echopanel_python=echopanel_python,
        provider=provider.value if provider else None,
    )
    result = setup_flow.run(opts, setup_render.SetupUi(json_mode=json_out))
    setup_render.render(result, json_out=json_out)
    raise typer.Exit(result.exit_code)


@tunnel_app.command("start")
def tunnel_start(
    host: Annotated[str, typer.Argument(metavar="[USER@]HOST", help="The GPU host, as you would `ssh` to it.")],
    remote_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, metavar="PORT", help="vLLM's port on HOST (its loopback) [default: 8001]."),
    ] = None,
    local_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, metavar="PORT", help="The port on this machine's 127.0.0.1 [default: 8001]."),
    ] = None,
    ssh_config: Annotated[
        str | None, typer.Option(metavar="FILE", help="An ssh config file to use instead of ~/.ssh/config (ssh -F).")
    ] = None,
    json_out: _Json = False,
) -> None:
    """Forward 127.0.0.1:LOCAL here to vLLM on HOST's 127.0.0.1:REMOTE over ssh, in the background.

    Runs `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE` (keep-alives every 15 s, BatchMode: your key must log in
    without a prompt, e.g. through ssh-agent) and reconnects with backoff when the link drops. ssh's host-key
    checking is never changed: run `ssh HOST` once first to accept its key. Then point EchoPanel at
    http://127.0.0.1:LOCAL (`echopanel-setup configure`).

    Exit codes: 0 up · 1 refused (a tunnel already runs, the local port is taken) · 2 bad input · 3 ssh failed
    (unknown host key, login refused, host unreachable).
    """
    from echopanel_setup.tunnel.main import TunnelOptions

    _tunnel(
        TunnelOptions(
            action="start",
            host=host,
            remote_port=remote_port,
            local_port=local_port,
            ssh_config=ssh_config,
            json_out=json_out,
        )
    )


@tunnel_app.command("status")
def tunnel_status(json_out: _Json = False) -> None:
    """Is the tunnel up, and does vLLM answer through it?

    Exit codes: 0 up and vLLM answers /health · 1 not running, reconnecting, or nothing (ready) at the far end.
    """
    from echopanel_setup.tunnel.main import TunnelOptions

    _tunnel(TunnelOptions(action="status", json_out=json_out))


@tunnel_app.command("stop")
def tunnel_stop(json_out: _Json = False) -> None:
    """Stop the tunnel `tunnel start` started (only its own ssh).

    Exit codes: 0 stopped, or nothing was running.
    """
    from echopanel_setup.tunnel.main import TunnelOptions

    _tunnel(TunnelOptions(action="stop", json_out=json_out))


def _tunnel(opts: TunnelOptions) -> None:
    from echopanel_setup.tunnel import main, render

    result = main.run(opts)
    render.emit(result)
    raise typer.Exit(result.exit_code)


def main() -> None:
    """Entry point: one line for every known error, a saved traceback for the unknown ones.

    Under `--json` every error also prints one error document on stdout (output.error_document), so the
    commands themselves only ever write their results.
    """
    with _signals_as_interrupts():
        _run()


_signalled: list[int] = []  # the SIGTERM or SIGHUP that ended this run, if one did


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, as Ctrl-C is: every cleanup written for Ctrl-C runs for
    them too (`serve --exec` stops vLLM, which runs in its own session and used to keep the GPU after a `kill` or a
    closed terminal; install keeps what it verified)."""


def _on_signal(signum: int, _frame: object) -> None:
    import signal

    if (probes := sys.modules.get("echopanel_setup.proc")) is not None:
        probes.kill_all()  # before the exception: probe threads waiting on a hung child return at once
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if _signalled:  # a second one while cleaning up after the first: let the cleanup finish
        return
    _signalled.append(signum)
    raise _Terminated


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the run through the same cleanups, for the length of one `main()`. A signal
    the caller ignores stays ignored (`nohup` sets SIGHUP to SIG_IGN), and the previous handlers come back after."""
    import signal
    import threading

    _signalled.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                previous[sig] = signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(json_command: str | None, message: str = "interrupted") -> NoReturn:
    """Exit as the signal that ended the run says: 130 for Ctrl-C, 128 + N for SIGTERM (143) or SIGHUP (129)."""
    if _signalled:
        import signal

        name = signal.Signals(_signalled[0]).name
        _fail(f"{message} (terminated by {name})", 128 + _signalled[0], json_command)
    _fail(message, EXIT_INTERRUPTED, json_command)


def _run() -> None:
    _open_closed_std_streams()
    for stream in (sys.stdout, sys.stderr):
        # A C/ASCII locale must not crash us, nor a lone surrogate (a non-UTF-8 path decoded by Python, or one in a
        # replayed --facts file) on a UTF-8 stream: such characters print as "?".
        stream.reconfigure(errors="replace")  # type: ignore[union-attr]
    args = sys.argv[1:]
    json_command = _json_command(args)
    try:
        code = _app_for(args)(args, prog_name="echopanel-setup", standalone_mode=False)
    except SystemExit as exc:  # Click turns a write to a closed pipe into exit 1 ("a check failed"): not ours
        _exit_quietly_if_stdout_gone()
        raise exc
    except BrokenPipeError:
        _exit_quietly_if_stdout_gone()
        raise
    except SetupError as exc:
        if exc.exit_code == EXIT_INTERRUPTED:  # install's "interrupted: kept …, run again" after a signal too
            _interrupted(json_command, str(exc))
        _fail(str(exc), exc.exit_code, json_command)
    except KeyboardInterrupt:
        _interrupted(json_command)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line + saved traceback
        # Click's exceptions are matched by shape: Typer >= 0.28 raises those of its own vendored copy of Click.
        if type(exc).__name__ == "Abort":  # Click turns Ctrl-C at a prompt into Abort
            _interrupted(json_command)
        if type(exc).__name__ == "NoArgsIsHelpError":  # Click >= 8.2: a bare group is a usage error (exit 2)
            print(exc.ctx.get_help(), file=sys.stderr)  # type: ignore[attr-defined]  # the help, not one squashed line
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # Click's usage errors
            _fail(_click_message(exc), exc.exit_code, json_command)
        _internal_error(exc, json_command)
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C inside a command into a silent Exit(130)
        _interrupted(json_command)
    if code:
        _exit_quietly_if_stdout_gone()
    sys.exit(code if isinstance(code, int) else 0)


EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process that SIGPIPE ended: `git log | head -1` is 141 too


def _open_closed_std_streams() -> None:
    """Put /dev/null where the caller closed stdin, stdout or stderr (`>&-`): the run goes on, its output unread.

    Python leaves sys.stdout None then (every print would crash), and the lowest free descriptor would be
    handed to the next file we open: a log or a record would receive our output. Occupying 0-2 first, as
    daemons do, keeps both from happening; the exit code still says how the run went.
    """
    import os

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False))  # noqa: SIM115


def _exit_quietly_if_stdout_gone() -> None:
    """Exit 141 without a word when whoever read stdout has gone (`doctor | head -1`).

    A reader that stops early is a normal end, not a failed check (1) nor a crash (4): the best tools end as
    SIGPIPE would end them, quietly with 141. We do not let SIGPIPE kill us instead, because `serve --exec`
    must stop its vLLM first (that runs in the `finally` blocks this exit passes through). Whether the
    reader has gone is asked of the descriptor (poll: POLLERR on a pipe with no reader), so a broken pipe
    to a server never passes for this.
    """
    import os
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        gone = any(event & select.POLLERR for _fd, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll() on Windows: keep the code the run had
        return
    if gone:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # the interpreter's last flush of stdout must not complain on stderr
        os.close(null)
        sys.exit(EXIT_BROKEN_PIPE)


def _json_command(args: list[str]) -> str | None:
    """The command a `--json` run names ("doctor", "install voxtral"), or None when there is no `--json`.

    Command names come before any option (only the root's eager --help/--version could precede them), so
    the leading words name it; a group's subcommand is the word after the group's name.
    """
    if "--json" not in (args[: args.index("--")] if "--" in args else args):
        return None
    words = [args[0]] if args and not args[0].startswith("-") else []
    if words and words[0] in {g.name for g in app.registered_groups} and len(args) > 1 and not args[1].startswith("-"):
        words.append(args[1])
    return " ".join(words) or "echopanel-setup"


def _app_for(args: list[str]) -> typer.Typer:
    """The app to run: only the command named in `args` when there is one.

    Typer turns every registered command's signature into Click objects at start-up (~20 ms for all of
    ours); a run of `doctor` needs only doctor's. `--help`, `--version` and unknown names get the whole app,
    so the listing and Click's "No such command" stay as they are.
    """
    name = args[0] if args and not args[0].startswith("-") else None
    commands = [c for c in app.registered_commands if (c.name or c.callback.__name__) == name]  # type: ignore[union-attr]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return _listing(app)
    single = typer.Typer(**_APP_SETTINGS)  # type: ignore[arg-type]
    single.registered_callback = app.registered_callback
    single.registered_commands = commands
    single.registered_groups = groups
    return single


def _listing(full: typer.Typer) -> typer.Typer:
    """`full` with every command's callback replaced by an option-less stand-in carrying its name and docstring.

    With no command named (`--help`, `--version`, a bare run, a mistyped name) Click needs each command's name and
    help, not its options; building those is most of the root help's cost. A test pins that the help is the same."""
    import copy

    def bare(callback: Callable[..., object]) -> Callable[[], None]:
        def nothing() -> None:
            """Stand-in: never run."""

        nothing.__name__, nothing.__doc__ = callback.__name__, callback.__doc__
        return nothing

    light = copy.copy(full)
    light.registered_commands = []
    for command in full.registered_commands:
        light.registered_commands.append(copy.copy(command))
        light.registered_commands[-1].callback = bare(command.callback)  # type: ignore[arg-type]
    if full.registered_callback is not None and full is not app:  # the root keeps its eager --version
        light.registered_callback = copy.copy(full.registered_callback)
        light.registered_callback.callback = bare(full.registered_callback.callback)  # type: ignore[arg-type]
    light.registered_groups = []
    for group in full.registered_groups:
        light.registered_groups.append(copy.copy(group))
        light.registered_groups[-1].typer_instance = _listing(group.typer_instance)  # type: ignore[arg-type]
    return light


def _fail(message: str, code: int, json_command: str | None = None, traceback: str | None = None) -> NoReturn:
    """Exit with `code` after one stderr line (and, under --json, one error document on stdout)."""
    if json_command is not None:
        from echopanel_setup import output

        output.write_error(output.error_document(json_command, message, code, traceback=traceback))
    print(f"echopanel-setup: error: {message}", file=sys.stderr)
    sys.exit(code)


def _click_message(exc: Exception) -> str:
    """Click's usage error as one line, with the help command for the command that failed."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return " ".join(exc.format_message().split()) + where  # type: ignore[attr-defined]


def _internal_error(exc: BaseException, json_command: str | None) -> NoReturn:
    import traceback
    from datetime import datetime

    from echopanel_setup import paths

    saved = None
    try:
        crash_dir = paths.state_dir() / "crash"
        crash_dir.mkdir(parents=True, exist_ok=True)
        path = crash_dir / f"crash-{datetime.now():%Y%m%d-%H%M%S}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        saved = str(path)
    except OSError:
        pass
    message = f"{type(exc).__name__}: {exc}"
    if json_command is not None:
        from echopanel_setup import output

        output.write_error(output.error_document(json_command, message, EXIT_INTERNAL, traceback=saved))
    print(
        f"echopanel-setup: internal error: {message} (traceback: {saved or 'not saved'}; please report it)",
        file=sys.stderr,
    )
    sys.exit(EXIT_INTERNAL)


__all__ = ["app", "main", "EXIT_USAGE"]
