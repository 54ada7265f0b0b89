"""The verdicts as pure functions of two samples: the cases the stand-in does not reach."""

from __future__ import annotations

from echopanel_setup.metrics import derive
from echopanel_setup.metrics.sample import Hist, Sample
from echopanel_setup.watch import render

NOW = 1_800_000_000.0


def s(at: float = 0.0, **kw: object) -> Sample:
    return Sample(at=at, wall=NOW + at, **kw)  # type: ignore[arg-type]


def sig(prev: Sample | None, cur: Sample, ctx: derive.Context | None = None) -> dict[str, derive.Signal]:
    return {x.id: x for x in derive.derive(prev, cur, ctx or derive.Context(health=200)).signals}


def test_queue_estimate_on_0_18_and_0_19() -> None:
    """WebSocket gauge, no reason split: queued = running + waiting - open sessions."""
    got = sig(None, s(running=1.0, waiting=3.0, sessions_active=3.0))["queue"]
    assert got.status == "fail" and got.value == "1" and got.estimate


def test_counter_reset_means_a_restart_not_a_rate() -> None:
    got = sig(s(0, generation_tokens=500.0, sessions_active=2.0), s(5, generation_tokens=10.0, sessions_active=2.0))
    assert got["rate"].status == "unknown" and "restarted" in got["rate"].summary


def test_a_stream_opening_mid_interval_is_not_a_shortfall() -> None:
    prev = s(0, generation_tokens=0.0, sessions_active=1.0)
    cur = s(10, generation_tokens=125.0, sessions_active=2.0)  # only one stream ran the whole interval
    assert sig(prev, cur)["rate"].status == "ok"


def test_no_stream_is_idle_not_behind() -> None:
    got = sig(s(0, generation_tokens=0.0, sessions_active=0.0), s(5, generation_tokens=0.0, sessions_active=0.0))
    assert got["rate"].status == "ok" and got["session"].summary == "no session open"


def test_some_slow_steps_warn() -> None:
    step = Hist(sum=20 * 0.05, count=20, buckets=((0.05, 16.0), (0.08, 16.0), (0.1, 20.0), (float("inf"), 20.0)))
    got = sig(None, s(step=step))["step"]
    assert got.status == "warn" and "20% of steps took over 80 ms" in got.summary


def test_session_age_bounded_by_what_watch_saw() -> None:
    """Uptime says 3 h, but watch saw no session 2 min ago: the oldest session is at most 2 min old."""
    cur = s(sessions_active=2.0, process_start=NOW - 3 * 3600)
    got = sig(None, cur, derive.Context(max_model_len=45000, health=200, open_since=NOW - 120))["session"]
    assert got.status == "ok" and got.value == "≥58 min"


def test_session_older_than_the_limit_cannot_be_estimated() -> None:
    cur = s(sessions_active=2.0, process_start=NOW - 3 * 3600)
    got = sig(None, cur, derive.Context(max_model_len=45000, health=200))["session"]
    assert got.status == "unknown" and "longer than one may last" in got.summary


def test_session_without_max_model_len() -> None:
    got = sig(None, s(sessions_active=1.0, process_start=NOW - 60))["session"]
    assert got.status == "unknown" and "max_model_len unknown" in got.summary


def test_not_a_metrics_page() -> None:
    got = sig(None, s())
    assert got["streams"].status == "unknown" and got["kv"].status == "unknown"
    assert derive.derive(None, s(), derive.Context(health=200)).worst == "ok"


def test_trend_scales_and_keeps_gaps() -> None:
    assert render.trend([0.0, 5.0, None, 10.0], ascii_only=False) == "▁▅ █"
    assert render.trend([3.0, 3.0], ascii_only=True) == "__"
    assert render.trend([None], ascii_only=True) == ""


def test_streams_beyond_the_plan_but_within_what_vllm_runs_are_not_a_warning() -> None:
    """On a GPU of its own serve plans EchoPanel's 2 streams but lets vLLM run 23 at once: 4 open streams queue
    nowhere, so they are said, not warned about; past 23 they would wait."""
    ctx = derive.Context(planned_streams=2, allowed_streams=23, health=200)
    within = sig(None, s(sessions_active=4.0), ctx)["streams"]
    assert within.status == "ok" and within.value == "4/2"
    said = "4 streams open on a plan for 2 (2 EchoPanel meetings, 2 streams each; vLLM runs up to 23 at once)"
    assert said in within.summary
    odd = sig(None, s(sessions_active=3.0), ctx)["streams"]
    assert "(at least 2 EchoPanel meetings, up to 2 streams each;" in odd.summary  # not "1.5 meetings"
    beyond = sig(None, s(sessions_active=24.0), ctx)["streams"]
    assert beyond.status == "warn" and "serve --streams 24" in (beyond.fix or "")
    planned_only = sig(None, s(sessions_active=4.0), derive.Context(planned_streams=2, health=200))["streams"]
    assert planned_only.status == "warn"  # a record with no more allowed than planned: as before


def _once(derived: derive.Derived) -> str:
    """The `--once` report of one sample, as a user reads it."""
    import io

    from echopanel_setup.url import ServerURL
    from echopanel_setup.watch import runner

    tick = runner.Tick(0, "2026-12-06T08:00:00+00:00", derived)
    result = runner.WatchResult(
        runner.Server(ServerURL.parse("http://127.0.0.1:8001")), runner.Plan(), [tick], 2, True, 0
    )
    out = io.StringIO()
    render.render_once(result, stream=out)
    return out.getvalue() + "\n" + render.plain_line(tick, out)


def test_an_estimate_says_so_once_in_every_view() -> None:
    """Regression: a session near its limit read '(… of audio; estimate) (estimate)' in the report, while an
    estimated stream count (vLLM < 0.18: running + waiting) was not labelled at all."""
    ctx = derive.Context(max_model_len=45000, health=200)
    near = derive.derive(None, s(sessions_active=2.0, process_start=NOW - 55 * 60), ctx)
    text = _once(near)
    lines = [line for line in text.splitlines() if "may end in ~5 min" in line]
    assert len(lines) == 2 and all(line.count("estimate") == 1 for line in lines), text  # report and piped line
    old = derive.derive(None, s(running=1.0, waiting=1.0), ctx)
    streams = next(line for line in _once(old).splitlines() if "Streams" in line)
    assert streams.endswith("(estimate)"), streams
    idle = derive.derive(None, s(sessions_active=0.0, process_start=NOW - 60), ctx)
    assert "estimate" not in next(line for line in _once(idle).splitlines() if "Session limit" in line)


def test_a_steady_signal_draws_a_flat_trend() -> None:
    """Regression: the trend was scaled between the last values' min and max, so a step time of 120 ms ± 0.01 ms
    or a session limit going from 55.00 to 54.98 min drew full-height jumps in the live view."""
    assert len(set(render.trend([120.0, 120.00001, 119.99999, 120.0], ascii_only=True))) == 1
    assert len(set(render.trend([55.0, 54.99, 54.98], ascii_only=False))) == 1
    assert render.trend([0.0, 0.0, 0.0001], ascii_only=True) == "___"  # near zero, the scale's floor is absolute
    assert render.trend([32.0, 50.0], ascii_only=True) == "_#"  # a real change still spans the scale


def test_a_servers_words_reach_the_piped_lines_without_control_characters() -> None:
    """Regression: a server answering a garbage status line ("\\x1b[2J…", quoted by http.client's error) cleared the
    terminal of whoever read `watch | tee watch.log`: the --once report stripped it, the piped lines did not."""
    import io

    from echopanel_setup.watch import runner

    tick = runner.Tick(
        0, "2026-12-06T08:00:00+00:00", error="http://127.0.0.1:9/metrics: \x1b[2J\x1b[31mEVIL\x07 status"
    )
    line = render.plain_line(tick, io.StringIO())
    assert line.endswith("http://127.0.0.1:9/metrics: EVIL status") and "\x1b" not in line and "\x07" not in line
