"""The Prometheus text parser `watch` uses, checked against prometheus_client's own parser on real pages."""

from __future__ import annotations

import math

import pytest
from metrics_kit import FIXTURES, histogram, render

from echopanel_setup.metrics import prom, sample

VERSIONS = ["0.8.5", "0.16.0", "0.20.0", "0.33.0"]


def _reference(text: str, wanted: frozenset[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in wanted and not math.isnan(s.value):
                out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_same_samples_as_prometheus_client(version: str) -> None:
    text = (FIXTURES / f"vllm-{version}.prom").read_text()
    text = render(text, histogram(text, "vllm:time_to_first_token_seconds", 40, 0.031))
    wanted = sample.wanted()
    assert prom.parse(text, wanted) == _reference(text, wanted)


def test_everything_when_asked_for_everything() -> None:
    text = (FIXTURES / "vllm-0.33.0.prom").read_text()
    ref = _reference(text, frozenset(_all_names(text)))
    assert prom.parse(text, frozenset(ref)) == ref


def _all_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_escaped_label_values_timestamps_and_special_values() -> None:
    text = (
        'm{path="C:\\\\dir",q="say \\"hi\\"",nl="a\\nb"} 1.5 1700000000000\n'
        "m2 +Inf\n"
        "m3 NaN\n"
        'm4{le="0.1",} 2\n'  # a trailing comma is allowed
    )
    got = prom.parse(text, frozenset({"m", "m2", "m3", "m4"}))
    assert got["m"] == [({"path": "C:\\dir", "q": 'say "hi"', "nl": "a\nb"}, 1.5)]
    assert got["m2"] == [({}, math.inf)]
    assert "m3" not in got  # NaN carries no figure
    assert got["m4"] == [({"le": "0.1"}, 2.0)]


def test_malformed_lines_are_skipped_not_fatal() -> None:
    text = 'm{a="x" 1\nm{a="unterminated} 2\nm{a=x} 3\nm\nm not-a-number\nm{a="ok"} 4\n'
    assert prom.parse(text, frozenset({"m"})) == {"m": [({"a": "ok"}, 4.0)]}


def test_unwanted_names_are_not_parsed() -> None:
    assert prom.parse('other{a="1"} 1\nm 2\n', frozenset({"m"})) == {"m": [({}, 2.0)]}


def test_sample_names_cover_counter_and_histogram_suffixes() -> None:
    names = prom.sample_names(["vllm:x"])
    assert {"vllm:x", "vllm:x_total", "vllm:x_bucket", "vllm:x_sum", "vllm:x_count"} <= names
