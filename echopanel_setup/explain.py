"""`explain LOG`: name a known vLLM failure in a log or traceback, with its cause and fix.

Signatures live in compat.toml ([[signature]]), in priority order: a log often shows a root cause
followed by its consequences, and the first signature that matches names the cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from echopanel_setup import knowledge


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


def explain(text: str) -> list[Match]:
    """Every known signature found in `text`, most specific first."""
    matches = []
    for sig in knowledge.load()["signature"]:
        for pattern in sig["patterns"]:
            m = re.search(pattern, text, re.MULTILINE)
            if m is None:
                continue
            line_no = text.count("\n", 0, m.start()) + 1
            line = text.splitlines()[line_no - 1].strip() if text else ""
            matches.append(
                Match(
                    id=sig["id"],
                    title=sig["title"],
                    cause=sig["cause"],
                    fix=sig["fix"],
                    commands=list(sig["commands"]),
                    source=sig["source"],
                    line_no=line_no,
                    line=line[:300],
                    groups={k: v for k, v in m.groupdict().items() if v is not None},
                )
            )
            break
    return matches
