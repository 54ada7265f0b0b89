"""The manifest `install voxtral` writes beside the model files once they are verified.

Shape (doctor's `probe_model` reads `repo`, `commit` and `files[name].size`; the rest is ours):
    {"schema": 1, "repo": …, "revision": …, "commit": …, "endpoint": …, "verified_at": …, "tool_version": …,
     "files": {name: {"size": …, "sha256": …, "git_sha1": … (regular files), "mtime_ns": …, "damaged": true (after
     a failed --verify)}}}
A file whose size and mtime still match its entry is taken as verified without re-hashing it: that is what
lets an installed model be confirmed in milliseconds, with no network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echopanel_setup import __version__, paths
from echopanel_setup.install.digest import Digest, Expected

SCHEMA = 1


@dataclass
class Entry:
    size: int
    sha256: str
    git_sha1: str | None = None
    mtime_ns: int | None = None
    damaged: bool = False

    @property
    def expected(self) -> Expected:
        """What the file must hash to: sha256 always (we computed it), which covers regular files too."""
        return Expected(self.size, sha256=self.sha256)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size, "sha256": self.sha256}
        if self.git_sha1:
            out["git_sha1"] = self.git_sha1
        if self.mtime_ns is not None:
            out["mtime_ns"] = self.mtime_ns
        if self.damaged:
            out["damaged"] = True
        return out


@dataclass
class Manifest:
    repo: str
    revision: str
    commit: str
    endpoint: str
    files: dict[str, Entry] = field(default_factory=dict)
    verified_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "endpoint": self.endpoint,
            "verified_at": self.verified_at,
            "tool_version": __version__,
            "files": {name: e.to_dict() for name, e in sorted(self.files.items())},
        }

    def changes(self, model_dir: Path, names: list[str]) -> list[str]:
        """Why the install cannot be trusted without re-hashing (empty: every file is as verified)."""
        problems = []
        for name in names:
            entry = self.files.get(name)
            if entry is None:
                problems.append(f"{name}: not in the manifest")
                continue
            if entry.damaged:
                problems.append(f"{name}: found damaged by --verify")
                continue
            try:
                st = (model_dir / name).stat()
            except OSError:
                problems.append(f"{name}: missing")
                continue
            if st.st_size != entry.size:
                problems.append(f"{name}: {st.st_size} bytes instead of {entry.size}")
            elif st.st_mtime_ns != entry.mtime_ns:
                problems.append(f"{name}: changed since it was verified")
        return problems

    def size(self, names: list[str]) -> int:
        return sum(self.files[n].size for n in names if n in self.files)


def read(path: Path) -> Manifest | None:
    """The manifest, or None when it is absent or unreadable (then nothing is trusted)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {
            str(name): Entry(
                size=int(e["size"]),
                sha256=str(e["sha256"]),
                git_sha1=e.get("git_sha1"),
                mtime_ns=e.get("mtime_ns"),
                damaged=bool(e.get("damaged", False)),
            )
            for name, e in data["files"].items()
        }
        return Manifest(
            repo=str(data["repo"]),
            revision=str(data.get("revision") or data["commit"]),
            commit=str(data["commit"]),
            endpoint=str(data.get("endpoint", "")),
            files=files,
            verified_at=str(data.get("verified_at", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):  # 1e400: int(inf) overflows
        return None


def write(path: Path, manifest: Manifest) -> None:
    """Atomically: a crash leaves the old manifest or the new one, never half of one."""
    manifest.verified_at = paths.timestamp()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def entry_for(file: Path, digest: Digest) -> Entry:
    return Entry(size=digest.size, sha256=digest.sha256, git_sha1=digest.git_sha1, mtime_ns=file.stat().st_mtime_ns)
