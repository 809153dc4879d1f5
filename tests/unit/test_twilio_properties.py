"""Properties of the Media Streams codec: what it sends reads back, and nothing a socket can carry makes it
raise anything but ProtocolError. And of a call: any messages end it cleanly, or closed with why."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import WebSocketDisconnect
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import FakeAudioLM, FakeSynthesizer, InlineStore, RecordingStreams, held_writes
from tests.support.strategies import json_objects, json_values
from tests.unit.test_conversation import POLICY
from tests.unit.test_phone_call import ScriptedSocket
from tests.unit.test_twilio_codec import START
from voice_assistant.config import TurnSettings
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, TurnTaking
from voice_assistant.transport import twilio
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.phone import PhoneCall
from voice_assistant.turn.vad import SileroModel

pytestmark = pytest.mark.unit

stream_sids = st.text(min_size=1, max_size=40)


def parsed(text: str) -> twilio.Incoming | None:
    """What the codec makes of `text`, its documented refusal included."""
    try:
        message = twilio.parse(text)
    except twilio.ProtocolError:
        return None
    if isinstance(message, twilio.Media):
        try:
            message.audio()
        except twilio.ProtocolError:
            return None
    return message


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text_is_a_message_or_a_protocol_error(text: str) -> None:
    parsed(text)


@settings(max_examples=200)
@given(
    st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "clear"]),
    json_objects(["streamSid", "start", "media", "mark", "dtmf", "sequenceNumber"]),
)
def test_a_known_event_with_any_fields_is_a_message_or_a_protocol_error(
    event: str, fields: dict[str, object]
) -> None:
    parsed(json.dumps({"event": event, **fields}))


@settings(max_examples=150)
@given(st.sampled_from(["start", "mediaFormat", "customParameters", "tracks", "streamSid"]), json_values)
def test_a_start_with_any_field_replaced_is_a_start_or_a_protocol_error(field: str, value: object) -> None:
    start = {**START, "start": {**START["start"], field: value}}  # type: ignore[dict-item]
    message = parsed(json.dumps(start))
    assert message is None or isinstance(message, twilio.Start)


@settings(max_examples=100)
@given(stream_sids, st.binary(max_size=400))
def test_media_we_send_reads_back_as_the_same_audio(stream_sid: str, mulaw: bytes) -> None:
    message = twilio.parse(twilio.media(stream_sid, mulaw))
    assert isinstance(message, twilio.Media)
    assert (message.stream_sid, message.audio()) == (stream_sid, mulaw)


@settings(max_examples=100)
@given(stream_sids, st.text(max_size=40))
def test_a_mark_we_send_reads_back_with_its_name(stream_sid: str, name: str) -> None:
    message = twilio.parse(twilio.mark(stream_sid, name))
    assert isinstance(message, twilio.Mark) and message.mark.name == name


@settings(max_examples=100)
@given(stream_sids, st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=4))
def test_a_start_reads_back_with_its_stream_and_parameters(
    stream_sid: str, parameters: dict[str, str]
) -> None:
    start = {**START, "start": {**START["start"], "streamSid": stream_sid, "customParameters": parameters}}  # type: ignore[dict-item]
    message = twilio.parse(json.dumps(start))
    assert isinstance(message, twilio.Start)
    assert (message.start.stream_sid, message.start.custom_parameters) == (stream_sid, parameters)


@pytest.fixture(scope="module")
def store() -> Iterator[InlineStore]:
    """One store for every example: each call is a session of its own."""
    history = InlineStore()
    yield history
    history.close()


@pytest.fixture(scope="module")
def pipelines(store: InlineStore) -> Pipelines:
    metrics = Metrics()
    loaded = Pipelines(store=store, held=held_writes(store, metrics), hub=EventHub(), metrics=metrics)
    answering = Answering(
        FakeAudioLM([]), POLICY, FakeSynthesizer(), 60.0, speculative=False, transcripts=False
    )
    loaded.load(TurnTaking(SileroModel(), TurnSettings(), None), answering)
    return loaded


stream_sid = str(START["streamSid"])
call_steps = st.one_of(
    st.builds(twilio.media, st.just(stream_sid), st.binary(max_size=320)),
    st.builds(twilio.mark, st.just(stream_sid), st.sampled_from(["greeting.0", "turn-0.0", "nope"])),
    st.builds(lambda fields: json.dumps({"event": "media", **fields}), json_objects(["streamSid", "media"])),
    st.sampled_from(
        [
            json.dumps(START),
            json.dumps({"event": "stop"}),
            json.dumps({"event": "dtmf", "dtmf": {"digit": "1"}}),
        ]
    ),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.just("x" * (twilio.MAX_MESSAGE_CHARS + 1)),
)
"""What a media stream may carry: Twilio's messages, the same malformed, garbage, binary, one too large."""


@settings(max_examples=60)
@given(st.booleans(), st.lists(call_steps, max_size=12))
def test_any_messages_after_any_start_end_the_call_cleanly(
    store: InlineStore, pipelines: Pipelines, started: bool, steps: list[str | bytes]
) -> None:
    """Garbage is ignored; a message that is no Media Streams message at all closes the stream with the
    code that says why (1003 binary, 1008 no start or too much garbage, 1009 too large), `stop` with 1000;
    the caller hanging up ends it; nothing else happens (1011 is for the store, which is up here)."""

    async def call() -> ScriptedSocket:
        session_id = await store.create_session(now=datetime.now(UTC))

        async def spend_token(token: str) -> str | None:
            return session_id

        socket = ScriptedSocket([json.dumps(START)] * started + steps)
        phone = PhoneCall(
            socket,  # type: ignore[arg-type]
            pipelines=pipelines,
            metrics=Metrics(),
            audio=RecordingStreams(),
            spend_token=spend_token,
            greeting="",
            messages=MessageRate(10_000),
        )
        with contextlib.suppress(WebSocketDisconnect):  # as the route does
            await phone.run()
        return socket

    socket = asyncio.run(call())
    assert socket.closed is None or socket.closed[0] in {1000, 1003, 1008, 1009}, socket.closed
