"""A stand-in vLLM for `watch`: a real HTTP server on 127.0.0.1 serving /metrics, /health, /version and
/v1/models, where /metrics is a recorded page (tests/fixtures/metrics/, see its README) whose figures follow
a scripted `Scenario`.

Counters grow with wall time (tokens = streams × rate × t), so the rates `watch` measures are the scenario's
whatever interval the test uses. Every value is written into the recorded text, so the parser reads exactly
what a vLLM of that version prints.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loopback_kit import HttpStandIn, QuietHandler

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
VOXTRAL = "mistralai/Voxtral-Mini-4B-Realtime-2602"
_LINE = re.compile(r"^(?P<name>[^\s{]+)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$")


def page(version: str) -> str:
    return (FIXTURES / f"vllm-{version}.prom").read_text(encoding="utf-8")


@dataclass
class Scenario:
    """What the server is doing. Times are seconds since the stand-in started."""

    streams: int = 0
    tokens_per_s: float = 12.5  # per stream
    step_s: float = 0.03  # per-step decode time (vLLM's TTFT histogram, one observation per 80 ms step)
    queued: int = 0
    kv: float = 0.2
    preemptions: int = 0  # cumulative, at the time of the scrape
    errors: int = 0
    uptime_s: float = 300.0  # process_start_time_seconds = now - uptime
    itl_s: float | None = None  # other requests' inter-token latency, if any


@dataclass
class Behaviour:
    version: str = "0.33.0"
    max_model_len: int | None = 45000
    health: int = 200
    api_key: str | None = None
    stop_after_scrapes: int | None = None  # the server goes away after this many /metrics answers
    on_scrape: Callable[[int, Scenario], None] | None = None  # mutate the scenario at scrape n (1-based)
    hold: int | None = None  # hold each answer until this many requests are in flight at once (2 s at most)


@dataclass
class Seen:
    scrapes: int = 0
    auth: dict[str, list[str | None]] = field(default_factory=dict)
    most_at_once: int = 0  # the most requests in flight together


def render(text: str, values: dict[str, float]) -> str:
    """`text` with the values of the series named in `values` replaced. A key is a sample name, optionally
    with labels that must all match: 'vllm:num_requests_waiting_by_reason{reason="capacity"}'."""
    rules = []
    for key, value in values.items():
        name, _, labels = key.partition("{")
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        rules.append((name, wanted, value))
    out = []
    for line in text.splitlines():
        m = _LINE.match(line) if line and line[0] != "#" else None
        if m:
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels") or ""))
            for name, wanted, value in rules:
                if m.group("name") == name and all(have.get(k) == v for k, v in wanted.items()):
                    line = line[: m.start("value")] + repr(float(value))
        out.append(line)
    return "\n".join(out) + "\n"


def histogram(text: str, family: str, count: float, value: float) -> dict[str, float]:
    """Overrides for a histogram holding `count` observations, all equal to `value`."""
    out: dict[str, float] = {f"{family}_sum": count * value, f"{family}_count": count}
    for le in set(re.findall(rf'^{re.escape(family)}_bucket\{{[^}}]*le="([^"]+)"', text, re.M)):
        out[f'{family}_bucket{{le="{le}"}}'] = count if float(le) >= value else 0.0
    return out


def values_for(text: str, s: Scenario, t: float, now: float, version: str) -> dict[str, float]:
    """The whole page's figures for scenario `s` at `t` seconds, counted the way vLLM `version` counts them."""
    steps = s.streams * s.tokens_per_s * t
    kv_name = "vllm:kv_cache_usage_perc" if "vllm:kv_cache_usage_perc" in text else "vllm:gpu_cache_usage_perc"
    itl = "vllm:inter_token_latency_seconds"
    itl = itl if itl in text else "vllm:time_per_output_token_seconds"
    v = {
        "vllm:generation_tokens_total": steps,
        "vllm:prompt_tokens_total": steps,
        "vllm:num_preemptions_total": s.preemptions,
        'vllm:request_success_total{finished_reason="error"}': s.errors,
        kv_name: s.kv,
        'vllm:num_requests_waiting_by_reason{reason="capacity"}': s.queued,
        "process_start_time_seconds": now - s.uptime_s,
        **histogram(text, "vllm:time_to_first_token_seconds", steps, s.step_s),
    }
    if s.itl_s is not None:
        v.update(histogram(text, itl, 10 * t, s.itl_s))
    running = min(s.streams, 1)  # a session between two 80 ms steps is not running
    paused = s.streams - running
    if "vllm:websocket_connections_active" in text:
        v["vllm:websocket_connections_active"] = s.streams
        v["vllm:websocket_connections_total"] = s.streams
    v["vllm:num_requests_running"] = running
    if version.startswith("0.33"):  # 0.33: a paused session is in neither running nor waiting
        v["vllm:num_requests_waiting"] = s.queued
    elif "vllm:num_requests_waiting_by_reason" in text:  # 0.20-0.32: paused sessions are "deferred"
        v['vllm:num_requests_waiting_by_reason{reason="deferred"}'] = paused
        v["vllm:num_requests_waiting"] = s.queued + paused
    else:  # 0.16-0.19: paused sessions count as waiting
        v["vllm:num_requests_waiting"] = s.queued + paused
    return v


class MetricsStandIn(HttpStandIn):
    """Use as a context manager; `.url` is its base URL, `.scenario` can be changed at any time."""

    def __init__(self, scenario: Scenario | None = None, behaviour: Behaviour | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.b = behaviour or Behaviour()
        self.seen = Seen()
        self.text = page(self.b.version)
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._flight = threading.Condition()
        self._in_flight = 0
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with outer._flight:
                    outer._in_flight += 1
                    outer.seen.most_at_once = max(outer.seen.most_at_once, outer._in_flight)
                    outer._flight.notify_all()
                    if outer.b.hold:
                        outer._flight.wait_for(lambda: outer._in_flight >= (outer.b.hold or 0), timeout=2.0)
                try:
                    self._answer()
                finally:
                    with outer._flight:
                        outer._in_flight -= 1

            def _answer(self) -> None:
                outer.seen.auth.setdefault(self.path, []).append(self.headers.get("Authorization"))
                if self.path == "/metrics":
                    return self._reply(200, outer._scrape().encode(), "text/plain; version=0.0.4; charset=utf-8")
                if self.path == "/health":
                    return self._send(outer.b.health)
                if self.path == "/version":
                    return self._send(200, {"version": outer.b.version})
                if self.path == "/v1/models":
                    if outer.b.api_key and self.headers.get("Authorization") != f"Bearer {outer.b.api_key}":
                        return self._send(401, {"error": "Unauthorized"})
                    card = {"id": VOXTRAL, "object": "model", "owned_by": "vllm", "root": VOXTRAL}
                    if outer.b.max_model_len:
                        card["max_model_len"] = outer.b.max_model_len
                    return self._send(200, {"object": "list", "data": [card]})
                return self._send(404, {"detail": "Not Found"})

        super().__init__(Handler)

    def _scrape(self) -> str:
        with self._lock:
            self.seen.scrapes += 1
            n = self.seen.scrapes
            if self.b.on_scrape:
                self.b.on_scrape(n, self.scenario)
            body = render(
                self.text,
                values_for(self.text, self.scenario, time.monotonic() - self.started, time.time(), self.b.version),
            )
            if self.b.stop_after_scrapes is not None and n >= self.b.stop_after_scrapes:
                threading.Thread(target=self.close, daemon=True).start()
            return body
