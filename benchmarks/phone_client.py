"""A phone call as Twilio places it: the voice webhook, then a Media Streams WebSocket, in real time.

What cannot run here is Twilio's cloud, so this plays its part by its documented protocol: it posts
the webhook (signed like Twilio when given the auth token), reads the TwiML, opens the stream URL,
sends `connected` and `start` (with the TwiML's custom parameters), then 20 ms `media` frames of 8 kHz
mu-law paced by the wall clock (the caller's speech, silence otherwise), and `stop` on hang-up. Like
Twilio it plays the audio it is sent at real-time speed and echoes each `mark` once the audio before it
has played (or at once when a `clear` drops that audio).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import websockets
from twilio.request_validator import RequestValidator

from voice_assistant.audio.g711 import TELEPHONE_RATE, decode_g711, encode_g711
from voice_assistant.audio.resample import resample

FRAME = TELEPHONE_RATE // 50
SILENCE = encode_g711(np.zeros(FRAME, np.float32))


@dataclass
class Heard:
    at: float
    message: dict[str, Any]


def twiml_stream(twiml: str) -> tuple[str, dict[str, str]]:
    """The `<Connect><Stream url>` of a TwiML answer and its `<Parameter>`s."""
    stream = ElementTree.fromstring(twiml).find("./Connect/Stream")
    if stream is None:
        raise ConnectionRefusedError(f"no <Connect><Stream> in the answer: {twiml}")
    parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return stream.attrib["url"], parameters


@dataclass
class TwilioCall:
    base_url: str
    caller: str = "+15551230000"
    auth_token: str | None = None
    stream_sid: str = field(default_factory=lambda: "MZ" + uuid.uuid4().hex)
    call_sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    heard: list[Heard] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue = b""
        self._sent = 0
        self._ends: list[tuple[int, asyncio.Future[float]]] = []
        self._socket: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._playout = 0.0
        self._marks: list[tuple[float, str]] = []
        self._new = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    def signed_webhook(self, params: dict[str, str], url: str) -> dict[str, str]:
        if self.auth_token is None:
            return {}
        return {"X-Twilio-Signature": RequestValidator(self.auth_token).compute_signature(url, params)}

    async def ring(self) -> httpx.Response:
        """The voice webhook, as Twilio posts it when the number is called."""
        params = {
            "CallSid": self.call_sid,
            "AccountSid": "AC" + "0" * 32,
            "From": self.caller,
            "To": "+15550000000",
            "CallStatus": "ringing",
            "Direction": "inbound",
        }
        url = f"{self.base_url}/telephone/incoming"
        async with httpx.AsyncClient() as http:
            return await http.post(url, data=params, headers=self.signed_webhook(params, url))

    async def dial(self) -> None:
        answer = await self.ring()
        answer.raise_for_status()
        url, parameters = twiml_stream(answer.text)
        await self.open_stream(url, parameters)

    async def open_stream(self, url: str, parameters: dict[str, str]) -> None:
        self._socket = await websockets.connect(url, max_size=2**20)
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._speak())]

    async def send(self, message: dict[str, Any] | str) -> None:
        await self._socket.send(message if isinstance(message, str) else json.dumps(message))

    def play(self, samples_16k: np.ndarray) -> asyncio.Future[float]:
        """Queue the caller's speech; the future is the wall time its last sample was spoken."""
        self._queue += encode_g711(resample(samples_16k.astype(np.float32), 16_000, TELEPHONE_RATE))
        end: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._ends.append((self._sent + len(self._queue), end))
        return end

    async def _speak(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._speak_forever()

    async def _speak_forever(self) -> None:
        start = time.time()
        chunk = 0
        while True:
            due = start + (self._sent + FRAME) / TELEPHONE_RATE
            await asyncio.sleep(max(0.0, due - time.time()))
            frame, self._queue = (self._queue[:FRAME], self._queue[FRAME:]) if self._queue else (SILENCE, b"")
            frame = frame.ljust(FRAME, SILENCE[:1])
            chunk += 1
            await self.send(
                {
                    "event": "media",
                    "sequenceNumber": str(chunk + 1),
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(chunk),
                        "timestamp": str(self._sent // 8),
                        "payload": base64.b64encode(frame).decode(),
                    },
                }
            )
            self._sent += FRAME
            for position, end in [e for e in self._ends if e[0] <= self._sent]:
                if not end.done():
                    end.set_result(start + position / TELEPHONE_RATE)
                self._ends.remove((position, end))
            await self._echo_marks()

    async def _echo_marks(self, *, everything: bool = False) -> None:
        now = time.time()
        due = [m for m in self._marks if everything or m[0] <= now]
        for mark in due:
            self._marks.remove(mark)
            await self.send(
                {
                    "event": "mark",
                    "sequenceNumber": "0",
                    "streamSid": self.stream_sid,
                    "mark": {"name": mark[1]},
                }
            )

    async def _listen(self) -> None:
        try:
            async for raw in self._socket:
                message = json.loads(raw)
                now = time.time()
                self.heard.append(Heard(now, message))
                if message.get("event") == "media":
                    self._playout = (
                        max(self._playout, now) + len(base64.b64decode(message["media"]["payload"])) / 8000
                    )
                elif message.get("event") == "mark":
                    self._marks.append((max(self._playout, now), message["mark"]["name"]))
                elif message.get("event") == "clear":
                    self._playout = now
                    await self._echo_marks(everything=True)
                self._new.set()
        except websockets.ConnectionClosed as closed:
            self.closed = (closed.code, closed.reason)
        else:
            self.closed = (self._socket.close_code, self._socket.close_reason)
        self._new.set()

    def of(self, event: str) -> list[Heard]:
        return [h for h in self.heard if h.message.get("event") == event]

    def reply_audio(self, after: float = 0.0) -> list[Heard]:
        """Media frames received after `after` that are not silence."""
        return [h for h in self.of("media") if h.at >= after and loud(h.message["media"]["payload"])]

    async def wait(self, predicate: Any) -> None:
        """Until `predicate()` holds (bound it with `asyncio.timeout`)."""
        while not predicate():
            self._new.clear()
            await self._new.wait()

    async def hang_up(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.send(
                {
                    "event": "stop",
                    "sequenceNumber": "0",
                    "streamSid": self.stream_sid,
                    "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid},
                }
            )
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._socket is not None:
            await self._socket.close()


def loud(payload: str) -> bool:
    return float(np.abs(decode_g711(base64.b64decode(payload))).max(initial=0.0)) > 0.02
