"""Where installs go: the flag's path, else the recorded one, else the default, each with the reason the plan shows."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli

from echopanel_setup import paths


def test_an_install_target_is_the_flag_then_the_record_then_the_default(tmp_path: Path) -> None:
    default = tmp_path / "default"
    assert paths.install_target("~/models", "--dir", "/recorded", default) == (
        Path("~/models").expanduser().absolute(),
        "--dir",
    )
    assert paths.install_target(None, "--venv", "/recorded", default) == (
        Path("/recorded"),
        "recorded by an earlier install; --venv to change",
    )
    for nothing in (None, "", 42):  # no record, an empty one, or a state file edited into something else
        assert paths.install_target("", "--dir", nothing, default) == (default, "default; --dir to change")


def test_a_timestamp_is_utc_to_the_second() -> None:
    from datetime import datetime, timedelta, timezone

    stamp = datetime.fromisoformat(paths.timestamp())
    assert stamp.utcoffset() == timedelta(0) and stamp.microsecond == 0
    assert abs(datetime.now(timezone.utc) - stamp) < timedelta(seconds=5)


def test_a_damaged_state_file_is_read_as_far_as_it_is_usable(cli: Cli) -> None:
    """A state.json whose recorded dirs are not text (hand-edited, or written by something else) made doctor, serve,
    configure, install vllm and setup crash (exit 4) until the user found and deleted the hidden file: such a value
    is read as unrecorded, the rest is kept, and the next write replaces it."""
    paths.state_file().parent.mkdir(parents=True, exist_ok=True)
    paths.state_file().write_text(
        json.dumps({"model_dir": 5, "vllm_venv": ["/x"], "serve_dir": {"a": 1}, "setup_choice": {"mode": "api"}})
    )
    assert paths.read_state() == {"setup_choice": {"mode": "api"}}
    proc = cli("doctor", "--offline", "--json", "--mode", "local")
    assert proc.code in (0, 1) and "internal error" not in proc.err, proc.err
    paths.write_state({"model_dir": "/models"})
    assert json.loads(paths.state_file().read_text()) == {"model_dir": "/models", "setup_choice": {"mode": "api"}}
