"""install/progress.py: sizes in the Hub's units, and output that stays quiet where it should."""

from __future__ import annotations

import pytest

from echopanel_setup.install.progress import Ui, duration, size


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1340, "1.34 kB"),
        (14_900_000, "14.9 MB"),
        (8_860_000_000, "8.86 GB"),
        (123_456_789_012, "123 GB"),
        (10**16, "10,000 TB"),
    ],
)
def test_size(n: int, text: str) -> None:
    assert size(n) == text


def test_duration() -> None:
    assert duration(1.25) == "1.2 s" and duration(92) == "1 min 32 s" and duration(3 * 3600 + 120) == "3 h 02 min"


def test_no_live_display_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    ui = Ui()
    assert not ui.live
    with ui.transfer(100):
        ui.current("x")
        ui.advance(50)
        ui.line("plain line")
        ui.note("a stall")
    out, err = capsys.readouterr()
    assert out.splitlines() == ["plain line", "! a stall"] and err == ""


def test_json_mode_keeps_stdout_for_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    ui = Ui(json_mode=True)
    ui.line("human text")
    ui.note("a retry")
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "! a retry"
