"""One `/metrics` page as the signals `watch` judges, whatever this vLLM version calls them.

The candidate names per signal are data (`[watch.metrics]` in compat.toml): a renamed metric is a knowledge
change, and the name that answered is kept so the report can say which vocabulary the server spoke.
Series of several engines (data parallel) or labels are added up; the KV cache takes the fullest engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from echopanel_setup import knowledge
from echopanel_setup.metrics import prom


@dataclass(frozen=True)
class Hist:
    """A histogram added up over its series: the running sum, count, and cumulative count per upper bound."""

    sum: float
    count: float
    buckets: tuple[tuple[float, float], ...]  # (le, cumulative count), ascending

    def count_at_most(self, bound: float) -> float:
        """Observations <= the largest bucket bound not above `bound` (so those above it are never undercounted)."""
        below = [c for le, c in self.buckets if le <= bound + 1e-12]
        return below[-1] if below else 0.0


@dataclass(frozen=True)
class Sample:
    """What one scrape said. `at` is a monotonic clock for rates; `wall` the Unix time it was taken."""

    at: float
    wall: float
    running: float | None = None
    waiting: float | None = None
    queued: float | None = None  # waiting for capacity (vLLM 0.20+: reason="capacity")
    kv_usage: float | None = None
    generation_tokens: float | None = None
    preemptions: float | None = None
    errors: float | None = None  # finished with reason "error", plus corrupted requests
    step: Hist | None = None
    inter_token: Hist | None = None
    sessions_active: float | None = None
    sessions_opened: float | None = None
    process_start: float | None = None
    names: dict[str, str] = field(default_factory=dict)  # signal -> the metric name this server used


@lru_cache(maxsize=1)
def _candidates() -> dict[str, tuple[str, ...]]:
    from dataclasses import fields

    table = knowledge.load().watch.metrics
    return {f.name: getattr(table, f.name) for f in fields(table) if f.name != "source"}


@lru_cache(maxsize=1)
def wanted() -> frozenset[str]:
    return prom.sample_names(name for names in _candidates().values() for name in names)


def to_facts(s: Sample) -> dict[str, Any]:
    """The sample as plain JSON for a facts snapshot (doctor's `server.live` judges it, and replays it)."""
    out = {k: v for k, v in s.__dict__.items() if k not in ("at", "step", "inter_token")}
    for name in ("step", "inter_token"):
        h: Hist | None = getattr(s, name)
        out[name] = None if h is None else {"sum": h.sum, "count": h.count, "buckets": [list(b) for b in h.buckets]}
    return out


def from_facts(data: dict[str, Any]) -> Sample:
    """A sample back from `to_facts` (older or hand-written snapshots may lack any field)."""
    known = {f.name for f in fields(Sample)} - {"at", "step", "inter_token"}
    values = {k: v for k, v in data.items() if k in known}

    def hist(h: dict[str, Any] | None) -> Hist | None:
        return None if not h else Hist(h["sum"], h["count"], tuple((le, c) for le, c in h["buckets"]))

    return Sample(at=0.0, **values, step=hist(data.get("step")), inter_token=hist(data.get("inter_token")))


def from_text(text: str, at: float, wall: float) -> Sample:
    """Parse a page and pick each signal out of it."""
    scrape = prom.parse(text, wanted())
    found: dict[str, str] = {}

    def family(key: str) -> tuple[str, str] | None:
        """(family, the sample name to read) of the first candidate present."""
        for name in _candidates()[key]:
            for sample_name in (name, name + "_total", name + "_count"):
                if sample_name in scrape:
                    found[key] = name
                    return name, sample_name
        return None

    def total(key: str) -> float | None:
        hit = family(key)
        return None if hit is None else sum(v for _, v in scrape[hit[1]])

    def highest(key: str) -> float | None:
        hit = family(key)
        return None if hit is None else max(v for _, v in scrape[hit[1]])

    def labelled(key: str, label: str, values: tuple[str, ...]) -> float | None:
        hit = family(key)
        if hit is None:
            return None
        return sum(v for labels, v in scrape[hit[1]] if labels.get(label) in values)

    def histogram(key: str) -> Hist | None:
        hit = family(key)
        if hit is None:
            return None
        name = hit[0]
        bounds: dict[float, float] = {}
        for labels, v in scrape.get(name + "_bucket", []):
            try:
                le = float(labels.get("le", "nan"))
            except ValueError:
                continue
            bounds[le] = bounds.get(le, 0.0) + v
        return Hist(
            sum=sum(v for _, v in scrape.get(name + "_sum", [])),
            count=sum(v for _, v in scrape.get(name + "_count", [])),
            buckets=tuple(sorted(bounds.items())),
        )

    errors = labelled("finished", "finished_reason", ("error",))
    corrupted = total("corrupted")
    return Sample(
        at=at,
        wall=wall,
        running=total("running"),
        waiting=total("waiting"),
        queued=labelled("waiting_by_reason", "reason", ("capacity",)),
        kv_usage=highest("kv_usage"),
        generation_tokens=total("generation_tokens"),
        preemptions=total("preemptions"),
        errors=None if errors is None and corrupted is None else (errors or 0.0) + (corrupted or 0.0),
        step=histogram("step_latency"),
        inter_token=histogram("inter_token_latency"),
        sessions_active=total("sessions_active"),
        sessions_opened=total("sessions_opened"),
        process_start=highest("process_start"),
        names=found,
    )
