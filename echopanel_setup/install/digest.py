"""Hashing the model files: sha256 (what the Hub publishes for LFS files) and the git blob sha1 (what it
publishes for regular files such as params.json).

`Follower` hashes a file while another thread is still appending to it: it reads back what was written
(from the page cache), so hashing runs beside the network instead of after it, and a resumed file is
re-hashed from byte 0 without holding anything in memory. hashlib releases the GIL on large buffers, so
the two threads really overlap.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    git_sha1: str | None = None


@dataclass(frozen=True)
class Expected:
    """What a file must be: its size and one of the two hashes (LFS → sha256, regular → git sha1)."""

    size: int
    sha256: str | None = None
    git_sha1: str | None = None

    def matches(self, d: Digest) -> bool:
        if d.size != self.size:
            return False
        if self.sha256:
            return d.sha256 == self.sha256
        return self.git_sha1 is not None and d.git_sha1 == self.git_sha1

    def describe(self, d: Digest) -> str:
        if d.size != self.size:
            return f"size {d.size} instead of {self.size}"
        if self.sha256:
            return f"sha256 {d.sha256[:12]}… instead of {self.sha256[:12]}…"
        return f"git sha1 {(d.git_sha1 or '?')[:12]}… instead of {(self.git_sha1 or '?')[:12]}…"


class _Hashes:
    def __init__(self, size: int, git: bool) -> None:
        self.size = size
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if git else None
        self.count = 0

    def update(self, data: memoryview | bytes) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        self.count += len(data)

    def digest(self) -> Digest:
        return Digest(self.count, self.sha256.hexdigest(), self.sha1.hexdigest() if self.sha1 is not None else None)


def hash_file(path: Path, expected: Expected, on_bytes: Callable[[int], None] | None = None) -> Digest:
    """Hash a finished file (to check a file already on disk, or for --verify)."""
    hashes = _Hashes(expected.size, git=expected.sha256 is None)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(view):
            hashes.update(view[:n])
            if on_bytes:
                on_bytes(n)
    return hashes.digest()


class Follower(threading.Thread):
    """Hash `path` from byte 0 up to what the writer reported with `advance(written)`."""

    def __init__(self, path: Path, expected: Expected) -> None:
        super().__init__(name=f"hash-{path.name}", daemon=True)
        self._path = path
        self._hashes = _Hashes(expected.size, git=expected.sha256 is None)
        self._limit = 0
        self._pos = 0
        self._listener: Callable[[int], None] | None = None
        self._closed = False
        self._aborted = False
        self._cv = threading.Condition()
        self._error: BaseException | None = None

    def advance(self, written: int) -> None:
        with self._cv:
            self._limit = written
            self._cv.notify()

    @property
    def hashed(self) -> int:
        """Bytes hashed so far: a download is only as far along as this (the file is usable once it matches)."""
        return self._pos

    def listen(self, listener: Callable[[int], None] | None) -> None:
        """Call `listener(hashed)` from the hashing thread after each block (a progress display follows it)."""
        self._listener = listener

    def run(self) -> None:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        pos = 0
        try:
            with self._path.open("rb", buffering=0) as fh:
                while True:
                    with self._cv:
                        while pos >= self._limit and not self._closed:
                            self._cv.wait()
                        if pos >= self._limit or self._aborted:
                            return
                        limit = self._limit
                    while pos < limit and not self._aborted:
                        n = fh.readinto(view[: min(BLOCK, limit - pos)])
                        if not n:
                            raise OSError(f"{self._path} is shorter than the {limit} bytes written to it")
                        self._hashes.update(view[:n])
                        pos += n
                        self._pos = pos
                        if self._listener is not None:
                            self._listener(pos)
        except BaseException as exc:  # noqa: BLE001 - handed to finish() in the writer's thread
            self._error = exc

    def finish(self) -> Digest:
        """Wait until every written byte is hashed; the file's digest."""
        self.close()
        if self._error is not None:
            raise self._error
        return self._hashes.digest()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self.is_alive():
            self.join()

    def abort(self) -> None:
        """Stop now, without hashing what is left (the transfer failed or was interrupted)."""
        self._aborted = True
        self.close()
