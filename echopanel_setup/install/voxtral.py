"""`echopanel-setup install voxtral`: the three files vLLM reads, downloaded so they can be trusted.

Order of work, cheapest first:
1. An install whose files still match the manifest (size and mtime) is confirmed from the manifest alone:
   no network, no hashing.
2. The dir must be writable; then the Hub says which commit the revision is and each file's size and hash.
3. The plan: keep what is verified, check what is present but unverified, resume what was interrupted
   (ours, or huggingface_hub's orphaned temp files), download the rest; free disk must cover it, with margin.
   `--dry-run` prints this and stops.
4. Transfers (fetch.py) hash while they run; each file is moved into place only once it matches the Hub,
   so a verified file is never written again. The manifest is written last.
`--verify` re-hashes an install against its manifest (or, without one, against the Hub) and names damage.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echopanel_setup import knowledge, paths
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, ExternalError, Interrupted, SetupError
from echopanel_setup.install import fetch, hub, manifest, orphans
from echopanel_setup.install.digest import Digest, Expected, hash_file
from echopanel_setup.install.hub import Remote, RemoteFile
from echopanel_setup.install.manifest import Entry, Manifest
from echopanel_setup.install.progress import Ui, size
from echopanel_setup.install.writable import ensure_writable

MIB = 1024 * 1024
INTERIM = "verified.json"  # files verified so far by an unfinished run, inside fetch.WORK_DIR


@dataclass(frozen=True, kw_only=True)
class VoxtralOptions:
    dir: str | None = None
    revision: str | None = None
    dry_run: bool = False
    verify: bool = False
    yes: bool = False
    stall_s: float = 30.0
    retries: int = 5


@dataclass(frozen=True)
class FileRow:
    """One file of the result: what the plan said to do with it, and how that went."""

    name: str
    size: int
    sha256: str | None
    action: str  # keep | check | resume | download | repair
    outcome: str | None  # kept | verified | downloaded | resumed | repaired; None in a plan
    reused_bytes: int


@dataclass(frozen=True)
class Disk:
    free: int
    needed: int
    margin: int


@dataclass(kw_only=True)
class VoxtralResult:
    """What one `install voxtral` run found or did; install/render.py shows it.

    status: already-installed | planned (--dry-run) | installed | cancelled | verified | damaged (--verify).
    """

    status: str
    dir: Path
    repo: str
    commit: str
    manifest: Path
    rerun: str  # the command that repeats this run (for the human hints)
    revision: str | None = None
    files: list[FileRow] = field(default_factory=list)
    downloaded_bytes: int = 0
    reused_bytes: int = 0
    duration_s: float = 0.0
    disk: Disk | None = None  # a plan's disk figures
    verified_at: str | None = None  # already-installed: when the manifest vouched for the files
    checked: dict[str, str] = field(default_factory=dict)  # --verify: file -> "ok" or what is wrong

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.status in ("cancelled", "damaged") else EXIT_OK


@dataclass
class Step:
    """What to do with one file. action: keep | check | resume | download | repair."""

    name: str
    expected: Expected
    etag: str
    action: str
    offset: int = 0  # bytes already on disk that the transfer continues from
    orphan: orphans.Orphan | None = None  # huggingface_hub's partial file, adopted before resuming
    outcome: str = ""
    digest: Digest | None = None

    @property
    def transfers(self) -> bool:
        """Goes through fetch.transfer: also a resume whose bytes are all kept (killed after the last byte,
        before the rename), which is hashed there and moved into place, or discarded and fetched again."""
        return self.action in ("resume", "download", "repair")

    @property
    def to_fetch(self) -> int:
        return self.expected.size - self.offset if self.transfers else 0


@dataclass
class Job:
    opts: VoxtralOptions
    ui: Ui
    repo: str
    names: list[str]
    target: Path
    chosen_by: str
    manifest_path: Path
    old: Manifest | None
    started: float = field(default_factory=time.perf_counter)
    prehashed: dict[str, fetch.Prehash] = field(default_factory=dict)

    @property
    def rerun(self) -> str:
        cmd = "echopanel-setup install voxtral"
        if self.opts.dir:
            cmd += f" --dir {self.opts.dir}"
        if self.opts.revision:
            cmd += f" --revision {self.opts.revision}"
        return cmd

    @property
    def backoff(self) -> hub.Backoff:
        """The metadata calls retry as huggingface_hub does, as many times as --retries allows."""
        return hub.Backoff(retries=self.opts.retries)

    @property
    def work(self) -> Path:
        return self.target / fetch.WORK_DIR

    def result(self, status: str, commit: str, **fields: Any) -> VoxtralResult:
        return VoxtralResult(
            status=status,
            dir=self.target,
            repo=self.repo,
            commit=commit,
            manifest=self.manifest_path,
            rerun=self.rerun,
            duration_s=round(time.perf_counter() - self.started, 3),
            **fields,
        )


def run(opts: VoxtralOptions, ui: Ui) -> VoxtralResult:
    """Install, confirm or verify the model; `ui` shows the progress while it runs (never the result)."""
    k = knowledge.load().model
    target, chosen_by = choose_dir(opts.dir)
    mpath = target / k.manifest_name
    old = manifest.read(mpath)
    if old is not None and old.repo != k.repo:
        old = None
    job = Job(opts, ui, k.repo, list(k.files), target, chosen_by, mpath, old)
    if opts.verify:
        return verify(job)
    if old is not None and not old.changes(target, job.names) and opts.revision in (None, old.commit):
        return already_installed(job, old)
    job.ui.line(f"Model dir: {target} ({chosen_by})")
    created = ensure_writable(target, create=not opts.dry_run, flag="--dir")
    if not opts.dry_run:
        job.prehashed = {n: ph for n in job.names if (ph := fetch.Partial(target, n).prehash()) is not None}
    try:
        if hub.offline():
            return offline(job)
        revision = opts.revision or (old.commit if old else "main")
        remote = hub.resolve(job.repo, revision, job.names, backoff=job.backoff, note=job.ui.note)
        return install(job, remote, opts.revision or (old.revision if old else "main"))
    except BaseException:
        _tidy(job, created)
        raise
    finally:
        for ph in job.prehashed.values():
            ph.follower.abort()


def choose_dir(given: str | None) -> tuple[Path, str]:
    """--dir, else the dir an earlier install recorded (doctor and serve look there), else the default."""
    return paths.install_target(given, "--dir", paths.read_state().get("model_dir"), paths.default_model_dir())


def _tidy(job: Job, created: Path | None) -> None:
    """After a failure: remove the folders this run created that stayed empty. Kept bytes, interim
    verifications and anything the user had stay; so do the lock and partial files of another run that is
    still writing here (this one may have failed precisely because that run holds the lock)."""
    folders = [job.work, job.target]
    if created is not None:
        folders += [p for p in job.target.parents if p == created or created in p.parents]
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty


def _record_dir(job: Job) -> None:
    """Tell doctor and serve where the model is (only when that changed: the fast path stays read-only).

    The model is installed either way: a state dir that cannot be written costs a warning, not the install."""
    if paths.read_state().get("model_dir") == str(job.target):
        return
    try:
        paths.write_state({"model_dir": str(job.target)})
    except OSError as exc:
        job.ui.note(
            f"could not record the model dir in {paths.state_file()} ({exc.strerror or exc}): "
            f"pass --model-dir {job.target} to doctor and serve"
        )


# -- fast paths ------------------------------------------------------------------------------------------


def already_installed(job: Job, m: Manifest) -> VoxtralResult:
    """Every file still matches its verified size and mtime: say so without network or hashing."""
    _record_dir(job)
    rows = [FileRow(n, m.files[n].size, m.files[n].sha256, "keep", "kept", m.files[n].size) for n in job.names]
    return job.result(
        "already-installed",
        m.commit,
        revision=m.revision,
        files=rows,
        reused_bytes=m.size(job.names),
        verified_at=m.verified_at,
    )


def offline(job: Job) -> VoxtralResult:
    """HF_HUB_OFFLINE=1: only what the manifest vouches for can be used; nothing is downloaded."""
    if job.old is None:
        raise ExternalError(
            f"HF_HUB_OFFLINE=1 and nothing verified in {job.target}: unset HF_HUB_OFFLINE to download "
            f"(about {size(knowledge.load().model.download_bytes)}), or pass --dir where the model is"
        )
    bad = _recheck(job, job.old)
    if bad:
        raise ExternalError(
            f"HF_HUB_OFFLINE=1 and {', '.join(bad)} cannot be used: unset HF_HUB_OFFLINE and run `{job.rerun}` to "
            "repair it"
        )
    manifest.write(job.manifest_path, job.old)
    return already_installed(job, job.old)


def _recheck(job: Job, m: Manifest) -> list[str]:
    """Re-hash files that changed since verification; refresh their mtimes when the bytes are still right."""
    bad = []
    for name in job.names:
        entry = m.files.get(name)
        path = job.target / name
        if entry is None or entry.damaged or not path.is_file():
            bad.append(name)
            continue
        st = path.stat()
        if st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns:
            continue
        job.ui.line(f"Checking {name} ({size(entry.size)}): it changed since it was verified")
        if st.st_size != entry.size or not entry.expected.matches(hash_file(path, entry.expected)):
            bad.append(name)
        else:
            entry.mtime_ns = st.st_mtime_ns
    return bad


# -- the full install -----------------------------------------------------------------------------------


def install(job: Job, remote: Remote, revision: str) -> VoxtralResult:
    found = orphans.find(job.target, job.repo, {n: remote.files[n].etag for n in job.names})
    known = _known_entries(job)
    steps = [_plan(job, remote.files[name], known.get(name), found) for name in job.names]
    adopted = {id(s.orphan) for s in steps if s.orphan is not None}
    leftovers = [o for o in found if id(o) not in adopted]
    need = sum(s.to_fetch for s in steps)
    margin = knowledge.load().disk.margin(need)
    free = _free_bytes(job.target) + orphans.reclaimable(leftovers, job.target)
    _print_plan(job, remote, revision, steps, need, free, margin)
    if need and free < need + margin:
        raise SetupError(_no_space(job, need, free, margin))
    if job.opts.dry_run:
        return job.result(
            "planned", remote.commit, revision=revision, files=_rows(steps), disk=Disk(free, need, margin)
        )
    if need and not _confirm(job, need):
        return job.result("cancelled", remote.commit, revision=revision, files=_rows(steps))
    with _lock(job):
        ours = [o for o in leftovers if not o.shared]
        freed = orphans.remove(ours)
        if ours:
            job.ui.note(f"removed {len(ours)} orphaned huggingface_hub temp file(s), {size(freed)} freed")
        _execute(job, remote, steps)
        m = Manifest(job.repo, revision, remote.commit, remote.endpoint, {s.name: _entry(job, s) for s in steps})
        manifest.write(job.manifest_path, m)
        _clean_work(job)
    _record_dir(job)
    fetched = sum(s.expected.size - s.offset for s in steps if s.outcome in ("downloaded", "resumed", "repaired"))
    reused = sum(s.offset for s in steps if s.outcome == "resumed") + sum(
        s.expected.size for s in steps if s.outcome in ("kept", "verified")
    )
    return job.result(
        "installed", remote.commit, revision=revision, files=_rows(steps), downloaded_bytes=fetched, reused_bytes=reused
    )


def _known_entries(job: Job) -> dict[str, Entry]:
    """Verified entries from the manifest and from an unfinished run (the latter is newer)."""
    known = dict(job.old.files) if job.old else {}
    interim = manifest.read(job.work / INTERIM)
    if interim is not None and interim.repo == job.repo:
        known.update(interim.files)
    return known


def _plan(job: Job, rf: RemoteFile, entry: Entry | None, found: list[orphans.Orphan]) -> Step:
    expected = Expected(rf.size, rf.sha256, rf.git_sha1)
    path = job.target / rf.name
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is not None and st.st_size == rf.size:
        if entry is not None and entry.damaged:
            return Step(rf.name, expected, rf.etag, "repair")
        same = (
            entry is not None
            and entry.size == rf.size
            and (entry.sha256 == rf.sha256 if rf.sha256 else entry.git_sha1 == rf.git_sha1)
        )
        if same and entry is not None and entry.mtime_ns == st.st_mtime_ns:
            return Step(
                rf.name,
                expected,
                rf.etag,
                "keep",
                outcome="kept",
                digest=Digest(entry.size, entry.sha256, entry.git_sha1),
            )
        return Step(rf.name, expected, rf.etag, "check")
    action = "repair" if st is not None else "download"
    kept = fetch.Partial(job.target, rf.name).kept(rf.etag, rf.size)
    orphan = orphans.best_for(found, rf.etag, rf.size, job.target)
    if orphan is not None and orphan.size > kept:
        return Step(rf.name, expected, rf.etag, "resume", orphan.size, orphan)
    if kept:
        return Step(rf.name, expected, rf.etag, "resume", kept)
    return Step(rf.name, expected, rf.etag, action)


def _free_bytes(target: Path) -> int:
    from echopanel_setup.facts.local import probe_disk

    return (probe_disk(target).free_mib or 0) * MIB


def _no_space(job: Job, need: int, free: int, margin: int) -> str:
    return (
        f"not enough disk space for {job.target}: {size(need)} to download plus a {size(margin)} margin, "
        f"{size(free)} free; free {size(need + margin - free)} more or pass --dir on another disk"
    )


def _disk_full(job: Job, s: Step, offset: int, later: list[Step]) -> str:
    """The disk filled mid-file: ask for exactly what the next run's disk check will want."""
    left = s.expected.size - offset + sum(t.to_fetch for t in later)
    want = left + knowledge.load().disk.margin(left)
    free = _free_bytes(job.target)
    return (
        f"disk full in {job.target} at {size(offset)} of {s.name}: {size(left)} still to download needs "
        f"{size(want)} free (with margin), {size(free)} is: free {size(max(want - free, 0))} more and run "
        f"`{job.rerun}` again; the partial file is kept and continues from there"
    )


_ACTION_WORDS = {
    "keep": "already verified",
    "check": "present, will be checked against the Hub",
    "download": "download",
    "repair": "damaged or different: download again",
}


def _print_plan(job: Job, remote: Remote, revision: str, steps: list[Step], need: int, free: int, margin: int) -> None:
    ui = job.ui
    if remote.revision != revision:  # pinned to what is installed: the Hub was not asked what `revision` is now
        ui.line(
            f"Commit {remote.commit[:12]} of {remote.repo} ({remote.endpoint}): the installed one; --revision "
            f"{revision} looks for a newer one"
        )
    else:
        ui.line(f"Revision {revision} = commit {remote.commit[:12]} of {remote.repo} ({remote.endpoint})")
    width = max(len(s.name) for s in steps)
    for s in steps:
        if s.action == "resume" and s.offset == s.expected.size:
            what = "every byte kept from the last run: will be checked"
        elif s.action == "resume":
            source = "huggingface_hub's partial file" if s.orphan is not None else "kept from the last run"
            what = f"resume at {size(s.offset)} ({s.offset:,} bytes {source})"
        else:
            what = _ACTION_WORDS[s.action]
        ui.line(f"  {s.name:<{width}}  {size(s.expected.size):>9}  {what}")
    if need:
        ui.line(f"To download: {size(need)}; free there: {size(free)} (needs {size(need)} + {size(margin)} margin).")
    else:
        ui.line("Nothing to download.")


def _confirm(job: Job, need: int) -> bool:
    if job.opts.yes or job.ui.json_mode or not sys.stdin.isatty():
        return True
    from rich.prompt import Confirm

    try:
        return Confirm.ask(f"Download {size(need)} into {job.target}?", default=True, console=job.ui.out)
    except EOFError:
        return False


class _lock:
    """One install per model dir at a time (two writers would interleave their bytes).

    Only the holder removes the lock file and empty partial files, and only while it still holds the lock:
    a run that did not get the lock must leave the running one's files alone."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.lock: Any = None

    def __enter__(self) -> None:
        from filelock import FileLock, Timeout

        self.job.work.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.job.work / "lock"), timeout=0)
        try:
            self.lock.acquire()
        except Timeout:
            raise SetupError(
                f"another `install voxtral` is writing to {self.job.target}: wait for it to finish"
            ) from None

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is not None:  # failed or interrupted: drop partial files that hold no byte yet
                for name in self.job.names:
                    partial = fetch.Partial(self.job.target, name)
                    try:
                        if partial.path.stat().st_size == 0:
                            partial.discard()
                    except OSError:
                        pass
            (self.job.work / "lock").unlink(missing_ok=True)
        finally:
            self.lock.release()


def _execute(job: Job, remote: Remote, steps: list[Step]) -> None:
    ui = job.ui
    total = sum(s.expected.size for s in steps if s.transfers)
    done = sum(s.offset for s in steps if s.transfers)
    with ui.transfer(total, done):
        for s in steps:
            if s.action == "check":
                ui.current(f"checking {s.name}")
                try:
                    digest = hash_file(job.target / s.name, s.expected)
                except KeyboardInterrupt:
                    raise Interrupted(
                        f"interrupted while checking {s.name}; nothing was changed: run `{job.rerun}` again to finish"
                    ) from None
                if s.expected.matches(digest):
                    s.outcome, s.digest = "verified", digest
                    _record(job, remote, s)
                    continue
                ui.note(f"{s.name} on disk differs from the Hub ({s.expected.describe(digest)}): downloading it again")
                s.action = "repair"
                ui.grow(s.expected.size)
            if s.transfers:
                try:
                    _fetch(job, remote, s)
                except KeyboardInterrupt:
                    raise _interrupted(job, s) from None
                except fetch.DiskFull as exc:
                    if exc.too_large:
                        raise ExternalError(
                            f"{job.target} cannot hold a file of {size(s.expected.size)} ({exc}; a FAT32 disk or a "
                            "file size limit?): pass --dir on another filesystem"
                        ) from None
                    raise ExternalError(_disk_full(job, s, exc.offset, steps[steps.index(s) + 1 :])) from None
                except fetch.TransferError as exc:
                    raise ExternalError(
                        f"{exc}; gave up at {size(exc.offset)} of {s.name} ({100 * exc.offset // s.expected.size}%): "
                        f"run `{job.rerun}` again to resume from there"
                    ) from None
                except OSError as exc:
                    if exc.errno is None or isinstance(exc, ConnectionError):  # huggingface_hub's errors carry no errno
                        raise hub.error(exc, repo=job.repo, revision=remote.commit, name=s.name) from None
                    raise ExternalError(f"cannot write {s.name} in {job.target}: {exc.strerror or exc}") from None
                except Exception as exc:  # noqa: BLE001 - Hub and network errors become one line
                    raise hub.error(exc, repo=job.repo, revision=remote.commit, name=s.name) from None
                _record(job, remote, s)


def _fetch(job: Job, remote: Remote, s: Step) -> None:
    ui = job.ui
    partial = fetch.Partial(job.target, s.name)
    if s.orphan is not None:
        partial.adopt(s.orphan.path, s.etag, s.expected.size)
        ui.note(f"continuing huggingface_hub's partial {s.name}: {size(s.offset)} ({s.offset:,} bytes) reused")
    offset = partial.begin(s.etag, s.expected.size)
    if offset == s.expected.size:
        ui.line(f"Checking {s.name}: all {offset:,} bytes were downloaded by the last run")
    elif offset and s.orphan is None:
        ui.line(f"Resuming {s.name} at {size(offset)}: {offset:,} bytes reused from the last run")
    policy = fetch.Policy(stall_s=job.opts.stall_s, retries=job.opts.retries)
    repaired = s.action == "repair"
    ph = job.prehashed.pop(s.name, None)
    hasher = (
        ph.follower if ph is not None and (ph.etag, ph.size, ph.offset) == (s.etag, s.expected.size, offset) else None
    )
    if ph is not None and hasher is None:
        ph.follower.abort()
    for attempt in (1, 2):
        ui.current(s.name)
        if not ui.live and offset < s.expected.size:
            ui.line(f"Downloading {s.name} ({size(s.expected.size - offset)}{' more' if offset else ''})")
        digest = fetch.transfer(
            partial,
            offset,
            s.expected,
            lambda: hub.locate(job.repo, remote.commit, s.name),
            on_bytes=ui.advance,
            note=ui.note,
            policy=policy,
            hasher=hasher,
            hashing=lambda: ui.current(f"verifying {s.name}"),
        )
        hasher = None  # a second attempt starts from byte 0 with a new one
        if s.expected.matches(digest):
            break
        partial.discard()
        if attempt == 2 or offset == 0:
            raise ExternalError(
                f"{s.name}: the downloaded bytes do not match the Hub ({s.expected.describe(digest)}); they were "
                f"discarded: run `{job.rerun}` again (a proxy or a failing disk may be at fault)"
            )
        ui.note(
            f"the kept bytes of {s.name} were damaged ({s.expected.describe(digest)}): downloading it from the start"
        )
        ui.advance(-s.expected.size)
        offset = s.offset = partial.begin(s.etag, s.expected.size)
    partial.install(job.target / s.name)
    s.digest = digest
    s.outcome = "repaired" if repaired else ("resumed" if s.offset else "downloaded")
    ui.line(f"[green]{ui.sym['ok']}[/] {s.name} verified (sha256 {digest.sha256[:16]}…)")


def _interrupted(job: Job, s: Step) -> Interrupted:
    try:
        have = fetch.Partial(job.target, s.name).path.stat().st_size
    except OSError:
        have = 0
    return Interrupted(
        f"interrupted at {size(have)} of {size(s.expected.size)} ({s.name}); the partial file is kept: "
        f"run `{job.rerun}` again to resume from there"
    )


def _entry(job: Job, s: Step) -> Entry:
    assert s.digest is not None, "every step ends with a digest"
    return manifest.entry_for(job.target / s.name, s.digest)


def _record(job: Job, remote: Remote, s: Step) -> None:
    """Remember a verified file now, so a later failure does not cost re-hashing it."""
    path = job.work / INTERIM
    interim = manifest.read(path) or Manifest(job.repo, remote.revision, remote.commit, remote.endpoint)
    interim.files[s.name] = _entry(job, s)
    job.work.mkdir(parents=True, exist_ok=True)
    manifest.write(path, interim)


def _clean_work(job: Job) -> None:
    """Remove our work dir once nothing in it is worth keeping."""
    for name in (INTERIM, "lock"):
        (job.work / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        job.work.rmdir()


# -- --verify ----------------------------------------------------------------------------------------------


def verify(job: Job) -> VoxtralResult:
    """Re-hash every file against the manifest (no network) or, without one, against the Hub."""
    ui = job.ui
    m = job.old
    if m is None:
        present = [n for n in job.names if (job.target / n).is_file()]
        if not present:
            raise SetupError(f"nothing installed in {job.target}: run `{job.rerun}`")
        remote = hub.resolve(job.repo, job.opts.revision or "main", job.names, backoff=job.backoff, note=ui.note)
        m = Manifest(job.repo, remote.revision, remote.commit, remote.endpoint)
        expectations = {n: Expected(f.size, f.sha256, f.git_sha1) for n, f in remote.files.items()}
        ui.line(f"No manifest in {job.target}: checking against the Hub ({remote.commit[:12]})")
    else:
        expectations = {n: m.files[n].expected for n in job.names if n in m.files}
    results: dict[str, str] = {}
    total = sum(e.size for n, e in expectations.items() if (job.target / n).is_file())
    with ui.transfer(total):
        for name in job.names:
            path = job.target / name
            exp = expectations.get(name)
            if exp is None or not path.is_file():
                results[name] = "missing"
                continue
            if path.stat().st_size != exp.size:
                results[name] = f"{path.stat().st_size} bytes instead of {exp.size}"
                continue
            ui.current(f"verifying {name}")
            digest = hash_file(path, exp, on_bytes=ui.advance)
            if exp.matches(digest):
                results[name] = "ok"
                if name in m.files:
                    m.files[name].mtime_ns, m.files[name].damaged = path.stat().st_mtime_ns, False
                else:
                    m.files[name] = manifest.entry_for(path, digest)
            else:
                results[name] = f"corrupt: {exp.describe(digest)}"
                if name in m.files:
                    m.files[name].damaged = True
    bad = [n for n, r in results.items() if r != "ok"]
    if job.old is not None or not bad:
        _save_verdict(job, m)
    return job.result("damaged" if bad else "verified", m.commit, revision=m.revision, checked=results)


def _save_verdict(job: Job, m: Manifest) -> None:
    """Record what --verify found (doctor reads damage from the manifest; later runs skip re-hashing). Verifying
    only needs to read: a read-only model dir (a shared or mounted copy) gets the verdict without the record."""
    try:
        manifest.write(job.manifest_path, m)
    except OSError as exc:
        job.ui.note(f"the result is not recorded in {job.manifest_path}: {exc.strerror or exc}")


# -- the result ------------------------------------------------------------------------------------------------


def _rows(steps: list[Step]) -> list[FileRow]:
    return [
        FileRow(
            s.name,
            s.expected.size,
            s.digest.sha256 if s.digest else s.expected.sha256,
            s.action,
            s.outcome or None,
            s.expected.size if s.outcome in ("kept", "verified") else s.offset,
        )
        for s in steps
    ]
