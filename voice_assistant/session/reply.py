"""One reply in progress, and the one object that owns it.

A `Reply` holds the generation task, the spoken form of the text (when the session has a voice),
the text delivered so far, the text the user heard, its timings and a hard deadline. Whatever ends it
early (the user speaking over it, the client vanishing, the server shutting down, the deadline) goes
through `interrupt()`, so the voice stops, the model stops between two tokens, and `done` resolves to
one `ReplyEnd`: the conversation writes that once, with both what was generated and what was heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from voice_assistant.clock import Clock
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import Publish, ReplyDelta
from voice_assistant.history.text import storable
from voice_assistant.session.speech import Utterance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyEnd:
    text: str
    """Generated and delivered as text (every `reply_delta`)."""
    heard: str | None
    """The sentences the user heard; None when the reply was not spoken."""
    interrupted: bool
    error: str | None
    first_delta_at: datetime | None
    ended_at: datetime


class Reply:
    """Starts at once; `interrupt()`, `pause()` / `resume()`, and `done` for its end."""

    def __init__(
        self,
        *,
        turn: int,
        source: AsyncIterator[str],
        publish: Publish,
        utterance: Utterance | None,
        clock: Clock,
        timeout_s: float,
    ) -> None:
        self.turn = turn
        self._source = source
        self._publish = publish
        self._utterance = utterance
        self._clock = clock
        self._timeout_s = timeout_s
        self._pieces: list[str] = []
        self._first_delta_at: datetime | None = None
        self._interrupted = False
        self._error: str | None = None
        self._going = asyncio.Event()
        self._going.set()
        self._started = False
        self._played_out = False
        self.generated = asyncio.Event()
        """Set once the model is done with this reply (finished, failed or stopped), maybe before playout."""
        self._task = asyncio.create_task(self._run(), name=f"reply-{turn}")
        self.done: asyncio.Future[ReplyEnd] = asyncio.get_running_loop().create_future()
        self._task.add_done_callback(self._resolve)

    @property
    def spoken(self) -> bool:
        """It has a voice: speech over it pauses it first (session/interruption.py)."""
        return self._utterance is not None

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def interrupt(self) -> None:
        """Stop now: the voice at once (what had not played is dropped), the model between two tokens."""
        if self._task.done():
            return
        self._interrupted = True
        if self._utterance is not None:
            self._utterance.stop()
        if self._started:  # a task cancelled before its first step would never close the source
            self._task.cancel()

    def pause(self) -> None:
        """Hold the reply: no more text goes out, and the voice takes back what it had not played."""
        self._going.clear()
        if self._utterance is not None:
            self._utterance.pause()

    async def resume(self) -> None:
        """Go on where the pause left off: the held speech plays again, then the rest of the text."""
        if self._utterance is not None:
            await self._utterance.resume()
        self._going.set()

    async def _run(self) -> None:
        self._started = True
        if self._interrupted:
            await self._close_source()
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    await self._generate()
                except VoiceAssistantError as exc:  # the model failed; what was said so far still plays
                    self._error = str(exc)
                if self._utterance is not None:
                    self._utterance.end()
                    await self._utterance.finished()
                    self._played_out = True
        except TimeoutError:
            self._interrupted = True
            self._error = f"the reply took longer than {self._timeout_s:g} s and was cut"
            if self._utterance is not None:
                self._utterance.stop()
        except asyncio.CancelledError:
            self._interrupted = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        except Exception as exc:  # a backend bug: this reply fails, the session goes on
            logger.exception("reply failed")
            self._error = f"the reply failed: {type(exc).__name__}"

    async def _generate(self) -> None:
        try:
            async for generated in self._source:
                delta = storable(generated)  # sent, spoken and stored alike (history/text.py)
                await self._going.wait()
                if self._first_delta_at is None:
                    self._first_delta_at = self._clock()
                self._pieces.append(delta)
                self._publish(ReplyDelta(turn=self.turn, text=delta))
                if self._utterance is not None:
                    self._utterance.feed(delta)
        finally:
            await self._close_source()
            self.generated.set()

    async def _close_source(self) -> None:
        # Close the generator now, not at garbage collection: the backend stops generating on close.
        close = getattr(self._source, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()

    def _resolve(self, task: asyncio.Task[None]) -> None:
        self.generated.set()  # also for a reply stopped before it generated anything
        if self._utterance is not None and not self._played_out:
            self._utterance.stop()  # nothing is left playing once the reply has ended
        self.done.set_result(
            ReplyEnd(
                text=self.text,
                heard=self._utterance.heard if self._utterance is not None else None,
                interrupted=self._interrupted,
                error=self._error,
                first_delta_at=self._first_delta_at,
                ended_at=self._clock(),
            )
        )
