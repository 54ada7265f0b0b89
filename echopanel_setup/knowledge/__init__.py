"""The knowledge file (compat.toml) and the small helpers that interpret it.

Everything version-, threshold- or text-specific lives in the TOML so that a new vLLM release is a data
change, not a code change. Each table carries its source.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """Parse compat.toml once per process."""
    text = Path(__file__).with_name("compat.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def delay_grid() -> list[int]:
    """Every streaming delay EchoPanel may use: the model's trained values from EchoPanel's floor up."""
    d = load()["delay"]
    return list(range(d["min_ms"], d["max_ms"] + 1, d["step_ms"])) + list(d["extra_ms"])


def nearest_delays(value: int) -> list[int]:
    """The valid delays closest to `value` (one or two of them), for 'did you mean' messages."""
    grid = delay_grid()
    best = min(abs(g - value) for g in grid)
    return [g for g in grid if abs(g - value) == best]
