"""Which port vLLM listens on, and the URLs that follow from it.

vLLM's own default port is 8000, and so is EchoPanel's backend's (pranaysuyash/EchoPanel 3845da5 server/main.py:461): on
one machine they collide, or EchoPanel's provider ends up talking to EchoPanel itself. So every command here (serve and
its container formats, the URL configure writes, doctor's port check, `tunnel --remote-port`) uses one default,
`default_port()` (8001, from the knowledge file), and a port taken from EchoPanel's config is used only when it is not
EchoPanel's own backend port.

The EchoPanel-port rule applies only where EchoPanel runs: a GPU host or a CI runner without an EchoPanel
checkout may serve on 8000 as it likes. Callers say so by passing `echopanel_port=None`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from echopanel_setup import knowledge

if TYPE_CHECKING:
    from echopanel_setup.url import ServerURL


def default_port() -> int:
    """vLLM's port everywhere in this tool (never EchoPanel's 8000)."""
    return knowledge.load().server.default_port


def echopanel_backend_port() -> int:
    """EchoPanel's backend port when its checkout's `server/main.py` cannot tell us."""
    return knowledge.load().echopanel.defaults.backend_port


def echopanel_default_url() -> str:
    """What EchoPanel's provider uses when VOXTRAL_VLLM_URL is unset: its own backend."""
    return knowledge.load().echopanel.defaults.vllm_url


def local_url(port: int | None = None) -> str:
    """The URL EchoPanel on this machine uses for a vLLM here."""
    return f"http://localhost:{port or default_port()}"


def example_url(host: str = "GPU-HOST") -> str:
    """A vLLM server elsewhere, for messages (`--url http://GPU-HOST:8001`)."""
    return f"http://{host}:{default_port()}"


@dataclass(frozen=True)
class PortChoice:
    port: int
    reason: str  # "--port", "the config's URL", "the default"
    note: str | None = None  # set when the config's port was passed over, and why


def vllm_port(explicit: int | None, configured_url: ServerURL | None, echopanel_port: int | None) -> PortChoice:
    """The port vLLM should listen on here: `--port`, else a loopback config URL's port, else the default.

    `configured_url` is VOXTRAL_VLLM_URL (`envconfig.configured_url`: None when unset or unusable).
    `echopanel_port` is the port EchoPanel's backend listens on when EchoPanel runs on this machine, else None:
    then a config port equal to it means the config points EchoPanel at itself, and vLLM must not take it.
    """
    if explicit is not None:
        return PortChoice(explicit, "--port")
    port = configured_url.explicit_port if configured_url and configured_url.is_loopback else None
    if port is None:
        return PortChoice(default_port(), "the default")
    if echopanel_port is not None and port == echopanel_port:
        return PortChoice(
            default_port(),
            "the default",
            f"the config's URL uses port {port}, EchoPanel's own backend port: vLLM serves on {default_port()} "
            f"(point EchoPanel at it with `echopanel-setup configure --url {local_url()}`)",
        )
    return PortChoice(port, "the config's URL")
