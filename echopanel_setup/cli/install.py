"""`install voxtral|voxtral-c|vllm`: the model, voxtral.c, and vLLM in its own venv."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from echopanel_setup.cli.options import Checkout, DecideFrom, JsonWithProgress

app = typer.Typer(
    help="Install the Voxtral model, the vLLM runtime, or voxtral.c.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("voxtral")
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


class VoxtralCBackend(str, Enum):
    mps = "mps"
    blas = "blas"


@app.command("voxtral-c")
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
    facts: DecideFrom = None,
    echopanel: Checkout = None,
    json_out: JsonWithProgress = False,
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


@app.command("vllm")
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
    facts: DecideFrom = None,
    find_links: Annotated[
        list[str] | None,
        typer.Option("--find-links", metavar="DIR", help="Also look for packages in this folder or URL (repeatable)."),
    ] = None,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Use only --find-links, not the package index (offline installs).")
    ] = False,
    json_out: JsonWithProgress = False,
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
