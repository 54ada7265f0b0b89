"""install/venv.py: what a venv path holds, the exact installer commands, and streamed output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from echopanel_setup.install import venv as venvs

SPECS = ["vllm>=0.20.0", "mistral-common[audio]>=1.9.0"]


def test_inspect_tells_venvs_from_other_folders(tmp_path: Path) -> None:
    assert venvs.inspect(tmp_path / "nope") == "absent"
    (tmp_path / "empty").mkdir()
    assert venvs.inspect(tmp_path / "empty") == "empty"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    assert venvs.inspect(tmp_path / "other") == "other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    assert venvs.inspect(tmp_path / "v") == "venv"
    for p in (tmp_path / "v" / "bin").glob("python*"):
        p.unlink()
    assert venvs.inspect(tmp_path / "v") == "broken"


def test_uv_plan_creates_then_upgrades(tmp_path: Path) -> None:
    v = tmp_path / "v"
    plan = venvs.plan(
        v,
        "absent",
        "/usr/bin/python3.12",
        SPECS,
        uv="/opt/uv",
        uv_args=["--torch-backend=auto"],
        find_links=["/w"],
        no_index=True,
    )
    assert plan.installer == "uv"
    assert plan.commands == [
        ["/opt/uv", "venv", "--python", "/usr/bin/python3.12", str(v)],
        [
            "/opt/uv",
            "pip",
            "install",
            "--python",
            f"{v}/bin/python",
            "--upgrade",
            "--torch-backend=auto",
            "--find-links",
            "/w",
            "--no-index",
            *SPECS,
        ],
    ]


def test_pip_plan_reuses_a_venv_and_seeds_pip_when_uv_made_it(tmp_path: Path) -> None:
    v = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(v)], check=True)
    plan = venvs.plan(
        v, "venv", sys.executable, SPECS, uv=None, uv_args=["--torch-backend=auto"], find_links=[], no_index=False
    )
    py = f"{v}/bin/python"
    assert plan.installer == "pip"
    assert plan.commands == [[py, "-m", "ensurepip", "--upgrade"], [py, "-m", "pip", "install", "--upgrade", *SPECS]]


def test_stream_hands_over_every_line_and_keeps_a_tail() -> None:
    seen: list[str] = []
    code = "import sys\nfor i in range(60): print(i)\nprint('boom', file=sys.stderr)\nsys.exit(3)"
    result = venvs.stream([sys.executable, "-c", code], seen.append)
    assert result.returncode == 3
    assert seen[:2] == ["0", "1"] and seen[-1] == "boom" and len(seen) == 61
    assert list(result.tail)[-1] == "boom" and len(result.tail) == 40


def test_a_python_that_hangs_leaves_no_process_behind(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`install vllm --python X` where X hangs (here: a script whose child outlives it): after the probe's timeout
    the child it started still ran (subprocess.run kills only the process it started)."""
    import os
    import time

    child_pid = tmp_path / "child.pid"
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {child_pid}\nwait\n")
    script.chmod(0o755)
    monkeypatch.setattr(venvs, "PROBE_TIMEOUT_S", 0.5)
    assert venvs.interpreter(str(script)) is None
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        raise AssertionError("the hung interpreter's child outlived the probe")
