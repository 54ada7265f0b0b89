"""Which vLLM server EchoPanel is pointed at (`VOXTRAL_VLLM_URL`): --url, else the server `serve` started here, else
our running tunnel, else the file's (normalised, never EchoPanel's own backend), else vLLM's default port here."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from echopanel_setup import ports
from echopanel_setup.configure.result import URL, Advice, ConfigureOptions
from echopanel_setup.echopanel import settings
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import Contract
from echopanel_setup.url import ServerURL
from echopanel_setup.vllm_client import Answer, Problem, ServerKind, VllmClient, server_kind

if TYPE_CHECKING:
    from echopanel_setup.tunnel.records import TunnelRecord


def running_server() -> ServerURL | None:
    """The URL of the vLLM server `serve --exec/--detach` started and that still runs (its record in our state dir)."""
    from echopanel_setup.serve import launcher

    return launcher.running_url()


def running_tunnel() -> TunnelRecord | None:
    """The ssh tunnel of ours that runs now (`tunnel start`): EchoPanel here reaches the far end's vLLM through it."""
    from echopanel_setup.tunnel import records

    return records.current()


def through(url: str, local_port: int) -> bool:
    """`url` is this machine's end of the tunnel."""
    try:
        parsed = ServerURL.parse(url)
    except UsageError:
        return False
    return parsed.is_loopback and parsed.port == local_port


def choose(
    opts: ConfigureOptions,
    existing: dict[str, str],
    environ: Mapping[str, str],
    mode: str,
    reasons: dict[str, str],
    notes: list[str],
    contract: Contract | None,
) -> str:
    """--url, else the server we started here (its real port), else our running tunnel, else the file's, else this
    environment's (EchoPanel's backend started from here reads it before the file), else vLLM's default port here."""
    own = (contract.backend_port if contract else None) or ports.echopanel_backend_port()
    if opts.url:
        url, note = settings.url_value(opts.url, what="--url")
        if note:
            notes.append(note)
        parsed = ServerURL.parse(url)
        if mode == "local" and not parsed.is_loopback:
            raise UsageError(f"--url {parsed} is not on this machine: use --mode remote for a server elsewhere")
        if contract is not None and parsed.is_loopback and parsed.port == own and not opts.force:
            raise UsageError(
                f"--url {parsed} is EchoPanel's own backend (port {own} on this machine): EchoPanel would talk to "
                f"itself. vLLM's port here is {ports.default_port()} (`echopanel-setup serve`); --force writes it "
                "anyway"
            )
        reasons[URL] = "--url"
        return url
    running = running_server() if mode == "local" else None
    if running is not None:
        reasons[URL] = "the server `echopanel-setup serve` started here (`serve status`)"
        # A server on an IPv6 address (`--host ::1`; vLLM's "::" is IPv6 only) is not reached by "localhost" where
        # that name is 127.0.0.1 alone: its own address is written.
        return str(running) if ":" in running.host else ports.local_url(running.port)
    if (tunnel := running_tunnel()) is not None:
        reasons[URL] = f"the running tunnel to {tunnel.host}:{tunnel.remote_port} (`echopanel-setup tunnel status`)"
        return tunnel.url
    for current, where, why in (
        (existing.get(URL), "", "kept from the existing file"),
        (environ.get(URL), " in this environment", "from this environment: a backend started here reads it first"),
    ):
        if kept := _existing_url(current, where, mode, own if contract is not None else None, notes):
            reasons[URL] = why
            return kept
    if mode == "remote":
        raise UsageError(f"--mode remote needs --url {ports.example_url()} (the vLLM server EchoPanel should use)")
    reasons[URL] = "vLLM's default port on this machine"
    return ports.local_url()


def _existing_url(current: str | None, where: str, mode: str, own: int | None, notes: list[str]) -> str | None:
    """A URL EchoPanel already has (in the file, or `where`: " in this environment") when it still fits the mode:
    normalised (a `/v1` or trailing `/` broke every call), never EchoPanel's own backend (`own`: its port, where a
    checkout says it runs here)."""
    if not current:
        return None
    try:
        url, note = settings.url_value(current, what=f"{URL}{where or ' in the file'}")
    except UsageError as exc:
        notes.append(f"{exc}; {'not used' if where else 'replaced'}")
        return None
    parsed = ServerURL.parse(url)
    if parsed.is_loopback != (mode == "local"):
        return None
    if own is not None and parsed.is_loopback and parsed.port == own:
        fate = "not used" if where else "replaced"
        notes.append(f"{URL}={parsed}{where} is EchoPanel's own backend (port {own}), not vLLM; {fate}")
        return None
    if note:
        notes.append(note)
    return url


# configure asks once and goes on: EchoPanel's own check of a server waits 5 s, but a user waits for configure.
PROBE_S = 1.5
VLLM, ECHOPANEL, OTHER, NOTHING = ServerKind.VLLM.value, ServerKind.ECHOPANEL.value, ServerKind.OTHER.value, "nothing"


@dataclass(frozen=True)
class Heard:
    """Who answered `GET /health` at a URL, from this machine: vllm | echopanel (its own backend) | other | nothing."""

    url: str
    answers: str
    status: int | None = None
    detail: str = ""  # why nothing answered, in a few words
    local: bool = False  # the URL is on this machine

    def to_dict(self) -> dict[str, object]:
        return {"url": self.url, "answers": self.answers, "status": self.status, "detail": self.detail}


def probe(url: str) -> Heard:
    """Ask `url`'s /health (vllm_client tells vLLM's empty 200 from EchoPanel's JSON). Bounded by PROBE_S even where
    a name lookup hangs (the question runs in a daemon thread): configure's write never waits on it."""
    server = ServerURL.parse(url)
    answers: list[Answer] = []

    def ask() -> None:
        with VllmClient(server, timeout=PROBE_S) as client:
            answers.append(client.health())

    thread = threading.Thread(target=ask, name="configure-probe", daemon=True)
    thread.start()
    thread.join(PROBE_S + 0.5)
    health = answers[0] if answers else Answer(server.url("/health"), problem=Problem.TIMEOUT)
    kind = server_kind(health)
    if kind is None:
        error = re.sub(r"^\[Errno -?\d+\] ", "", health.error)  # "[Errno 111] Connection refused"
        detail = "no answer in time" if health.problem is Problem.TIMEOUT else error or "no answer"
        return Heard(server.display, NOTHING, detail=detail, local=server.is_loopback)
    return Heard(server.display, kind.value, health.status, local=server.is_loopback)


def advise(server: Heard, why_not: str | None, api: bool, notes: list[str], advice: list[Advice]) -> None:
    """What answered at the URL just chosen, as a note (vLLM is there) or a warning with the way on; never a
    refusal: the server may start after configure, and EchoPanel reads the URL only when its backend starts."""
    url = server.url
    if server.answers == VLLM and server.status == 200:
        notes.append(f"a vLLM server answers at {url} (GET /health: 200)")
        return
    check = f"echopanel-setup doctor --mode remote --url {url}"
    elsewhere = f"echopanel-setup configure --mode remote --url {ports.example_url()}"
    if server.answers == ECHOPANEL:
        text = (
            f"EchoPanel's own backend answers at {url}, not vLLM: EchoPanel would send its audio to itself and show no"
        )
        point = f"echopanel-setup configure --url {ports.local_url()}" if server.local else elsewhere
        advice.append(Advice(f"{text} transcript. Point it at vLLM:", [point]))
        return
    if server.answers in (VLLM, OTHER):
        what = (
            f"a vLLM server answers at {url}, but is not ready (GET /health: {server.status}: still loading, or its "
            "engine died)"
            if server.answers == VLLM
            else f"something answers at {url}, but not as vLLM does (GET /health: HTTP {server.status})"
        )
        advice.append(
            Advice(f"{what}; EchoPanel's provider says 'vLLM not running' until vLLM is ready there:", [check])
        )
        return
    tunnel = running_tunnel()
    if tunnel is not None and through(url, tunnel.local_port):
        text = (
            f"nothing answers at {url}, the tunnel to {tunnel.host} ({server.detail}): is vLLM running there, on "
            f"port {tunnel.remote_port}? The tunnel and what it reaches:"
        )
        advice.append(Advice(text, ["echopanel-setup tunnel status", check]))
    elif why_not is not None:
        ways = [elsewhere, "echopanel-setup tunnel start [user@]GPU-HOST"]
        text = (
            f"nothing answers at {url} ({server.detail}) and {why_not}, so EchoPanel will find no server there unless "
            "it becomes a tunnel to a GPU host. Point it at a vLLM server elsewhere, or forward one"
        )
        if api:
            ways.append("echopanel-setup configure --mode api")
            text += ", or use Mistral's API"
        advice.append(Advice(f"{text}:", ways))
    elif server.local:
        text = (
            f"nothing answers at {url} yet ({server.detail}): EchoPanel's provider says 'vLLM not running' until a "
            "server runs there. Start one:"
        )
        advice.append(Advice(text, ["echopanel-setup serve --detach"]))
    else:
        text = f"nothing answers at {url} from here ({server.detail}): start vLLM on that host, or check the address"
        advice.append(Advice(f"{text} and its firewall:", [check]))
