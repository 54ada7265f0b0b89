"""What `provider fix` did, kept in our state dir (never in EchoPanel's checkout): one record per provider file.

A record holds the file's path, the sha256 before and after the fix, the time, the variant it replaced and where
the original is (`.orig` beside it, and a copy of its bytes here in case that one is deleted). `revert` uses it to
refuse when the file changed since the fix, and doctor to say so.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from echopanel_setup.echopanel.fixes import FixRecord, drift, find, index, read_all, sha256

__all__ = ["FixRecord", "atomic_write", "drift", "find", "forget", "keep_backup", "save", "sha256"]


def _dir() -> Path:
    return index().parent


def _write_all(data: dict[str, dict[str, object]]) -> None:
    _dir().mkdir(parents=True, exist_ok=True)
    tmp = index().with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, index())


def save(record: FixRecord) -> None:
    data = read_all()
    data[record.path] = asdict(record)
    _write_all(data)


def forget(path: Path) -> None:
    data = read_all()
    if data.pop(str(path.resolve()), None) is not None:
        _write_all(data)


def keep_backup(data: bytes) -> Path:
    """Our own copy of an original provider file, named by its sha256 (kept once, whatever fixes follow)."""
    target = _dir() / "originals" / f"{sha256(data)}.py"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    return target


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` through a temporary file in the same directory: a crash leaves the old file or the new."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
