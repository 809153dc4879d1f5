"""One fake per seam (model, time, VAD, speech engine, sink, store, worker thread, the load sensor's audio
streams), shared by the tests.

Each one moves only when the test says so (a step released, a clock advanced, a call finished), so that a
unit test steps through a timeline instead of sleeping through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from voice_assistant.audio.pcm import Samples
from voice_assistant.errors import ModelError
from voice_assistant.events import Event
from voice_assistant.history.store import HistoryStore
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import Message
from voice_assistant.session.held_writes import HeldWrites
from voice_assistant.session.sink import Playout
from voice_assistant.tts.base import SynthesisError
from voice_assistant.turn.vad import FRAME_SECONDS

T = TypeVar("T")


class RecordingStreams:
    """`AudioStreams` (voice_assistant/audio_rate.py) that keep what each stream reported."""

    def __init__(self) -> None:
        self.received: list[list[float]] = []
        """Each stream's reports, in the order the streams connected."""
        self.connected_now = 0

    @contextlib.contextmanager
    def connected(self) -> Iterator[Callable[[float], None]]:
        reports: list[float] = []
        self.received.append(reports)
        self.connected_now += 1
        try:
            yield reports.append
        finally:
            self.connected_now -= 1


async def settle(rounds: int = 20) -> None:
    """Let every task that can run go as far as it can: only fakes wait here, and they wait on the test."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@dataclass
class Steps:
    """A fake goes on one step at a time when the test releases one: `await steps.take()` in the fake."""

    granted: int = 0
    taken: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self, count: int = 1) -> None:
        self.granted += count
        self._changed.set()

    async def take(self) -> None:
        while self.taken >= self.granted:
            self._changed.clear()
            await self._changed.wait()
        self.taken += 1


@dataclass
class FakeClock:
    """A `voice_assistant.clock.Clock` that stands still until the test advances it."""

    now: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class FakeTimers:
    """A `voice_assistant.turn.batcher.Schedule` on virtual time: a callback runs when the test advances
    the time past its due time."""

    now: float = 0.0
    _timers: list[FakeTimer] = field(default_factory=list)

    def __call__(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self._timers.append(timer)
        return timer

    @property
    def pending(self) -> list[float]:
        """The due times of the timers set and not cancelled, nor run."""
        return [timer.due for timer in self._timers if not timer.cancelled]

    def advance(self, seconds: float = 0.0) -> None:
        """Moves the time on, running each timer that falls due on the way, in the order they fall due."""
        end = self.now + seconds
        while due := [timer for timer in self._timers if not timer.cancelled and timer.due <= end]:
            timer = min(due, key=lambda timer: timer.due)
            self._timers.remove(timer)
            self.now = max(self.now, timer.due)
            timer.callback()
        self.now = end


@dataclass
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedVad:
    """A `FrameVad` on a timeline: 0.9 for the frames whose middle falls in a span of speech (in seconds
    from the first frame), 0.05 elsewhere."""

    SPEECH, SILENCE = 0.9, 0.05

    def __init__(self, speech: Sequence[tuple[float, float]]) -> None:
        self._speech = speech
        self._frame = 0

    @classmethod
    def frames(cls, speech: Sequence[tuple[int, int]]) -> ScriptedVad:
        """The same, with the spans given in frames: [start, end)."""
        return cls([(start * FRAME_SECONDS, end * FRAME_SECONDS) for start, end in speech])

    def prob(self, frame: Samples) -> float:
        middle = (self._frame + 0.5) * FRAME_SECONDS
        self._frame += 1
        return self.SPEECH if any(start <= middle < end for start, end in self._speech) else self.SILENCE


class ManualOffload:
    """Stands in for `asyncio.to_thread`: each blocking call waits, on the event loop, until the test
    finishes it, so that a verdict arrives exactly where the test puts it."""

    def __init__(self) -> None:
        self._calls: deque[tuple[Callable[[], object], asyncio.Future[object]]] = deque()

    @property
    def pending(self) -> int:
        return len(self._calls)

    async def __call__(self, fn: Callable[..., T], *args: object) -> T:
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._calls.append((lambda: fn(*args), done))
        return await done  # type: ignore[return-value]

    async def finish_next(self) -> None:
        """Run the oldest waiting call now, and let its caller go on with the result (or the exception)."""
        call, done = self._calls.popleft()
        try:
            done.set_result(call())
        except Exception as error:
            done.set_exception(error)
        await settle()


@dataclass
class FakeAudioLM:
    """Streams scripted replies (a list of deltas, or an exception to raise) and records what it heard.

    With `pace`, every delta waits for a step the test releases, and with `transcribe_pace` every
    transcript does.
    """

    replies: list[list[str] | Exception]
    pace: Steps | None = None
    name: str = "fake"
    max_clips: int | None = None
    heard: list[Sequence[Message]] = field(default_factory=list)
    stopped: int = 0

    async def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.heard.append(messages)
        reply = self.replies.pop(0) if self.replies else ["ok"]
        if isinstance(reply, Exception):
            raise reply
        try:
            for delta in reply:
                if self.pace is not None:
                    await self.pace.take()
                yield delta
        except (asyncio.CancelledError, GeneratorExit):
            self.stopped += 1
            raise

    transcripts: list[str] = field(default_factory=list)
    transcribe_pace: Steps | None = None
    transcriptions_stopped: int = 0

    def audio_tokens(self, seconds: float) -> int:
        return audio_tokens_25_per_second(seconds)

    async def transcribe(self, audio: Samples) -> str:
        try:
            if self.transcribe_pace is not None:
                await self.transcribe_pace.take()
        except asyncio.CancelledError:
            self.transcriptions_stopped += 1
            raise
        return self.transcripts.pop(0) if self.transcripts else f"{len(audio) / 16_000:.1f} seconds of speech"

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def audio_tokens_25_per_second(seconds: float) -> int:
    """Qwen2-Audio's rate, as a window policy's token counter."""
    return math.ceil(seconds * 25) + 8


def failing(message: str = "the GPU fell over") -> ModelError:
    return ModelError(message)


def speech_of(text: str, samples_per_char: int = 1) -> Samples:
    """The fake synthesizer's audio for `text`: a level per character, the same for the same text."""
    levels = np.array([0.1 + (ord(ch) % 64) / 80 for ch in text], dtype=np.float32)
    return np.repeat(levels, samples_per_char)


@dataclass
class FakeSynthesizer:
    """A `Synthesizer` that speaks `seconds_per_char` of `speech_of(text)` per character, in chunks of at
    most `chunk` characters; with `pace`, each chunk waits for a step the test releases."""

    sample_rate: int = 8000
    seconds_per_char: float = 1 / 8000
    chunk: int = 1000
    pace: Steps | None = None
    fail_on: str | None = None
    started: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    """The texts whose every chunk was taken."""
    speaking: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: int = 0

    @property
    def samples_per_char(self) -> int:
        return round(self.seconds_per_char * self.sample_rate)

    async def synthesize(self, text: str) -> AsyncIterator[Samples]:
        if text == self.fail_on:
            raise SynthesisError("engine crashed")
        self.started.append(text)
        self.speaking.set()
        for start in range(0, len(text), self.chunk):
            if self.pace is not None:
                try:
                    await self.pace.take()
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
            yield speech_of(text[start : start + self.chunk], self.samples_per_char)
        self.spoken.append(text)


@dataclass(frozen=True)
class Piece:
    label: str
    samples: Samples
    rate: int


@dataclass
class RecordingSink:
    """An `AudioSink` that takes every piece at once and plays nothing by itself: the test says which
    pieces have finished playing (`finish`), and `clear` drops the others."""

    pieces: list[Piece] = field(default_factory=list)
    clears: int = 0
    playout: Playout = field(default_factory=Playout)

    @property
    def labels(self) -> list[str]:
        return [piece.label for piece in self.pieces]

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        self.pieces.append(Piece(label, samples, rate))
        self.playout.sent(label)

    def finish(self, *labels: str) -> None:
        """These pieces have been heard to the end (every piece given so far, when none is named)."""
        for label in labels or self.labels:
            self.playout.finished(label)

    def clear(self) -> set[str]:
        self.clears += 1
        return self.playout.clear()

    async def played(self, label: str) -> None:
        await self.playout.played(label)


def held_writes(store: HistoryStore, metrics: Metrics) -> HeldWrites:
    """Held writes that are written only when a test says so (`flush()`): no background task."""
    return HeldWrites(store, metrics=metrics, capacity_s=600.0)


class InlineStore(HistoryStore):
    """A HistoryStore on in-memory SQLite whose calls run inline on the event loop, not in a worker
    thread: a timeline with store calls in it then runs the same way every time."""

    def __init__(self) -> None:
        super().__init__("sqlite://")

    async def _run(self, fn: Callable[[Session], T]) -> T:
        with self._sessions.begin() as session:
            return fn(session)

    def fail(self, call: str, times: int = 1, error: Exception | None = None) -> None:
        """The next `times` calls of the method `call` fail as every call does while the database is away
        (a real outage: OperationalError is what SQLAlchemy raises when the server cannot be reached),
        or with `error`; the calls after them reach the database again."""
        real = getattr(type(self), call).__get__(self)
        left = times

        async def down(*args: Any, **kwargs: Any) -> Any:
            nonlocal left
            if left > 0:
                left -= 1
                raise error or OperationalError(
                    "SELECT 1", None, ConnectionRefusedError("connection refused")
                )
            return await real(*args, **kwargs)

        setattr(self, call, down)


@dataclass
class EventLog:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.type == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Event]:
        """The `kind` events once there are `count`; `timeout` only keeps a broken test from hanging."""

        async def until() -> None:
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.of(kind)


@dataclass
class ScriptedReply:
    """A reply's text source that the test feeds delta by delta (`say`, `fail`, `end`)."""

    queue: asyncio.Queue[str | Exception | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def say(self, *deltas: str) -> None:
        for delta in deltas:
            self.queue.put_nowait(delta)

    def fail(self, error: Exception) -> None:
        self.queue.put_nowait(error)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def stream(self) -> AsyncIterator[str]:
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True


class ScriptedRealtimeSocket:
    """The WebSocket calls a Realtime connection makes: `incoming` read as fast as asked (then the client
    hangs up), and what the connection sent and how it closed, recorded."""

    def __init__(self, incoming: list[dict[str, Any]] | None = None) -> None:
        self.incoming = [json.dumps(event) for event in incoming or []]
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None

    async def receive(self) -> dict[str, Any]:
        if not self.incoming:
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "text": self.incoming.pop(0)}

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def errors(self) -> list[dict[str, Any]]:
        return [event["error"] for event in self.sent if event["type"] == "error"]
