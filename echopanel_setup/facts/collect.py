"""Collect one `Facts` snapshot: cheap local reads first, then the slow probes in parallel threads,
each with its own timeout, all under one global deadline.

Threads are daemons: a probe stuck in a driver call cannot keep the process alive, and its section of
the snapshot stays empty with status `timeout`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echopanel_setup import __version__, envconfig, paths, ports
from echopanel_setup.echopanel import discover
from echopanel_setup.echopanel import probe as echopanel_probe
from echopanel_setup.facts import gpu, local, network, platform, pyenv, voxtral_c
from echopanel_setup.facts.model import Facts, ProbeInfo
from echopanel_setup.url import ServerURL, redact

GLOBAL_DEADLINE_S = 10.0


@dataclass(frozen=True, kw_only=True)
class Options:
    """What doctor's flags say about where to look; keyword-only, so a new field cannot shift the others."""

    python: str | None = None
    port: int | None = None
    offline: bool = False
    model_dir: str | None = None
    config: str | None = None
    url: ServerURL | None = None
    use_cache: bool = True
    echopanel: str | None = None  # --echopanel PATH
    echopanel_python: str | None = None  # --echopanel-python PATH
    vllm_api_key: str | None = field(default=None, repr=False)  # sent to the server's /v1/* only
    # The outside endpoints (network.HF, network.MISTRAL) worth asking, decided from the facts read before the
    # probes start (the config: it picks the mode). None: all of them. --offline asks none.
    endpoints: Callable[[Facts], Collection[str]] | None = None


@dataclass
class _Probe:
    name: str
    timeout_s: float
    run: Callable[[], Any]
    assign: Callable[[Facts, Any], None]


def collect(opts: Options, on_wait: Callable[[list[str]], None] | None = None) -> Facts:
    """Probe this machine. `on_wait(pending)` is called while slow probes are still running."""
    facts = Facts(tool_version=__version__, collected_at=paths.timestamp())
    python, source = pyenv.discover(opts.python)  # BadPythonError surfaces before any work
    checkout = echopanel_probe.locate(opts.echopanel, os.environ, Path.cwd(), Path.home())  # so does a bad --echopanel

    env_file = discover.env_path(opts.config, checkout)
    facts.config = _timed(facts, "config", lambda: local.probe_config(env_file, paths.legacy_echopanel_env()))
    configured = opts.url or envconfig.configured_url(facts.config.values)
    # The URL above keeps its credentials (a reverse proxy's Basic auth); what the snapshot keeps never does.
    facts.config.values = {k: redact(v) if "://" in v else v for k, v in facts.config.values.items()}
    here = ports.echopanel_backend_port() if checkout else None  # the checkout's own port is read in parallel
    port = ports.vllm_port(opts.port, configured, echopanel_port=here).port
    facts.port = _timed(facts, "port", lambda: local.probe_port(port))
    if here is not None:
        facts.port.echopanel_port, facts.port.echopanel_port_kind = (
            here,
            _timed(facts, "echopanel port", lambda: _kind(here)),
        )

    state = paths.read_state()
    model_dir = Path(opts.model_dir or state.get("model_dir") or paths.default_model_dir()).expanduser()
    server_url = _server_url(configured, facts, opts.offline)
    creds = network.credentials(facts.config.values, vllm_api_key=opts.vllm_api_key)
    creds.offline = opts.offline
    shown = configured or server_url
    creds.server_url = str(shown) if shown else None

    probes = [
        _Probe("platform", 3.0, platform.probe, lambda f, v: setattr(f, "platform", v)),
        _Probe("gpu", 6.0, gpu.probe, lambda f, v: setattr(f, "gpu", v)),
        _Probe(
            "pyenv",
            pyenv.PROBE_TIMEOUT_S + 1,
            lambda: pyenv.probe(python, source, opts.use_cache),
            lambda f, v: setattr(f, "pyenv", v),
        ),
        _Probe("disk", 3.0, lambda: local.probe_disk(model_dir), lambda f, v: setattr(f, "disk", v)),
        _Probe(
            "model",
            3.0,
            lambda: local.probe_model(model_dir, state.get("serve_dir")),
            lambda f, v: setattr(f, "model", v),
        ),
        _Probe("client", 3.0, local.probe_client, lambda f, v: setattr(f, "client", v)),
        _Probe(
            "echopanel",
            echopanel_probe.PYTHON_TIMEOUT_S + 1,
            lambda: echopanel_probe.probe(
                checkout, python=opts.echopanel_python, env_file=opts.config, environ=os.environ
            ),
            lambda f, v: setattr(f, "echopanel", v),
        ),
    ]
    facts.network = creds
    wanted = opts.endpoints(facts) if opts.endpoints else network.ENDPOINTS
    endpoints = frozenset() if opts.offline else frozenset(wanted)
    if server_url or endpoints:
        probes.append(
            _Probe(
                "network",
                3.0,
                lambda: network.probe(creds, server_url, endpoints, api_key=opts.vllm_api_key),
                lambda f, v: setattr(f, "network", v),
            )
        )
    # Sections whose probe does not finish keep these defaults, which name the interpreter and paths.
    facts.pyenv.python, facts.pyenv.source = python, source
    facts.disk.path = facts.model.path = str(model_dir)
    if checkout is not None:
        facts.echopanel.checkout, facts.echopanel.how = str(checkout.path), checkout.how
    _run_parallel(facts, probes, on_wait)
    # After EchoPanel's probe: the binary and weights to check are the ones its settings name (timed and guarded
    # like the others: a binary that hangs on --help must not hang doctor).
    vc = _Probe(
        "voxtral_c",
        voxtral_c.TIMEOUT_S * 4,
        lambda: voxtral_c.probe(facts.platform.system, facts.echopanel),
        lambda f, v: setattr(f, "voxtral_c", v),
    )
    _run_parallel(facts, [vc], on_wait)
    return facts


def _kind(port: int) -> str | None:
    """Who answers /health on this machine's `port` (asked only when something listens there)."""
    if not local.port_accepts("127.0.0.1", port):
        return None
    from echopanel_setup.vllm_client import VllmClient, server_kind

    with VllmClient(ServerURL.parse(f"http://127.0.0.1:{port}"), timeout=1.0) as client:
        kind = server_kind(client.health())
    return kind.value if kind else None


def _server_url(configured: ServerURL | None, facts: Facts, offline: bool) -> ServerURL | None:
    """The vLLM server to ask: the configured URL, else a local listener on the port.

    Offline runs only ask a loopback server that accepts connections (no network, and no httpx import).
    """
    if configured:
        if not offline:
            return configured
        if configured.is_loopback and local.port_accepts(configured.host, configured.port):
            return configured
        return None
    if facts.port.free is False and local.port_accepts("127.0.0.1", facts.port.port):
        return ServerURL("http", "127.0.0.1", facts.port.port)
    return None


def _timed(facts: Facts, name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    facts.probes.append(ProbeInfo(name=name, duration_ms=round((time.perf_counter() - start) * 1000, 1)))
    return value


def _run_parallel(facts: Facts, probes: list[_Probe], on_wait: Callable[[list[str]], None] | None) -> None:
    results: dict[str, tuple[str, Any, float]] = {}
    lock = threading.Lock()

    def worker(p: _Probe) -> None:
        start = time.perf_counter()
        try:
            value, status = p.run(), "ok"
        except Exception as exc:  # noqa: BLE001 - a crashed probe becomes a result, never aborts doctor
            value, status = f"{type(exc).__name__}: {exc}", "crashed"
        with lock:
            results[p.name] = (status, value, (time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    threads = {p.name: threading.Thread(target=worker, args=(p,), daemon=True, name=f"probe-{p.name}") for p in probes}
    for t in threads.values():
        t.start()
    global_deadline = started + GLOBAL_DEADLINE_S
    for p in probes:
        while True:
            limit = min(started + p.timeout_s, global_deadline)
            threads[p.name].join(timeout=min(0.1, max(0.0, limit - time.perf_counter())))
            if not threads[p.name].is_alive() or time.perf_counter() >= limit:
                break
            if on_wait and time.perf_counter() - started > 0.3:
                with lock:
                    on_wait([q.name for q in probes if q.name not in results])
    with lock:
        for p in probes:
            if p.name not in results:
                facts.probes.append(
                    ProbeInfo(p.name, round(p.timeout_s * 1000, 1), "timeout", f"no answer within {p.timeout_s:.0f} s")
                )
                continue
            status, value, ms = results[p.name]
            if status == "ok":
                p.assign(facts, value)
                facts.probes.append(ProbeInfo(p.name, round(ms, 1)))
            else:
                facts.probes.append(ProbeInfo(p.name, round(ms, 1), status, value))
