"""How loaded this process is: its event loop's lag and CPU and the audio it loses, with hysteresis.

One event loop carries every connection's audio (aiortc's packets, decoding, the VAD), so the loop is
what saturates first; when it does, every connected session loses audio at once. A sampler on the loop
wakes every `SAMPLE_EVERY_S` and notes how late it woke (the lag every callback is suffering) and the
CPU time the loop's thread has used (`time.thread_time`, measured on that thread: the model's worker
threads are not the loop's problem). A process can also lose audio while neither passes its limit (its
vCPUs shared with others, the kernel drops the packets the loop reads too late), so the sampler also
asks how much of real time the connected streams received (voice_assistant/audio_rate.py). Over a
moving window of `WINDOW_S`, the process is overloaded when the mean lag, the CPU share or the share of
audio lost passes its limit, and it stays so until all three are back under `RESUME_FRACTION` of their
limits: admission does not flap at the edge.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from voice_assistant.audio_rate import AudioRate
from voice_assistant.config import WebSettings
from voice_assistant.metrics import Metrics

SAMPLE_EVERY_S = 0.1
WINDOW_S = 3.0
RESUME_FRACTION = 0.7


@dataclass(frozen=True)
class LoadLimits:
    max_lag_s: float
    max_cpu: float
    """Share of one core."""
    min_audio_rate: float
    """Share of real time the connected streams must receive; 0: not judged."""

    @classmethod
    def from_settings(cls, web: WebSettings) -> LoadLimits:
        return cls(
            max_lag_s=web.max_loop_lag_ms / 1000, max_cpu=web.max_loop_cpu, min_audio_rate=web.min_audio_rate
        )

    @property
    def max_audio_loss(self) -> float:
        """The audio lost is judged as the other signals are: a limit it passes, a mark it resumes under."""
        return 1 - self.min_audio_rate


@dataclass(frozen=True)
class _Sample:
    at: float
    lag_s: float
    cpu_s: float


class LoadSensor:
    """`observe()` one sample (the sampler's, or a test's); `overload` says why new work must wait.

    `audio` is where the transports register their streams and report the audio they receive."""

    def __init__(
        self, limits: LoadLimits, metrics: Metrics, *, cpu_time: Callable[[], float] = time.thread_time
    ):
        self._limits = limits
        self._metrics = metrics
        self._cpu_time = cpu_time
        self._window: deque[_Sample] = deque()
        self.audio = AudioRate(WINDOW_S)
        self.lag_s = 0.0
        """Mean lag over the window."""
        self.cpu = 0.0
        """The loop thread's share of a core over the window."""
        self.audio_rate: float | None = None
        """The median connected stream's share of real time received over the window; None: too few."""
        self.overload: str | None = None
        """Why this process is overloaded, or None."""

    def observe(self, *, at: float, lag_s: float, cpu_s: float) -> None:
        """A sample taken at `at` (monotonic seconds): how late the sampler woke, and the loop thread's
        CPU seconds so far."""
        window = self._window
        window.append(_Sample(at, lag_s, cpu_s))
        while window[0].at < at - WINDOW_S:
            window.popleft()
        self.lag_s = sum(sample.lag_s for sample in window) / len(window)
        span = window[-1].at - window[0].at
        self.cpu = (window[-1].cpu_s - window[0].cpu_s) / span if span > 0 else 0.0
        self.audio_rate = self.audio.sample(at)
        self._metrics.loop_lag.set(self.lag_s)
        self._metrics.loop_cpu.set(self.cpu)
        self._metrics.audio_rate.set(math.nan if self.audio_rate is None else self.audio_rate)
        self._judge()

    def _judge(self) -> None:
        limits = self._limits
        judged_rate = self.audio_rate if limits.min_audio_rate > 0 else None
        audio_loss = 0.0 if judged_rate is None else 1 - judged_rate
        if self.lag_s > limits.max_lag_s:
            self.overload = f"event-loop lag {self.lag_s * 1000:.0f} ms > {limits.max_lag_s * 1000:g} ms"
        elif self.cpu > limits.max_cpu:
            self.overload = f"event loop at {self.cpu:.0%} of a core > {limits.max_cpu:.0%}"
        elif judged_rate is not None and audio_loss > limits.max_audio_loss:
            self.overload = (
                f"the median connected stream received {judged_rate:.0%} of its audio in real time "
                f"< {limits.min_audio_rate:.0%}"
            )
        elif (
            self.lag_s < limits.max_lag_s * RESUME_FRACTION
            and self.cpu < limits.max_cpu * RESUME_FRACTION
            and audio_loss < limits.max_audio_loss * RESUME_FRACTION
        ):
            self.overload = None
        # Between the two marks it stays as it was.
        self._metrics.overloaded.set(self.overload is not None)

    async def run(self) -> None:
        """Sample the running loop until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + SAMPLE_EVERY_S
            await asyncio.sleep(SAMPLE_EVERY_S)
            now = loop.time()
            self.observe(at=now, lag_s=max(now - due, 0.0), cpu_s=self._cpu_time())
