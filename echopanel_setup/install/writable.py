"""Can the install write where it was told to? Asked before any network, byte or installer run, so a
folder the user cannot write to is a one-line usage error (exit 2) naming the flag that moves it."""

from __future__ import annotations

import os
from pathlib import Path

from echopanel_setup.errors import UsageError


def ensure_writable(target: Path, create: bool, flag: str) -> Path | None:
    """Fail (exit 2) if files could not be written in `target`; with `create`, make it and write a probe file.

    Without `create` (dry runs, and venvs the installer makes itself) nothing is written: the nearest existing
    folder must be writable. Returns the topmost folder this created, so a run that fails before writing
    anything can leave no trace.
    """
    from echopanel_setup.facts.local import probe_disk

    hint = f"pass {flag} a folder you can write to"
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file, not a folder: {hint}")
    existing = Path(probe_disk(target).checked_path)
    if not create:
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write to {target} ({existing} is not a writable folder): {hint}")
        return None
    created = None if existing == target else next(p for p in [target, *target.parents] if p.parent == existing)
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe_file = target / f".echopanel-write-test-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {target}: {exc.strerror or exc}: {hint}") from None
    return created
