"""Processes doctor starts never outlive it: a hung `nvidia-smi` whose own child holds its pipes (what a wedged
driver produced) is killed with that child when its timeout passes, and at once when doctor gets SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import start_cli
from probe_kit import path_with

from echopanel_setup import proc


def _hung_smi(bin_dir: Path, pid_file: Path) -> None:
    """An nvidia-smi that starts a child (holding its stdout) and waits for it: 300 s."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n")
    smi.chmod(0o755)


def _gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _wait_for(path: Path, seconds: float = 20.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_a_timeout_kills_the_child_and_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    _hung_smi(tmp_path / "bin", pid_file)
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.run([str(tmp_path / "bin" / "nvidia-smi")], timeout=0.5)
    assert time.monotonic() - started < 5  # subprocess.run waited for the grandchild's pipe: up to 300 s
    assert _gone(_wait_for(pid_file))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["timeout", "sigterm"])
def test_doctor_leaves_no_probe_behind(tmp_path: Path, how: str) -> None:
    pid_file = tmp_path / "grandchild.pid"
    _hung_smi(tmp_path / "bin", pid_file)
    doctor = start_cli("doctor", "--offline", "--json", env={"PATH": path_with(tmp_path / "bin")}, text=True)
    grandchild = _wait_for(pid_file)
    if how == "sigterm":
        doctor.send_signal(signal.SIGTERM)
        err = doctor.communicate(timeout=10)[1]
        assert doctor.returncode == 128 + signal.SIGTERM and "terminated by SIGTERM" in err, err
    else:  # doctor does not hang on a hanging nvidia-smi: it reports it and the rest
        out = doctor.communicate(timeout=60)[0]
        assert doctor.returncode in (0, 1)
        doc = json.loads(out)
        probe = {p["name"]: p for p in doc["facts"]["probes"]}["gpu"]
        assert probe["status"] == "timeout" or "did not answer" in (doc["facts"]["gpu"]["error"] or "")
        assert doc["facts"]["gpu"]["devices"] == []
    assert _gone(grandchild), "nvidia-smi's child outlived doctor"
