"""huggingface_hub's orphaned `.incomplete` files: found, adopted when they fit, removed when they are ours.

Since 1.18 huggingface_hub writes each download to a process-unique temp file and deletes it in a `finally`
block, so a kill -9 or a power cut leaves it behind forever (huggingface_hub#4196), and the next run
downloads the whole file again. Where they live (huggingface_hub 2.4.0, `_local_folder.py`, `file_download.py`):
- `hf download --local-dir DIR`:
  `DIR/.cache/huggingface/download/<b64 sha1 of "<name>.metadata">.<etag>.<8 hex>.incomplete`, guarded by the
  lock `…/download/<name>.lock`;
- the cache: `$HF_HUB_CACHE/models--<org>--<name>/blobs/<etag>.<8 hex>.incomplete`, guarded by
  `$HF_HUB_CACHE/.locks/models--<org>--<name>/<etag>.lock`.
The bytes are a clean prefix of the file (written from byte 0, in order), and for the files we need the etag
is the sha256 or git sha1 we already know, so the largest one can continue as our partial file. A file
whose lock is held belongs to a download still running and is left alone.

Only our own are ours to touch: in the model dir, the temp files of the three files we install; in the shared
cache, only those of the exact file versions we need (one may be adopted), and nothing is deleted there: the
cache belongs to every tool on the machine, and an older huggingface_hub (`<etag>.incomplete`, vLLM's own
venv may have one) still resumes its partial files.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Orphan:
    path: Path
    size: int
    etag: str  # the etag in its name: for our files, the sha256 or the git sha1
    lock: Path
    shared: bool = False  # in the shared HF cache: adopted if it fits, never deleted


def _short_hash(text: str) -> str:
    """huggingface_hub `_local_folder._short_hash`: the prefix of a local-dir temp file's name."""
    return base64.urlsafe_b64encode(hashlib.sha1(text.encode()).digest()).decode()


def _cache_folder(repo: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def _locks_folder(repo: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ".locks" / f"models--{repo.replace('/', '--')}"


def find(model_dir: Path, repo: str, etags: Mapping[str, str]) -> list[Orphan]:
    """The orphans of the files we install (`etags`: name -> etag of the version we need): any in the model
    dir's local-dir metadata, and those of exactly these versions in the cache folder of this repo."""
    found: list[Orphan] = []
    download = model_dir / ".cache" / "huggingface" / "download"
    for name in etags:
        prefix = _short_hash(f"{name}.metadata") + "."
        for p in _listing(download):
            if p.name.startswith(prefix) and p.name.endswith(".incomplete"):
                etag = p.name[len(prefix) :].rsplit(".", 2)[0]
                found.append(_orphan(p, etag, download / f"{name}.lock", shared=False))
    wanted = set(etags.values())
    for p in _listing(_cache_folder(repo) / "blobs"):
        etag = p.name.split(".", 1)[0]
        if p.name.endswith(".incomplete") and etag in wanted:
            found.append(_orphan(p, etag, _locks_folder(repo) / f"{etag}.lock", shared=True))
    return [o for o in found if o.size >= 0 and not _in_use(o.lock)]


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _orphan(path: Path, etag: str, lock: Path, *, shared: bool) -> Orphan:
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    return Orphan(path, size, etag, lock, shared)


def _in_use(lock: Path) -> bool:
    """A download still running holds this lock (huggingface_hub uses filelock, i.e. flock on POSIX)."""
    if not lock.exists():
        return False
    from filelock import FileLock, Timeout

    probe = FileLock(str(lock), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    probe.release()
    return False


def best_for(orphans: list[Orphan], etag: str, size: int, model_dir: Path) -> Orphan | None:
    """The largest orphan of this file version that can be renamed into the model dir (same filesystem)."""
    device = _device(_nearest(model_dir))
    if device is None:
        return None
    fits = [o for o in orphans if o.etag == etag and 0 < o.size <= size and _device(o.path) == device]
    return max(fits, key=lambda o: o.size, default=None)


def _nearest(path: Path) -> Path:
    from echopanel_setup.facts.local import probe_disk

    return Path(probe_disk(path).checked_path)


def _device(path: Path) -> int | None:
    try:
        return path.stat().st_dev
    except OSError:
        return None


def remove(orphans: list[Orphan]) -> int:
    """Delete orphans in the model dir (never one in the shared cache); returns the bytes freed."""
    freed = 0
    for o in orphans:
        if o.shared:
            continue
        try:
            o.path.unlink()
            freed += max(o.size, 0)
        except OSError:
            continue
    return freed


def reclaimable(orphans: list[Orphan], model_dir: Path) -> int:
    """Bytes the clean-up frees on the model dir's filesystem (they count as free space in the plan)."""
    device = _device(_nearest(model_dir))
    if device is None:
        return 0
    return sum(o.size for o in orphans if not o.shared and _device(o.path) == device)
