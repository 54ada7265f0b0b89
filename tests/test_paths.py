"""Where installs go: the flag's path, else the recorded one, else the default, each with the reason the plan shows."""

from __future__ import annotations

from pathlib import Path

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
