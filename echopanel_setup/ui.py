"""The terminal, in one place: the rich console, status symbols (with their ASCII fallback), escaping of text that
came from outside, and the two shapes every command shows — a check outcome and an explained failure.

Rules every renderer follows:

- Build consoles with `console()`, never `rich.console.Console(...)`: it picks ASCII where UTF-8 would not show
  (see `unicode_ok`), and Rich then draws its own bars and boxes in ASCII too.
- Put text from outside — a server's error, a transcript, a model id, a path, a log line — through `esc()`
  before it goes into Rich markup, or `clean()` where it is printed as plain text. Both strip terminal control
  sequences (an `ESC [2J` in a model id would clear the user's screen) and the bidirectional-override
  characters that make text read differently from what it is; `esc()` also escapes Rich markup (`[red]`).
- Show a status with `mark()`, a check's outcome with `outcome()`, a named failure from a log with
  `explained()`, never with hand-made symbols.

Kept free of Rich at import time: `--help` and `--json` runs never pay for it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status as Spinner

SYMBOLS = {
    "ok": "✓",
    "warn": "!",
    "fail": "✗",
    "crashed": "☠",
    "timeout": "☠",
    "skip": "–",
    "run": "→",
    "arrow": "→",
    "dot": "·",
    "bullet": "•",
    "ellipsis": "…",
}
ASCII_SYMBOLS = {
    "ok": "+",
    "warn": "!",
    "fail": "x",
    "crashed": "#",
    "timeout": "#",
    "skip": "-",
    "run": ">",
    "arrow": "->",
    "dot": "-",
    "bullet": "*",
    "ellipsis": "...",
}
STYLES = {
    "ok": "green",
    "warn": "yellow",
    "fail": "bold red",
    "crashed": "bold magenta",
    "timeout": "bold magenta",
    "skip": "dim",
    "run": "cyan",
}
_COERCED = ("C.UTF-8", "C.utf8", "UTF-8")  # what Python writes into LC_CTYPE when it coerces the C locale


def unicode_ok(stream: TextIO) -> bool:
    """Whether UTF-8 symbols will show on `stream`: its encoding is UTF-8 (or it has none: it holds str, like
    StringIO) and the locale is not C/POSIX.

    The locale is asked first because Python switches its own streams to UTF-8 under `LANG=C` (PEP 538/540)
    while the terminal or log viewer behind them still expects ASCII. An unset locale decides nothing: minimal
    containers and CI runners often leave it unset and show UTF-8 fine.
    """
    name, _, encoding = _locale().partition(".")
    if name in ("C", "POSIX") and not _is_utf8(encoding):
        return False
    own: str | None = getattr(stream, "encoding", None)
    return own is None or _is_utf8(own)  # None: an in-memory stream (StringIO) holds any text


def _locale() -> str:
    """The character-type locale as POSIX resolves it (LC_ALL, then LC_CTYPE, then LANG). Python itself sets
    LC_CTYPE=C.UTF-8 when it starts under the C locale (PEP 538): that value stands aside for LANG."""
    lc_all, lc_ctype, lang = (os.environ.get(name, "") for name in ("LC_ALL", "LC_CTYPE", "LANG"))
    if lc_ctype in _COERCED:
        lc_ctype = ""
    return lc_all or lc_ctype or lang


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def symbols(target: TextIO | Console) -> dict[str, str]:
    """The symbol set for a stream, or for the stream a console writes to."""
    stream: Any = getattr(target, "file", target)  # a Console's stream (an AsciiStream where `console` chose ASCII)
    return SYMBOLS if not isinstance(stream, AsciiStream) and unicode_ok(stream) else ASCII_SYMBOLS


def console(stream: TextIO | None = None) -> Console:
    """A rich console on `stream` (stdout by default) that wraps to the terminal and never wraps when piped
    (logs stay greppable), with no highlighting or emoji codes applied to our text. Where `unicode_ok` says no,
    it writes through `AsciiStream`: every symbol, ours or a literal in a renderer, and Rich's own bars in ASCII."""
    from rich.console import Console

    stream = stream or sys.stdout
    con = Console(
        file=stream if unicode_ok(stream) else AsciiStream(stream),  # type: ignore[arg-type]
        highlight=False,
        emoji=False,
        soft_wrap=not stream.isatty(),
    )
    con.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return con


def _broken_pipe() -> None:
    """Rich's own answer to a reader gone away puts /dev/null on stdout and exits 1 ("a check failed"); raise
    instead, so `cli.main` sees the closed pipe and ends the run as every other write to it does."""
    raise BrokenPipeError


_ASCII = str.maketrans(
    {
        **{SYMBOLS[name]: ASCII_SYMBOLS[name] for name in SYMBOLS},
        "—": "-",
        "←": "<-",
        "≈": "~",
        "≥": ">=",
        "≤": "<=",
        "×": "x",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
    }
)


class AsciiStream:
    """A text stream seen through ASCII: typographic symbols become their ASCII stand-ins, and characters the
    stream cannot encode become `?` rather than a UnicodeEncodeError. Rich reads `encoding` here and draws its
    own progress bars in ASCII too."""

    encoding = "ascii"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        text = text.translate(_ASCII)
        own = getattr(self._stream, "encoding", None) or "ascii"
        if not _is_utf8(own):
            text = text.encode(own, "replace").decode(own)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush …: the stream's own
        return getattr(self._stream, name)


class _Writer(Protocol):
    def write(self, text: str, /) -> int: ...


class CleanStream:
    """A text stream that writes everything through `clean()`: for a renderer that prints plain lines mixing our
    words with text from outside (an import error from EchoPanel's Python, a server's answer)."""

    def __init__(self, stream: _Writer) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(clean(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding …: the stream's own
        return getattr(self._stream, name)


def plain(stream: TextIO) -> TextIO:
    """`stream` for a renderer that prints plain lines (no Rich): text from outside cleaned, and our symbols in
    ASCII where UTF-8 would not show (the rules `console()` applies to Rich's output)."""
    return cast("TextIO", CleanStream(stream if unicode_ok(stream) else AsciiStream(stream)))


def spinner(stream: TextIO | None = None) -> Spinner:
    """A one-line status that redraws in place (start it, `update` it, stop it); ASCII frames where needed."""
    con = console(stream or sys.stderr)
    return con.status("", spinner="line" if isinstance(con.file, AsciiStream) else "dots")


# --- text from outside ----------------------------------------------------------------------------------------------

# CSI (ESC [ … final), OSC (ESC ] … BEL or ESC \), other escapes (ESC, intermediates, final: ESC c resets the
# terminal) and C1 CSI; then any other C0/C1 control except newline and tab, DEL, and the bidirectional
# embedding/override/isolate characters.
_SEQUENCES = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]|\x9b[0-?]*[ -/]*[@-~]"
_CONTROLS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"


@lru_cache(maxsize=1)
def _unsafe() -> re.Pattern[str]:
    return re.compile(f"{_SEQUENCES}|{_CONTROLS}")


def clean(text: object) -> str:
    """`text` without terminal control sequences or characters (newlines and tabs stay): safe to print."""
    return _unsafe().sub("", str(text))


def esc(text: object) -> str:
    """`text` cleaned and with Rich markup escaped: safe inside a markup string."""
    from rich.markup import escape

    return escape(clean(text))


# --- the shapes every command shows ----------------------------------------------------------------------------------


def mark(con: Console, status: str, word: str | None = None, width: int = 0) -> str:
    """`✓ ok` in its colour (markup): a status symbol with a word, which NO_COLOR and pipes keep readable."""
    shown = status if word is None else word
    return f"[{STYLES[status]}]{symbols(con)[status]} {shown:<{width}}[/]"


def outcome(
    con: Console,
    status: str,
    summary: str,
    *,
    label: str = "",
    label_width: int = 0,
    word: str | None = None,
    word_width: int = 0,
    indent: int = 0,
    suffix: str = "",
    details: Sequence[str] = (),
    fix: str = "",
    commands: Sequence[str] = (),
) -> None:
    """One outcome: `✓ ok      Label    summary`, then its dim details and its fix (`→ text`, then commands).

    `summary`, `label`, `details`, `fix` and `commands` are plain text (escaped here); `suffix` is markup.
    """
    head = f"{' ' * indent}{mark(con, status, word, word_width)} "
    if label or label_width:
        head += f"{esc(f'{label:<{label_width}}')} "
    con.print(f"{head}{esc(summary)}{suffix}")
    for line in details:
        con.print(f"{' ' * (indent + 4)}[dim]{esc(line)}[/]")
    advise(con, fix, commands, indent=indent + 4)


def advise(con: Console, fix: str, commands: Sequence[str] = (), *, indent: int = 0) -> None:
    """What to do: `→ text`, then the commands to run, in cyan under the text (plain text in, escaped here)."""
    if fix:
        con.print(f"{' ' * indent}{symbols(con)['arrow']} {esc(fix)}")
    for command in commands:
        con.print(f"{' ' * (indent + 2)}[cyan]{esc(command)}[/]")


class Explained(Protocol):
    """What `explained()` shows of a known failure: `explain.Match` has these fields. A protocol, not an import:
    ui is a foundation and must not depend on a command (docs/ARCHITECTURE.md)."""

    id: str
    title: str
    cause: str
    fix: str
    commands: list[str]
    line_no: int
    line: str
    suggestion: str | None


def explained(con: Console, match: Explained, *, log: str | None = None) -> None:
    """A known failure found in a log: what, where, the line, its cause, the fix and the commands to run."""
    con.print(f"{mark(con, 'fail')} [bold]{esc(match.title)}[/] ({match.id}, log line {match.line_no})")
    con.print(f"  [dim]{esc(match.line)}[/]")
    con.print(f"  Cause: {esc(match.cause)}")
    con.print(f"  Fix:   {esc(match.fix)}")
    for command in match.commands:
        con.print(f"         [cyan]{esc(command)}[/]")
    if match.suggestion:
        con.print(f"  Try:   [cyan]{esc(match.suggestion)}[/]")
    if log:
        con.print(f"  Log:   {esc(log)}")
