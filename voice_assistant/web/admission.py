"""Whether this process takes new work: refused while it drains, while it is overloaded (its event
loop's lag or CPU, or the audio its connected streams lose: voice_assistant/load.py) and, for offers,
while it holds `VA_MAX_SESSIONS` sessions.

A refusal never touches what is already connected: it only keeps new offers and calls away, with 503 +
`Retry-After` (a load balancer, or the client after the wait, tries again, here or elsewhere), and
`/readyz` says the same, so that a load balancer stops sending work here meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voice_assistant.config import Settings
from voice_assistant.load import LoadSensor
from voice_assistant.metrics import Metrics
from voice_assistant.web.errors import ApiError


@dataclass(frozen=True)
class Refusal:
    kind: Literal["draining", "overloaded", "full"]
    reason: str


class Admission:
    def __init__(self, settings: Settings, *, load: LoadSensor, metrics: Metrics) -> None:
        self._max_sessions = settings.web.max_sessions
        self.retry_after_s = settings.web.retry_after_s
        self._load = load
        self._metrics = metrics
        self.draining = False

    def start_draining(self) -> None:
        self.draining = True
        self._metrics.draining.set(1)

    def refusal(self, *, offer: bool) -> Refusal | None:
        """Why new work would be refused now, else None; `offer`: a new WebRTC session (which also needs
        a free place among `VA_MAX_SESSIONS`), not a call (whose limit is `VA_MAX_CALLS`)."""
        if self.draining:
            return Refusal("draining", "the server is shutting down: connect again to continue elsewhere")
        if (overload := self._load.overload) is not None:
            return Refusal("overloaded", f"the server is overloaded ({overload})")
        sessions = self._metrics.live_sessions.value
        if offer and sessions >= self._max_sessions:
            return Refusal("full", f"the server holds {sessions} sessions, the most it may")
        return None

    def counted(self, refusal: Refusal) -> Refusal:
        self._metrics.refused.labels(refusal.kind).inc()
        return refusal

    def admit_offer(self) -> None:
        """503 with `Retry-After` when a new session must wait."""
        refusal = self.refusal(offer=True)
        if refusal is not None:
            self.counted(refusal)
            raise self.busy(refusal.reason)

    def busy(self, reason: str) -> ApiError:
        return ApiError(
            503,
            f"{reason}: try again in {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
        )
