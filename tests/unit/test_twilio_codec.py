"""The Media Streams codec on the message shapes of Twilio's documentation, and on garbage."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from voice_assistant.audio.g711 import decode_g711, encode_g711
from voice_assistant.transport import twilio

pytestmark = pytest.mark.unit

START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC0123",
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
        "callSid": "CA0123",
        "tracks": ["inbound"],
        "customParameters": {"token": "abc"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
    "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
}


def test_the_messages_twilio_sends_are_understood() -> None:
    assert isinstance(
        twilio.parse('{"event": "connected", "protocol": "Call", "version": "1.0.0"}'), twilio.Connected
    )
    start = twilio.parse(json.dumps(START))
    assert isinstance(start, twilio.Start)
    assert start.start.stream_sid == "MZ18ad3ab5a668481ce02b83e7395059f0"
    assert start.start.custom_parameters == {"token": "abc"}
    assert start.start.media_format.sample_rate == 8000
    payload = base64.b64encode(bytes([0xFF] * 160)).decode()
    media = twilio.parse(
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": "3",
                "streamSid": "MZ1",
                "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": payload},
            }
        )
    )
    assert isinstance(media, twilio.Media) and media.audio() == bytes([0xFF] * 160)
    mark = twilio.parse(
        '{"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "turn-0.0"}}'
    )
    assert isinstance(mark, twilio.Mark) and mark.mark.name == "turn-0.0"
    dtmf = twilio.parse(
        '{"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "1"}}'
    )
    assert isinstance(dtmf, twilio.Dtmf) and dtmf.dtmf.digit == "1"
    stop = twilio.parse(
        '{"event": "stop", "sequenceNumber": "5", "streamSid": "MZ1", "stop": {"callSid": "CA1"}}'
    )
    assert isinstance(stop, twilio.Stop)


def test_unknown_events_are_ignored() -> None:
    assert twilio.parse('{"event": "something-new", "streamSid": "MZ1"}') is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"no": "event"}',
        '{"event": "start", "start": {"streamSid": "MZ1"}}',
        json.dumps(
            {"event": "start", "start": {"streamSid": "MZ1", "mediaFormat": {"encoding": "audio/opus"}}}
        ),
        '{"event": "media", "streamSid": "MZ1"}',
        "[" * 50_000,  # past the decoder's recursion limit, within MAX_MESSAGE_CHARS
    ],
)
def test_garbage_is_a_protocol_error(text: str) -> None:
    with pytest.raises(twilio.ProtocolError):
        twilio.parse(text)


def test_a_payload_that_is_not_base64_is_a_protocol_error() -> None:
    media = twilio.parse('{"event": "media", "streamSid": "MZ1", "media": {"payload": "***not base64***"}}')
    assert isinstance(media, twilio.Media)
    with pytest.raises(twilio.ProtocolError, match="base64"):
        media.audio()


def test_what_we_send_back_has_twilio_s_shapes() -> None:
    assert json.loads(twilio.media("MZ1", b"\x00\xff")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "AP8="},
    }
    assert json.loads(twilio.mark("MZ1", "turn-0.1")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "turn-0.1"},
    }
    assert json.loads(twilio.clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_mulaw_round_trip_keeps_the_waveform() -> None:
    t = np.arange(800) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    encoded = encode_g711(tone)
    assert len(encoded) == 800  # one byte per sample
    assert np.max(np.abs(decode_g711(encoded) - tone)) < 0.02  # mu-law is 8 bits, logarithmic
    assert encode_g711(np.zeros(4, np.float32)) == b"\xff\xff\xff\xff"  # G.711 silence
    assert len(decode_g711(b"")) == 0
