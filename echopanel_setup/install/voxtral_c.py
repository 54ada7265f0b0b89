"""`echopanel-setup install voxtral-c`: antirez/voxtral.c cloned at a known-good commit, built, and checked to run —
the engine EchoPanel's `voxtral_realtime` provider starts, fed with the weights `install voxtral` verified.

Order of work, cheapest first:
1. Preconditions from facts (probed, or replayed with --facts), each with its fix: Apple Silicon outside Rosetta for
   `mps`, the compiler the Makefile names (Xcode's command-line tools on macOS), make, OpenBLAS on Linux for `blas`,
   git, disk. All are named at once; any one refuses (exit 1) before anything is written.
2. The clone is ours (created by this command, recorded in our state file) or it is not touched: an existing folder
   we did not clone is refused, and EchoPanel's default place `<checkout>/../voxtral.c` is reported, never modified.
3. Already built at this commit with this backend, and `voxtral --help` still runs: nothing to do (no network).
4. Clone (or fetch into our clone), check out the commit, `make mps|blas` with the log kept, `voxtral --help`.
   A failed clone or fetch is exit 3; a failed build names its first error line and the log (exit 3).
5. The record in our state file is what configure reads for ECHOPANEL_VOXTRAL_BIN; the model is `install voxtral`'s
   verified dir (no second download, no link).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup import knowledge, paths
from echopanel_setup.checks.voxtral_c import Precondition, build_needs, default_backend
from echopanel_setup.errors import EXIT_OK, ExternalError, Interrupted, SetupError, UsageError
from echopanel_setup.facts import voxtral_c as probe
from echopanel_setup.facts.model import Facts, VoxtralCBuild
from echopanel_setup.install.progress import Ui
from echopanel_setup.install.writable import ensure_writable
from echopanel_setup.ui import esc

BACKENDS = ("mps", "blas")
MARKER = "echopanel-setup-clone"  # inside .git: says this clone is ours, without touching the work tree
MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class VoxtralCOptions:
    dir: str | None = None
    repo: str | None = None
    ref: str | None = None
    backend: str | None = None
    dry_run: bool = False
    facts: str | None = None
    echopanel: str | None = None


@dataclass(kw_only=True)
class VoxtralCResult:
    """What one run found or did; install/render.py shows it. status: planned | already-built | built."""

    status: str
    checkout: Path
    repo_url: str
    ref: str
    commit: str | None
    backend: str
    binary: Path
    log: Path
    commands: list[list[str]] = field(default_factory=list)
    preconditions: list[Precondition] = field(default_factory=list)
    model: Path | None = None
    model_verified: bool | None = None
    user_clone: str | None = None
    user_clone_commit: str | None = None
    recorded: bool = False
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_OK

    @property
    def echopanel_env(self) -> dict[str, str]:
        """The two absolute paths EchoPanel's voxtral_realtime needs (the model only once it is installed)."""
        env = {probe.BIN: str(self.binary)}
        if self.model is not None:
            env[probe.MODEL] = str(self.model)
        return env


def run(opts: VoxtralCOptions, ui: Ui) -> VoxtralCResult:
    """Check, plan, clone, build and run-check; `ui` shows the progress while it runs (never the result)."""
    started = time.perf_counter()
    k = knowledge.load().voxtral_c
    facts = _facts(opts)
    backend = _backend(opts.backend, facts)
    build = probe.read_build()
    target, chosen_by = _target(opts.dir, build)
    ours = _is_ours(target, build)
    repo_url = _repo_url(opts.repo, build if ours else None)
    ref = opts.ref or k.commit
    ui.line(f"voxtral.c: {target} ({chosen_by}); {repo_url} at {ref[:12]}; `make {backend}`")
    result = VoxtralCResult(
        status="planned",
        checkout=target,
        repo_url=repo_url,
        ref=ref,
        commit=None,
        backend=backend,
        binary=target / k.binary,
        log=_log_path(backend),
    )
    vc = facts.voxtral_c
    result.user_clone, result.user_clone_commit = vc.user_clone, vc.user_clone_commit
    if vc.user_clone:
        ui.note(
            f"found a voxtral.c clone at {vc.user_clone} (commit {(vc.user_clone_commit or 'unknown')[:12]}), "
            "EchoPanel's default place: it is not ours, so it is left alone"
        )
    result.preconditions = preconditions(facts, backend, target)
    _refuse_unmet(ui, result.preconditions)
    if not target.exists() or target.is_file():
        ensure_writable(target, create=False, flag="--dir")  # exit 2 before any clone, like the other installs
    if target.exists() and not ours and any(target.iterdir()):
        raise SetupError(
            f"{target} exists and was not cloned by echopanel-setup: it is left alone; pass --dir to a new folder"
        )
    _model(result)
    if ours and target.exists() and not opts.dry_run and not _is_commit_id(ref):
        _update(ui, target, repo_url)  # a branch or tag moves: ask the repository where it is now
    if ours and build is not None and _current(build, target, ref, backend):
        result.status, result.commit, result.recorded = "already-built", build.commit, True
        result.log = Path(build.log) if build.log else result.log
        result.duration_s = round(time.perf_counter() - started, 3)
        return result
    result.commands = _plan(target, repo_url, ref, backend, fresh=not ours or not target.exists())
    if opts.dry_run:
        for cmd in result.commands:
            ui.line(f"  would run: {esc(' '.join(cmd))}")
        return result
    created = _fetch(ui, target, repo_url, ref, fresh=not ours or not target.exists())
    try:
        result.commit = _checkout(target, ref, repo_url, pinned=opts.ref is None)
    except SetupError:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    _build(ui, target, backend, result.log)
    found = probe.check_binary(result.binary, "install voxtral-c")
    if not found.runs:
        raise SetupError(f"built {result.binary}, but it does not run: {found.error}; build log: {result.log}")
    ui.line(f"[green]{ui.sym['ok']}[/] {esc(str(result.binary))} --help: exit 0, usage on stderr")
    record = VoxtralCBuild(
        checkout=str(target),
        commit=result.commit,
        backend=backend,
        binary=str(result.binary),
        repo_url=repo_url,
        log=str(result.log),
        built_at=paths.timestamp(),
    )
    try:
        probe.write_build(record)
        result.recorded = True
    except OSError as exc:
        ui.note(f"could not record the build in {paths.state_file()} ({exc.strerror or exc})")
    result.status = "built"
    result.duration_s = round(time.perf_counter() - started, 3)
    return result


# -- facts and preconditions ------------------------------------------------------------------------------------


def _facts(opts: VoxtralCOptions) -> Facts:
    """Platform and toolchain: replayed from --facts (probed here when the snapshot predates voxtral.c), or probed."""
    from echopanel_setup.facts import platform

    if opts.facts:
        from echopanel_setup.doctor import load_facts

        facts = load_facts(opts.facts)
    else:
        facts = Facts(platform=platform.probe())
    if not facts.voxtral_c.probed:
        facts.voxtral_c = probe.probe(facts.platform.system, force=True)
        checkout = _echopanel_checkout(opts.echopanel)
        if checkout is not None:
            facts.voxtral_c.user_clone, facts.voxtral_c.user_clone_commit = probe.user_clone(
                checkout, facts.voxtral_c.build
            )
    return facts


def _echopanel_checkout(explicit: str | None) -> Path | None:
    from echopanel_setup.echopanel import probe as echopanel_probe

    try:
        found = echopanel_probe.locate(explicit, os.environ, Path.cwd(), Path.home())
    except UsageError:
        if explicit:
            raise
        return None  # several candidates or a stale ECHOPANEL_HOME: no sibling clone to report
    return found.path if found else None


def _backend(given: str | None, facts: Facts) -> str:
    """--backend, else doctor's default for this machine (mps on Apple Silicon, blas elsewhere)."""
    if given is not None:
        if given not in BACKENDS:
            raise UsageError(f"--backend {given!r}: choose mps (Apple Silicon) or blas")
        return given
    return default_backend(facts)


def preconditions(facts: Facts, backend: str, target: Path) -> list[Precondition]:
    """Everything the build needs, each with its fix: doctor's own list (checks/voxtral_c.build_needs), plus the
    disk at `target`."""
    return [*build_needs(facts, backend), _disk(target, knowledge.load().voxtral_c.disk_mib)]


def _disk(target: Path, need_mib: int) -> Precondition:
    from echopanel_setup.facts.local import probe_disk

    disk = probe_disk(target)
    free = disk.free_mib
    if free is not None and free < need_mib and not (target / ".git").is_dir():
        return Precondition(
            "disk",
            False,
            f"{free} MiB free at {disk.checked_path}; the clone and its build need about {need_mib} MiB",
            ("Free some space, or pass --dir on another disk",),
        )
    return Precondition("disk", True, f"{free if free is not None else '?'} MiB free at {disk.checked_path}")


def _refuse_unmet(ui: Ui, found: list[Precondition]) -> None:
    unmet = [c for c in found if not c.ok]
    for c in found:
        if c.ok:
            ui.line(f"[green]{ui.sym['ok']}[/] {c.name}: {esc(c.detail)}")
        else:
            ui.outcome("fail", f"{c.name}: {c.detail}", commands=c.fix)
    if unmet:
        first = unmet[0]
        more = f" (and {len(unmet) - 1} more above)" if len(unmet) > 1 else ""
        fix = f": {first.fix[0]}" if first.fix else ""
        raise SetupError(f"cannot build voxtral.c: {first.detail}{fix}{more}")


# -- where, from where, and is it done already ---------------------------------------------------------------------


def _target(given: str | None, build: VoxtralCBuild | None) -> tuple[Path, str]:
    return paths.install_target(given, "--dir", build and build.checkout, paths.data_dir() / "voxtral.c")


def _is_ours(target: Path, build: VoxtralCBuild | None) -> bool:
    """Cloned by this command: the marker inside its .git (the record alone could name a folder since replaced)."""
    return (target / ".git" / MARKER).is_file() or (
        build is not None and Path(build.checkout) == target and not target.exists()
    )


def _repo_url(given: str | None, build: VoxtralCBuild | None) -> str:
    """--repo (a URL, a mirror, or a local clone's path), else what our clone came from, else the public URL."""
    if given:
        local = Path(given).expanduser()
        return str(local.absolute()) if local.exists() else given
    if build is not None and build.repo_url:
        return build.repo_url
    return knowledge.load().voxtral_c.repo_url


def _current(build: VoxtralCBuild, target: Path, ref: str, backend: str) -> bool:
    """Built at this commit with this backend, still checked out, and still runs: nothing to redo."""
    if build.backend != backend or Path(build.checkout) != target:
        return False
    wanted = _resolve(target, ref)
    if wanted is None or wanted != build.commit or probe.git_head(target) != build.commit:
        return False
    return bool(probe.check_binary(Path(build.binary), "install voxtral-c").runs)


def _model(result: VoxtralCResult) -> None:
    """`install voxtral`'s dir, as doctor and serve find it: used in place, never copied or linked."""
    from echopanel_setup.facts.local import probe_model

    recorded = paths.read_state().get("model_dir")
    model = Path(recorded) if isinstance(recorded, str) and recorded else paths.default_model_dir()
    found = probe_model(model, None)
    if all(found.files.get(n) is not None for n in knowledge.load().voxtral_c.model_files):
        result.model, result.model_verified = model, found.verified


def _log_path(backend: str) -> Path:
    return paths.state_dir() / "voxtral-c" / f"build-{backend}.log"


# -- git and make -----------------------------------------------------------------------------------------------------


def _plan(target: Path, url: str, ref: str, backend: str, *, fresh: bool) -> list[list[str]]:
    get = ["git", "clone", "--no-checkout", url, str(target)] if fresh else ["git", "-C", str(target), "fetch", url]
    return [
        get,
        ["git", "-C", str(target), "checkout", "--detach", ref],
        ["make", "-C", str(target), backend],
        [str(target / knowledge.load().voxtral_c.binary), "--help"],
    ]


def _git(args: list[str], what: str) -> str:
    """Run git; its own last line becomes the one-line error (exit 3: the network or the repository refused)."""
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except OSError as exc:
        raise ExternalError(f"{what}: git does not run: {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        cause = next((ln for ln in lines if ln.startswith("fatal:")), lines[-1] if lines else f"exit {done.returncode}")
        raise ExternalError(f"{what}: {cause}")
    return done.stdout.strip()


def _fetch(ui: Ui, target: Path, url: str, ref: str, *, fresh: bool) -> bool:
    """Clone into a new folder (marked ours), or fetch into our clone when the commit is not there yet.
    Returns whether this run created the folder (removed again if what follows fails)."""
    if fresh:
        ui.line(f"$ git clone --no-checkout {esc(url)} {esc(str(target))}")
        existed = target.exists()  # an empty folder the user made: emptied again on failure, not removed
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _git(["clone", "--quiet", "--no-checkout", url, str(target)], f"cannot clone {url}")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if existed:
                target.mkdir()
            raise
        (target / ".git" / MARKER).write_text("cloned by echopanel-setup install voxtral-c\n", encoding="utf-8")
        return not existed
    if _resolve(target, ref) is None:
        _update(ui, target, url)
    return False


def _update(ui: Ui, target: Path, url: str) -> None:
    """Fetch every branch and tag of `url` into our clone (exit 3 when the network or repository refuses)."""
    ui.line(f"$ git -C {esc(str(target))} fetch {esc(url)}")
    refs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
    _git(["-C", str(target), "fetch", "--quiet", url, *refs], f"cannot fetch {url}")


def _is_commit_id(ref: str) -> bool:
    """A full 40-hex commit id names the same code forever: no fetch needed to know it is built."""
    return len(ref) == 40 and all(c in "0123456789abcdef" for c in ref.lower())


def _resolve(target: Path, ref: str) -> str | None:
    """The full commit id `ref` names in our clone (a sha, a tag, a branch of origin), or None."""
    for name in (f"origin/{ref}", ref):  # a branch as fetched last, before a local branch the clone left behind
        try:
            done = subprocess.run(
                ["git", "-C", str(target), "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
                capture_output=True,
                text=True,
            )
        except OSError:
            return None
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return None


def _checkout(target: Path, ref: str, url: str, *, pinned: bool) -> str:
    """Check out `ref`; `pinned`: it is the knowledge file's commit, not the user's --ref (say so when it is absent)."""
    commit = _resolve(target, ref)
    if commit is None and pinned:
        raise UsageError(
            f"{url} does not hold the pinned voxtral.c commit {ref[:12]}: use a mirror of "
            "https://github.com/antirez/voxtral.c that has it, or pass --ref COMMIT (a tag or branch) to build another"
        )
    if commit is None:
        raise UsageError(f"--ref {ref}: no such commit, tag or branch in {url}")
    _git(["-C", str(target), "checkout", "--quiet", "--force", "--detach", commit], f"cannot check out {commit[:12]}")
    return commit


def _build(ui: Ui, target: Path, backend: str, log: Path) -> None:
    """`make <backend>` with every line kept in `log`; a failure names its first error line (exit 3)."""
    from echopanel_setup.install import venv as venvs

    cmd = ["make", "-C", str(target), backend]
    ui.line(f"$ {esc(' '.join(cmd))}  (log: {esc(str(log))})")
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with log.open("w", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")

        def keep(line: str) -> None:
            lines.append(line)
            fh.write(line + "\n")
            ui.line(f"  [dim]{esc(line)}[/]")

        try:
            done = venvs.stream(cmd, keep, keep=1)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted during `make {backend}`: run the same command again") from None
        except OSError as exc:
            raise ExternalError(f"cannot run make: {exc.strerror or exc}") from None
    if done.returncode != 0:
        cause = probe.first_error(lines) or (lines[-1] if lines else "no output")
        raise ExternalError(f"`make {backend}` failed (exit {done.returncode}): {cause}; build log: {log}")
