"""Doctor output: rich human text, the versioned JSON document, the mode × check matrix, and the
redacted paste-ready report. Symbols always come with a word, so NO_COLOR and pipes stay readable."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from echopanel_setup import __version__, output
from echopanel_setup.checks import MODES, Check, CheckResult, Status
from echopanel_setup.facts.model import Facts
from echopanel_setup.output import document

REPORT_SCHEMA_VERSION = 1
SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗", "crashed": "☠", "timeout": "☠", "skip": "–"}
ASCII_SYMBOLS = {"ok": "+", "warn": "!", "fail": "x", "crashed": "#", "timeout": "#", "skip": "-"}
CATEGORY_TITLES = {
    "platform": "Platform",
    "gpu": "GPU",
    "stack": "Python stack (vLLM)",
    "storage": "Storage",
    "network": "Network",
    "config": "EchoPanel config",
}
STYLES = {
    "ok": "green",
    "warn": "yellow",
    "fail": "bold red",
    "crashed": "bold magenta",
    "timeout": "bold magenta",
    "skip": "dim",
}


@dataclass
class DoctorRun:
    """Everything one doctor run produced; the CLI renders it."""

    facts: Facts
    mode: str
    mode_reason: str
    results: list[CheckResult]
    exit_code: int
    strict: bool
    duration_ms: float
    replayed: bool = False


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


def _symbols(stream: TextIO) -> dict[str, str]:
    return SYMBOLS if output.is_utf8(stream) else ASCII_SYMBOLS


def console(stream: TextIO = sys.stdout):  # type: ignore[no-untyped-def]
    """A rich console that wraps to the terminal, and never wraps when piped (logs stay greppable)."""
    from rich.console import Console

    return Console(file=stream, highlight=False, emoji=False, soft_wrap=not stream.isatty())


def render_human(run: DoctorRun, verbose: bool = False, quiet: bool = False, stream: TextIO = sys.stdout) -> None:
    from rich.markup import escape

    con = console(stream)
    sym = _symbols(stream)
    if not quiet:
        source = "replayed facts" if run.replayed else f"{run.facts.platform.system or '?'} {run.facts.platform.arch}"
        dot = " · " if sym is SYMBOLS else " - "
        con.print(
            f"[bold]echopanel-setup doctor[/] {dot} mode [bold]{run.mode}[/] ({escape(run.mode_reason)}) {dot} {escape(source)}"
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
        advisory = " [dim](advisory)[/]" if r.is_problem and not r.required else ""
        timing = f" [dim][{r.duration_ms:.1f} ms][/]" if verbose else ""
        con.print(
            f"  [{STYLES[r.status.value]}]{sym[r.status.value]} {r.status.value:<7}[/] {escape(f'{r.title:<24}')} {escape(r.summary)}{advisory}{timing}"
        )
        if r.is_problem or verbose:
            for line in r.details:
                if verbose or not line.startswith("Source: "):  # sources are for -v and the JSON
                    con.print(f"      [dim]{escape(line)}[/]")
        if r.fix and r.is_problem:
            if r.fix.text:
                con.print(f"      {'→' if sym is SYMBOLS else '->'} {escape(r.fix.text)}")
            for cmd in r.fix.commands:
                con.print(f"        [cyan]{escape(cmd)}[/]")
    if verbose:
        con.print("\n[bold]Probes[/]")
        for p in run.facts.probes:
            extra = f" ({p.error})" if p.error else ""
            con.print(f"  {p.name:<10} {p.status:<8} {p.duration_ms:>8.1f} ms{escape(extra)}")
    con.print()
    con.print(summary_line(run, sym))


def summary_line(run: DoctorRun, sym: dict[str, str]) -> str:
    c = counts(run.results)
    failed = [r for r in run.results if r.counts_as_failure]
    warnings = f"{c['warn']} warning" + ("" if c["warn"] == 1 else "s")
    parts = [f"{c['fail'] + c['crashed'] + c['timeout']} failed", warnings, f"{c['ok']} ok", f"{c['skip']} skipped"]
    took = f"{run.duration_ms / 1000:.2f} s"
    if failed:
        return f"[bold red]{sym['fail']} Not ready for {run.mode} mode[/]: {', '.join(parts)} ({took}). Start with [bold]{failed[0].id}[/]."
    if run.exit_code:
        return f"[bold yellow]{sym['warn']} Warnings fail with --strict[/]: {', '.join(parts)} ({took})."
    return f"[bold green]{sym['ok']} Ready for {run.mode} mode[/]: {', '.join(parts)} ({took})."


def render_matrix(checks: list[Check], stream: TextIO = sys.stdout) -> None:
    """`doctor --list`: which checks run in which mode, and whether they are required there."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("title")
    for mode in MODES:
        table.add_column(mode)
    for c in checks:
        table.add_row(c.id, escape(c.title), *(c.modes.get(m, "-") for m in MODES))
    con = console(stream)
    if not stream.isatty():
        con.width = 120
    con.print(table)


def _redact(text: str) -> str:
    home = str(Path.home())
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if home and home != "/":
        text = text.replace(home, "~")
    if user and len(user) > 2:
        text = text.replace(f"/{user}/", "/<user>/")
    return text


def render_report(run: DoctorRun, stream: TextIO = sys.stdout) -> None:
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
            f"  - GPU {d.index}: {d.name}, {d.memory_total_mib} MiB total, {d.memory_free_mib} MiB free, CC {d.compute_capability}, MIG {d.mig_mode}"
            for d in f.gpu.devices
        ]
    else:
        lines.append(f"- GPU: {f.gpu.source} ({f.gpu.error or f.gpu.apple_gpu or 'none'})")
    pk = ", ".join(f"{k} {v}" for k, v in f.pyenv.packages.items() if v)
    lines.append(
        f"- Target Python {f.pyenv.version} ({f.pyenv.source}): {pk or 'no relevant packages'}; torch CUDA {f.pyenv.torch_cuda}"
    )
    lines.append(f"- Mode: {run.mode} ({run.mode_reason}); exit code {run.exit_code}")
    lines += ["", "| check | status | summary |", "|---|---|---|"]
    lines += [f"| {r.id} | {r.status.value} | {r.summary.replace('|', '/')} |" for r in run.results]
    stream.write(_redact("\n".join(lines)) + "\n")
