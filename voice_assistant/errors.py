"""Errors that carry intent: what the session reports to its client and survives."""

from __future__ import annotations


class VoiceAssistantError(Exception):
    """An error the session reports to its client (an `error` event) and then goes on."""


class ModelError(VoiceAssistantError):
    """The model failed this reply (or transcript). Final: a backend retries what is worth retrying before
    it raises (the OpenAI-compatible one: connection errors, 429 and 5xx before the first text)."""


class UnknownSession(VoiceAssistantError):
    def __init__(self, session_id: str) -> None:
        super().__init__("unknown session")  # the id is a capability: never in a message
        self.session_id = session_id


class BadAudio(VoiceAssistantError):
    """Audio that cannot be turned into 16 kHz mono samples."""
