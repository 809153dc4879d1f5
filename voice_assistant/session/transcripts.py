"""Transcripts of the user's turns, written off the critical path: only while no reply needs the model.

A transcript is what older turns become in the model's history once their audio leaves the window,
and what the UI and the API show for a turn. Asking the model for it costs as much as a short reply,
so it waits until no reply needs the model (a spoken reply may still be playing) and gives way the
moment the user speaks again. A turn's `transcript` event still never goes out before its `reply_done`,
nor does the `error` event of a transcript that could not be stored (there is then no `transcript`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from voice_assistant.audio.pcm import Samples
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import ErrorRaised, Publish, Transcribed
from voice_assistant.history.store import HistoryStore
from voice_assistant.history.text import storable
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM
from voice_assistant.redaction import session_tag
from voice_assistant.session.store_failures import store_failure

logger = logging.getLogger(__name__)


class Transcriber:
    def __init__(
        self, *, session_id: str, store: HistoryStore, model: AudioLM, publish: Publish, metrics: Metrics
    ) -> None:
        self._session_id = session_id
        self._store = store
        self._model = model
        self._publish = publish
        self._metrics = metrics
        self._waiting: deque[tuple[int, Samples]] = deque()
        self._running: asyncio.Task[None] | None = None
        self._replied = -1
        """The latest turn whose `reply_done` went out: later turns' transcripts are held until theirs."""
        self._held: list[tuple[int, Transcribed | ErrorRaised]] = []

    def add(self, index: int, audio: Samples) -> None:
        self._waiting.append((index, audio))

    def replied(self, index: int) -> None:
        """Turn `index` has had its `reply_done`: its transcript (and any earlier one) may go out."""
        self._replied = max(self._replied, index)
        ready = [event for turn, event in self._held if turn <= index]
        self._held = [(turn, event) for turn, event in self._held if turn > index]
        for event in ready:
            self._publish(event)

    def resume(self) -> None:
        """No reply needs the model: transcribe what waits."""
        if self._waiting and (self._running is None or self._running.done()):
            self._running = asyncio.create_task(self._run())

    def pause(self) -> None:
        """The user speaks: free the model for the reply; the turn being transcribed is done again later."""
        if self._running is not None and not self._running.done():
            self._running.cancel()

    async def close(self) -> None:
        self.pause()
        if self._running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._running

    async def _run(self) -> None:
        while self._waiting:
            index, audio = self._waiting[0]
            try:
                text = storable(await self._model.transcribe(audio))  # announced as it is stored
            except Exception as exc:  # the turn keeps no transcript; a backend bug is logged whole
                logger.warning(
                    "no transcript for turn %d: %s",
                    index,
                    exc,
                    exc_info=not isinstance(exc, VoiceAssistantError),
                    extra={"session": session_tag(self._session_id)},
                )
                self._waiting.popleft()
                continue
            self._waiting.popleft()
            self._announce(index, await self._keep(index, text))

    async def _keep(self, index: int, text: str) -> Transcribed | ErrorRaised:
        """Store the transcript: its event, or the error event when the store failed (the turn then keeps
        no transcript, and the session goes on with the next)."""
        try:
            await self._store.set_transcript(self._session_id, index, text)
        except Exception as exc:
            return store_failure(
                "the transcript could not be stored",
                exc,
                metrics=self._metrics,
                session_id=self._session_id,
                turn=index,
            )
        return Transcribed(turn=index, text=text)

    def _announce(self, index: int, event: Transcribed | ErrorRaised) -> None:
        if index <= self._replied:
            self._publish(event)
        else:
            self._held.append((index, event))
