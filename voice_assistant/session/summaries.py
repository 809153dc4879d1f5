"""The running summary of a long conversation: turns that leave the window, folded in while the model is idle.

The window (session/window.py) holds the turns after the latest summary. Once those fill it (max_turns - 1
of them), the oldest `summary_every` are folded into a new summary (the old one plus their words, asked of
the model as text alone), so that a turn leaves the window only as it enters the summary. Like the
transcripts it runs only while no reply needs the model and stops the moment the user speaks; a fold cut
short is simply asked again at the next idle moment. Each fold is a row of its own with the turns it
covers, and the session's next turn reads the newest one, on whichever instance it lands: a caller coming
back days later is heard with the same memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from voice_assistant.clock import Clock
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.history.store import HistoryStore, PastTurn, SummaryRecord
from voice_assistant.history.text import storable
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM, Message, TextPart
from voice_assistant.redaction import session_tag
from voice_assistant.session.window import CHARS_PER_TOKEN, WindowPolicy, untranscribed

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You keep the running summary of a conversation between a user and a voice assistant. Keep what "
    "matters later: who the user is, what they asked and were told, what was decided or promised, and "
    "names, numbers and dates. Write plain sentences, at most {words} words, and nothing else."
)


def fold_request(previous: SummaryRecord | None, turns: Sequence[PastTurn], max_tokens: int) -> list[Message]:
    """The text-only prompt of one fold: the summary so far and the words of the turns it takes in."""
    lines = [
        line
        for turn in turns
        for line in (
            f"User (turn {turn.index}): {turn.transcript or untranscribed(turn.index)}",
            f"Assistant: {turn.reply_text or '(no reply)'}",
        )
    ]
    so_far = previous.text if previous is not None else "(nothing yet)"
    request = f"Summary so far: {so_far}\n\nTurns to add:\n" + "\n".join(lines) + "\n\nThe updated summary:"
    words = max(max_tokens * 3 // 4, 10)
    return [
        Message("system", (TextPart(INSTRUCTIONS.format(words=words)),)),
        Message("user", (TextPart(request),)),
    ]


class Summarizer:
    def __init__(
        self,
        *,
        session_id: str,
        store: HistoryStore,
        model: AudioLM,
        policy: WindowPolicy,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._session_id = session_id
        self._store = store
        self._model = model
        self._window = max(policy.max_turns - 1, 1)
        self._fold = min(max(policy.summary_every, 1), self._window)
        self._max_chars = policy.summary_max_tokens * CHARS_PER_TOKEN
        self._max_tokens = policy.summary_max_tokens
        self._metrics = metrics
        self._clock = clock
        self._last_turn = -1
        """The newest turn whose reply is done: no fold reaches past it."""
        self._running: asyncio.Task[None] | None = None

    def replied(self, index: int) -> None:
        self._last_turn = max(self._last_turn, index)

    def resume(self) -> None:
        """No reply needs the model: fold what is due (the store says how far the summary has come)."""
        if self._last_turn + 1 >= self._window and (self._running is None or self._running.done()):
            self._running = asyncio.create_task(self._run(), name="summary")

    def pause(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()

    async def close(self) -> None:
        self.pause()
        if self._running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._running

    async def _run(self) -> None:
        try:
            while await self._fold_once():
                pass
        except Exception as exc:  # no summary this time: the window still holds the newest turns
            logger.warning(
                "the summary could not be updated: %s",
                exc,
                exc_info=not isinstance(exc, VoiceAssistantError),
                extra={"session": session_tag(self._session_id)},
            )

    async def _fold_once(self) -> bool:
        """Fold the oldest turns after the summary when the window is full of them: whether it did (or
        another instance did first), so there may be more to fold."""
        previous = await self._store.latest_summary(self._session_id)
        through = previous.through_turn if previous is not None else -1
        if self._last_turn - through < self._window:
            return False
        first, last = through + 1, through + self._fold
        turns = await self._store.turns_between(self._session_id, first, last)
        started = time.perf_counter()
        text = await self._ask(fold_request(previous, turns, self._max_tokens))
        self._metrics.summary_seconds.observe(time.perf_counter() - started)
        summary = SummaryRecord(
            from_turn=previous.from_turn if previous is not None else first,
            through_turn=last,
            text=text or (previous.text if previous is not None else ""),
            created_at=self._clock(),
        )
        with contextlib.suppress(IntegrityError):  # another instance folded these turns first: use theirs
            await self._store.add_summary(self._session_id, summary)
        return True

    async def _ask(self, messages: list[Message]) -> str:
        """The model's text, cut at the summary's size (closing the stream stops the generation)."""
        text = ""
        stream = self._model.stream_reply(messages)
        try:
            async for delta in stream:
                text += delta
                if len(text) >= self._max_chars:
                    break
        finally:
            if (close := getattr(stream, "aclose", None)) is not None:
                await close()
        return storable(text[: self._max_chars].strip())
