"""Resumable, hashed transfer of one file: what huggingface_hub ≥ 1.18 no longer does across processes.

Bytes go into `<dir>/.echopanel-download/<name>.part`, described by `<name>.part.json` (etag and size of the
file version). A later run continues that file from its last byte with `Range: bytes=N-`, but only while the
etag and size still match; anything else starts over. A `digest.Follower` thread hashes the file as it grows
(re-reading the kept prefix first after a resume), so the sha256 is ready the moment the last byte lands.
Progress is reported as bytes both received and hashed: a resumed file whose kept prefix is still being
re-read never shows as done while its hash is behind.

Failures: a read that gets no byte for `stall_s` is a stall; a stall or a broken connection is retried
from the current byte, up to `retries` times in a row without progress (the count resets whenever bytes
arrive). A full disk stops at once. In every case the partial file is a clean prefix of the real file.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echopanel_setup.errors import ExternalError
from echopanel_setup.install import hub
from echopanel_setup.install.digest import Digest, Expected, Follower

WORK_DIR = ".echopanel-download"
MAX_BACKOFF_S = 8.0  # huggingface_hub's cap (`http_backoff` max_wait_time)
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}  # the filesystem takes no more bytes


@dataclass(frozen=True)
class Policy:
    stall_s: float = 30.0
    retries: int = 5
    backoff_s: float = 1.0  # before the 2nd retry in a row; doubled after each, capped at MAX_BACKOFF_S


class TransferError(Exception):
    """The transfer gave up after its retries; `offset` bytes are kept for the next run."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class DiskFull(TransferError):
    """The filesystem refused more bytes: nothing to retry until the user frees space (or picks another disk)."""

    def __init__(self, message: str, offset: int, too_large: bool = False) -> None:
        super().__init__(message, offset)
        self.too_large = too_large  # EFBIG: a per-file limit (FAT32's 4 GiB, a ulimit), not a full disk


@dataclass
class Prehash:
    """Kept bytes already being hashed, for the file version (etag, size) they belong to."""

    etag: str
    size: int
    offset: int
    follower: Follower


class Partial:
    """The kept bytes of one file, and the version (etag, size) they belong to."""

    def __init__(self, model_dir: Path, name: str) -> None:
        self.dir = model_dir / WORK_DIR
        self.path = self.dir / f"{name}.part"
        self.meta_path = self.dir / f"{name}.part.json"

    def _meta(self) -> tuple[str, int] | None:
        """(etag, size) as written by `_write_meta`; None for anything else (then nothing is kept: a damaged or
        hand-edited file must not stop every later run)."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            etag, size = meta["etag"], meta["size"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if isinstance(etag, str) and type(size) is int and size >= 0:
            return etag, size
        return None

    def kept(self, etag: str, size: int) -> int:
        """Bytes kept from an earlier run of this exact file version (0 when there are none or they don't match)."""
        try:
            have = self.path.stat().st_size
        except OSError:
            return 0
        return have if self._meta() == (etag, size) and have <= size else 0

    def prehash(self) -> Prehash | None:
        """Start hashing the kept bytes now, while the Hub is still being asked: a resume then waits for
        nothing but the missing bytes. The etag tells which hash the file needs (64 hex: sha256, 40: git sha1)."""
        meta = self._meta()
        offset = self.kept(*meta) if meta else 0
        if not meta or not offset:
            return None
        etag, size = meta
        follower = Follower(
            self.path, Expected(size, etag if len(etag) == 64 else None, etag if len(etag) == 40 else None)
        )
        follower.advance(offset)
        follower.start()
        return Prehash(etag, size, offset, follower)

    def begin(self, etag: str, size: int) -> int:
        """Open the partial for this version; returns the byte to continue from."""
        offset = self.kept(etag, size)
        if offset == 0:
            self.discard()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_meta(etag, size)
        self.path.touch(exist_ok=True)
        return offset

    def adopt(self, source: Path, etag: str, size: int) -> None:
        """Take over another tool's partial file (same filesystem: a rename, no copy)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.replace(source, self.path)
        self._write_meta(etag, size)

    def _write_meta(self, etag: str, size: int) -> None:
        tmp = self.meta_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"etag": etag, "size": size}) + "\n", encoding="utf-8")
        os.replace(tmp, self.meta_path)

    def install(self, dest: Path) -> None:
        """Move the verified file into place (atomic: dest is either the old file or the new one)."""
        os.replace(self.path, dest)
        self.meta_path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def transfer(
    partial: Partial,
    offset: int,
    expected: Expected,
    locate: Callable[[], hub.Source],
    *,
    on_bytes: Callable[[int], None],
    note: Callable[[str], None],
    policy: Policy,
    hasher: Follower | None = None,
    hashing: Callable[[], None] | None = None,
) -> Digest:
    """Fetch the rest of the file from `offset` into the partial; returns the digest of the whole file.

    `hasher` may already be hashing the kept bytes (Partial.prehash); otherwise one starts here. `on_bytes`
    gets the growth of "received and hashed" (the first `offset` bytes count as shown already); `hashing`
    is called when every byte is in but the hash is still behind (a display says "verifying")."""
    state = _State(partial.path, expected, offset, hasher, on_bytes)
    fd = os.open(partial.path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    failures = 0
    try:
        while state.offset < expected.size:
            reached = state.offset
            try:
                _attempt(fd, state, locate, note, policy)
            except Exception as exc:  # noqa: BLE001 - transient network errors are retried, the rest re-raised
                if isinstance(exc, OSError) and exc.errno in _FULL:
                    raise DiskFull(
                        exc.strerror or "disk full", state.offset, too_large=exc.errno == errno.EFBIG
                    ) from None
                if not hub.transient(exc):
                    raise
                failures = _retry_or_give_up(exc, state, reached, failures, note, policy)
            else:
                failures = 0
        if hashing is not None and state.hasher.hashed < expected.size:
            hashing()
        return state.finish()
    except BaseException:
        state.hasher.abort()
        raise
    finally:
        os.close(fd)


class _State:
    """One file's transfer: bytes received (`offset`), the hasher following them, and what was reported."""

    def __init__(
        self, path: Path, expected: Expected, offset: int, hasher: Follower | None, on_bytes: Callable[[int], None]
    ) -> None:
        self.path, self.expected, self.offset = path, expected, offset
        self.host = ""
        self._on_bytes = on_bytes
        self._shown = offset  # the caller's display already counts the kept bytes
        self._lock = threading.Lock()
        self.hasher = self._follow(hasher or self._new_hasher())

    def _new_hasher(self) -> Follower:
        hasher = Follower(self.path, self.expected)
        hasher.advance(self.offset)
        hasher.start()
        return hasher

    def _follow(self, hasher: Follower) -> Follower:
        hasher.listen(lambda _: self.report())
        return hasher

    def received(self, n: int) -> None:
        self.offset += n
        self.hasher.advance(self.offset)
        self.report()

    def report(self) -> None:
        """Move the display to min(received, hashed): called from this thread and from the hasher's."""
        with self._lock:
            done = min(self.offset, self.hasher.hashed)
            if done > self._shown:
                self._on_bytes(done - self._shown)
                self._shown = done

    def restart(self, fd: int) -> None:
        """The server ignored our Range: forget the kept bytes and start the file over."""
        self.hasher.abort()
        os.ftruncate(fd, 0)
        with self._lock:
            self._on_bytes(-self._shown)
            self._shown = self.offset = 0
        self.hasher = self._follow(self._new_hasher())

    def finish(self) -> Digest:
        digest = self.hasher.finish()
        self.report()
        return digest


def _attempt(
    fd: int,
    state: _State,
    locate: Callable[[], hub.Source],
    note: Callable[[str], None],
    policy: Policy,
) -> None:
    import httpx2
    from huggingface_hub import get_session
    from huggingface_hub.utils import hf_raise_for_status

    size = state.expected.size
    state.host = hub.host(hub.endpoint())
    src = locate()
    state.host = hub.host(src.url)
    if src.size is not None and src.size != size:
        raise ExternalError(
            f"the Hub now gives {src.size} bytes for a file it listed as {size}: the repo changed, run again"
        )
    headers = dict(src.headers)
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    timeout = httpx2.Timeout(hub.CONNECT_TIMEOUT_S, read=policy.stall_s)
    with get_session().stream("GET", src.url, headers=headers, timeout=timeout) as response:
        hf_raise_for_status(response)
        if state.offset and response.status_code != 206:
            note(f"{state.host} ignored the byte range: starting this file over")
            state.restart(fd)
        elif state.offset and not response.headers.get("Content-Range", "").startswith(f"bytes {state.offset}-"):
            raise ExternalError(
                f"{state.host} sent the wrong byte range ({response.headers.get('Content-Range')!r} for byte "
                f"{state.offset})"
            )
        os.lseek(fd, state.offset, os.SEEK_SET)
        for chunk in response.iter_bytes():
            _write_all(fd, chunk)
            if state.offset + len(chunk) > size:
                raise ExternalError(
                    f"{state.host} sent more than the {size} bytes the Hub listed: the download was discarded, run "
                    "again"
                )
            state.received(len(chunk))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _retry_or_give_up(
    exc: BaseException, state: _State, reached: int, failures: int, note: Callable[[str], None], policy: Policy
) -> int:
    import httpx2

    failures = 1 if state.offset > reached else failures + 1
    stalled = isinstance(exc, httpx2.ReadTimeout)
    host = state.host or hub.endpoint()
    what = f"no data from {host} for {policy.stall_s:g} s" if stalled else _reason(exc, host)
    if failures > policy.retries:
        raise TransferError(what, state.offset) from exc
    # A wait the server asks for (429, Retry-After) is kept, as huggingface_hub keeps it. Otherwise the first
    # retry after a break is immediate (a dropped connection is usually just that); then back off.
    asked = hub.asked_wait(exc)
    if asked is not None:
        wait = asked
    else:
        wait = 0.0 if stalled or failures == 1 else min(policy.backoff_s * 2 ** (failures - 2), MAX_BACKOFF_S)
    note(
        f"{what}: resuming at byte {state.offset:,} (retry {failures} of "
        f"{policy.retries}{f', in {wait:g} s' if wait else ''})"
    )
    if wait:
        time.sleep(wait)
    return failures


def _reason(exc: BaseException, host: str) -> str:
    """What went wrong, naming the host only: the URL of a CDN request is signed, its query is a secret."""
    import httpx2

    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        return f"the connection to {host} broke"
    return hub.failure(exc)
