"""Errors that carry intent: what the session reports to its client and survives."""

from __future__ import annotations


class VoiceAssistantError(Exception):
    """An error the session reports to its client (an `error` event) and then goes on."""


class ModelError(VoiceAssistantError):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnknownSession(VoiceAssistantError):
    def __init__(self, session_id: str) -> None:
        super().__init__("unknown session")  # the id is a capability: never in a message
        self.session_id = session_id


class BadAudio(VoiceAssistantError):
    """Audio that cannot be turned into 16 kHz mono samples."""
