"""`echopanel-setup install vllm`: vLLM and mistral_common[audio] in a dedicated venv, then doctor's checks on it.

1. Facts (probed like doctor, or replayed with --facts) decide whether vLLM can run here at all: it refuses
   on macOS, native Windows, without an NVIDIA GPU or below compute capability 7.5, and names the
   alternatives, using doctor's own platform and GPU checks.
2. The disk space the venv needs is named before anything happens; --dry-run prints the exact commands.
3. An existing venv is reused: a broken stack (the `max_loras`/`_from_auto` tokenizer error) is repaired by upgrading in
   place. The venv is recorded in the state file so doctor, serve and smoke find its Python.
4. doctor's target-Python checks (stack.*) run on the venv and their verdict is the exit code.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from echopanel_setup import knowledge, paths
from echopanel_setup.checks import CheckResult, Outcome, Status
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, ExternalError, Interrupted, SetupError, UsageError
from echopanel_setup.facts.local import probe_disk
from echopanel_setup.facts.model import Facts
from echopanel_setup.install import venv as venvs
from echopanel_setup.install.progress import Ui, size
from echopanel_setup.install.writable import ensure_writable
from echopanel_setup.ui import esc

MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class VllmOptions:
    venv: str | None = None
    version: str | None = None
    dry_run: bool = False
    yes: bool = False
    facts: str | None = None
    python: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    force: bool = False  # install even on a GPU doctor and serve call too small


@dataclass(kw_only=True)
class VllmResult:
    """What one `install vllm` run did; install/render.py shows it. status: planned | cancelled | installed."""

    status: str
    venv: Path
    installer: str  # uv | pip
    requirements: list[str]
    commands: list[list[str]]
    recorded: bool = False  # the venv is in the state file, where doctor, serve and smoke look
    checks: list[CheckResult] = field(default_factory=list)  # doctor's stack checks of the installed venv

    @property
    def python(self) -> Path:
        return paths.venv_python(self.venv)

    @property
    def exit_code(self) -> int:
        failed = self.status == "cancelled" or any(r.counts_as_failure for r in self.checks)
        return EXIT_FAILED if failed else EXIT_OK


def run(opts: VllmOptions, ui: Ui) -> VllmResult:
    """Gate, plan, confirm, install and check; `ui` shows the progress while it runs (never the result)."""
    k = knowledge.load()
    target, chosen_by = _choose_venv(opts.venv)
    specs = requirement_specs(opts.version)
    facts = _facts(opts.facts)
    ui.line(f"vLLM venv: {target} ({chosen_by})")
    _gate(ui, facts, opts.force)
    state = venvs.inspect(target)
    if state == "other":
        raise UsageError(f"{target} exists and is not a virtual environment: pass --venv a new or existing venv folder")
    if state == "broken" and opts.python is None:
        raise SetupError(
            f"the venv at {target} is broken (its python does not run): pass --python python3.12 to rebuild it, or "
            "another --venv"
        )
    ensure_writable(target, create=False, flag="--venv")
    base, rebuild = _base_python(ui, opts.python, target, state)
    need = k.vllm_install.disk_mib * MIB
    disk = probe_disk(target)
    free = (disk.free_mib or 0) * MIB
    ui.line(
        f"Disk: about {size(need)} needed for vLLM with its CUDA PyTorch; {size(free)} free at {disk.checked_path}."
    )
    if state == "venv" and not rebuild:
        _describe_existing(ui, target)
    uv = venvs.find_uv()
    plan = venvs.plan(
        target,
        state,
        base,
        specs,
        uv=uv,
        uv_args=list(k.vllm_install.uv_args),
        find_links=list(opts.find_links),
        no_index=opts.no_index,
        rebuild=rebuild,
    )
    ui.line(f"Installer: {'uv (found on PATH)' if uv else 'pip (uv is not on PATH; it would be much faster)'}")
    planned = VllmResult(
        status="planned", venv=target, installer="uv" if uv else "pip", requirements=specs, commands=plan.commands
    )
    if opts.dry_run:
        return planned
    if free < need and state not in ("venv", "broken"):  # a rebuild frees the old venv's space first
        raise SetupError(
            f"not enough disk space at {disk.checked_path}: about {size(need)} needed, {size(free)} free; free some "
            "space or pass --venv on another disk"
        )
    if not (_confirm_rebuild(ui, opts, target) if rebuild else _confirm(ui, opts, target)):
        return replace(planned, status="cancelled")
    for cmd in plan.commands:
        _run(ui, cmd, target)
    try:
        paths.write_state({"vllm_venv": str(target)})
        recorded = True
    except OSError as exc:  # installed all the same: say how to find it without the record
        recorded = False
        ui.note(
            f"could not record the venv in {paths.state_file()} ({exc.strerror or exc}): pass --python {target} to "
            "doctor and serve"
        )
    return replace(planned, status="installed", recorded=recorded, checks=_stack_results(target))


def requirement_specs(version: str | None) -> list[str]:
    """The installer's specifiers: vLLM (from --version or the knowledge file) and mistral_common[audio]."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import Version

    k = knowledge.load()
    spec = k.vllm.install_spec
    if version:
        text = version.strip()
        if text[:1].isdigit():
            text = f"vllm=={text}"
        elif text[:1] in "<>=!~":
            text = f"vllm{text}"
        try:
            req = Requirement(text)
        except InvalidRequirement:
            raise UsageError(
                f"--version {version!r}: not a version or specifier (try 0.20.1 or '>=0.20,<0.30')"
            ) from None
        if req.name.lower() != "vllm":
            raise UsageError(f"--version {version!r}: names {req.name}, not vllm")
        minimum = Version(k.vllm.min_version)
        for s in req.specifier:
            try:
                bound = Version(s.version.rstrip(".*"))
            except ValueError:
                continue
            if (s.operator == "<" and bound <= minimum) or (
                s.operator in ("==", "===", "<=", "~=") and bound < minimum
            ):
                raise UsageError(
                    f"--version {version!r}: vLLM before {minimum} has no Voxtral Realtime; ask for {minimum} or newer "
                    f"(default {spec})"
                )
        spec = str(req)
    return [spec, k.mistral_common.install_spec]


def _choose_venv(given: str | None) -> tuple[Path, str]:
    return paths.install_target(given, "--venv", paths.read_state().get("vllm_venv"), paths.default_venv_dir())


def _facts(path: str | None) -> Facts:
    """doctor's facts: replayed from a snapshot, or probed now (offline: no network probe is needed)."""
    from echopanel_setup.facts.collect import Options as CollectOptions
    from echopanel_setup.facts.collect import collect

    if path:
        from echopanel_setup.doctor import load_facts

        return load_facts(path)
    return collect(CollectOptions(offline=True, use_cache=True))


def _gate(ui: Ui, facts: Facts, force: bool) -> None:
    """Refuse where vLLM cannot serve this model, with doctor's own verdicts and alternatives: the platform, the
    compute capability, and the GPU's memory (~13 GB of vLLM on a card doctor and serve call too small is
    wasted; --force installs anyway, e.g. to serve from another card later)."""
    from echopanel_setup.checks import gpu, platform

    for check in (platform.verdict, gpu.compute, gpu.memory):
        outcome = check(facts, "local")
        if outcome.status is Status.FAIL and force and check is gpu.memory:
            ui.note(f"{outcome.summary}; installing anyway (--force)")
        elif outcome.status is Status.FAIL:
            _show(ui, outcome)
            hint = "; --force installs anyway" if check is gpu.memory else ""
            raise SetupError(f"not installing vLLM: {outcome.summary}{hint}")
        elif outcome.status is Status.WARN:
            ui.note(outcome.summary)
        elif outcome.status is Status.OK:
            ui.line(f"[green]{ui.sym['ok']}[/] {outcome.summary}")


def _show(ui: Ui, outcome: Outcome) -> None:
    ui.outcome(
        "fail",
        outcome.summary,
        details=outcome.details,
        fix=outcome.fix.text if outcome.fix else "",
        commands=outcome.fix.commands if outcome.fix else (),
    )


def _base_python(ui: Ui, given: str | None, target: Path, state: str) -> tuple[str, bool]:
    """The interpreter the venv is (or is made) from, and whether the venv must be rebuilt for it.

    --python naming another interpreter than an existing venv's is a choice to rebuild it (the advice "use
    --python python3.12" would otherwise loop); a Python older than vLLM's wheels is refused before anything is
    made; a newer one gets a warning (it may build from source)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    from echopanel_setup.facts import pyenv

    current = venvs.interpreter(str(paths.venv_python(target))) if state == "venv" else None
    if given is not None:
        # A name on PATH (the advice says `--python python3.12`); "", a missing file, /bin/ls: one usage line.
        python = pyenv.resolve_explicit(shutil.which(given) or given if given.strip() else given)
    elif state == "venv":
        python = str(paths.venv_python(target))
    else:
        python = sys.executable
    chosen = current if python == str(paths.venv_python(target)) else venvs.interpreter(python)
    if chosen is None:
        raise UsageError(f"{python} does not run: pass --python an interpreter for the venv")
    spec = knowledge.load().vllm_install.python
    wanted = SpecifierSet(spec)
    try:
        too_old = any(s.operator in (">=", ">") and Version(chosen.version) < Version(s.version) for s in wanted)
    except InvalidVersion:
        too_old = False
    if too_old:
        again = f"pass --python python3.12 (it rebuilds {target})" if state == "venv" else "pass --python python3.12"
        raise UsageError(
            f"Python {chosen.version} at {python} is older than vLLM supports ({spec}, the versions it publishes "
            f"wheels for): {again}"
        )
    if chosen.version not in wanted:
        ui.note(
            f"Python {chosen.version} at {python} is outside {spec}, the versions vLLM publishes wheels for: if the "
            "install fails, use --python python3.12"
        )
    rebuild = given is not None and (state == "broken" or (current is not None and current != chosen))
    if rebuild:
        had = f"Python {current.version} ({current.base})" if current else "a python that does not run"
        ui.line(f"Rebuild: {target} has {had}; --python {given} is Python {chosen.version} ({chosen.base}).")
    return python, rebuild


def _confirm_rebuild(ui: Ui, opts: VllmOptions, target: Path) -> bool:
    """Making the venv again deletes what is in it: ask, and without a terminal to ask on, want --yes."""
    if opts.yes:
        return True
    if ui.json_mode or not sys.stdin.isatty():
        raise SetupError(
            f"--python names another interpreter than the venv at {target} was made with: pass --yes to rebuild it "
            "(its packages are installed again), or --venv DIR for a new one"
        )
    from rich.prompt import Confirm

    try:
        return Confirm.ask(
            f"Rebuild {target} with {opts.python}? Everything installed in it is replaced.",
            default=False,
            console=ui.out,
        )
    except EOFError:
        return False


def _describe_existing(ui: Ui, target: Path) -> None:
    """What the venv holds now, and whether doctor thinks the stack is broken (then it is upgraded in place)."""
    results = _stack_results(target)
    facts_line = ", ".join(f"{r.title} {r.status.value}" for r in results if r.status in (Status.FAIL, Status.WARN))
    ui.line(f"Existing venv: {esc(_versions(target))}")
    if facts_line:
        ui.line(f"  doctor: {esc(facts_line)}; upgrading in place (nothing is deleted)")


def _versions(target: Path) -> str:
    from echopanel_setup.facts import pyenv

    e = pyenv.probe(str(paths.venv_python(target)), "--python", use_cache=False)
    if not e.ok:
        return e.error or "unreadable"
    pk = e.packages
    return f"Python {e.version}; " + ", ".join(
        f"{n} {pk.get(n) or 'absent'}" for n in ("vllm", "torch", "transformers", "mistral_common")
    )


def _confirm(ui: Ui, opts: VllmOptions, target: Path) -> bool:
    if opts.yes or ui.json_mode or not sys.stdin.isatty():
        return True
    from rich.prompt import Confirm

    try:
        return Confirm.ask(f"Install vLLM into {target}?", default=True, console=ui.out)
    except EOFError:
        return False


def _run(ui: Ui, cmd: list[str], target: Path) -> None:
    ui.line(f"$ {esc(shlex.join(cmd))}")
    try:
        result = venvs.stream(cmd, lambda line: ui.line(f"  [dim]{esc(line)}[/]"))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; {target} is left as it was at that point: run the same command again to finish"
        ) from None
    except OSError as exc:
        raise ExternalError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        raise ExternalError(f"{_label(cmd)} failed (exit {result.returncode}): {_cause(list(result.tail))}")


def _label(cmd: list[str]) -> str:
    """`uv pip`, `uv venv`, `pip`, `venv`, `ensurepip`: what the user would call the failing step."""
    if Path(cmd[0]).name.startswith("uv"):
        return f"uv {cmd[1]}"
    return cmd[cmd.index("-m") + 1] if "-m" in cmd else Path(cmd[0]).name


def _cause(lines: list[str]) -> str:
    """The installer's own reason: uv's innermost `cause:` (`╰─▶` on a terminal), else the last `error` line
    (pip's `ERROR: No matching distribution …`), else its last line."""
    stripped = [ln.strip().lstrip("×╰─▶ ").strip() for ln in lines]
    for marks in (("cause:",), ("error",)):
        found = [
            ln
            for ln, raw in zip(stripped, lines, strict=True)
            if ln.lower().startswith(marks) or (marks == ("cause:",) and "╰─▶" in raw)
        ]
        if found:
            text = found[-1]
            for prefix in ("cause:", "error:", "ERROR:"):
                text = text[len(prefix) :].strip() if text.startswith(prefix) else text
            return text
    return stripped[-1] if stripped else "no output"


def _stack_results(target: Path) -> list[CheckResult]:
    from echopanel_setup import checks
    from echopanel_setup.facts import pyenv

    facts = Facts()
    facts.pyenv = pyenv.probe(str(paths.venv_python(target)), "recorded", use_cache=False)
    selected = checks.select(checks.all_checks(), ["stack"], [])
    return checks.run(facts, "local", selected)
