"""`explain LOG`: name a known vLLM failure in a log or traceback, with its cause and fix.

Signatures live in compat.toml ([[signature]]), in priority order: a log often shows a root cause
followed by its consequences, and the first signature that matches names the cause.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from echopanel_setup import knowledge
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, UsageError


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


EXCERPT_CHARS = 300


def _excerpt(text: str, start: int, end: int) -> str:
    """The log line holding the match (lines end at \\n only; a tqdm \\r redraw stays on its line), cut to
    EXCERPT_CHARS around the match so vLLM v1's long `(EngineCore_DP0 pid=…) ERROR …` prefixes don't hide it."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end
    segment_start = text.rfind("\r", line_start, start) + 1 or line_start  # the redraw that holds the match
    line = text[max(segment_start, line_start) : line_end].rstrip("\r")
    offset = start - max(segment_start, line_start)
    if len(line) <= EXCERPT_CHARS:
        return line.strip()
    lo = max(0, min(offset - 60, len(line) - EXCERPT_CHARS))
    return ("…" if lo else "") + line[lo : lo + EXCERPT_CHARS].strip() + ("…" if lo + EXCERPT_CHARS < len(line) else "")


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


def explain(text: str) -> list[Match]:
    """Every known signature found in `text`, most specific first."""
    matches = []
    for sig in knowledge.load().signature:
        for pattern in sig.patterns:
            m = re.search(pattern, text, re.MULTILINE)
            if m is None:
                continue
            line_no = text.count("\n", 0, m.start()) + 1
            matches.append(
                Match(
                    id=sig.id,
                    title=sig.title,
                    cause=sig.cause,
                    fix=sig.fix,
                    commands=list(sig.commands),
                    source=sig.source,
                    line_no=line_no,
                    line=_excerpt(text, m.start(), m.end()),
                    groups={k: v for k, v in m.groupdict().items() if v is not None},
                )
            )
            matches[-1].suggestion = _suggest(matches[-1])
            break
    return matches


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    log: str  # a file, or "-" for standard input


@dataclass
class ExplainResult:
    matches: list[Match]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.matches else EXIT_FAILED


def run(opts: ExplainOptions) -> ExplainResult:
    """Read the log (raising UsageError when it cannot be read) and find every known failure in it."""
    return ExplainResult(explain(_read(opts.log)))


def _read(log: str) -> str:
    if log == "-":
        return sys.stdin.read()
    try:
        with open(log, encoding="utf-8", errors="replace", newline="") as fh:  # keep \r: line numbers match grep -n
            return fh.read()
    except FileNotFoundError:
        raise UsageError(f"{log}: no such file (pass a vLLM log, or - to read standard input)") from None
    except OSError as exc:
        raise UsageError(f"{log}: cannot read: {exc.strerror or exc}") from None
