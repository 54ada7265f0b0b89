"""What one transcription produced, whichever route it took (realtime WebSocket, HTTP, Mistral API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timings:
    """Seconds, all from one monotonic clock.

    `waiting_s` is the time spent blocked on the server (connecting, waiting for the session, waiting for
    the result after the last audio); `paced_s` the time slept to send audio at the speed of a live
    microphone. What remains of `total_s` is the client's own work.
    """

    total_s: float = 0.0
    connect_s: float = 0.0
    first_delta_s: float | None = None  # first audio chunk sent → first text received
    final_to_done_s: float | None = None  # end of audio sent → complete transcript received
    stream_s: float = 0.0  # first audio chunk sent → end of audio sent
    waiting_s: float = 0.0
    paced_s: float = 0.0

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.total_s - self.waiting_s - self.paced_s)


@dataclass
class Transcript:
    text: str
    deltas: int = 0
    timings: Timings = field(default_factory=Timings)
    usage: dict[str, Any] | None = None
    model: str | None = None
