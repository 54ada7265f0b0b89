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
from echopanel_setup.fileio import replace_file

__all__ = ["FixRecord", "drift", "find", "forget", "keep_backup", "save", "sha256"]


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
        replace_file(target, data)
    return target
