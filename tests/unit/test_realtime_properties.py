"""Properties of the Realtime codec: any text is an event or a ProtocolError with a documented code, and a
session this server can honour reads back as it was written, GA and beta alike. And of a connection: any
events in any order are answered or refused with a documented code, and it ends cleanly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import FakeAudioLM, InlineStore
from tests.support.strategies import json_objects
from tests.unit.test_realtime_connection import MANUAL, ScriptedClient, serve, typed
from voice_assistant.transport import realtime_protocol as rt

pytestmark = pytest.mark.unit

CODES = {"invalid_json", "invalid_event", "unknown_event", "invalid_value", "event_too_large"}
"""What `parse` and the events' accessors may refuse with (README, "Errors")."""
FIELDS = ["type", "event_id", "audio", "session", "item", "item_id", "audio_end_ms", "content_index"]
FIELDS += ["response", "response_id", "previous_item_id"]
SESSION_KEYS = ["type", "instructions", "output_modalities", "modalities", "voice", "turn_detection"]
SESSION_KEYS += ["input_audio_format", "output_audio_format", "audio"]

formats = st.sampled_from(list(rt.FORMAT_RATES))
modalities = st.sampled_from([("text",), ("audio",), ("text", "audio")])
detections = st.builds(
    rt.TurnDetection,
    type=st.sampled_from(["server_vad", "semantic_vad"]),
    threshold=st.none() | st.floats(0.01, 0.99),
    prefix_padding_ms=st.none() | st.integers(0, rt.MAX_PREFIX_PADDING_MS),
    silence_duration_ms=st.none() | st.integers(0, 10_000),
    eagerness=st.none() | st.sampled_from(["low", "medium", "high", "auto"]),
    create_response=st.booleans(),
    interrupt_response=st.booleans(),
)
changes = st.builds(
    rt.SessionChange,
    instructions=st.none() | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0")),
    turn_detection=st.just("keep") | st.none() | detections,
    input_format=st.none() | formats,
    output_format=st.none() | formats,
    output_modalities=st.none() | modalities,
    voice=st.none() | st.text(max_size=10),
)
"""Every session this server honours: text the store keeps as it is (no NUL, no lone surrogate)."""


def ga_session(change: rt.SessionChange) -> dict[str, Any]:
    """`change` as a GA client writes it: formats and turn detection nested under `audio`."""
    heard: dict[str, Any] = {}
    spoken: dict[str, Any] = {}
    if change.turn_detection != "keep":
        detection = change.turn_detection
        heard["turn_detection"] = detection.model_dump(exclude_none=True) if detection else None
    if change.input_format:
        heard["format"] = rt.format_object(change.input_format, beta=False)
    if change.output_format:
        spoken["format"] = rt.format_object(change.output_format, beta=False)
    if change.voice is not None:
        spoken["voice"] = change.voice
    session: dict[str, Any] = {"type": "realtime", "audio": {"input": heard, "output": spoken}}
    if change.instructions is not None:
        session["instructions"] = change.instructions
    if change.output_modalities:
        session["output_modalities"] = list(change.output_modalities)
    return session


def beta_session(change: rt.SessionChange) -> dict[str, Any]:
    """`change` as a beta client writes it: flat."""
    session: dict[str, Any] = {}
    if change.turn_detection != "keep":
        detection = change.turn_detection
        session["turn_detection"] = detection.model_dump(exclude_none=True) if detection else None
    for key, value in (
        ("input_audio_format", change.input_format),
        ("output_audio_format", change.output_format),
        ("voice", change.voice),
        ("instructions", change.instructions),
    ):
        if value is not None:
            session[key] = value
    if change.output_modalities:
        session["modalities"] = list(change.output_modalities)
    return session


def keepable(text: str) -> bool:
    """Text the store keeps as it is, and a model's tokenizer takes: no NUL, no lone surrogate."""
    return not any(char == "\0" or "\ud800" <= char <= "\udfff" for char in text)


def refused_with_a_documented_code(problem: rt.ProtocolError) -> None:
    assert problem.code in CODES, problem.code


def parsed(text: str) -> rt.ClientEvent | None:
    """What the codec makes of `text`, and of what each event's accessors read; None: refused."""
    try:
        event = rt.parse(text)
        match event:
            case rt.AudioAppend():
                event.data()
            case rt.SessionUpdate():
                rt.session_change(event.session)
            case rt.ResponseCreate():
                assert event.instructions is None or isinstance(event.instructions, str)
                assert event.modalities is None or set(event.modalities) <= {"text", "audio"}
    except rt.ProtocolError as problem:
        refused_with_a_documented_code(problem)
        return None
    return event


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text_is_an_event_or_a_documented_refusal(text: str) -> None:
    parsed(text)


@settings(max_examples=200)
@given(st.sampled_from(list(rt._KINDS) + ["no.such.event"]), json_objects(FIELDS))
def test_an_event_of_any_type_with_any_fields_is_an_event_or_a_documented_refusal(
    kind: str, fields: dict[str, Any]
) -> None:
    event = parsed(json.dumps({**fields, "type": kind}))
    assert event is None or event.type == kind


@settings(max_examples=200)
@given(json_objects(SESSION_KEYS), json_objects(["input", "output"]), json_objects(["format", "voice"]))
def test_any_session_is_a_change_or_a_documented_refusal(
    session: dict[str, Any], audio: dict[str, Any], direction: dict[str, Any]
) -> None:
    """Nested as the GA shape nests it, with anything at each level."""
    for nested in ({**session, "audio": {**audio, "input": direction}}, {**session, "audio": audio}, session):
        try:
            change = rt.session_change(nested)
        except rt.ProtocolError as problem:
            refused_with_a_documented_code(problem)
            continue
        assert change.voice is None or isinstance(change.voice, str)
        assert change.instructions is None or keepable(change.instructions)


@settings(max_examples=200)
@given(changes)
def test_a_session_this_server_honours_reads_back_as_written_in_both_shapes(change: rt.SessionChange) -> None:
    assert rt.session_change(ga_session(change)) == change
    assert rt.session_change(beta_session(change)) == change
    event = json.dumps({"type": "session.update", "session": ga_session(change)})
    update = rt.parse(event)
    assert isinstance(update, rt.SessionUpdate) and rt.session_change(update.session) == change


@settings(max_examples=100)
@given(st.text(max_size=40))
def test_text_a_client_gives_the_model_is_text_the_store_keeps(text: str) -> None:
    """A lone surrogate or a NUL becomes U+FFFD: the model's tokenizer refuses the one, the store the
    other."""
    change = rt.session_change({"instructions": text})
    create = rt.parse(json.dumps({"type": "response.create", "response": {"instructions": text}}))
    assert isinstance(create, rt.ResponseCreate)
    for instructions in (change.instructions, create.instructions):
        assert instructions is not None and len(instructions) == len(text) and keepable(instructions)


CONNECTION_CODES = CODES | {
    "input_audio_buffer_commit_empty",
    "input_audio_buffer_commit_unavailable",
    "input_audio_buffer_too_large",
    "conversation_already_has_active_response",
    "no_turn_to_respond",
    "response_cancel_not_active",
    "input_audio_too_large",
    "item_not_found",
    "unsupported_item",
    "item_delete_unsupported",
}
"""Every refusal README's "Errors" lists for a connection's events."""
client_steps = st.one_of(
    st.builds(
        lambda kind, fields: {**fields, "type": kind}, st.sampled_from(list(rt._KINDS)), json_objects(FIELDS)
    ),
    st.sampled_from(
        [MANUAL, typed("Hi"), {"type": "response.create"}, {"type": "input_audio_buffer.commit"}]
    ),
    st.builds(
        lambda audio: {"type": "input_audio_buffer.append", "audio": audio},
        st.sampled_from(["AAAA", "AAE=", "////"]),
    ),
    st.text(max_size=30),
    st.binary(max_size=30),
)
"""What a client may send: any event type with any fields, the steps of a typed turn, audio, garbage."""


@pytest.fixture(scope="module")
def store() -> Iterator[InlineStore]:
    """One store for every example: each connection is a session of its own."""
    history = InlineStore()
    yield history
    history.close()


@settings(max_examples=60)
@given(st.lists(client_steps, min_size=1, max_size=8))
def test_any_events_in_any_order_are_answered_or_refused_and_the_connection_ends_cleanly(
    store: InlineStore, steps: list[dict[str, Any] | str | bytes]
) -> None:
    client = ScriptedClient(list(steps))
    asyncio.run(serve(store, FakeAudioLM([]), client))
    assert client.closed == (1000, None)
    assert all(text.isascii() for text in client.sent)
    assert set(client.errors()) <= CONNECTION_CODES
