"""Helpers for the recorded fact snapshots in tests/fixtures/facts: load, vary, replay.

Each snapshot is a full `Facts.to_dict()` document as `doctor --save-facts` writes it. Tests that need a
variant (another GPU, another package set) load a snapshot and change the few fields that matter, so
every variant stays a realistic machine apart from the one thing under test.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from echopanel_setup import checks
from echopanel_setup.checks import CheckResult
from echopanel_setup.facts.model import Facts

FACTS_DIR = Path(__file__).parent / "fixtures" / "facts"
SCHEMA_PATH = Path(__file__).parent.parent / "echopanel_setup" / "schema" / "doctor.schema.json"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FACTS_DIR.glob("*.json"))


def raw(name: str) -> dict[str, Any]:
    """The snapshot as JSON data (a fresh copy each time)."""
    return json.loads((FACTS_DIR / name).read_text(encoding="utf-8"))


def load(name: str) -> Facts:
    return Facts.from_dict(raw(name))


def clone(facts: Facts) -> Facts:
    return copy.deepcopy(facts)


def evaluate(facts: Facts, mode: str, strict: bool = False) -> tuple[dict[str, CheckResult], int]:
    """Run every registered check on `facts` in `mode`: results by id, and doctor's exit code."""
    results = checks.run(facts, mode, checks.all_checks())
    return {r.id: r for r in results}, checks.exit_code(results, strict)


def changed(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`data` (a raw snapshot) with `section__field=value` changes applied: `platform__rosetta=True` sets
    data["platform"]["rosetta"]."""
    for key, value in changes.items():
        section, field = key.split("__")
        data[section][field] = value
    return data


def write(facts: Facts | dict[str, Any], path: Path) -> Path:
    data = facts.to_dict() if isinstance(facts, Facts) else facts
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def text_of(result: CheckResult) -> str:
    """Summary, details and fix of one result as one string, for substring checks."""
    parts = [result.summary, *result.details]
    if result.fix:
        parts += [result.fix.text, *result.fix.commands]
    return "\n".join(parts)
