"""Doctor's output: rich human text, the versioned JSON document, the mode × check matrix, and the
redacted paste-ready report. Symbols, escaping and the outcome layout come from `ui`."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from echopanel_setup import __version__, output, ui
from echopanel_setup.checks import MODES, Check, CheckResult, Status
from echopanel_setup.output import document

if TYPE_CHECKING:
    from rich.console import Console

    from echopanel_setup.doctor import DoctorRun

REPORT_SCHEMA_VERSION = 1
CATEGORY_TITLES = {
    "platform": "Platform",
    "gpu": "GPU",
    "stack": "Python stack (vLLM)",
    "storage": "Storage",
    "network": "Network",
    "config": "EchoPanel config",
    "echopanel": "EchoPanel",
    "voxtral_c": "voxtral.c (EchoPanel's voxtral_realtime)",
}


def counts(results: list[CheckResult]) -> dict[str, int]:
    out = {s.value: 0 for s in Status}
    for r in results:
        out[r.status.value] += 1
    return out


def to_document(run: DoctorRun) -> dict[str, Any]:
    """The `--json` document; its shape is pinned by schema/doctor.schema.json."""
    return {
        **document("doctor", REPORT_SCHEMA_VERSION, run.exit_code),
        "mode": run.mode,
        "mode_reason": run.mode_reason,
        "strict": run.strict,
        "replayed": run.replayed,
        "duration_ms": round(run.duration_ms, 1),
        "summary": counts(run.results),
        "checks": [check_document(r) for r in run.results],
        "facts": run.facts.to_dict(),
    }


def check_document(r: CheckResult) -> dict[str, Any]:
    """One check's result in a JSON document (doctor's, and install vllm's checks of the new venv)."""
    return {
        "id": r.id,
        "title": r.title,
        "category": r.category,
        "status": r.status.value,
        "required": r.required,
        "summary": r.summary,
        "details": r.details,
        "fix": asdict(r.fix) if r.fix else None,
        "duration_ms": r.duration_ms,
    }


def write_json(run: DoctorRun, out: TextIO | None = None) -> None:
    output.write_json(to_document(run), out)


def render_human(run: DoctorRun, verbose: bool = False, quiet: bool = False, stream: TextIO | None = None) -> None:
    con = ui.console(stream)  # stdout as it is now (a default bound at import would outlive a redirected stdout)
    sym = ui.symbols(con)
    if not quiet:
        source = "replayed facts" if run.replayed else f"{run.facts.platform.system or '?'} {run.facts.platform.arch}"
        dot = f" {sym['dot']} "
        con.print(
            f"[bold]echopanel-setup doctor[/] {dot} mode [bold]{run.mode}[/] ({ui.esc(run.mode_reason)}) {dot} "
            f"{ui.esc(source)}"
        )
    category = None
    for r in run.results:
        if quiet and not r.is_problem:
            continue
        if r.status is Status.SKIP and not verbose:
            continue
        if r.category != category and not quiet:
            category = r.category
            con.print(f"\n[bold]{CATEGORY_TITLES.get(category, category)}[/]")
        render_check(con, r, verbose)
    if verbose:
        con.print("\n[bold]Probes[/]")
        for p in run.facts.probes:
            extra = f" ({p.error})" if p.error else ""
            con.print(f"  {p.name:<10} {p.status:<8} {p.duration_ms:>8.1f} ms{ui.esc(extra)}")
    con.print()
    con.print(summary_line(run, sym))


def render_check(con: Console, r: CheckResult, verbose: bool = False) -> None:
    """One check's outcome as doctor shows it (`install vllm` shows its checks of the new venv the same way):
    details and the fix only for a problem, or with -v; sources only with -v (and in the JSON)."""
    advisory = " [dim](advisory)[/]" if r.is_problem and not r.required else ""
    timing = f" [dim][{r.duration_ms:.1f} ms][/]" if verbose else ""
    shown = r.is_problem or verbose
    ui.outcome(
        con,
        r.status.value,
        r.summary,
        label=r.title,
        label_width=24,
        word_width=7,
        indent=2,
        suffix=advisory + timing,
        details=[line for line in r.details if verbose or not line.startswith("Source: ")] if shown else [],
        fix=r.fix.text if r.fix and r.is_problem else "",
        commands=r.fix.commands if r.fix and r.is_problem else [],
    )


def summary_line(run: DoctorRun, sym: dict[str, str]) -> str:
    c = counts(run.results)
    failed = [r for r in run.results if r.counts_as_failure]
    warnings = f"{c['warn']} warning" + ("" if c["warn"] == 1 else "s")
    parts = [f"{c['fail'] + c['crashed'] + c['timeout']} failed", warnings, f"{c['ok']} ok", f"{c['skip']} skipped"]
    took = f"{run.duration_ms / 1000:.2f} s"
    if failed:
        return (
            f"[bold red]{sym['fail']} Not ready for {run.mode} mode[/]: {', '.join(parts)} ({took}). Start with "
            f"[bold]{failed[0].id}[/]."
        )
    unverified = [r for r in run.results if r.unverified]
    if unverified:
        return (
            f"[bold red]{sym['fail']} Not verified for {run.mode} mode[/]: {', '.join(parts)} ({took}). "
            f"[bold]{unverified[0].id}[/] is required and was {ui.esc(unverified[0].summary)}."
        )
    if not any(r.gave_verdict for r in run.results):
        return (
            f"[bold red]{sym['fail']} Nothing required for {run.mode} mode was checked[/]: {', '.join(parts)} "
            f"({took}); this is no readiness verdict."
        )
    if run.exit_code:
        return f"[bold yellow]{sym['warn']} Required checks warned (--strict)[/]: {', '.join(parts)} ({took})."
    return f"[bold green]{sym['ok']} Ready for {run.mode} mode[/]: {', '.join(parts)} ({took})."


def render_matrix(checks: list[Check], stream: TextIO | None = None) -> None:
    """`doctor --list`: which checks run in which mode, and whether they are required there. Check ids are what
    users type (`--only`, `--skip`): they are never wrapped or shortened. A terminal too narrow for the table
    (ids, titles, three modes) gets one block per check instead."""
    stream = stream or sys.stdout
    con = ui.console(stream)
    if not stream.isatty():
        con.width = 120
    id_width = max(len(c.id) for c in checks)
    if con.width < id_width + _MIN_TITLE + len(MODES) * len("required") + 2 * (len(MODES) + 1):
        for c in checks:
            con.print(f"[bold]{c.id}[/]  {ui.esc(c.title)}")
            con.print("    " + "  ".join(f"{m}: {c.modes.get(m, '-')}" for m in MODES))
        return
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    table.add_column("check", no_wrap=True, min_width=id_width)
    table.add_column("title", overflow="fold", ratio=1)
    for mode in MODES:
        table.add_column(mode, no_wrap=True)
    for c in checks:
        table.add_row(c.id, ui.esc(c.title), *(c.modes.get(m, "-") for m in MODES))
    con.print(table)


_MIN_TITLE = 12  # narrower than this, titles fold into unreadable slivers


def _redact(text: str) -> str:
    home = str(Path.home())
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if home and home != "/":
        text = text.replace(home, "~")
    if user and len(user) > 2:
        text = text.replace(f"/{user}/", "/<user>/")
    return text


def render_report(run: DoctorRun, stream: TextIO | None = None) -> None:
    """A redacted Markdown report for bug reports: versions and verdicts, no secrets, no home path."""
    f = run.facts
    p = f.platform
    lines = [
        f"### echopanel-setup {__version__} doctor report",
        "",
        f"- Platform: {p.system} {p.release} ({p.distro or '?'}), {p.arch}"
        + (", WSL2" if p.is_wsl else "")
        + (f", container: {p.container}" if p.container else "")
        + (", Rosetta" if p.rosetta else ""),
        f"- RAM {p.ram_total_mib} MiB, /dev/shm {p.shm_total_mib} MiB, our Python {p.python}",
    ]
    if f.gpu.devices:
        lines.append(f"- NVIDIA driver {f.gpu.driver_version} (CUDA {f.gpu.cuda_driver_version}), via {f.gpu.source}")
        lines += [
            f"  - GPU {d.index}: {d.name}, {d.memory_total_mib} MiB total, {d.memory_free_mib} MiB free, CC "
            f"{d.compute_capability}, MIG {d.mig_mode}"
            + "".join(f"; MIG {m.profile} {m.memory_total_mib} MiB" for m in d.mig_devices or [])
            for d in f.gpu.devices
        ]
    else:
        lines.append(f"- GPU: {f.gpu.source} ({f.gpu.error or f.gpu.apple_gpu or 'none'})")
    if f.gpu.pci_gpus is not None or f.gpu.jetson:
        lines.append(
            f"- PCI display devices: {', '.join(f.gpu.pci_gpus or []) or 'none'}; NVIDIA driver loaded: "
            f"{f.gpu.driver_loaded}" + (f"; Jetson: {f.gpu.jetson}" if f.gpu.jetson else "")
        )
    if f.gpu.smi_raw is not None:  # what nvidia-smi printed when it could not be read: the clue a bug report needs
        fence = "`" * 3
        raw = f.gpu.smi_raw.replace(fence, "'" * 3).encode("ascii", "backslashreplace").decode("ascii")
        lines += [
            "",
            "nvidia-smi printed (non-ASCII as escapes; \\ufffd: bytes that were not UTF-8):",
            fence,
            raw,
            fence,
        ]
    pk = ", ".join(f"{k} {v}" for k, v in f.pyenv.packages.items() if v)
    lines.append(
        f"- Target Python {f.pyenv.version} ({f.pyenv.source}): {pk or 'no relevant packages'}; torch CUDA "
        f"{f.pyenv.torch_cuda}"
    )
    lines.append(f"- Mode: {run.mode} ({run.mode_reason}); exit code {run.exit_code}")
    lines += ["", "| check | status | summary |", "|---|---|---|"]
    lines += [f"| {r.id} | {r.status.value} | {r.summary.replace('|', '/')} |" for r in run.results]
    (stream or sys.stdout).write(_redact("\n".join(lines)) + "\n")
