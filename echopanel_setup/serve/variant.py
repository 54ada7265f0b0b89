"""Streaming-delay variants: a model dir beside the verified one, for a delay other than the model's own.

vLLM reads `audio.transcription_delay_ms` from tekken.json once, at start-up; there is no per-session
setting. Patching the downloaded tekken.json would break `install --verify` and the manifest, so a variant
dir holds relative links to the verified weights and params.json plus its own tekken.json, identical to
the original but for that one number. The links are relative, so the pair survives a bind mount of their
parent dir (docker, Kubernetes). Creation is idempotent and atomic: a finished variant is reused, a stale
one is rebuilt in a temp dir and swapped in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from echopanel_setup import envconfig, knowledge, paths
from echopanel_setup.errors import SetupError, UsageError
from echopanel_setup.facts.local import read_tekken_delay

MARKER = ".echopanel-variant.json"
TEKKEN = "tekken.json"
_AUDIO = re.compile(rb'"audio"\s*:\s*\{')
_DELAY = re.compile(rb'("transcription_delay_ms"\s*:\s*)(\d+)')


@dataclass(frozen=True)
class Variant:
    path: Path
    delay_ms: int
    source: Path
    created: bool  # False: an existing variant was reused


def check_delay(ms: int) -> None:
    """Off-grid delays are refused with the nearest values the model was trained for."""
    problem = envconfig.validate_delay(str(ms))
    if problem:
        raise UsageError("--delay-ms " + problem.split("=", 1)[1])


def variant_dir(model_dir: Path, delay_ms: int) -> Path:
    return model_dir.parent / f"{model_dir.name}-delay{delay_ms}ms"


def _linked_files() -> list[str]:
    return [name for name in knowledge.load().model.files if name != TEKKEN]


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_current(target: Path, model_dir: Path, delay_ms: int) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
        if (
            marker["source"] != str(model_dir)
            or marker["delay_ms"] != delay_ms
            or marker["tekken_source"] != _stamp(model_dir / TEKKEN)
        ):
            return False
        for name in _linked_files():
            if (target / name).resolve() != (model_dir / name).resolve():
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return read_tekken_delay(target / TEKKEN) == delay_ms


def patched_tekken(data: bytes, delay_ms: int) -> bytes:
    """tekken.json with `audio.transcription_delay_ms` (or a top-level one) set, every other byte kept."""
    audio = _AUDIO.search(data)
    match = _DELAY.search(data, audio.end()) if audio else None
    if match is None:
        match = _DELAY.search(data)
    if match is None:
        raise SetupError("tekken.json has no transcription_delay_ms: is this the Voxtral Realtime model?")
    patched = data[: match.start(2)] + str(delay_ms).encode() + data[match.end(2) :]
    parsed = json.loads(patched)
    where = parsed.get("audio", parsed) if isinstance(parsed.get("audio"), dict) else parsed
    if where.get("transcription_delay_ms") != delay_ms:
        raise SetupError("tekken.json: transcription_delay_ms is not where expected (audio.transcription_delay_ms)")
    return patched


def ensure(model_dir: Path, delay_ms: int) -> Variant:
    """The variant dir for `delay_ms`, created or rebuilt only when needed. The model dir is never written."""
    check_delay(delay_ms)
    model_dir = model_dir.resolve()
    target = variant_dir(model_dir, delay_ms)
    missing = [n for n in knowledge.load().model.files if not (model_dir / n).is_file()]
    if missing:
        raise SetupError(f"{model_dir}: {', '.join(missing)} missing; run `echopanel-setup install voxtral` first")
    if _is_current(target, model_dir, delay_ms):
        return Variant(target, delay_ms, model_dir, created=False)
    if (target.exists() or target.is_symlink()) and not (target / MARKER).is_file() and not _empty_dir(target):
        # Not ours (a copy someone patched by hand, say): never replace what we did not make.
        raise SetupError(
            f"{target} exists and was not made by echopanel-setup (it has no {MARKER}): move or rename it, "
            "then run this again"
        )

    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for name in _linked_files():
            _link(model_dir / name, tmp / name)
        (tmp / TEKKEN).write_bytes(patched_tekken((model_dir / TEKKEN).read_bytes(), delay_ms))
        marker = {
            "source": str(model_dir),
            "delay_ms": delay_ms,
            "tekken_source": _stamp(model_dir / TEKKEN),
            "linked": _linked_files(),
            "created_at": paths.timestamp(),
            "note": "Made by `echopanel-setup serve --delay-ms`; safe to delete (it is rebuilt when needed).",
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.old{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"cannot create the delay variant {target}: {exc.strerror or exc}") from None
    return Variant(target, delay_ms, model_dir, created=True)


def _empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


def _link(source: Path, link: Path) -> None:
    """A relative symlink (survives bind mounts of the parent); a hard link where symlinks are refused."""
    try:
        link.symlink_to(os.path.relpath(source, link.parent))
    except OSError:
        os.link(source, link)
