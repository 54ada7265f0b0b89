"""install/digest.py: sha256 and git blob sha1, of finished files and of files still being written."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from echopanel_setup.install.digest import Digest, Expected, Follower, hash_file

HELLO_GIT_SHA1 = "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"


def test_git_blob_sha1_is_what_git_computes(tmp_path: Path) -> None:
    f = tmp_path / "params.json"
    f.write_bytes(b"hello\n")
    d = hash_file(f, Expected(6, git_sha1=HELLO_GIT_SHA1))
    assert d.git_sha1 == HELLO_GIT_SHA1 and d.sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert Expected(6, git_sha1=HELLO_GIT_SHA1).matches(d)


def test_sha256_only_when_the_hub_gives_a_sha256(tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    f = tmp_path / "big"
    f.write_bytes(data)
    seen: list[int] = []
    d = hash_file(f, Expected(len(data), sha256="x"), on_bytes=seen.append)
    assert d.sha256 == hashlib.sha256(data).hexdigest() and d.git_sha1 is None
    assert sum(seen) == len(data)


def test_follower_hashes_a_file_while_it_grows(tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 11)
    f = tmp_path / "growing"
    f.write_bytes(b"")
    follower = Follower(f, Expected(len(data), sha256="x"))
    follower.start()
    with f.open("ab", buffering=0) as out:
        for i in range(0, len(data), 300_001):
            out.write(data[i : i + 300_001])
            follower.advance(min(i + 300_001, len(data)))
    assert follower.finish() == Digest(len(data), hashlib.sha256(data).hexdigest())


def test_follower_abort_returns_at_once(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1024)
    follower = Follower(f, Expected(1024, sha256="x"))
    follower.start()
    done = threading.Event()
    threading.Thread(target=lambda: (follower.abort(), done.set()), daemon=True).start()
    assert done.wait(5)


def test_expected_says_what_differs() -> None:
    want = Expected(10, sha256="a" * 64)
    assert want.describe(Digest(9, "a" * 64)) == "size 9 instead of 10"
    assert not want.matches(Digest(10, "b" * 64))
    assert want.describe(Digest(10, "b" * 64)) == "sha256 bbbbbbbbbbbb… instead of aaaaaaaaaaaa…"
