"""`watch`: sample a running vLLM's `/metrics` and `/health`, derive the verdicts, repeat.

`run(opts, emit)` is the whole command without its output: it calls `emit` once per sample in a live run
and returns a `WatchResult` either way. `--once` takes what a verdict needs: two samples `--interval`
apart (rates are differences), or one with `--interval 0` (counters then read as totals since the server
started). `/metrics` and `/health` are not guarded by vLLM's `--api-key`; only `/v1/models` gets the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from echopanel_setup import env, knowledge, paths
from echopanel_setup.errors import EXIT_EXTERNAL, EXIT_FAILED, EXIT_OK, UsageError
from echopanel_setup.metrics import derive
from echopanel_setup.metrics.sample import Sample, from_text
from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import Answer, Problem, VllmClient, parse_version

UNREACHABLE = "unreachable"
NO_METRICS = "no-metrics"  # something answers, but not with a /metrics page (not vLLM, or its metrics are off)


@dataclass(frozen=True, kw_only=True)
class WatchOptions:
    url: ServerURL | None = None
    api_key: str | None = field(default=None, repr=False)  # a key, or "-" to read one line from stdin
    vllm_api_key: str | None = field(default=None, repr=False)  # VLLM_API_KEY, read by cli: used without --api-key
    interval: float | None = None
    once: bool = False
    duration: float | None = None  # --for SECONDS
    config: str | None = None


@dataclass(frozen=True)
class Plan:
    """What `serve` planned for the server it started (from its record), if it started this one."""

    streams: int | None = None
    max_model_len: int | None = None
    source: str | None = None
    allowed: int | None = None  # --max-num-seqs, where serve let vLLM run more streams than planned
    stream_mib: int | None = None  # one stream's KV cache as serve planned it (per GPU): what one more needs


@dataclass
class Server:
    url: ServerURL
    version: str | None = None
    models: list[str] = field(default_factory=list)
    max_model_len: int | None = None
    url_source: str = ""
    models_error: str | None = None  # why /v1/models told nothing: it refused (or wanted) the API key


@dataclass
class Tick:
    """One sample as reported: when, the derived signals, or why there was none."""

    index: int
    taken_at: str  # ISO 8601, UTC
    derived: derive.Derived | None = None
    error: str | None = None  # the server did not answer /metrics, or answered without a page
    metric_names: dict[str, str] = field(default_factory=dict)
    answered: bool = False  # no page, but the server answered: reachable, and a failed verdict (exit 1), not exit 3
    paired: bool = False  # the verdict compared this sample with the one before (rates over the interval)

    @property
    def status(self) -> str:
        if self.derived is None:
            return NO_METRICS if self.answered else UNREACHABLE
        return self.derived.worst


@dataclass
class WatchResult:
    server: Server
    plan: Plan
    ticks: list[Tick]
    interval_s: float
    once: bool
    wall_s: float
    stopped: str = "done"  # done | for | interrupted

    @property
    def last(self) -> Tick | None:
        return self.ticks[-1] if self.ticks else None

    @property
    def worst(self) -> str:
        """The worst verdict any sample reached (an unreachable sample does not count here; a server that answered
        without a /metrics page is a failed one); `unknown` when no sample was judged at all."""
        judged = [t.derived.worst if t.derived else derive.FAIL for t in self.ticks if t.derived or t.answered]
        return derive.worst(judged) if judged else derive.UNKNOWN

    @property
    def unreachable_at_end(self) -> bool:
        return self.last is None or (self.last.derived is None and not self.last.answered)

    @property
    def exit_code(self) -> int:
        if self.unreachable_at_end:
            return EXIT_EXTERNAL
        return EXIT_FAILED if self.worst == derive.FAIL else EXIT_OK


Emit = Callable[[Tick, WatchResult], None]


def run(opts: WatchOptions, emit: Emit | None = None, *, sleep: Callable[[float], None] = time.sleep) -> WatchResult:
    """Sample until --once has its verdict, --for runs out, or Ctrl-C; every sample goes to `emit`."""
    w = knowledge.load().watch
    interval = opts.interval if opts.interval is not None else (w.once_interval_s if opts.once else w.interval_s)
    _validate(opts, interval)
    key = env.secret_arg(opts.api_key) or opts.vllm_api_key
    url, url_source = resolve_url(opts)
    started = time.monotonic()
    deadline = started + opts.duration if opts.duration else None
    with VllmClient(url, api_key=key, timeout=w.timeout_s) as client:
        plan = serve_plan(url)
        result = WatchResult(Server(url, url_source=url_source), plan, [], interval, opts.once, 0.0)
        ctx = derive.Context(
            planned_streams=plan.streams,
            plan_source=plan.source,
            allowed_streams=plan.allowed,
            stream_mib=plan.stream_mib,
            max_model_len=plan.max_model_len,
        )
        prev: Sample | None = None
        last_idle: float | None = None  # when a sample last saw no session open
        needed = 2 if opts.once and interval > 0 else 1
        try:
            while True:
                # Until the server has said what it is (it may be down when we start), /version and /v1/models
                # go out with the sample's requests: all at once, so a sample costs one round trip.
                unknown = not result.server.version and not result.server.models
                cur, health, error, found = _sample(client, url, discover=unknown, keyed=key is not None)
                if found is not None:
                    found.url_source = url_source
                    result.server = found
                if cur is None:
                    tick = Tick(len(result.ticks), paths.timestamp(), error=error, answered=health is not None)
                else:
                    if (streams := _open(cur)) is not None and streams <= 0:
                        last_idle = cur.wall
                    ctx = replace(
                        ctx,
                        health=health,
                        open_since=last_idle,
                        max_model_len=result.server.max_model_len or plan.max_model_len,
                        models_error=result.server.models_error,
                    )
                    tick = Tick(
                        len(result.ticks),
                        paths.timestamp(),
                        derive.derive(prev, cur, ctx),
                        metric_names=cur.names,
                        paired=prev is not None,
                    )
                    prev = cur
                result.ticks.append(tick)
                if opts.once:
                    if tick.derived is None or sum(1 for t in result.ticks if t.derived) >= needed:
                        break
                elif emit is not None:
                    emit(tick, result)
                if deadline is not None and time.monotonic() + interval > deadline:
                    result.stopped = "for"
                    break
                sleep(interval)
        except KeyboardInterrupt:
            result.stopped = "interrupted"
    if opts.once:
        result.ticks = result.ticks[-1:]  # the first of two samples only fed the rates
    result.wall_s = time.monotonic() - started
    return result


def _validate(opts: WatchOptions, interval: float) -> None:
    import math

    if not math.isfinite(interval) or interval < 0:
        raise UsageError(f"--interval {interval:g}: give seconds, 0 or more (e.g. 5)")
    if interval == 0 and not opts.once:
        raise UsageError("--interval 0 only goes with --once (one sample); a live watch needs seconds, e.g. 5")
    if opts.duration is not None and not (math.isfinite(opts.duration) and opts.duration > 0):
        raise UsageError(f"--for {opts.duration:g}: give seconds, more than 0 (e.g. 60)")


def resolve_url(opts: WatchOptions) -> tuple[ServerURL, str]:
    """The server to watch, and where that came from: --url, the server `serve` started, EchoPanel's config,
    else vLLM's default on this machine."""
    if opts.url:
        return opts.url, "--url"
    from echopanel_setup.serve import launcher

    record = launcher.running()
    if record is not None:
        return ServerURL.parse(record.url, what="the serve record's url"), "the server `echopanel-setup serve` started"
    import os
    from pathlib import Path

    from echopanel_setup import envconfig
    from echopanel_setup.echopanel import discover, settings

    checkout = None if opts.config else discover.find(None, os.environ, Path.cwd(), Path.home())
    config_path = discover.env_path(opts.config, checkout)
    configured = envconfig.configured_url(settings.values_seen(config_path, os.environ))
    if configured:
        return configured, f"{envconfig.URL} in {config_path}"
    from echopanel_setup import ports

    return ServerURL.parse(ports.local_url()), "vLLM's port on this machine"


def discover_server(url: ServerURL, version: Answer, models: Answer, *, keyed: bool = False) -> Server:
    """The server from its /version and /v1/models answers: the vLLM version, the served names and their
    max_model_len. An unreachable or odd answer leaves them unknown: the samples report that. Only /v1/* is
    guarded by vLLM's --api-key, so a key that is missing (or wrong, `keyed`) shows here alone: said, not guessed."""
    server = Server(url, version=parse_version(version))
    if models.status in (401, 403):
        server.models_error = (
            f"/v1/models {'refused the API key' if keyed else 'wants an API key'} (HTTP {models.status})"
        )
    if models.ok:
        data = models.json().get("data")
        cards = [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        server.models = [str(m.get("id")) for m in cards]
        lens = [m.get("max_model_len") for m in cards]
        server.max_model_len = next((int(n) for n in lens if isinstance(n, int) and n > 0), None)
    return server


def _open(s: Sample) -> float | None:
    return s.sessions_active if s.sessions_active is not None else s.running


def serve_plan(url: ServerURL) -> Plan:
    """The plan in the record of the server `serve` started, when that server is the one at `url`."""
    if not (paths.state_dir() / "serve").is_dir():  # nothing was ever served here: skip importing serve (~0.1 s)
        return Plan()
    from echopanel_setup.serve import launcher

    record = launcher.running()
    if record is None or not ServerURL.parse(record.url, what="the serve record's url").same_server(url):
        return Plan()

    planned = record.planned_streams
    source = f"{planned} streams planned" if record.streams == planned else f"--max-num-seqs {planned}"
    max_model_len, batched = record.flag("--max-model-len"), record.flag("--max-num-batched-tokens")
    stream_mib = None
    if max_model_len and batched:
        from echopanel_setup.serve import planner

        tp = record.flag("--tensor-parallel-size") or 1
        stream_mib = planner.stream_mib(planner.builtin_arch(), batched, max_model_len, tp)
    return Plan(
        planned,
        max_model_len,
        f"the serve record ({source})" if planned else None,
        record.flag("--max-num-seqs"),
        stream_mib,
    )


_SAMPLE = ("/metrics", "/health")
_DISCOVER = ("/version", "/v1/models")


def _sample(
    client: VllmClient, url: ServerURL, *, discover: bool, keyed: bool = False
) -> tuple[Sample | None, int | None, str | None, Server | None]:
    """One /metrics page and /health status (or why there was none: with a status still when the server answered,
    /health's or else /metrics' own), and, when `discover`, the server as /version and /v1/models describe it (None
    unless /metrics answered: a server down now is asked again)."""
    metrics, health, *described = client.get_all(_SAMPLE + _DISCOVER if discover else _SAMPLE)
    # When /metrics left (the other routes' threads start first): the page's counters are from about then, and the
    # rates divide by the time between two samples' pages, so this must not include those threads' start.
    at = metrics.sent
    wall = time.time() - (time.monotonic() - at)
    if metrics.problem is Problem.PROXY:
        raise UsageError(metrics.error)
    if not metrics.reachable:
        return None, None, f"{metrics.url}: {_reason(metrics)}", None
    if metrics.status != 200:
        answered = health.status if health.status is not None else metrics.status
        return None, answered, f"{metrics.url} answered HTTP {metrics.status}: not vLLM, or metrics off", None
    found = discover_server(url, *described, keyed=keyed) if described else None
    return from_text(metrics.text, at, wall), health.status, None, found


def _reason(answer: Answer) -> str:
    if answer.problem is Problem.TIMEOUT:
        return "no answer in time"
    if "refused" in answer.error.lower():
        return "connection refused (is the server running?)"
    return answer.error
