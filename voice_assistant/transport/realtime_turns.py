"""The Realtime protocol's turn detection on this server's turn-taking, and back as the protocol shows it.

`server_vad` is the silence rule, `semantic_vad` the end-of-turn model with its eagerness; whatever a
client leaves unset stays the server's setting (OpenAI's default 200 ms of silence would split sentences).
"""

from __future__ import annotations

from typing import Any

from voice_assistant.config import TurnSettings
from voice_assistant.transport import realtime_protocol as rt


def turn_settings(detection: rt.TurnDetection, server: TurnSettings) -> TurnSettings:
    """The protocol's turn detection on this server's turn-taking; what it leaves unset stays the server's."""
    update: dict[str, Any] = {}
    if detection.threshold is not None:
        update["vad_threshold"] = detection.threshold
        update["vad_neg_threshold"] = min(server.vad_neg_threshold, detection.threshold * 0.7)
    if detection.prefix_padding_ms is not None:
        update["speech_pad_ms"] = detection.prefix_padding_ms
    if detection.type == "server_vad":
        update["end_of_turn"] = "silence"
        if detection.silence_duration_ms is not None:
            update["min_silence_ms"] = max(detection.silence_duration_ms, 64)
    else:
        update["end_of_turn"] = "smart-turn"
        # Eagerness moves the silence that ends a turn the end-of-turn model calls over / doubts.
        if detection.eagerness == "high":
            update |= {"end_of_turn_quick_ms": 300, "end_of_turn_doubt_ms": 500}
        elif detection.eagerness == "low":
            update |= {"end_of_turn_quick_ms": 800, "end_of_turn_doubt_ms": 1500}
    return server.model_copy(update=update)


def described(detection: rt.TurnDetection | None, server: TurnSettings) -> dict[str, Any] | None:
    """The session's turn detection as the protocol shows it, with this server's values filled in."""
    if detection is None:
        return None
    settings = turn_settings(detection, server)
    shown: dict[str, Any] = {
        "type": detection.type,
        "create_response": detection.create_response,
        "interrupt_response": detection.interrupt_response,
        "threshold": settings.vad_threshold,
        "prefix_padding_ms": settings.speech_pad_ms,
    }
    if detection.type == "server_vad":
        shown["silence_duration_ms"] = settings.min_silence_ms
    else:
        shown["eagerness"] = detection.eagerness or "auto"
    return shown


def default_detection(server: TurnSettings) -> rt.TurnDetection:
    """What a new session starts with: the server's own turn-taking, as the protocol names it."""
    return rt.TurnDetection(type="semantic_vad" if server.end_of_turn == "smart-turn" else "server_vad")
