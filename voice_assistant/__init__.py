"""A real-time voice assistant: WebRTC in, an audio-language model that hears the whole conversation."""

from voice_assistant.config import Settings

__all__ = ["Settings"]
