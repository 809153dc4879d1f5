"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def loop_tasks() -> float:
    """The tasks of the running event loop not yet done; NaN where no loop runs (read off the loop)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return float("nan")


class LiveCount:
    """How many of something are in progress: the one count that limits read and `/metrics` exports."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self.value = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.value += 1
        self._gauge.inc()
        try:
            yield
        finally:
            self.value -= 1
            self._gauge.dec()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "va_turns",
            "User turns committed to the store, by what ended them.",
            ["end"],
            registry=self.registry,
        )
        self.speculations = Counter(
            "va_speculations",
            "Replies started at a pause: adopted when the turn ended there, else discarded.",
            ["outcome"],
            registry=self.registry,
        )
        self.errors = Counter("va_errors", "Errors reported to clients.", ["stage"], registry=self.registry)
        self.interrupted = Counter("va_replies_interrupted", "Replies cut short.", registry=self.registry)
        self.false_interruptions = Counter(
            "va_false_interruptions",
            "Spoken replies paused by speech that proved no turn (a backchannel, noise) and resumed.",
            registry=self.registry,
        )
        self.endpointing = Histogram(
            "va_endpointing_seconds",
            "From the end of speech to turn_ended (turn committed).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_delta = Histogram(
            "va_reply_first_delta_seconds",
            "From the end of speech to the first reply text.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.summary_seconds = Histogram(
            "va_summary_seconds",
            "Model time of one fold of turns into a running summary (idle time, off the critical path).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.live_sessions = LiveCount(
            Gauge("va_live_sessions", "Connected sessions.", registry=self.registry)
        )
        self.live_calls = LiveCount(
            Gauge("va_live_calls", "Phone calls in progress.", registry=self.registry)
        )
        self.loop_lag = Gauge(
            "va_event_loop_lag_seconds",
            "How late the event loop runs a timer, mean over the last seconds (voice_assistant/load.py).",
            registry=self.registry,
        )
        self.loop_cpu = Gauge(
            "va_event_loop_cpu_ratio",
            "Share of a core the event loop's thread used over the last seconds.",
            registry=self.registry,
        )
        self.audio_rate = Gauge(
            "va_audio_rate_ratio",
            "Seconds of audio the median connected stream received per second over the last seconds; "
            "NaN while too few streams were connected throughout (voice_assistant/audio_rate.py).",
            registry=self.registry,
        )
        self.overloaded = Gauge(
            "va_overloaded", "1 while new offers and calls are refused for load.", registry=self.registry
        )
        self.draining = Gauge(
            "va_draining", "1 once SIGTERM has started a graceful drain.", registry=self.registry
        )
        self.refused = Counter(
            "va_refused",
            "New offers and calls refused by admission control, by why (overloaded, full, draining).",
            ["reason"],
            registry=self.registry,
        )
        self.held_turns = Gauge(
            "va_store_held_writes",
            "Turns and replies held while the store is unreachable, to be written once it is back.",
            registry=self.registry,
        )
        self.turns_lost = Counter(
            "va_turns_lost", "Finished turns that could not be stored, held or not.", registry=self.registry
        )
        self.audio_received = Counter(
            "va_audio_received_seconds",
            "Caller audio that reached the turn detector.",
            registry=self.registry,
        )
        self.asyncio_tasks = Gauge(
            "va_asyncio_tasks",
            "Tasks not yet done on the event loop that serves /metrics, counted at each scrape.",
            registry=self.registry,
        )
        self.asyncio_tasks.set_function(loop_tasks)
