"""The WebRTC handler's audio path with the real Silero and store: any sample rate, any channel count.

The handler is driven directly (fastrtc calls `start_up`, then `receive` per frame); the model is the
fake one, since only the audio path is under test here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soxr
from av import AudioFrame
from fastrtc.utils import Context, current_context

from benchmarks.speech import RATE, speak
from tests.fakes import FakeAudioLM, RecordingStreams
from voice_assistant.assistant import Assistant
from voice_assistant.config import Settings
from voice_assistant.transport.webrtc import Connections, VoiceHandler
from voice_assistant.web.offer import Bindings
from voice_assistant.web.ui_transcript import UiTranscript

pytestmark = pytest.mark.integration


class Channel:
    readyState = "open"

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    def kinds(self) -> list[str]:
        return [str(m["type"]) for m in self.sent]


@pytest.fixture
async def assistant(tmp_path: Path) -> AsyncIterator[Assistant]:
    settings = Settings(model="fake", data_dir=tmp_path, warmup=False, transcripts=False)
    assistant = Assistant(settings, model_loader=lambda _: FakeAudioLM([]))
    await assistant.start()
    yield assistant
    await assistant.close()


async def until_reply_done(channel: Channel) -> None:
    for _ in range(100):
        if "reply_done" in channel.kinds():
            return
        await asyncio.sleep(0.02)


def handler_bound_to(
    assistant: Assistant, session_id: str, audio: RecordingStreams | None = None
) -> VoiceHandler:
    """The connection's handler as fastrtc makes it, after `POST /webrtc/offer` bound it to the session."""
    bindings = Bindings()
    bindings.bind("conn-1", session_id)
    connections = Connections(
        pipelines=assistant.pipelines,
        metrics=assistant.metrics,
        audio=audio or RecordingStreams(),
        bound_session=bindings.take,
        ui=lambda: UiTranscript(assistant.store),
        speak=False,
    )
    return VoiceHandler(connections).copy()


async def connect(
    assistant: Assistant, audio: RecordingStreams | None = None
) -> tuple[VoiceHandler, Channel, str]:
    session_id = await assistant.new_session()
    handler = handler_bound_to(assistant, session_id, audio)
    channel = Channel()
    handler.set_channel(channel)  # type: ignore[arg-type]
    current_context.set(Context(webrtc_id="conn-1"))
    await handler.start_up()
    return handler, channel, session_id


def frames(
    rate: int, channels: int, dtype: str, seconds_of_silence: float = 1.2
) -> list[tuple[int, np.ndarray]]:
    speech = np.concatenate(
        [
            np.zeros(RATE // 2, np.float32),
            speak("Hello there, how are you?"),
            np.zeros(int(seconds_of_silence * RATE), np.float32),
        ]
    )
    audio = soxr.resample(speech, RATE, rate).astype(np.float32)
    if dtype == "int16":
        audio = (audio * 32767).astype(np.int16)
    chunk = rate // 50
    return [
        (rate, np.stack([audio[i : i + chunk]] * channels)) for i in range(0, len(audio) - chunk + 1, chunk)
    ]


@pytest.mark.parametrize(
    ("rate", "channels", "dtype"),
    [
        (48_000, 1, "int16"),
        (8_000, 2, "int16"),
        (44_100, 1, "float32"),
        (16_000, 2, "float32"),
        (22_050, 6, "int16"),
    ],
)
async def test_speech_at_any_rate_and_channel_count_becomes_one_stored_turn(
    assistant: Assistant, rate: int, channels: int, dtype: str
) -> None:
    handler, channel, session_id = await connect(assistant)
    for frame in frames(rate, channels, dtype):
        await handler.receive(frame)
    await until_reply_done(channel)
    await handler.shutdown()
    assert channel.kinds() == ["turn_started", "turn_ended", "reply_delta", "reply_done"]
    turns = (await assistant.store.get_session(session_id)).turns
    assert len(turns) == 1
    assert 1.4 < turns[0].audio_seconds < 2.6


async def test_audio_that_arrives_before_the_session_is_known_is_not_lost(assistant: Assistant) -> None:
    handler = handler_bound_to(assistant, await assistant.new_session())
    channel = Channel()
    handler.set_channel(channel)  # type: ignore[arg-type]
    for frame in frames(48_000, 1, "int16"):
        await handler.receive(frame)  # before start_up: buffered
    current_context.set(Context(webrtc_id="conn-1"))
    await handler.start_up()
    await until_reply_done(channel)
    await handler.shutdown()
    assert channel.kinds().count("turn_ended") == 1


async def test_an_impossible_sample_rate_is_reported_and_the_session_goes_on(assistant: Assistant) -> None:
    handler, channel, _ = await connect(assistant)
    await handler.receive((1_000_000, np.zeros((1, 20_000), np.int16)))
    assert channel.sent[-1]["type"] == "error"
    assert "sample rate" in str(channel.sent[-1]["data"])
    for frame in frames(48_000, 1, "int16"):
        await handler.receive(frame)
    await until_reply_done(channel)
    await handler.shutdown()
    assert "turn_ended" in channel.kinds()


async def test_mono_frames_skip_fastrtc_s_resampler_and_others_still_take_it(assistant: Assistant) -> None:
    handler = handler_bound_to(assistant, await assistant.new_session())
    mono = AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    mono.sample_rate = 48_000
    assert list(handler.resample(mono)) == [mono]  # the very frame: no copy, no re-buffering
    stereo = AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
    stereo.sample_rate = 48_000
    assert [f.layout.name for f in handler.resample(stereo)] == ["mono"]


async def test_a_connection_reports_the_audio_it_receives_to_the_load_sensor(assistant: Assistant) -> None:
    """What the sensor's lost-audio signal counts (voice_assistant/audio_rate.py), until it closes."""
    audio = RecordingStreams()
    handler, channel, _ = await connect(assistant, audio)
    assert audio.connected_now == 1
    sent = frames(48_000, 1, "int16")
    for frame in sent:
        await handler.receive(frame)
    await until_reply_done(channel)
    await handler.shutdown()
    assert audio.connected_now == 0
    (reports,) = audio.received
    assert len(reports) == len(sent) and sum(reports) == pytest.approx(len(sent) * 0.02, abs=0.01)
