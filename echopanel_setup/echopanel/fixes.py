"""What `provider fix` recorded about a checkout's provider file, read back (doctor's "changed since fix").

The records live in our state dir (`provider/fixes.json`, written by `provider/records.py`); this side only reads
them, so readers such as doctor's EchoPanel probe can say whether the file still holds what `fix` wrote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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


def index() -> Path:
    return paths.state_dir() / "provider" / "fixes.json"


def read_all() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(index().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find(path: Path) -> FixRecord | None:
    """The record of the fix of `path`, if `fix` installed our provider there."""
    raw = read_all().get(str(path.resolve()))
    try:
        return FixRecord(**raw) if isinstance(raw, dict) else None  # type: ignore[arg-type]
    except TypeError:
        return None


def drift(path: Path) -> str | None:
    """A sentence when `path` no longer holds what `fix` wrote, else None (also when it was never fixed)."""
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
