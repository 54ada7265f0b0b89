"""`smoke --client echopanel`: what EchoPanel itself will get from the server, not what a good client gets.

The provider is the one EchoPanel is set to (ECHOPANEL_ASR_PROVIDER as EchoPanel reads it) when that is a Voxtral
provider, else `voxtral_official` (the one `configure` selects). `voxtral_realtime` runs voxtral.c in that
provider's own code; when it gets no transcript, voxtral.c alone (`--client voxtral-c`) tells "voxtral.c does not
work here" from "voxtral.c works but EchoPanel cannot use it".

When the checkout's Python can load its `voxtral_official`, EchoPanel's own provider code runs in that Python (a
subprocess: `provider/echopanel_harness.py`), with EchoPanel's environment and `.env` applied by its rules and the clip
fed as its pipeline does: 2 s windows with VAD on (its default), then one stream with VAD off. Its segments and its log
(DEBUG included: the published provider logs its failures only there) are collected and the final segments scored. When
it cannot load, the reason is shown and the provider's protocol is replayed instead, step by step, exactly as the known
variant does it (pranaysuyash/EchoPanel 3845da5 server/services/provider_voxtral_official.py): requests, order, chunk
size from its delay, timeouts, headers and body, each step with what EchoPanel would show.

When EchoPanel gets no transcript, the plain realtime check (`--client realtime`) runs against the same server, to
tell "the server does not work" from "the server works but EchoPanel cannot use it" (exit 1 either way; exit 3
where nothing answers at the URL at all, as with `--client realtime`).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echopanel_setup.echopanel import keys
from echopanel_setup.errors import EXIT_EXTERNAL, EXIT_FAILED, EXIT_OK, UsageError
from echopanel_setup.provider import command as provider_command
from echopanel_setup.provider import echopanel_harness
from echopanel_setup.smoke import audio
from echopanel_setup.smoke.client import over_cap
from echopanel_setup.smoke.scoring import WerResult, wer

RUN_TIMEOUT_S = 120.0  # for one feed, on top of the time the audio takes to feed at its pace
_MAX_LOG = 200  # log lines kept per feed; the rest are counted
MODEL_ID = "mistralai/Voxtral-Mini-4B-Realtime-2602"


@dataclass
class Feed:
    """One run of EchoPanel's provider code on the clip."""

    feed: str  # vad | stream
    segments: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, Any] | None = None
    error: str | None = None
    log_dropped: int = 0  # log lines past _MAX_LOG, counted
    kept_chars: int = 0  # of the segments' text, bounded like every route's transcript

    @property
    def finals(self) -> str:
        return " ".join(s["text"] for s in self.segments if s["is_final"] and not _is_status(s["text"]))

    @property
    def status_lines(self) -> list[str]:
        return [s["text"] for s in self.segments if _is_status(s["text"])]


@dataclass
class Step:
    what: str  # "GET /health", "POST /v1/chat/completions (chunk 3 of 11)"
    status: int | None
    detail: str
    shows: str  # what EchoPanel shows for it


@dataclass
class EchoPanelSmoke:
    checkout: Path
    how_found: str
    provider: str
    variant: str | None
    variant_title: str | None
    url: str
    url_from: str
    python: str
    clip: audio.Clip
    mode: str  # run | replay
    fallback: str | None = None  # why EchoPanel's own code did not run
    feeds: list[Feed] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    transcript: str = ""
    score: WerResult | None = None
    max_wer: float = 0.3
    server_works: bool | None = None  # when EchoPanel got nothing: the realtime check, or voxtral.c alone
    server_detail: str = ""
    unreachable: bool = False  # the realtime check got no answer at all: nothing runs at the URL (exit 3)
    notes: list[str] = field(default_factory=list)
    target: str = field(default="", repr=False)  # the URL itself (`url` is for display: no password)

    @property
    def passed(self) -> bool:
        if not self.transcript.strip():
            return False
        return self.score is None or self.score.wer <= self.max_wer

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_EXTERNAL if self.unreachable else EXIT_FAILED

    @property
    def verdict(self) -> str:
        local = self.provider == "voxtral_realtime"
        server = "voxtral.c" if local else "this server"
        if self.passed:
            return f"EchoPanel transcribes with {server}"
        if self.server_works:
            fix = "echopanel-setup provider fix" + (" --provider voxtral_realtime" if local else "")
            ours = self.variant == provider_command.OUR_VARIANTS.get(self.provider)
            return (
                ("voxtral.c works" if local else "the server works")
                + ", but EchoPanel cannot use it"
                + ("" if ours else f": `{fix}`")
            )
        if self.unreachable:
            return f"nothing answers at {self.url}: EchoPanel gets no transcript (is the server running?)"
        if self.transcript.strip():
            return "EchoPanel gets a transcript, but the words are wrong"
        return f"EchoPanel gets no transcript from {server}"


def _masked(url: str) -> str:
    """The URL for display: a password in it becomes ***."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _is_status(text: str) -> bool:
    return text.startswith("[") and text.rstrip().endswith("]")


def run(
    *,
    echopanel: str | None,
    echopanel_python: str | None,
    url: str | None,
    clip: audio.Clip,
    max_wer: float,
    fast: bool,
    say: Any = None,
    provider: str | None = None,
) -> EchoPanelSmoke:
    """Run (or replay) EchoPanel's provider (`provider`, else the one it is set to) against what it is set to use."""
    import os

    from echopanel_setup.echopanel import contract, discover

    say = say or (lambda message: None)
    checkout = discover.find(echopanel, os.environ, Path.cwd(), Path.home())
    if checkout is None:
        raise UsageError("--client echopanel needs an EchoPanel checkout: pass --echopanel PATH (or --client realtime)")
    env = provider_command.echopanel_env(checkout.path)
    name, note = _which_provider(provider, env)
    read = contract.read(checkout.path, wanted=[name])
    found = read.provider(name)
    if found is None:
        raise UsageError(f"{checkout.path} has no {name} provider to test (use --client realtime or voxtral-c)")
    info = contract.variant_info(found.variant)
    default = next((e.default for e in found.env if e.key == keys.URL), None) or "http://localhost:8000"
    if url:
        env[keys.URL], url_from = url, "--url"
    elif keys.URL in os.environ:
        url_from = "the environment"
    elif keys.URL in env:
        url_from = f"{checkout.path / '.env'}"
    else:
        url_from = "the provider's default"
    python = discover.backend_python(checkout.path, echopanel_python)[0]
    local = name == "voxtral_realtime"
    result = EchoPanelSmoke(
        checkout.path,
        checkout.how,
        name,
        found.variant,
        info.title if info is not None else None,
        "" if local else _masked(env.get(keys.URL, default)),
        "" if local else url_from,
        str(python),
        clip,
        "run",
        max_wer=max_wer,
        target="" if local else env.get(keys.URL, default),
        notes=[note] if note else [],
    )
    module = Path(found.file).stem
    load = provider_command.load_check(python, checkout.path, module)
    if load.ok and load.available is False:
        why = (
            "voxtral.c or its weights are not where ECHOPANEL_VOXTRAL_BIN and ECHOPANEL_VOXTRAL_MODEL point"
            if local
            else "a dependency is missing there"
        )
        load.ok = False
        load.message = (
            f"it loads in {python} but reports itself unavailable ({why}), so EchoPanel falls back to faster_whisper"
        )
    # The audio converted once into a file: EchoPanel's provider reads it there (both feeds), and the replay and
    # the plain checks read it back in blocks, so a long recording is never held whole.
    with tempfile.NamedTemporaryFile(suffix=".pcm") as feed_file:
        on_disk = clip.spool(feed_file)
        if load.ok:
            speed = 20.0 if fast else 1.0
            for feed in ("vad", "stream"):
                how = "VAD on, 2 s windows" if feed == "vad" else "VAD off"
                say(f"running EchoPanel's {found.file} in {python} ({how})")
                took = clip.duration_s / speed
                result.feeds.append(
                    _run_feed(python, checkout.path, env, Path(feed_file.name), feed, speed, module, took)
                )
            result.transcript = result.feeds[0].finals
        else:
            result.mode, result.fallback = "replay", load.message
            say(f"EchoPanel's provider does not load ({load.message}): replaying its protocol")
            result.transcript = _replay(result, found, env, on_disk)
        if clip.reference is not None and result.transcript.strip():
            result.score = wer(clip.reference, result.transcript)
        if not result.passed:
            if local:
                result.server_works, result.server_detail = _voxtral_c_works(checkout.path, on_disk)
            else:
                result.server_works, result.server_detail, result.unreachable = _server_works(
                    result.target, on_disk, fast
                )
    return result


def _which_provider(explicit: str | None, env: dict[str, str]) -> tuple[str, str]:
    """(provider to run, a note): --provider, else EchoPanel's selection when it is a Voxtral one, else ours."""
    from echopanel_setup.echopanel import contract

    if explicit:
        return explicit, ""
    chosen = env.get(keys.SELECTOR, "").strip()
    if chosen in contract.VOXTRAL_PROVIDERS:
        return chosen, ""
    shown = f"set to {chosen}" if chosen else "not set to a Voxtral provider (ECHOPANEL_ASR_PROVIDER unset)"
    return "voxtral_official", (
        f"EchoPanel is {shown}: testing voxtral_official, the provider `echopanel-setup configure` selects"
    )


def _run_feed(
    python: Path,
    checkout: Path,
    env: dict[str, str],
    pcm: Path,
    feed: str,
    speed: float,
    module: str = "provider_voxtral_official",
    feeding_s: float = 0.0,
) -> Feed:
    """One run of the harness on `pcm` (16 kHz mono PCM16, no header), which it reads window by window; it may take
    `feeding_s` (the audio at its pace) and RUN_TIMEOUT_S more."""
    out = Feed(feed)
    timeout = RUN_TIMEOUT_S + feeding_s
    cmd = [str(python), echopanel_harness.__file__, "--checkout", str(checkout), "--module", module]
    cmd += ["--pcm", str(pcm), "--feed", feed, "--speed", str(speed)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=env, cwd=checkout
    )
    late: list[bool] = []

    def overdue() -> None:
        late.append(True)
        proc.kill()

    timer = threading.Timer(timeout, overdue)
    stderr: list[str] = []
    drain = threading.Thread(target=_tail, args=(proc.stderr, stderr), daemon=True)
    timer.start()
    drain.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # as it comes: a long recording's output is never held whole
            if not _take(out, line):
                proc.kill()  # past our bound on the transcript's memory
                break
    finally:
        timer.cancel()
        proc.wait()
        drain.join(5)
    if late:
        out.error = f"EchoPanel's provider did not finish within {timeout:.0f} s"
    elif proc.returncode != 0 and out.error is None:
        out.error = (stderr or [f"exit {proc.returncode}"])[-1]
    if out.log_dropped:
        out.log.append({"level": "INFO", "name": "echopanel-setup", "message": f"{out.log_dropped} more log lines"})
    return out


def _take(out: Feed, line: str) -> bool:
    """One line of the harness's output into the feed: segments (the transcript, bounded like every route's: False
    past the bound), at most _MAX_LOG log lines (a provider logging per chunk logs thousands in an hour), health,
    error."""
    try:
        event = json.loads(line)
    except ValueError:
        return True
    if not isinstance(event, dict):
        return True
    kind = event.pop("event", None)
    if kind == "segment":
        out.kept_chars += len(str(event.get("text", "")))
        if error := over_cap(out.kept_chars, source="EchoPanel's provider", fix="read its log"):
            out.error = str(error)
            return False
        out.segments.append(event)
    elif kind == "log":
        if len(out.log) < _MAX_LOG:
            out.log.append(event)
        else:
            out.log_dropped += 1
    elif kind == "health":
        out.health = event.get("value")
    elif kind == "error":
        out.error = f"{event.get('stage')}: {event.get('message')}"
    return True


def _tail(stream: Any, tail: list[str]) -> None:
    """The last lines of a stream, read to its end."""
    for line in stream:
        if line.strip():
            tail.append(line.rstrip())
            del tail[:-20]


# --- the replay of a known variant's protocol ---------------------------------------------------------------------


def _replay(result: EchoPanelSmoke, found: Any, env: dict[str, str], clip: audio.Clip) -> str:
    if result.provider != "voxtral_official" or result.variant != "voxtral_official_chat_pcm":
        result.notes.append(
            f"{found.file} is not a variant whose protocol echopanel-setup can replay; make its Python load it "
            f"({result.fallback}) so that its own code runs"
        )
        return ""
    return _replay_chat_pcm(result, found, env, clip)


def _replay_chat_pcm(result: EchoPanelSmoke, found: Any, env: dict[str, str], clip: audio.Clip) -> str:
    """The published provider, per 2 s VAD window: GET /health, GET /v1/models, then one POST per delay chunk."""
    import httpx

    url = result.target  # joined by string formatting, as EchoPanel does: a trailing / or /v1 is not forgiven
    try:
        delay = max(240, min(2400, int(env.get(keys.DELAY, "480"))))
    except ValueError:
        result.notes.append("VOXTRAL_STREAMING_DELAY_MS is not a whole number: EchoPanel cannot load the provider")
        return ""
    chunk_bytes = int(16000 * delay / 1000 * 2)
    texts: list[str] = []
    failures: dict[tuple[int | None, str], int] = {}
    for n, pcm in enumerate(clip.chunks(64000), 1):  # EchoPanel's 2 s windows, read one at a time
        status, detail = _get(f"{url}/health", 5)
        if status != 200:
            shown = f"[voxtral_official: vLLM not running at {result.url}. Start with: vllm serve {MODEL_ID}]"
            result.steps.append(Step(f"GET /health (window {n})", status, detail, f"the line {shown!r}"))
            continue
        if n == 1:
            result.steps.append(Step("GET /health", status, detail, "nothing (healthy)"))
            status, detail = _get(f"{url}/v1/models", 5)
            result.steps.append(Step("GET /v1/models", status, detail, "nothing (the answer is ignored)"))
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
        for m, chunk in enumerate(chunks, 1):
            body = {
                "model": found.model or "voxtral-mini-transcribe-realtime-2602",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "audio_url",
                                "audio_url": {
                                    "url": "data:audio/pcm;base64," + base64.b64encode(chunk).decode(),
                                    "format": "pcm_s16le_16000",
                                },
                            }
                        ],
                    }
                ],
                "max_tokens": 256,
                "temperature": 0.0,
            }
            what = f"POST /v1/chat/completions (window {n}, chunk {m} of {len(chunks)}, {len(chunk)} bytes)"
            try:
                with httpx.Client(trust_env=False, timeout=30) as client:  # aiohttp ignores proxy variables
                    response = client.post(f"{url}/v1/chat/completions", json=body)
                status, detail = response.status_code, _reason(response.text)
            except httpx.HTTPError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            if status == 200:
                text = _content(response.text)
                texts.append(text)
                result.steps.append(Step(what, status, text, f"the final segment {text!r}" if text else "nothing"))
                continue
            key = (status, detail)
            failures[key] = failures.get(key, 0) + 1
            if failures[key] == 1:
                shows = "no transcript, and logs nothing (it logs this at DEBUG only)"
                result.steps.append(Step(what, status, detail, shows))
    for (status, detail), count in failures.items():
        if count > 1:
            result.notes.append(f"{count - 1} more POSTs answered {status} {detail}")
    return " ".join(t for t in texts if t)


def _get(url: str, timeout: float) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, _reason(exc.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"cannot connect: {getattr(reason, 'strerror', None) or reason}"


def _reason(body: str) -> str:
    """The server's error message, from vLLM's JSON error shapes, else the start of the body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:160]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:200]
    return str(data)[:160]


def _content(body: str) -> str:
    try:
        return str(json.loads(body)["choices"][0]["message"]["content"] or "").strip()
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _server_works(url: str, clip: audio.Clip, fast: bool) -> tuple[bool | None, str, bool]:
    """The plain realtime check (`--client realtime`) against the same server: does the server itself work, and
    did nothing answer at all (unreachable, as `--client realtime` says with exit 3)?"""
    from echopanel_setup.errors import SetupError, Unreachable
    from echopanel_setup.smoke import client, server
    from echopanel_setup.url import ServerURL

    try:
        ep = ServerURL.parse(url, what=keys.URL)
        info = server.discover(ep, None, "", client.Limits.defaults().connect_s)
        model = server.choose_model(ep.http_base, info.models, None)
        started = time.monotonic()
        got = client.transcribe(ep, model, clip, api_key=None, fast=True, limits=client.Limits.defaults())
    except SetupError as exc:
        return False, str(exc), isinstance(exc, Unreachable)
    text = got.text.strip()
    score = wer(clip.reference, text) if clip.reference else None
    works = bool(text) and (score is None or score.wer <= 0.3)
    took = time.monotonic() - started
    return (
        works,
        f"/v1/realtime with {model}: {text!r} ({took:.1f} s)" + (f", WER {score.wer:.0%}" if score is not None else ""),
        False,
    )


def _voxtral_c_works(checkout: Path, clip: audio.Clip) -> tuple[bool | None, str]:
    """voxtral.c alone (`--client voxtral-c`) with EchoPanel's settings: does voxtral.c itself work here?"""
    from echopanel_setup.errors import SetupError
    from echopanel_setup.smoke import voxtralc

    try:
        alone = voxtralc.run(
            voxtralc.target(binary=None, model=None, interval=None, echopanel=str(checkout)), clip, max_wer=0.3
        )
    except SetupError as exc:
        return False, str(exc)
    detail = f"{alone.target.binary}: {alone.transcript!r}" + (
        f", WER {alone.score.wer:.0%}" if alone.score is not None else ""
    )
    return alone.passed, detail if not alone.error else f"{detail} ({alone.error})"
