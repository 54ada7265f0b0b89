"""install/writable.py: where the install may write, decided before any byte or installer run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from echopanel_setup.errors import UsageError
from echopanel_setup.install.writable import ensure_writable


def test_creates_the_folder_and_reports_the_topmost_one_it_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "model"
    assert ensure_writable(target, create=True, flag="--dir") == tmp_path / "a"
    assert target.is_dir() and list(target.iterdir()) == []  # the probe file is gone again
    assert ensure_writable(target, create=True, flag="--dir") is None  # nothing new made


def test_without_create_nothing_is_written(tmp_path: Path) -> None:
    target = tmp_path / "empty" / "a" / "venv"
    target.parent.parent.mkdir()
    assert ensure_writable(target, create=False, flag="--venv") is None
    assert list(target.parent.parent.iterdir()) == []


@pytest.mark.parametrize("create", [True, False])
def test_a_file_where_the_folder_should_be_is_named(tmp_path: Path, create: bool) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(UsageError, match=r"notes.txt is a file, not a folder: pass --venv a folder"):
        ensure_writable(afile, create=create, flag="--venv")
    with pytest.raises(UsageError, match="pass --dir a folder you can write to"):
        ensure_writable(afile / "model", create=create, flag="--dir")
    assert afile.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_write_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    for create in (True, False):
        with pytest.raises(UsageError, match=f"cannot write to {locked / 'x'}"):
            ensure_writable(locked / "x", create=create, flag="--dir")
