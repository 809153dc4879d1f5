"""The peer the endpointing benchmark measures us against: a stock fastrtc `ReplyOnPause` server.

`python -m benchmarks.peer_fastrtc --port P` serves fastrtc's own `/webrtc/offer` and `GET /readyz`.
ReplyOnPause keeps its default options (AlgoOptions, SileroVadOptions): it is the stock behaviour that
is measured. Only its VAD model is swapped, because the one fastrtc 0.0.34 bundles downloads from the
hub and does not run the silero-vad 6 model; the wrapper below runs the same Silero model that our
server runs, so the peer gets its best chance. When ReplyOnPause decides that a turn ended (it calls
the reply function), the client gets `{"type": "turn_ended", "data": {"turn": n}}` on its data channel
at once, the event that our server sends, and no reply audio follows. Its host candidates follow
`VA_ICE_ADDRESSES` as ours do (the same network path: loopback under `ServerProcess`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import soxr
import torch
import uvicorn
from fastapi import FastAPI
from fastrtc import (
    AlgoOptions,
    ReplyOnPause,
    SileroVadOptions,
    Stream,
    audio_to_float32,
    get_current_context,
)
from fastrtc.utils import AudioChunk
from numpy.typing import NDArray
from silero_vad import get_speech_timestamps, load_silero_vad

from voice_assistant.config import Settings
from voice_assistant.transport.ice import gather_host_candidates_on

VAD_RATE = 16_000


class PackageSileroVad:
    """fastrtc's `PauseDetectionModel` on the silero-vad package's bundled ONNX model.

    It answers as fastrtc's own `SileroVADModel.vad` does: the seconds of speech in the chunk and the
    speech chunks (16 kHz sample offsets), with the same options. `window_size_samples` is not used:
    silero-vad 6 always reads 512-sample windows at 16 kHz.
    """

    def __init__(self) -> None:
        self._model = load_silero_vad(onnx=True)
        # The model keeps its recurrent state between windows: one chunk at a time.
        self._lock = threading.Lock()

    def vad(
        self,
        audio: tuple[int, NDArray[np.int16] | NDArray[np.float32]],
        options: SileroVadOptions | None,
    ) -> tuple[float, list[AudioChunk]]:
        rate, samples = audio
        speech = audio_to_float32(np.squeeze(samples))
        if rate != VAD_RATE:
            speech = soxr.resample(speech, rate, VAD_RATE).astype(np.float32)
        opts = options or SileroVadOptions()
        with self._lock:
            stamps = get_speech_timestamps(
                torch.from_numpy(speech),
                self._model,
                threshold=opts.threshold,
                sampling_rate=VAD_RATE,
                min_speech_duration_ms=opts.min_speech_duration_ms,
                max_speech_duration_s=opts.max_speech_duration_s,
                min_silence_duration_ms=opts.min_silence_duration_ms,
                speech_pad_ms=opts.speech_pad_ms,
            )
        chunks = [AudioChunk(start=int(s["start"]), end=int(s["end"])) for s in stamps]
        return sum(c["end"] - c["start"] for c in chunks) / VAD_RATE, chunks

    def warmup(self) -> None:
        """Run once before the first connection, as fastrtc warms its own model up."""
        self.vad((VAD_RATE, np.zeros(VAD_RATE, dtype=np.float32)), None)


class TurnAnnouncer:
    """The reply function: it reports each end of turn on the connection's data channel and says
    nothing else.

    ReplyOnPause runs the reply function in a worker thread, and an aiortc channel belongs to the
    event loop, so the message is handed to the loop rather than sent from the thread.
    """

    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}
        """The Stream's data channels by webrtc_id (set once the Stream exists)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop (set when it starts)."""
        self._turns: Counter[str] = Counter()

    def reply(self, audio: tuple[int, NDArray[np.int16]]) -> Iterator[tuple[int, NDArray[np.int16]]]:
        webrtc_id = get_current_context().webrtc_id
        turn = self._turns[webrtc_id]
        self._turns[webrtc_id] += 1
        channel = self.channels.get(webrtc_id)
        if channel is not None and self.loop is not None:
            message = json.dumps({"type": "turn_ended", "data": {"turn": turn}})
            self.loop.call_soon_threadsafe(channel.send, message)
        yield from ()


def create_app(*, concurrency_limit: int) -> FastAPI:
    """A FastAPI app with the stock Stream mounted; the VAD is warm before the app serves."""
    model = PackageSileroVad()
    model.warmup()
    announcer = TurnAnnouncer()
    stream = Stream(
        ReplyOnPause(announcer.reply, model=model),
        modality="audio",
        mode="send-receive",
        concurrency_limit=concurrency_limit,
    )
    announcer.channels = stream.data_channels

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        announcer.loop = asyncio.get_running_loop()
        yield

    app = FastAPI(lifespan=lifespan)
    stream.mount(app)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        """Ready once serving (the model warmed up before); names the options that are measured."""
        return {"algo_options": repr(AlgoOptions()), "model_options": repr(SileroVadOptions())}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency-limit", type=int, default=8)
    args = parser.parse_args()
    gather_host_candidates_on(Settings().web.ice_addresses)
    app = create_app(concurrency_limit=args.concurrency_limit)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
