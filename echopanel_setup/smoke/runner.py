"""`smoke`: decide what to test (flags, else EchoPanel's config), run one transcription, score it.

`--url` alone means a vLLM server at that URL, no config needed; otherwise the mode, URL, delay and key
come from EchoPanel's config as EchoPanel itself would read it (the file, overridden by the environment).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup import env as env_vars
from echopanel_setup import envconfig, knowledge, ports
from echopanel_setup.echopanel import discover, settings
from echopanel_setup.errors import UsageError
from echopanel_setup.smoke import audio
from echopanel_setup.smoke.result import Transcript
from echopanel_setup.smoke.scoring import WerResult, wer
from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import Tls


@dataclass(frozen=True, kw_only=True)
class SmokeOptions:
    """smoke's flags, and VLLM_API_KEY as cli read it from the environment (keyword-only)."""

    mode: str | None = None
    url: ServerURL | None = None
    api_key: str | None = field(default=None, repr=False)
    vllm_api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    audio: str | None = None
    expect: str | None = None
    max_wer: float | None = None
    fast: bool = False
    http: bool = False
    timeout: float | None = None
    config: str | None = None
    tls: Tls | None = None  # --ca-cert (else SSL_CERT_FILE) / --insecure, for an https:// server


@dataclass
class Target:
    """What to test, and why: each choice keeps the place it came from, for the report."""

    mode: str
    url: ServerURL
    api_key: str | None = field(default=None, repr=False)
    key_source: str | None = None
    delay_ms: int | None = None
    reason: str = ""


@dataclass
class SmokeResult:
    target: Target
    route: str  # realtime | http | api
    clip: audio.Clip
    transcript: Transcript
    model: str
    server_version: str | None
    served_models: list[str]
    score: WerResult | None
    max_wer: float
    wall_s: float
    waiting_s: float  # blocked on the server, discovery included
    fast: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        if self.score is None:
            return bool(self.transcript.text.strip())
        return self.score.wer <= self.max_wer

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def overhead_s(self) -> float:
        """The client's own time: everything but waiting for the server and pacing the audio."""
        return max(0.0, self.wall_s - self.waiting_s - self.transcript.timings.paced_s)

    @property
    def rtf(self) -> float | None:
        """Real-time factor: time from the first audio sent to the complete transcript, per second of audio."""
        t = self.transcript.timings
        if not self.clip.duration_s:
            return None
        return (t.stream_s + (t.final_to_done_s or 0.0)) / self.clip.duration_s


def _env_file(opts: SmokeOptions, environ: dict[str, str]) -> Path | None:
    """`--config FILE`, else the `.env` of the EchoPanel checkout found here (ECHOPANEL_HOME, cwd, usual places)."""
    checkout = None if opts.config else discover.find(None, environ, Path.cwd(), Path.home())
    return discover.env_path(opts.config, checkout)


def _served() -> ServerURL | None:
    """The server `serve --exec/--detach` started here, at the port it was given (`serve --detach --port P` then
    `smoke` must test that one, not say "nothing to test" or ask port 8001)."""
    from echopanel_setup.serve import launcher

    return launcher.running_url()


def resolve(opts: SmokeOptions, environ: dict[str, str] | None = None) -> Target:
    """The mode, URL, key and delay to test with, from the flags, then EchoPanel's config."""
    env = dict(os.environ if environ is None else environ)
    config_path = _env_file(opts, env)
    values = settings.values_seen(config_path, env)
    mode, url, reason = opts.mode, opts.url, ""
    if mode is None:
        if url:
            mode, reason = ("local" if url.is_loopback else "remote"), "--url"
        elif values.get(envconfig.MODE) == "api":
            mode, reason = "api", f"{envconfig.MODE}=api in {config_path}"
        elif values.get(envconfig.URL):
            url = ServerURL.parse(values[envconfig.URL], what=envconfig.URL)
            mode = "local" if url.is_loopback else "remote"
            reason = f"{envconfig.URL} in {config_path}"
        elif (url := _served()) is not None:
            mode, reason = "local", "the server `echopanel-setup serve` started (`serve status`)"
        else:
            raise UsageError(
                f"nothing to test: no --url, no server started by `echopanel-setup serve`, and "
                f"{f'{config_path} sets no' if config_path else 'no EchoPanel checkout here to set'} {envconfig.URL}; "
                f"pass --url {ports.example_url('HOST')}, "
                f"--mode local (this machine, port {ports.default_port()}) or --mode api"
            )
    else:
        reason = "--mode"
    if mode == "api":
        return _api_target(opts, values, env, url, reason)
    if not url:
        configured = values.get(envconfig.URL)
        if not configured and mode == "remote":
            raise UsageError(
                f"--mode remote needs --url {ports.example_url()} (or {envconfig.URL} in the EchoPanel config)"
            )
        if configured:
            url = ServerURL.parse(configured, what=envconfig.URL)
        else:
            url = _served() if mode == "local" else None
            url = url or ServerURL.parse(ports.local_url())
    key, source = (opts.api_key, "--api-key") if opts.api_key else (opts.vllm_api_key, env_vars.VLLM_API_KEY)
    return Target(mode, url, key or None, source if key else None, None, reason)


def _api_target(
    opts: SmokeOptions, values: dict[str, str], env: dict[str, str], url: ServerURL | None, reason: str
) -> Target:
    key, source = opts.api_key, "--api-key"
    if not key:
        for var in knowledge.load().smoke.api.key_vars:
            if env.get(var):
                key, source = env[var], var
                break
            if values.get(var):
                key, source = values[var], f"{var} in the EchoPanel config"
                break
    if not key:
        raise UsageError(
            "API mode needs a Mistral API key: pass --api-key, or export VOXTRAL_MISTRAL_API_KEY or MISTRAL_API_KEY (https://console.mistral.ai/api-keys)"
        )
    raw_delay = values.get(envconfig.DELAY)
    if raw_delay and (problem := envconfig.validate_delay(raw_delay)):
        raise UsageError(f"{problem} (fix it with `echopanel-setup configure --delay-ms N`)")
    delay = int(raw_delay) if raw_delay else knowledge.load().delay.default_ms
    endpoint = url or ServerURL.parse(knowledge.load().network.mistral_endpoint)
    return Target("api", endpoint, key, source, delay, reason)


def load_clip(opts: SmokeOptions) -> audio.Clip:
    if opts.audio:
        return audio.load(opts.audio, opts.expect)
    clip = audio.bundled()
    if opts.expect is not None:
        return dataclasses.replace(clip, reference=opts.expect)
    return clip


def run(opts: SmokeOptions, status: Callable[[str], None] | None = None) -> SmokeResult:
    """Resolve, load the audio, transcribe through the chosen route and score the result."""
    say = status or (lambda message: None)
    target = resolve(opts)
    _import_transport(target.mode)
    started = time.monotonic()
    if opts.http and target.mode == "api":
        raise UsageError("--http tests a vLLM server's /v1/audio/transcriptions; API mode has no such route here")
    if opts.audio:
        audio.probe(opts.audio)  # a missing or wrong file is bad input, said before any network
    max_wer = knowledge.load().smoke.max_wer if opts.max_wer is None else opts.max_wer
    from echopanel_setup.smoke.client import Limits

    limits = Limits.defaults(opts.timeout)
    pacing = "at full speed (--fast)" if opts.fast else "paced like a live microphone"
    notes: list[str] = []
    if target.mode == "api":
        from echopanel_setup.smoke import api

        model = opts.model or knowledge.load().model.api_model
        clip = _converted_first(load_clip(opts), opts.fast, say)
        say(f"streaming {clip.duration_s:.1f} s of audio to {target.url} {pacing}")
        transcript = api.transcribe(
            clip,
            api_key=target.api_key or "",
            key_source=target.key_source or "",
            model=model,
            delay_ms=target.delay_ms or 0,
            server_url=target.url.http_base,
            fast=opts.fast,
            limits=limits,
        )
        version, served, discovery_wait, route = None, [model], 0.0, "api"
    else:
        from echopanel_setup.smoke import server

        ep = target.url
        say(f"asking {ep.http_base} for /health, /version, /v1/models")
        info = server.discover(ep, target.api_key, _start_hint(target.mode), limits.connect_s, opts.tls)
        model = server.choose_model(ep.http_base, info.models, opts.model)
        if not server.is_voxtral_realtime(model):
            notes.append(
                f"the served model {model!r} does not look like Voxtral Realtime ({knowledge.load().model.repo})"
            )
        version, served, discovery_wait = info.version, info.models, info.waiting_s
        # After the server answered: a long file is not decoded for a server that is down.
        clip = _converted_first(load_clip(opts), opts.fast and not opts.http, say)
        if opts.http:
            say(f"posting {clip.duration_s:.1f} s of audio to {ep.http_base}/v1/audio/transcriptions")
            with audio.wav_file(clip) as wav:  # uploaded from disk: a long recording is never built in memory
                transcript = server.transcribe_http(ep, model, wav, target.api_key, limits.done_s, opts.tls)
            route = "http"
        else:
            from echopanel_setup.smoke import client

            say(f"streaming {clip.duration_s:.1f} s of audio to {ep.ws_url} {pacing}")
            transcript = client.transcribe(
                ep, model, clip, api_key=target.api_key, fast=opts.fast, limits=limits, tls=opts.tls
            )
            route = "realtime"
    score = wer(clip.reference, transcript.text) if clip.reference is not None else None
    if score is None:
        notes.append("no reference text: WER not measured (pass --expect TEXT with --audio)")
    wall = time.monotonic() - started
    return SmokeResult(
        target,
        route,
        clip,
        transcript,
        model,
        version,
        served,
        score,
        float(max_wer),
        wall,
        discovery_wait + transcript.timings.waiting_s,
        opts.fast,
        notes,
    )


def _converted_first(clip: audio.Clip, fast: bool, say: Callable[[str], None]) -> audio.Clip:
    """At full speed, a file the pure-Python resampler converts is converted before the exchange, into a temporary
    file: the exchange's deadline has no room for it (seconds per audio minute), and the timings then describe the
    server, not our resampler. soxr, ffmpeg/sox and a file already at 16 kHz keep up with any send; paced, the
    pure-Python resampler does too."""
    if not fast or clip.resampler != "python":
        return clip
    say(f"converting {clip.duration_s:.0f} s of {clip.description} to 16 kHz mono")
    return clip.spool()


def _import_transport(mode: str) -> None:
    """Pay the one-time import of the network libraries before the clock starts, so the timings (and
    `client_overhead`) describe a transcription, not Python loading modules."""
    if mode == "api":
        from echopanel_setup.smoke import api

        api.load_sdk()
    else:
        import httpx  # noqa: F401
        import websockets.asyncio.client  # noqa: F401


def _start_hint(mode: str) -> str:
    if mode == "local":
        return "Start it with `echopanel-setup serve --detach` (or print the command with `echopanel-setup serve`)"
    return "Start vLLM on that host (`echopanel-setup serve` there) and check that its port is reachable from here"


def choose_client(
    client: str | None,
    *,
    mode_given: bool,
    http: bool,
    streams: int | None,
    duration: float | None,
    echopanel: str | None,
) -> tuple[str, str]:
    """(client, why) for `smoke`: --client as given; a realtime client where --mode, --http or --streams asks
    for the server itself; else `echopanel` when a checkout is found (or named), else `realtime`."""
    if duration is not None and streams is None:
        raise UsageError("--duration goes with --streams N (the seconds of audio each stream sends)")
    if streams is not None and client not in (None, "realtime"):
        raise UsageError("--streams opens realtime sessions itself: drop --client")
    if client is not None:
        return client, "--client"
    if mode_given or http or streams is not None:
        return "realtime", "--streams" if streams is not None else "--mode/--http"
    from echopanel_setup.echopanel import discover

    found = discover.find(echopanel, os.environ, Path.cwd(), Path.home())
    if found is None:
        return "realtime", "no EchoPanel checkout found"
    return "echopanel", discover.describe(found)
