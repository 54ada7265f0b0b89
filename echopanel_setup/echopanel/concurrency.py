"""How many streams EchoPanel opens at once: the one figure serve plans for and doctor judges the GPU by.

EchoPanel transcribes each audio source of a meeting as its own stream (system audio and microphone), up to
`ECHOPANEL_MAX_ACTIVE_SOURCES_PER_SESSION` (default 2; knowledge `[echopanel.concurrency]`), read with `int()` from
its environment or `<checkout>/.env` (the environment wins). A server planned for one stream makes the second
source wait behind the first: the microphone's words arrive late, or not at all in a long meeting.
"""

from __future__ import annotations

from dataclasses import dataclass

from echopanel_setup import knowledge
from echopanel_setup.facts.model import EchoPanelFacts


@dataclass(frozen=True)
class Concurrency:
    streams: int
    source: str  # where the figure comes from, for "why" lines
    note: str | None = None  # a value EchoPanel itself would not accept

    @property
    def why(self) -> str:
        """One sentence for serve's plan and doctor's GPU check."""
        return (
            f"EchoPanel transcribes up to {self.streams} audio source{'s' if self.streams != 1 else ''} per meeting "
            f"at once, each its own stream (system audio and microphone; {self.source})"
        )


def key() -> str:
    return knowledge.load().echopanel.concurrency.env


def of(echopanel: EchoPanelFacts) -> Concurrency:
    """EchoPanel's concurrency as its backend will see it: the environment, then `.env`, then its default."""
    k = knowledge.load().echopanel.concurrency
    env = echopanel.env
    for where, values in (("the environment", env.environment), (env.path or ".env", env.values)):
        text = values.get(k.env) if echopanel.checkout else None
        if text is None:
            continue
        try:
            streams = int(text.strip())
        except ValueError:
            return Concurrency(
                k.default,
                f"{k.env}, EchoPanel's default",
                f"{k.env}={text!r} in {where} is not a whole number: EchoPanel's backend fails to start with it",
            )
        if streams >= 1:
            return Concurrency(streams, f"{k.env}={streams} in {where}")
        return Concurrency(
            k.default, f"{k.env}, EchoPanel's default", f"{k.env}={streams} in {where} refuses every source"
        )
    return Concurrency(k.default, f"{k.env}, EchoPanel's default")
