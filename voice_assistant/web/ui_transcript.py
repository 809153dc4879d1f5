"""The Gradio chat of one browser connection: its session, past turns from the store, then live events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastrtc import AdditionalOutputs

from voice_assistant.clock import utc_now
from voice_assistant.errors import UnknownSession
from voice_assistant.events import (
    ErrorRaised,
    Event,
    ReconnectRequested,
    ReplyDelta,
    ReplyDone,
    Transcribed,
    TurnEnded,
)
from voice_assistant.history.store import HistoryStore

RESTARTING = "The server is restarting: press record again to go on with this session."


class UiTranscript:
    """A `UiConnection` (transport/webrtc.py) for the Gradio UI of web/ui.py."""

    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self._session_id = ""
        self.messages: list[dict[str, str]] = []
        self._reply_at: dict[int, int] = {}
        self._user_at: dict[int, tuple[int, float]] = {}
        """Turn -> (its message's position, its seconds of audio), to add the transcript when it comes."""

    async def session(self, inputs: Sequence[Any]) -> str:
        """The session box's id when the store knows it; otherwise a new session (and a notice)."""
        requested = str(inputs[0] or "").strip() if inputs else ""
        if requested and await self._store.session_exists(requested):
            return requested
        if requested:
            self.messages.append({"role": "assistant", "content": "⚠️ Unknown session: started a new one."})
        return await self._store.create_session(now=utc_now())

    async def opened(self, session_id: str) -> AdditionalOutputs:
        self._session_id = session_id
        try:
            record = await self._store.get_session(session_id)
        except UnknownSession:
            return self.outputs()
        for turn in record.turns:
            self._add_user(turn.index, turn.audio_seconds, turn.transcript)
            if turn.reply_text:
                self.messages.append({"role": "assistant", "content": turn.reply_text})
        return self.outputs()

    def _add_user(self, index: int, seconds: float, transcript: str | None) -> None:
        self._user_at[index] = (len(self.messages), seconds)
        self.messages.append({"role": "user", "content": self._user_text(index, seconds, transcript)})

    @staticmethod
    def _user_text(index: int, seconds: float, transcript: str | None) -> str:
        return f"🎤 turn {index} ({seconds:.1f} s)" + (f": {transcript}" if transcript else "")

    def apply(self, event: Event) -> AdditionalOutputs | None:
        match event:
            case TurnEnded(turn=turn, audio_seconds=seconds):
                self._add_user(turn, seconds, None)
            case ReplyDelta(turn=turn, text=text):
                if turn not in self._reply_at:
                    self._reply_at[turn] = len(self.messages)
                    self.messages.append({"role": "assistant", "content": ""})
                self.messages[self._reply_at[turn]]["content"] += text
            case ReplyDone(turn=turn, interrupted=True) if turn in self._reply_at:
                self.messages[self._reply_at[turn]]["content"] += " …"
            case Transcribed(turn=turn, text=text) if turn in self._user_at:
                position, seconds = self._user_at[turn]
                self.messages[position]["content"] = self._user_text(turn, seconds, text)
            case ErrorRaised(message=message):
                self.messages.append({"role": "assistant", "content": f"⚠️ {message}"})
            case ReconnectRequested():
                self.messages.append({"role": "assistant", "content": f"⚠️ {RESTARTING}"})
            case _:
                return None
        return self.outputs()

    def outputs(self) -> AdditionalOutputs:
        return AdditionalOutputs(self._session_id, [dict(message) for message in self.messages])
