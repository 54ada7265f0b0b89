"""What `provider fix` did, kept in our state dir (never in EchoPanel's checkout): one record per provider file.

A record holds the file's path, the sha256 before and after the fix, the time, the variant it replaced and where
the original is (`.orig` beside it, and a copy of its bytes here in case that one is deleted). `revert` uses it to
refuse when the file changed since the fix, and doctor to say so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from echopanel_setup import paths


@dataclass(frozen=True)
class FixRecord:
    path: str  # the provider file, absolute
    checkout: str
    provider: str
    sha256_before: str
    sha256_after: str
    orig: str  # the `.orig` beside it
    backup: str  # our copy of the original's bytes
    variant_before: str | None
    fixed_at: str  # ISO 8601, UTC
    tool_version: str


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dir() -> Path:
    return paths.state_dir() / "provider"


def _index() -> Path:
    return _dir() / "fixes.json"


def _read_all() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_index().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_all(data: dict[str, dict[str, object]]) -> None:
    _dir().mkdir(parents=True, exist_ok=True)
    tmp = _index().with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, _index())


def find(path: Path) -> FixRecord | None:
    """The record of the fix of `path`, if `fix` installed our provider there."""
    raw = _read_all().get(str(path.resolve()))
    try:
        return FixRecord(**raw) if isinstance(raw, dict) else None  # type: ignore[arg-type]
    except TypeError:
        return None


def save(record: FixRecord) -> None:
    data = _read_all()
    data[record.path] = asdict(record)
    _write_all(data)


def forget(path: Path) -> None:
    data = _read_all()
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


def drift(path: Path) -> str | None:
    """For doctor: a sentence when `path` no longer holds what `fix` wrote, else None (also when never fixed)."""
    record = find(path)
    if record is None:
        return None
    try:
        now = sha256(path.read_bytes())
    except OSError:
        return f"EchoPanel's provider {path} is gone since `provider fix` (run `echopanel-setup provider check`)"
    if now == record.sha256_after:
        return None
    if now == record.sha256_before:
        return f"EchoPanel's provider {path} is the original again (reverted by hand or by git): run `provider fix`"
    return (
        f"EchoPanel's provider changed since fix: {path} no longer matches what `echopanel-setup provider fix` wrote "
        "(an update of EchoPanel or an edit); run `echopanel-setup provider check`"
    )
