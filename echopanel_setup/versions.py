"""Version and compute-capability comparisons, shared by checks, serve and install.

A neutral low module (it imports nothing of ours), so that `serve` and `install` need not reach into
`checks/`. An unknown or unparsable version compares as "not older", never as a crash: the fact that
is missing is reported by its own check.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def parse(text: str | None) -> Version | None:
    """A PEP 440 version, or None when `text` is empty or not one."""
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def older(a: str | None, b: str | None) -> bool:
    """Whether version `a` is known to be older than `b` (False when either is unknown)."""
    va, vb = parse(a), parse(b)
    return va is not None and vb is not None and va < vb


def in_range(text: str | None, spec: str) -> bool | None:
    """Whether a version falls in a specifier range; None when the version is unknown or unparsable."""
    from packaging.specifiers import SpecifierSet  # only a few callers need ranges: keep it off start-up

    v = parse(text)
    return None if v is None else SpecifierSet(spec).contains(v, prereleases=True)


def known_compute_capability(text: str) -> tuple[int, int]:
    """A compute capability from the knowledge file, always MAJOR.MINOR (tests/test_knowledge.py builds them)."""
    major, minor = text.split(".")
    return int(major), int(minor)


def compute_capability(text: str | None) -> tuple[int, int] | None:
    """A CUDA compute capability "8.9" as (8, 9); None when it is missing or not MAJOR.MINOR."""
    try:
        major, minor = (text or "").split(".")
        return int(major), int(minor)
    except ValueError:
        return None
