"""versions.py and paths.venv_python: the helpers checks, serve and install share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from echopanel_setup import paths
from echopanel_setup.versions import compute_capability, in_range, known_compute_capability, older, parse


def test_parse() -> None:
    assert str(parse("0.20.1")) == "0.20.1" and str(parse("2.5.1+cu121")) == "2.5.1+cu121"
    assert parse(None) is None and parse("") is None and parse("not-a-version") is None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0.15.1", "0.16.0", True),
        ("0.16.0", "0.16.0", False),
        ("0.20.0rc1", "0.20.0", True),
        ("535.54.03", "525.60.13", False),
        ("12.2", "12.4", True),
        (None, "0.16.0", False),  # unknown is never "older": its own check reports it
        ("garbage", "0.16.0", False),
        ("0.16.0", None, False),
    ],
)
def test_older(a: str | None, b: str | None, expected: bool) -> None:
    assert older(a, b) is expected


def test_in_range() -> None:
    assert in_range("4.55.4", ">=4.54,<4.57") is True
    assert in_range("4.57.0", ">=4.54,<4.57") is False
    assert in_range("0.20.0rc1", ">=0.20.0rc0") is True  # prereleases count
    assert in_range(None, ">=1") is None and in_range("x", ">=1") is None


def test_compute_capability() -> None:
    assert compute_capability("8.9") == (8, 9) and compute_capability("12.0") == (12, 0)
    assert compute_capability(None) is None and compute_capability("8") is None and compute_capability("a.b") is None
    assert compute_capability("7.5") < (8, 0) <= compute_capability("8.0")  # type: ignore[operator]
    assert known_compute_capability("7.5") == (7, 5)
    with pytest.raises(ValueError):
        known_compute_capability("sm_75")


def test_venv_python(tmp_path: Path) -> None:
    expected = tmp_path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    assert paths.venv_python(tmp_path) == expected
