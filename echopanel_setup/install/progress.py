"""What the install commands show: plain lines on stdout, and one rich progress display (bytes, speed, ETA)
on stderr, only when stderr is a terminal. Piped or with --json, the display stays off: logs get the lines
that matter and nothing that redraws.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from echopanel_setup import ui


class Ui:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.out = ui.console(sys.stderr if json_mode else sys.stdout)
        self.err = ui.console(sys.stderr)
        self.live = not json_mode and self.err.is_terminal
        self.sym = ui.symbols(self.out)
        self._progress: Any = None
        self._task: Any = None

    def line(self, text: str = "") -> None:
        """A line of human output (rich markup); on stderr with --json so stdout holds only the JSON."""
        if self.json_mode:
            return
        self._console().print(text)

    def note(self, text: str) -> None:
        """Something the user should see even with --json: a stall, a retry, a clean-up."""
        self._console().print(f"[yellow]{self.sym['warn']}[/] {ui.esc(text)}")

    def outcome(self, status: str, summary: str, **layout: Any) -> None:
        """A check's outcome, laid out as `ui.outcome` does (human output only, like `line`)."""
        if not self.json_mode:
            ui.outcome(self._console(), status, summary, **layout)

    def _console(self) -> Any:
        return self._progress.console if self._progress is not None else self.out

    @contextmanager
    def transfer(self, total: int, done: int = 0) -> Iterator[None]:
        """One display for the whole job: `done` bytes were already there (not counted in the speed)."""
        if not self.live:
            yield
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.err,
        )
        self._task = self._progress.add_task("starting", total=total, completed=done)
        try:
            with self._progress:
                yield
        finally:
            self._progress = self._task = None

    def current(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description)

    def grow(self, n: int) -> None:
        """More bytes to fetch than planned (a file on disk turned out damaged)."""
        if self._progress is not None:
            self._progress.update(self._task, total=self._progress.tasks[0].total + n)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


def size(n: int) -> str:
    """Bytes in decimal units, as the Hub lists them: 8.86 GB, 14.9 MB, 1.34 kB."""
    if abs(n) < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
    tb = value / 1000
    return f"{tb:.3g} TB" if tb < 100 else f"{tb:,.0f} TB"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
