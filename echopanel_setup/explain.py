"""`explain LOG`: name a known vLLM failure in a log or traceback, with its cause and fix.

Signatures live in compat.toml ([[signature]]), in priority order: a log often shows a root cause
followed by its consequences, and the first signature that matches names the cause.

Logs can be hundreds of MB (a server that ran for days), gzipped, full of colour codes and `\\r` progress
bars. So the log is never held whole: it is read as bytes in line-aligned chunks, and each pattern is
*anchored*: a literal that every match of it contains (derived from the pattern itself) is looked for with
`bytes.find`, and the regular expression runs only on the few lines around a hit. A seekable file is read
from its end first: a failure ends the log, so when the last `TAIL_BYTES` explain it, the rest is only
counted for line numbers (`full=True` searches all of it). Memory stays bounded by the chunk size.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any, Protocol

from echopanel_setup import knowledge, ui
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, UsageError

if sys.version_info >= (3, 11):
    from re import _parser as _sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse

CHUNK_BYTES = 8 * 1024 * 1024
TAIL_BYTES = 4 * 1024 * 1024
CONTEXT_LINES = 2  # lines before an anchor a match may start on (a pattern's `\s*` may cross a newline)
EXCERPT_CHARS = 300
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Match:
    id: str
    title: str
    cause: str
    fix: str
    commands: list[str]
    source: str
    line_no: int
    line: str
    groups: dict[str, str] = field(default_factory=dict)
    suggestion: str | None = None


# -- patterns and their anchors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[bytes]
    anchors: tuple[bytes, ...]  # one of them is in every match; empty: none found, the regex scans all


def _anchors(pattern: str) -> tuple[bytes, ...]:
    """Literals one of which every match of `pattern` contains, as long as the pattern allows: what makes a
    pattern cheap to look for (`bytes.find` instead of the regex engine at every position)."""
    try:
        parsed = _sre_parse.parse(pattern)
    except (re.error, ValueError, TypeError):
        return ()
    if parsed.state.flags & re.IGNORECASE:
        return ()
    return tuple(a.encode() for a in _required(parsed.data))


def _required(items: list[tuple[Any, Any]]) -> tuple[str, ...]:
    """The best set of literals from a parsed sequence: its longest run of literal characters, or a group's
    (one per alternative of a branch, each alternative needing one), whichever has the longest shortest one."""
    p = _sre_parse
    best: tuple[str, ...] = ()

    def consider(candidate: tuple[str, ...]) -> None:
        nonlocal best
        if candidate and all(candidate) and (not best or min(map(len, candidate)) > min(map(len, best))):
            best = candidate

    run: list[str] = []
    for op, av in items:
        if op is p.LITERAL:
            run.append(chr(av))
            continue
        consider(("".join(run),))
        run = []
        if op is p.SUBPATTERN:
            consider(_required(av[-1].data))
        elif op is p.BRANCH:
            alternatives = [_required(a.data) for a in av[1]]
            if all(alternatives):
                consider(tuple(x for alt in alternatives for x in alt))
        elif op in (p.MAX_REPEAT, p.MIN_REPEAT) and av[0] >= 1:
            consider(_required(av[2].data))
    consider(("".join(run),))
    return best


@lru_cache(maxsize=1)
def _signatures() -> list[tuple[knowledge.Signature, list[_Pattern]]]:
    return [
        (sig, [_Pattern(re.compile(p.encode(), re.MULTILINE), _anchors(p)) for p in sig.patterns])
        for sig in knowledge.load().signature
    ]


# -- the scan ----------------------------------------------------------------------------------------------


@dataclass
class _Found:
    line_no: int  # within the scanned text; the tail scan adds the lines before it afterwards
    line: str
    groups: dict[str, str]


def _line_start(data: bytes, pos: int) -> int:
    return data.rfind(b"\n", 0, pos) + 1


def _line_end(data: bytes, pos: int) -> int:
    end = data.find(b"\n", pos)
    return len(data) if end == -1 else end


def _first(pattern: _Pattern, data: bytes) -> re.Match[bytes] | None:
    """The first match in `data`, running the regex only around the anchors' hits."""
    if not pattern.anchors:
        return pattern.regex.search(data)
    best: re.Match[bytes] | None = None
    for anchor in pattern.anchors:
        pos = data.find(anchor)
        while pos != -1 and (best is None or pos < best.end()):
            lo = _line_start(data, pos)
            for _ in range(CONTEXT_LINES):
                lo = _line_start(data, max(lo - 1, 0)) if lo else 0
            hi = _line_end(data, pos + len(anchor))
            found = pattern.regex.search(data, lo, hi)
            if found is not None:
                if best is None or found.start() < best.start():
                    best = found
                break
            pos = data.find(anchor, hi)
    return best


class _Scan:
    """The first match of each signature over a sequence of line-aligned chunks."""

    def __init__(self) -> None:
        self.found: dict[str, _Found] = {}
        self.bytes = 0

    def feed(self, data: bytes, first_line: int) -> None:
        """`data` starts at line `first_line` (1-based) of the log."""
        self.bytes += len(data)
        for sig, patterns in _signatures():
            if sig.id in self.found:
                continue
            for pattern in patterns:
                m = _first(pattern, data)
                if m is not None:
                    self.found[sig.id] = _Found(
                        first_line + data.count(b"\n", 0, m.start()),
                        _excerpt(data, m.start(), m.end()),
                        {k: v.decode("utf-8", "replace") for k, v in m.groupdict().items() if v is not None},
                    )
                    break


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _StdinText:
    """Standard input replaced by a text stream (no `.buffer`), read as UTF-8 bytes."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text

    def read(self, size: int = -1, /) -> bytes:
        return self.text.read(size).encode("utf-8", "surrogateescape")


def _chunks(stream: _Reader) -> Iterator[tuple[bytes, int]]:
    """Line-aligned chunks of a byte stream, each with the line it starts on; the last CONTEXT_LINES lines of
    one chunk are repeated at the start of the next, so a match crossing the cut is seen whole."""
    carry = b""
    line = 1
    while True:
        block = stream.read(CHUNK_BYTES)
        data = carry + block
        if not block:
            if data:
                yield data, line
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one enormous line (or a binary file): keep reading, within reason, then cut it
            if len(data) < 4 * CHUNK_BYTES:
                carry = data
                continue
            cut = len(data)
        yield data[:cut], line
        keep = cut
        for _ in range(CONTEXT_LINES):
            keep = _line_start(data, max(keep - 1, 0)) if keep else 0
        keep = max(keep, cut - CHUNK_BYTES)  # the context carried over stays bounded too
        line += data.count(b"\n", 0, keep)
        carry = data[keep:]


# -- excerpts ------------------------------------------------------------------------------------------------


def _excerpt(data: bytes, start: int, end: int) -> str:
    """The log line holding the match as a reader wants it: the progress-bar redraw (`\\r`) that holds the
    match only, colour codes and other control characters removed, cut to EXCERPT_CHARS around the match so
    vLLM v1's long `(EngineCore_DP0 pid=…) ERROR …` prefixes don't hide it."""
    lo = _line_start(data, start)
    hi = _line_end(data, end)
    lo = max(lo, data.rfind(b"\r", lo, start) + 1)  # the redraw the match is in
    after = data.find(b"\r", end, hi)
    hi = hi if after == -1 else after
    before = ui.clean(data[lo:start].decode("utf-8", "replace"))
    line = ui.clean(data[lo:hi].decode("utf-8", "replace")).rstrip()
    offset = len(before)
    if len(line) <= EXCERPT_CHARS:
        return line.strip()
    cut = max(0, min(offset - 60, len(line) - EXCERPT_CHARS))
    return (
        ("…" if cut else "")
        + line[cut : cut + EXCERPT_CHARS].strip()
        + ("…" if cut + EXCERPT_CHARS < len(line) else "")
    )


def _suggest(match: Match) -> str | None:
    """The flag value the numbers in the log call for, where the message carries them."""
    g = match.groups
    if "estimated" in g:
        return (
            f"--max-model-len {g['estimated']} (about {int(g['estimated']) * 0.08 / 60:.0f} minutes of audio per "
            "session)"
        )
    if "free_gib" in g and "total_gib" in g:
        margin = knowledge.load().gpu.cuda_context_mib / 1024
        util = (float(g["free_gib"]) - margin) / float(g["total_gib"])
        return (
            f"--gpu-memory-utilization {max(util, 0.0):.2f} (free {g['free_gib']} GiB minus {margin:.1f} GiB, over "
            f"{g['total_gib']} GiB)"
        )
    return None


def _matches(scan: _Scan, lines_before: int = 0) -> list[Match]:
    """The scan's findings in priority order (the knowledge file's), as Matches."""
    out = []
    for sig, _ in _signatures():
        f = scan.found.get(sig.id)
        if f is None:
            continue
        m = Match(
            id=sig.id,
            title=sig.title,
            cause=sig.cause,
            fix=sig.fix,
            commands=list(sig.commands),
            source=sig.source,
            line_no=f.line_no + lines_before,
            line=f.line,
            groups=f.groups,
        )
        m.suggestion = _suggest(m)
        out.append(m)
    return out


def explain(text: str) -> list[Match]:
    """Every known signature found in `text`, most specific first."""
    scan = _Scan()
    scan.feed(text.encode("utf-8", "surrogateescape"), 1)
    return _matches(scan)


# -- the command ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    log: str  # a file (plain or gzipped), or "-" for standard input
    full: bool = False  # search the whole log even when its end explains it


@dataclass
class ExplainResult:
    matches: list[Match]
    log_bytes: int | None = None  # the log's size where it is a plain file
    searched_bytes: int = 0
    tail_only: bool = False  # only the end of the log was searched (it explained the failure)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.matches else EXIT_FAILED


def run(opts: ExplainOptions) -> ExplainResult:
    """Read the log (raising UsageError when it cannot be read) and find the known failures in it."""
    if opts.log == "-":
        if sys.stdin.isatty():  # never wait in silence: say what the command is waiting for
            ui.console(sys.stderr).print("Reading the log from standard input: paste it, then press Ctrl-D.")
        return _stream(getattr(sys.stdin, "buffer", None) or _StdinText(sys.stdin))
    try:
        with open(opts.log, "rb") as fh:
            if fh.read(2) == _GZIP_MAGIC:
                import gzip

                fh.seek(0)
                with gzip.open(fh, "rb") as unzipped:
                    return _stream(unzipped)
            size = fh.seek(0, 2)
            if not opts.full and size > TAIL_BYTES:
                found = _tail(fh, size)
                if found is not None:
                    return found
            fh.seek(0)
            return _stream(fh, size)
    except FileNotFoundError:
        raise UsageError(f"{opts.log}: no such file (pass a vLLM log, or - to read standard input)") from None
    except (OSError, EOFError) as exc:  # EOFError, gzip.BadGzipFile (an OSError): a truncated or damaged .gz
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UsageError(f"{opts.log}: cannot read: {reason}") from None


def _stream(stream: _Reader, size: int | None = None) -> ExplainResult:
    scan = _Scan()
    for data, line in _chunks(stream):
        scan.feed(data, line)
    return ExplainResult(_matches(scan), log_bytes=size, searched_bytes=scan.bytes)


def _tail(fh: IO[bytes], size: int) -> ExplainResult | None:
    """Search the last TAIL_BYTES first; when they explain the log, only count the lines before them."""
    start = size - TAIL_BYTES
    fh.seek(start)
    data = fh.read()
    skip = data.find(b"\n") + 1  # begin at a whole line
    scan = _Scan()
    scan.feed(data[skip:], 1)
    if not scan.found:
        return None
    fh.seek(0)
    lines = 0
    left = start + skip
    while left > 0:
        block = fh.read(min(CHUNK_BYTES, left))
        if not block:
            break
        lines += block.count(b"\n")
        left -= len(block)
    return ExplainResult(_matches(scan, lines), log_bytes=size, searched_bytes=scan.bytes, tail_only=True)
