"""Pipecat's own OpenAI Realtime service (`OpenAIRealtimeLLMService`) in a real Pipecat pipeline, built as
Pipecat's realtime examples build a bot (the context aggregators around the service, an `LLMRunFrame` to
start) and pointed at a real server's `/v1/realtime` as the README says: its context (a system message
and a user's words) gets a spoken reply, real human speech pushed in as 20 ms audio frames and cut by the
server's turn detection gets a second one, and the session is stored with both turns like any other.
No transport: the test pushes the microphone's frames and keeps what would go to the speaker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMRunFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from benchmarks.human_speech import asterisk_prompt
from benchmarks.server import ServerProcess
from tests.support.servers import Servers
from voice_assistant.audio.pcm import MODEL_RATE

pytestmark = pytest.mark.e2e

KEY = "sk-test-pipecat"
ADMIN = "admin-for-pipecat-tests"
FRAME_SAMPLES = MODEL_RATE // 50
"""20 ms of 16 kHz audio: the frames a Pipecat transport pushes."""


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start(
        "realtime-pipecat", {"VA_MAX_NEW_TOKENS": "24", "VA_API_KEYS": KEY, "VA_ADMIN_TOKEN": ADMIN}
    )


class Collector(FrameProcessor):
    """The pipeline's end: keeps what the service pushes downstream, and counts its finished replies."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.replies = 0
        self.reply_done = asyncio.Condition()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
            if isinstance(frame, LLMFullResponseEndFrame):
                async with self.reply_done:
                    self.replies += 1
                    self.reply_done.notify_all()
        await self.push_frame(frame, direction)

    async def wait_replies(self, count: int, *, timeout: float) -> None:
        async with asyncio.timeout(timeout), self.reply_done:
            await self.reply_done.wait_for(lambda: self.replies >= count)

    def reply(self, number: int) -> list[Frame]:
        """The frames of the `number`th reply (0-based), up to its LLMFullResponseEndFrame."""
        ends = [i for i, frame in enumerate(self.frames) if isinstance(frame, LLMFullResponseEndFrame)]
        return self.frames[ends[number - 1] + 1 if number else 0 : ends[number] + 1]


def text_and_audio(frames: list[Frame]) -> tuple[str, bytes]:
    """A reply's spoken text and its 24 kHz pcm16 audio, as the service pushed them."""
    text = "".join(frame.text for frame in frames if isinstance(frame, TTSTextFrame))
    audio = b"".join(frame.audio for frame in frames if isinstance(frame, TTSAudioRawFrame))
    return text, audio


def started_before_text(frames: list[Frame]) -> bool:
    """The reply began with an LLMFullResponseStartFrame before its first words."""
    kinds = [type(frame) for frame in frames]
    return LLMFullResponseStartFrame in kinds and kinds.index(LLMFullResponseStartFrame) < kinds.index(
        TTSTextFrame
    )


def speech_frames(speech: np.ndarray, *, after_s: float = 1.5) -> list[InputAudioRawFrame]:
    """16 kHz speech and `after_s` of silence as 20 ms pcm16 frames."""
    padded = np.concatenate([speech, np.zeros(int(after_s * MODEL_RATE), np.float32)])
    pcm = (np.clip(padded, -1, 1) * 32767).astype("<i2").tobytes()
    step = FRAME_SAMPLES * 2
    return [
        InputAudioRawFrame(audio=pcm[start : start + step], sample_rate=MODEL_RATE, num_channels=1)
        for start in range(0, len(pcm), step)
    ]


async def stored_session(server: ServerProcess) -> dict[str, Any]:
    """The one session this module's server holds (found through the admin listing)."""
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        listed = (await http.get("/api/sessions")).json()["sessions"]
        assert len(listed) == 1, listed
        return dict((await http.get(f"/api/sessions/{listed[0]['session_id']}")).json())


async def test_pipecat_realtime_service_talks_to_this_server(server: ServerProcess) -> None:
    llm = OpenAIRealtimeLLMService(
        api_key=KEY,
        base_url=f"ws://127.0.0.1:{server.port}/v1/realtime",
        settings=OpenAIRealtimeLLMService.Settings(model="tiny"),
    )
    context = LLMContext(
        [
            {"role": "system", "content": "You are a friendly assistant. Answer in one short sentence."},
            {"role": "user", "content": "Say hello."},
        ]
    )
    aggregators = LLMContextAggregatorPair(context)  # as Pipecat's realtime examples build a bot
    collector = Collector()
    task = PipelineWorker(
        Pipeline([aggregators.user(), llm, collector, aggregators.assistant()]),
        params=PipelineParams(audio_in_sample_rate=MODEL_RATE),
        idle_timeout_secs=None,
    )
    errors: list[ErrorFrame] = []

    @task.event_handler("on_pipeline_error")
    async def on_error(_worker: PipelineWorker, frame: ErrorFrame) -> None:
        errors.append(frame)

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    running = asyncio.create_task(runner.run())
    try:
        await task.queue_frame(LLMRunFrame())  # the context goes in as items, then response.create
        await collector.wait_replies(1, timeout=30)
        typed_reply = collector.reply(0)
        typed_text, typed_audio = text_and_audio(typed_reply)
        # The speaker plays the reply out before the user speaks (the service then truncates it at its
        # full length, having no transport to say the bot stopped speaking).
        await asyncio.sleep(len(typed_audio) / 48_000)

        for frame in speech_frames(asterisk_prompt("conf-onlyperson")):  # in real time, as a transport does
            await task.queue_frame(frame)
            await asyncio.sleep(FRAME_SAMPLES / MODEL_RATE)
        await collector.wait_replies(2, timeout=30)  # the server's turn detection cut it and answered
        spoken_reply = collector.reply(1)
        spoken_text, spoken_audio = text_and_audio(spoken_reply)

        await task.queue_frame(EndFrame())
        async with asyncio.timeout(10):
            await running
    finally:
        if not running.done():
            await task.cancel()
            await running

    assert not errors, errors  # an error event from the server would have ended the service's session
    assert typed_text and spoken_text
    assert len(typed_audio) > 24_000 and len(spoken_audio) > 24_000  # half a second of 24 kHz pcm16 each
    assert started_before_text(typed_reply) and started_before_text(spoken_reply)

    stored = await stored_session(server)
    turns = stored["turns"]
    assert len(turns) == 2, turns
    typed, spoken = turns
    assert typed["transcript"] == "Say hello." and typed["audio_seconds"] == 0
    assert typed["reply_text"] == typed_text and typed["interrupted"] is False  # played to its end
    assert spoken["audio_seconds"] > 1.0 and spoken["reply_text"] == spoken_text
    assert spoken["context"]["end"] == "silence"  # cut by server_vad, the server's own turn-taking
