"""Read the Prometheus text exposition format, keeping only the families asked for.

prometheus_client's own parser was measured first (benchmarks/watch_speed.py): importing it pulls in the
whole client (~50 ms and ~6.5 MiB, a fifth of `watch --once`'s budget) and it builds an object per sample of
all ~80 families of a vLLM page, where `watch` needs a dozen. This parser skips every line whose metric name
is not wanted before looking at its labels, so a 50 KB page costs well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

Labels = dict[str, str]
Series = list[tuple[Labels, float]]

_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def sample_names(families: Iterable[str]) -> frozenset[str]:
    """Every sample name a family may be exposed under: counters gain `_total`, histograms `_bucket/_sum/_count`."""
    return frozenset(family + suffix for family in families for suffix in _SUFFIXES)


def parse(text: str, wanted: frozenset[str]) -> dict[str, Series]:
    """Samples of the wanted names: name -> [(labels, value)]. Malformed lines are skipped, not fatal: a page
    is judged on what it says, and one odd exporter line must not hide the rest."""
    out: dict[str, Series] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        if space < 0:
            continue
        if 0 <= brace < space:
            name = line[:brace]
            if name not in wanted:
                continue
            parsed = _labels(line, brace + 1)
            if parsed is None:
                continue
            labels, rest = parsed
        else:
            name = line[:space]
            if name not in wanted:
                continue
            labels, rest = {}, space
        value = _value(line[rest:])
        if value is not None:
            out.setdefault(name, []).append((labels, value))
    return out


def _labels(line: str, i: int) -> tuple[Labels, int] | None:
    """`a="x",b="y"}` from position i: the labels and the index after the closing brace."""
    labels: Labels = {}
    n = len(line)
    while i < n:
        if line[i] == "}":
            return labels, i + 1
        eq = line.find("=", i)
        if eq < 0 or eq + 1 >= n or line[eq + 1] != '"':
            return None
        key = line[i:eq].strip().lstrip(",").strip()
        j = eq + 2
        close = line.find('"', j)
        if close < 0:
            return None
        if line.find("\\", j, close) < 0:  # the common case: no escapes in the value
            labels[key] = line[j:close]
            i = close + 1
        else:
            chars: list[str] = []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    chars.append(_ESCAPES.get(line[j + 1], "\\" + line[j + 1]))
                    j += 2
                else:
                    chars.append(line[j])
                    j += 1
            if j >= n:
                return None
            labels[key] = "".join(chars)
            i = j + 1
        if i < n and line[i] == ",":
            i += 1
    return None


def _value(rest: str) -> float | None:
    parts = rest.split()
    if not parts:
        return None
    try:
        value = float(parts[0])  # also "+Inf", "-Inf", "NaN"
    except ValueError:
        return None
    return None if math.isnan(value) else value
