"""What `install voxtral` and `install vllm` show once they are done: a few human lines, or one JSON document.

The progress while they run (the plan, transfers, the installer's output) is install/progress.py's `Ui`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from echopanel_setup import output, report, ui
from echopanel_setup.install.progress import duration, size
from echopanel_setup.install.vllm import VllmResult
from echopanel_setup.install.voxtral import VoxtralResult
from echopanel_setup.install.voxtral_c import VoxtralCResult

if TYPE_CHECKING:
    from rich.console import Console

SCHEMA_VERSION = 1
R = TypeVar("R")


def _show(
    r: R,
    json_out: bool,
    out: TextIO | None,
    document: Callable[[R], dict[str, Any]],
    lines: Callable[[R, Console, dict[str, str]], None],
) -> None:
    """Every install command's ending: its JSON document under --json, else its human lines on `out` (stdout as it
    is at the call, not at import) with the symbols that stream can show."""
    if json_out:
        output.write_json(document(r), out)
        return
    con = ui.console(out)
    lines(r, con, ui.symbols(con))


# -- install voxtral -----------------------------------------------------------------------------------------


def voxtral_document(r: VoxtralResult) -> dict[str, Any]:
    common = {"status": r.status, "dir": str(r.dir), "repo": r.repo, "commit": r.commit, "manifest": str(r.manifest)}
    if r.status in ("verified", "damaged"):
        return output.document(
            "install voxtral", SCHEMA_VERSION, r.exit_code, **common, ok=not r.exit_code, files=r.checked
        )
    doc = output.document(
        "install voxtral",
        SCHEMA_VERSION,
        r.exit_code,
        **common,
        revision=r.revision,
        files=[asdict(f) for f in r.files],
        downloaded_bytes=r.downloaded_bytes,
        reused_bytes=r.reused_bytes,
        duration_s=r.duration_s,
    )
    if r.disk is not None:
        doc["disk"] = {**asdict(r.disk), "fits": True}  # a plan that does not fit is an error, not a result
    return doc


def voxtral(r: VoxtralResult, json_out: bool, out: TextIO | None = None) -> None:
    _show(r, json_out, out, voxtral_document, _voxtral_lines)


def _voxtral_lines(r: VoxtralResult, con: Console, sym: dict[str, str]) -> None:
    if r.status == "already-installed":
        con.print(
            f"[green]{sym['ok']}[/] Voxtral is installed and verified in {ui.esc(str(r.dir))}: {len(r.files)} files, "
            f"{size(r.reused_bytes)}, commit {r.commit[:12]} (verified {r.verified_at})."
        )
        con.print("  Re-check every byte with --verify; --revision main looks for a newer commit.")
    elif r.status == "planned":
        con.print("Dry run: nothing was written.")
    elif r.status == "cancelled":
        con.print("Cancelled: nothing was downloaded.")
    elif r.status == "installed":
        rate = (
            f" at {size(int(r.downloaded_bytes / r.duration_s))}/s" if r.downloaded_bytes and r.duration_s > 0 else ""
        )
        kept = f"; reused {size(r.reused_bytes)} ({r.reused_bytes:,} bytes) already on disk" if r.reused_bytes else ""
        con.print(
            f"[green]{sym['ok']}[/] Voxtral installed and verified in {ui.esc(str(r.dir))}: {len(r.files)} files, "
            f"{size(sum(f.size for f in r.files))}, commit {r.commit[:12]}."
        )
        con.print(f"  Downloaded {size(r.downloaded_bytes)} in {duration(r.duration_s)}{rate}{kept}.")
        con.print(f"  Manifest: {ui.esc(str(r.manifest))}")
    else:
        _verify_table(r, con, sym)


def _verify_table(r: VoxtralResult, con: Console, sym: dict[str, str]) -> None:
    width = max(len(n) for n in r.checked)
    for name, state in r.checked.items():
        mark, style, word = (sym["ok"], "green", "ok") if state == "ok" else (sym["fail"], "bold red", "fail")
        con.print(f"  [{style}]{mark} {word:<4}[/]  {name:<{width}}  {'' if state == 'ok' else ui.esc(state)}".rstrip())
    bad = [n for n, state in r.checked.items() if state != "ok"]
    if bad:
        those = "that file" if len(bad) == 1 else "those files"
        con.print(
            f"[bold red]{sym['fail']} Damaged: {', '.join(bad)}.[/] Run `{ui.esc(r.rerun)}` to download only {those} "
            "again."
        )
    else:
        con.print(f"[green]{sym['ok']}[/] All {len(r.checked)} files match their sha256 (commit {r.commit[:12]}).")


# -- install vllm --------------------------------------------------------------------------------------------


def vllm_document(r: VllmResult) -> dict[str, Any]:
    return output.document(
        "install vllm",
        SCHEMA_VERSION,
        r.exit_code,
        status=r.status,
        venv=str(r.venv),
        python=str(r.python),
        installer=r.installer,
        requirements=r.requirements,
        commands=r.commands,
        recorded=r.recorded,
        checks=[report.check_document(c) for c in r.checks],
    )


def vllm(r: VllmResult, json_out: bool, out: TextIO | None = None) -> None:
    _show(r, json_out, out, vllm_document, _vllm_lines)


def _vllm_lines(r: VllmResult, con: Console, sym: dict[str, str]) -> None:
    if r.status == "planned":
        con.print("Would run:")
        for cmd in r.commands:
            con.print(f"  {ui.esc(shlex.join(cmd))}")
        con.print("Dry run: nothing was created or installed.")
        return
    if r.status == "cancelled":
        con.print("Cancelled: nothing was installed.")
        return
    recorded = "; recorded for doctor, serve and smoke" if r.recorded else ""
    con.print(f"[green]{sym['ok']}[/] Installed into {ui.esc(str(r.venv))}{recorded}.")
    con.print("doctor's checks of the venv:")
    for c in r.checks:
        report.render_check(con, c)
    failed = [c for c in r.checks if c.counts_as_failure]
    if failed:
        con.print(
            f"[bold red]{sym['fail']} vLLM is installed but {failed[0].id} fails:[/] fix that, then run "
            "`echopanel-setup doctor`."
        )
    else:
        con.print(
            f"[green]{sym['ok']}[/] Ready: `echopanel-setup doctor` and `serve` will use {ui.esc(str(r.python))}."
        )


# -- install voxtral-c ---------------------------------------------------------------------------------------------


def voxtral_c_document(r: VoxtralCResult) -> dict[str, Any]:
    return output.document(
        "install voxtral-c",
        SCHEMA_VERSION,
        r.exit_code,
        status=r.status,
        checkout=str(r.checkout),
        repo_url=r.repo_url,
        ref=r.ref,
        commit=r.commit,
        backend=r.backend,
        binary=str(r.binary),
        log=str(r.log),
        commands=r.commands,
        preconditions=[asdict(c) for c in r.preconditions],
        model=str(r.model) if r.model else None,
        model_verified=r.model_verified,
        user_clone={"path": r.user_clone, "commit": r.user_clone_commit} if r.user_clone else None,
        recorded=r.recorded,
        echopanel_env=r.echopanel_env,
        duration_s=r.duration_s,
    )


def voxtral_c(r: VoxtralCResult, json_out: bool, out: TextIO | None = None) -> None:
    _show(r, json_out, out, voxtral_c_document, _voxtral_c_lines)


def _voxtral_c_lines(r: VoxtralCResult, con: Console, sym: dict[str, str]) -> None:
    if r.status == "planned":
        con.print("Dry run: nothing was cloned or built.")
        return
    commit = (r.commit or "")[:12]
    if r.status == "already-built":
        con.print(
            f"[green]{sym['ok']}[/] voxtral.c is built ({r.backend}, commit {commit}) and runs: {ui.esc(str(r.binary))}"
        )
    else:
        con.print(
            f"[green]{sym['ok']}[/] voxtral.c built ({r.backend}, commit {commit}) in {duration(r.duration_s)}: "
            f"{ui.esc(str(r.binary))}"
        )
        con.print(f"  Build log: {ui.esc(str(r.log))}")
    if r.model is None:
        con.print(
            f"[yellow]{sym['warn']}[/] No weights yet: `echopanel-setup install voxtral` downloads them (~8.9 GB); "
            "voxtral.c reads them where they are."
        )
    else:
        verified = "verified" if r.model_verified else "present, not verified (`install voxtral --verify`)"
        con.print(f"  Weights: {ui.esc(str(r.model))} ({verified}; install voxtral's dir, used in place)")
    con.print("  For EchoPanel (`echopanel-setup configure --provider voxtral_realtime` writes them):")
    for key, value in r.echopanel_env.items():
        con.print(f"    {key}={ui.esc(value)}")
