"""`watch` against a stand-in vLLM on loopback whose /metrics (a recorded page) follows scripted scenarios:
each verdict asserted end to end, through the CLI, with real HTTP."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import Cli
from metrics_kit import Behaviour, MetricsStandIn, Scenario

from echopanel_setup import output
from echopanel_setup.url import ServerURL
from echopanel_setup.watch import render, runner

# Rates are measured over real time: 0.4 s keeps a loaded CI machine's scheduling jitter well inside the
# 10 % tolerance of the rate verdict.
FAST = ["--interval", "0.4"]
ENVELOPE = jsonschema.Draft202012Validator(
    json.loads((Path(output.__file__).parent / "schema" / "envelope.schema.json").read_text(encoding="utf-8"))
)


def watch(cli: Cli, url: str, *args: str) -> tuple[int, str, str]:
    run = cli("watch", "--url", url, *args)
    return run.code, run.out, run.err


def once_json(cli: Cli, scenario: Scenario, behaviour: Behaviour | None = None, *args: str):  # type: ignore[no-untyped-def]
    with MetricsStandIn(scenario, behaviour) as server:
        code, out, _ = watch(cli, server.url, "--once", "--json", *FAST, *args)
    doc = json.loads(out)
    ENVELOPE.validate(doc)
    signals = {s["id"]: s for s in doc["sample"]["signals"]} if doc.get("sample") else {}
    return code, doc, signals


def test_keeping_up(cli: Cli) -> None:
    """A stream that keeps up runs at exactly 12.5 tokens/s, on the verdict's 10 % boundary's safe side by only that
    margin; the stand-in counts on its own clock when it answers, watch divides by its send stamps, so the test takes
    its samples 1 s apart (100 ms of scheduling jitter inside the margin, as 2 s, watch's own, gives 200 ms)."""
    code, doc, s = once_json(cli, Scenario(streams=3), None, "--interval", "1")
    assert code == 0 and doc["worst"] == "ok" and doc["exit_code"] == 0
    assert (
        s["rate"]["status"] == "ok" and "keeping up" in s["rate"]["summary"] and "input-bound" in s["rate"]["summary"]
    )
    assert 32 < s["rate"]["number"] < 45  # 12.5 tokens/s x 3 streams
    assert s["step"]["status"] == "ok" and s["step"]["value"] == "30 ms"
    assert s["streams"]["value"] == "3" and s["queue"]["status"] == "ok"
    assert doc["server"]["version"] == "0.33.0" and doc["server"]["max_model_len"] == 45000
    assert doc["command"] == "watch" and doc["schema_version"] == 1


def test_falling_behind_at_120_ms_a_step(cli: Cli) -> None:
    code, doc, s = once_json(cli, Scenario(streams=4, step_s=0.12, tokens_per_s=1 / 0.12))
    assert code == 1 and doc["worst"] == "fail"
    assert s["step"]["status"] == "fail" and s["step"]["value"] == "120 ms"
    assert s["rate"]["status"] == "fail"
    behind = re.search(r"falling behind by (\d+) s per minute", s["rate"]["summary"])
    assert behind and 15 <= int(behind.group(1)) <= 25  # 60 x (1 - 8.33 / 12.5) = 20
    assert "fewer streams" in s["rate"]["fix"]


def test_falling_behind_over_the_serve_plan(cli: Cli) -> None:
    _record_serve(planned=3, max_model_len=45000)
    scenario = Scenario(streams=4, step_s=0.12, tokens_per_s=1 / 0.12)
    with MetricsStandIn(scenario) as server:
        _record_serve(planned=3, max_model_len=45000, url=server.url)
        run = cli("watch", "--once", *FAST)  # the URL comes from the record
        code, out = run.code, run.out
    assert code == 1
    assert "4/3" in out and "4 streams on a plan for 3" in out
    assert "echopanel-setup serve --streams 4" in out
    assert "the serve record (--max-num-seqs 3)" in out


def test_streams_beyond_the_plan_name_the_memory_they_need(cli: Cli) -> None:
    """Issue 19's verdict: "4 streams on a plan for 3 — `serve --streams 4` needs X MiB, or add a replica". X is one
    stream's KV cache as serve's planner reserves it for the recorded --max-model-len and batch budget (per GPU, with
    the recorded tensor parallelism); a queued stream says the same."""
    from echopanel_setup.serve import planner

    per_stream = planner.stream_mib(planner.builtin_arch(), 1024, 45000)
    with MetricsStandIn(Scenario(streams=4, queued=1)) as server:
        _record_serve(planned=3, max_model_len=45000, url=server.url)
        code, out, _ = watch(cli, server.url, "--once", *FAST)
    assert code == 1, out
    assert f"`echopanel-setup serve --streams 4` needs ~{per_stream} MiB more GPU memory" in out
    assert f"({per_stream} MiB of KV cache per stream, as serve plans it; it says if they fit)" in out
    assert f"`echopanel-setup serve --streams 5` needs ~{2 * per_stream} MiB more GPU memory" in out


def test_the_plan_is_the_planned_streams_not_the_streams_vllm_may_run(cli: Cli) -> None:
    """On a GPU of its own serve lets vLLM run every stream its share holds (--max-num-seqs 23) while EchoPanel's
    plan is 2: the record keeps the 2, and watch judges by it."""
    scenario = Scenario(streams=4, step_s=0.12, tokens_per_s=1 / 0.12)
    with MetricsStandIn(scenario) as server:
        _record_serve(planned=2, max_model_len=45000, url=server.url, allowed=23)
        run = cli("watch", "--once", *FAST)
    assert "4/2" in run.out and "the serve record (2 streams planned)" in run.out
    assert "vLLM runs up to 23 at once" in run.out  # 4 streams queue nowhere: said, not warned about


def test_the_plan_is_found_when_the_url_names_this_machine_another_way(cli: Cli) -> None:
    """serve records http://127.0.0.1:P; EchoPanel's config (and configure's default) says http://localhost:P. The
    same server on this machine: watch judges by its plan instead of saying no serve started it."""
    with MetricsStandIn(Scenario(streams=2)) as server:
        _record_serve(planned=2, max_model_len=45000, url=server.url, allowed=23)
        port = server.url.rsplit(":", 1)[1]
        run = cli("watch", "--once", "--interval", "0", "--url", f"http://localhost:{port}")
    assert run.code == 0, run.out + run.err
    assert "the serve record (2 streams planned)" in run.out and "none recorded" not in run.out


def _record_serve(
    planned: int, max_model_len: int, url: str = "http://127.0.0.1:9", allowed: int | None = None
) -> None:
    """A serve record as serve writes it; `allowed` (--max-num-seqs above the plan) as on a GPU of its own, else a
    record from before the planned streams were kept apart (only --max-num-seqs)."""
    import psutil

    from echopanel_setup.serve import launcher

    launcher.Record(
        pid=os.getpid(),
        create_time=psutil.Process().create_time(),
        url=url,
        served_model_name="voxtral",
        argv=[
            *("vllm", "serve", "m", "--max-model-len", str(max_model_len), "--max-num-seqs", str(allowed or planned)),
            *("--max-num-batched-tokens", "1024"),
        ],
        log="/dev/null",
        started_at="2026-01-01T00:00:00+00:00",
        detached=True,
        streams=planned if allowed else None,
    ).write()


def test_a_shortfall_with_fast_steps_is_input_bound_not_a_failure(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=2, tokens_per_s=5.0, step_s=0.02))
    assert code == 0
    assert s["rate"]["status"] == "warn" and "slower than real time" in s["rate"]["summary"]


def test_a_session_approaching_max_model_len(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=2, uptime_s=55 * 60))
    assert code == 0  # a warning: exit 0
    session = s["session"]
    assert session["status"] == "warn" and session["estimate"] is True
    assert "may end in ~5 min" in session["summary"] and "max-model-len 45000" in session["summary"]
    assert "--session-minutes 120" in session["fix"] and "roll sessions over" in session["fix"]


def test_queueing(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=2, queued=1))
    assert code == 1
    assert s["queue"]["status"] == "fail" and "1 stream waiting: capacity full" in s["queue"]["summary"]
    assert "serve --streams 3" in s["queue"]["fix"]


def test_queue_on_0_20_reads_the_capacity_reason_not_paused_sessions(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=3), Behaviour(version="0.20.0"))
    assert code == 0 and s["queue"]["status"] == "ok"  # two paused sessions are "deferred", not queued


def test_queue_cannot_be_told_on_0_16(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=2, queued=1), Behaviour(version="0.16.0"))
    assert s["queue"]["status"] == "unknown" and "< 0.18" in s["queue"]["summary"]
    assert s["streams"]["estimate"] is True and s["streams"]["value"] == "3"  # running + waiting, queued included


def test_a_preemption(cli: Cli) -> None:
    def preempt(n: int, scenario: Scenario) -> None:
        if n == 2:
            scenario.preemptions = 1

    code, _, s = once_json(cli, Scenario(streams=2), Behaviour(on_scrape=preempt))
    assert code == 1
    assert s["preemptions"]["status"] == "fail" and s["preemptions"]["value"] == "+1"
    assert "gap in their transcripts" in s["preemptions"]["summary"]


def test_request_errors(cli: Cli) -> None:
    def fail(n: int, scenario: Scenario) -> None:
        if n == 2:
            scenario.errors = 2

    code, _, s = once_json(cli, Scenario(streams=1), Behaviour(on_scrape=fail))
    assert code == 1 and s["errors"]["status"] == "fail" and s["errors"]["value"] == "+2"


def test_kv_cache_nearly_full_warns(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=2, kv=0.95))
    assert code == 0 and s["kv"]["status"] == "warn" and "95% full" in s["kv"]["summary"]


def test_unhealthy_engine_fails(cli: Cli) -> None:
    code, _, s = once_json(cli, Scenario(streams=1), Behaviour(health=503))
    assert code == 1 and s["health"]["status"] == "fail" and "503" in s["health"]["summary"]


def test_old_metric_names(cli: Cli) -> None:
    scenario = Scenario(streams=2, kv=0.93, itl_s=0.05)
    code, doc, s = once_json(cli, scenario, Behaviour(version="0.8.5"))
    names = doc["sample"]["metric_names"]
    assert names["kv_usage"] == "vllm:gpu_cache_usage_perc"
    assert names["inter_token_latency"] == "vllm:time_per_output_token_seconds"
    assert s["kv"]["status"] == "warn" and s["kv"]["formula"] == "vllm:gpu_cache_usage_perc"
    assert s["itl"]["value"] == "50 ms" and "other requests" in s["itl"]["summary"]
    assert s["streams"]["estimate"] is True  # no WebSocket gauge before 0.18


def test_new_metric_names(cli: Cli) -> None:
    _, doc, s = once_json(cli, Scenario(streams=2))
    names = doc["sample"]["metric_names"]
    assert names["kv_usage"] == "vllm:kv_cache_usage_perc"
    assert names["inter_token_latency"] == "vllm:inter_token_latency_seconds"
    assert names["sessions_active"] == "vllm:websocket_connections_active"
    assert s["itl"]["status"] == "unknown" and "not recorded for realtime sessions" in s["itl"]["summary"]


def test_the_server_going_away_mid_watch(cli: Cli) -> None:
    with MetricsStandIn(Scenario(streams=2), Behaviour(stop_after_scrapes=2)) as server:
        code, out, _ = watch(cli, server.url, "--json", "--for", "2.5", *FAST)
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        ENVELOPE.validate(line)
    samples = [x for x in lines if x["event"] == "sample"]
    assert all(x["command"] == "watch" and x["schema_version"] == 1 and "tool" in x for x in lines)
    assert [x["status"] for x in samples[:2]] == ["ok", "ok"]
    assert samples[-1]["status"] == "unreachable" and "connection refused" in samples[-1]["error"]["message"]
    assert samples[0]["exit_code"] == 0 and samples[-1]["exit_code"] == 3 and samples[0]["error"] is None
    assert lines[-1]["event"] == "end" and lines[-1]["unreachable"] is True and lines[-1]["exit_code"] == 3
    assert code == 3


def test_unreachable_from_the_start(cli: Cli) -> None:
    code, out, _ = watch(cli, "http://127.0.0.1:9", "--once", "--json", *FAST)
    doc = json.loads(out)
    ENVELOPE.validate(doc)
    assert code == 3 and doc["unreachable"] is True and doc["sample"]["status"] == "unreachable"
    assert doc["error"]["kind"] == "external" and "connection refused" in doc["error"]["message"]
    # Nothing was judged: the worst verdict is unknown, not "ok" (a script reading `worst` saw a healthy server).
    assert doc["worst"] == "unknown"


def test_a_server_without_metrics_is_reachable_and_a_failed_verdict(cli: Cli, vllm) -> None:  # type: ignore[no-untyped-def]
    """Something answers /health but has no /metrics page (not vLLM, or its metrics are off): not "unreachable"
    (exit 3, which sends a cron job looking for a dead server) but a failed verdict (exit 1) that says why."""
    _, url = vllm()  # the loopback vLLM stand-in answers /health and /v1/models, and 404 on /metrics
    code, out, _ = watch(cli, url, "--once", "--json", *FAST)
    doc = json.loads(out)
    ENVELOPE.validate(doc)
    assert code == 1 and doc["unreachable"] is False and doc["worst"] == "fail" and doc["error"] is None
    assert doc["sample"]["status"] == "no-metrics" and "answered HTTP 404: not vLLM, or metrics off" in out
    code, out, _ = watch(cli, url, "--once", *FAST)
    assert code == 1 and "no metrics" in out and "unreachable" not in out


def test_the_worst_verdict_seen_decides_the_exit_code(cli: Cli) -> None:
    def blip(n: int, scenario: Scenario) -> None:
        scenario.queued = 1 if n == 2 else 0

    with MetricsStandIn(Scenario(streams=2), Behaviour(on_scrape=blip)) as server:
        code, out, _ = watch(cli, server.url, "--for", "2", *FAST)
    lines = out.splitlines()
    assert code == 1
    assert any("fail" in line and "capacity full" in line for line in lines)  # plain lines when not a terminal
    assert lines[-1].split()[1] == "ok"  # it recovered, yet the run failed


def test_one_sample_reads_counters_since_the_server_started(cli: Cli) -> None:
    code, doc, s = once_json(cli, Scenario(streams=2, preemptions=3), None, "--interval", "0")
    assert code == 0 and s["rate"]["status"] == "unknown"
    assert (
        s["preemptions"]["status"] == "warn" and "3 preemptions since the server started" in s["preemptions"]["summary"]
    )


def test_the_api_key_goes_to_v1_models_only_and_can_come_from_stdin(cli: Cli) -> None:
    with MetricsStandIn(Scenario(streams=1), Behaviour(api_key="s3cret")) as server:
        run = cli("watch", "--url", server.url, "--once", "--json", "--api-key", "-", *FAST, stdin="s3cret\n")
        seen = server.seen.auth
    assert run.code == 0 and "s3cret" not in run.out
    assert seen["/v1/models"] == ["Bearer s3cret"]
    assert set(seen["/metrics"]) == {None} and set(seen["/health"]) == {None}
    assert run.json()["server"]["max_model_len"] == 45000


def test_vllm_api_key_is_read_at_the_edge_and_passed_in_the_options(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: VLLM_API_KEY is read by `cli` and handed over in WatchOptions; the runner never reads os.environ
    for it (it did, so a caller's options could not say which key to use)."""
    monkeypatch.setenv("VLLM_API_KEY", "from-the-shell")
    with MetricsStandIn(Scenario(streams=1), Behaviour(api_key="s3cret")) as server:
        url = ServerURL.parse(server.url)
        given = runner.run(runner.WatchOptions(url=url, vllm_api_key="s3cret", once=True, interval=0))
        none = runner.run(runner.WatchOptions(url=url, once=True, interval=0))
        monkeypatch.setenv("VLLM_API_KEY", "s3cret")
        run = cli("watch", "--url", server.url, "--once", "--json", "--interval", "0")
        seen = server.seen.auth["/v1/models"]
    assert seen == ["Bearer s3cret", None, "Bearer s3cret"]
    assert given.server.max_model_len == 45000 and none.server.models_error is not None
    assert run.json()["server"]["max_model_len"] == 45000


@pytest.mark.parametrize(("given", "said"), [((), "wants an API key"), (("--api-key", "wrong"), "refused the API key")])
def test_a_refused_key_is_named_not_taken_for_a_server_that_did_not_say(
    cli: Cli, given: tuple[str, ...], said: str
) -> None:
    """Regression: with no key, or a wrong one, /v1/models answers 401 and the session limit read "max_model_len
    unknown (/v1/models did not say)": the key is what to fix."""
    code, doc, s = once_json(cli, Scenario(streams=2), Behaviour(api_key="s3cret"), *given)
    assert code == 0 and doc["server"]["max_model_len"] is None
    assert s["session"]["status"] == "warn" and doc["worst"] == "warn"  # the verdict is blind until the key is right
    assert f"/v1/models {said} (HTTP 401)" in s["session"]["summary"] and "did not say" not in s["session"]["summary"]
    assert "--api-key" in s["session"]["fix"] and "VLLM_API_KEY" in s["session"]["fix"]
    assert doc["server"]["models_error"].startswith(f"/v1/models {said} (HTTP 401)")


@pytest.mark.parametrize(
    "args",
    [["--interval", "-1", "--once"], ["--interval", "0"], ["--for", "0"], ["--interval", "nan", "--once"]],
)
def test_bad_input_exits_2_with_a_json_document(cli: Cli, args: list[str]) -> None:
    code, out, _ = watch(cli, "http://127.0.0.1:9", "--json", *args)
    assert code == 2 and json.loads(out)["error"]["kind"] == "usage"


def test_a_url_that_is_not_one(cli: Cli) -> None:
    code, _, err = watch(cli, "not a url", "--once")
    assert code == 2 and "must look like http://HOST:PORT" in err


def test_human_report_with_formulas(cli: Cli) -> None:
    with MetricsStandIn(Scenario(streams=3)) as server:
        code, out, _ = watch(cli, server.url, "--once", "-v", *FAST)
    assert code == 0 and "Verdict: ok" in out
    assert "rate = Δ vllm:generation_tokens / Δt" in out and "expected = 12.5 tok/s × 3 streams" in out


def test_the_live_view_has_a_row_and_a_trend_per_signal() -> None:
    from rich.console import Console

    ticks = []
    with MetricsStandIn(Scenario(streams=2)) as server:
        result = runner.run(
            runner.WatchOptions(url=ServerURL.parse(server.url), interval=0.15, duration=1.2),
            lambda t, r: ticks.append(t),
        )
    assert len(ticks) >= 2 and result.exit_code == 0
    con = Console(record=True, width=160, file=io.StringIO())
    con.print(render.live_table(result, verbose=False, ascii_only=True, points=20))
    text = con.export_text()
    for title in ("Health", "Streams", "Queue", "Decode rate", "Step latency", "KV cache", "Session limit"):
        assert title in text
    assert "Ctrl-C stops" in text


def test_one_sample_asks_its_four_routes_at_once(cli: Cli) -> None:
    """/metrics, /health, /version and /v1/models go out together: the run waits one round trip, not four."""
    with MetricsStandIn(Scenario(streams=2), Behaviour(hold=4)) as server:
        code, out, _ = watch(cli, server.url, "--once", "--json", "--interval", "0")
        most = server.seen.most_at_once
    assert code == 0 and most == 4
    assert json.loads(out)["server"]["version"] == "0.33.0"


def test_watch_once_json_imports_neither_httpx_nor_rich(tmp_path: Path) -> None:
    """httpx (~0.1 s to import; it pulls in rich for its own CLI) and rich are what kept `watch --once` over its
    250 ms (issue 19): plain GETs to a server no proxy applies to go through http.client, and JSON needs no rich."""
    with MetricsStandIn(Scenario(streams=1)) as server:
        code = (
            "import sys\n"
            f"sys.argv = ['echopanel-setup', 'watch', '--url', {server.url!r}, '--once', '--interval', '0', '--json']\n"
            "from echopanel_setup import cli\n"
            "try:\n    cli.main()\nexcept SystemExit as exc:\n    print(exc.code, file=sys.stderr)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore', 'rich'}), file=sys.stderr)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.stderr.strip().splitlines()[-2:] == ["0", "[]"], done.stderr


def test_once_cut_short_by_for_says_it_read_one_sample() -> None:
    """Regression: `watch --once --for 1` (shorter than the 2 s between the two samples a rate needs) took one sample
    and judged counters since the server started, while its report said "over 2 s"."""
    with MetricsStandIn(Scenario(streams=2)) as server:
        result = runner.run(runner.WatchOptions(url=ServerURL.parse(server.url), once=True, interval=1.0, duration=0.5))
    out = io.StringIO()
    render.render_once(result, stream=out)
    assert result.stopped == "for" and "one sample: counters since the server started" in out.getvalue()
    assert "over 1 s" not in out.getvalue()


def test_nothing_answering_says_which_server_was_watched_and_what_to_do(cli: Cli, tmp_path: Path) -> None:
    """A new user's first `watch --once` with no server running: the report named the URL and "is the server
    running?", not where that URL came from (no --url: vLLM's port here) nor how to start one or watch another."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on (not 8001: a real vLLM may run there)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / ".env"
    config.write_text(f"VOXTRAL_VLLM_URL=http://127.0.0.1:{port}\n", encoding="utf-8")
    run = cli("watch", "--once", "--interval", "0", "--config", str(config))
    assert run.code == 3
    assert f"VOXTRAL_VLLM_URL in {config}" in run.out and "echopanel-setup serve --detach" in run.out, run.out
    assert "--url URL" in run.out
    remote = cli("watch", "--once", "--interval", "0", "--url", "http://gpu.invalid:8001")
    assert remote.code == 3 and "start vLLM on that host" in remote.out, remote.out
