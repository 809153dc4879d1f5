"""The OpenAI Realtime codec, the turn-detection mapping and the client secrets, each on its own."""

from __future__ import annotations

import json

import pytest

from tests.fakes import ScriptedRealtimeSocket
from voice_assistant.config import TurnSettings
from voice_assistant.metrics import Metrics
from voice_assistant.session.pipeline import SessionPipeline
from voice_assistant.transport import realtime_protocol as rt
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.realtime import RealtimeConnection
from voice_assistant.transport.realtime_turns import described, turn_settings
from voice_assistant.tts.sentences import spoken_sentences
from voice_assistant.web.realtime import MAX_REASON_BYTES, ClientSecrets, close_reason

pytestmark = pytest.mark.unit


def test_a_ga_session_update_and_its_beta_twin_say_the_same() -> None:
    ga = rt.session_change(
        {
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["text"],
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "semantic_vad"}},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
            },
        }
    )
    beta = rt.session_change(
        {
            "instructions": "Be brief.",
            "modalities": ["text"],
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "pcm16",
            "turn_detection": {"type": "semantic_vad"},
            "voice": "alloy",
        }
    )
    assert ga == beta
    assert (
        ga.input_format == "g711_ulaw" and ga.output_format == "pcm16" and ga.output_modalities == ("text",)
    )
    assert isinstance(ga.turn_detection, rt.TurnDetection) and ga.turn_detection.type == "semantic_vad"


def test_what_a_session_update_leaves_out_is_kept_and_null_turn_detection_is_manual() -> None:
    assert rt.session_change({"instructions": "x"}).turn_detection == "keep"
    assert rt.session_change({"audio": {"input": {"turn_detection": None}}}).turn_detection is None
    assert rt.session_change({"turn_detection": None}).turn_detection is None


@pytest.mark.parametrize(
    ("session", "param"),
    [
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "session.audio.input.format.rate",
        ),
        ({"input_audio_format": "mp3"}, "session.audio.input.format"),
        ({"turn_detection": {"type": "push_to_talk"}}, "turn_detection"),
        ({"output_modalities": ["video"]}, "session.output_modalities"),
        ({"type": "transcription"}, "session.type"),
    ],
)
def test_a_session_update_this_server_cannot_honour_says_which_field(
    session: dict[str, object], param: str
) -> None:
    with pytest.raises(rt.ProtocolError) as raised:
        rt.session_change(session)
    assert raised.value.code == "invalid_value" and raised.value.param == param


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "invalid_json"),
        ("[" * 100_000, "invalid_json"),  # past the decoder's recursion limit: not a RecursionError
        ("[1, 2]", "invalid_event"),
        (json.dumps({"type": "nope"}), "unknown_event"),
        (json.dumps({"type": "conversation.item.truncate", "item_id": "x"}), "invalid_value"),
        ("x" * (rt.MAX_MESSAGE_CHARS + 1), "event_too_large"),
    ],
)
def test_bad_client_events_are_named(text: str, code: str) -> None:
    with pytest.raises(rt.ProtocolError) as raised:
        rt.parse(text)
    assert raised.value.code == code


def test_client_events_parse_into_their_types_and_bad_base64_is_caught() -> None:
    event = rt.parse(json.dumps({"type": "input_audio_buffer.append", "audio": "AAE=", "event_id": "e7"}))
    assert isinstance(event, rt.AudioAppend) and event.data() == b"\x00\x01"
    bad = rt.parse(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "e8"}))
    assert isinstance(bad, rt.AudioAppend)
    with pytest.raises(rt.ProtocolError) as raised:
        bad.data()
    assert raised.value.event_id == "e8" and raised.value.param == "audio"
    create = rt.parse(
        json.dumps({"type": "response.create", "response": {"instructions": "Hi", "modalities": ["text"]}})
    )
    assert isinstance(create, rt.ResponseCreate)
    assert create.instructions == "Hi" and create.modalities == ("text",)


def test_server_events_take_beta_names_for_a_beta_client() -> None:
    ga, beta = rt.ServerEvents(), rt.ServerEvents(beta=True)
    assert ga.make("response.output_audio.delta", delta="x")["type"] == "response.output_audio.delta"  # type: ignore[index]
    assert beta.make("response.output_audio.delta", delta="x")["type"] == "response.audio.delta"  # type: ignore[index]
    assert beta.make("conversation.item.added")["type"] == "conversation.item.created"  # type: ignore[index]
    assert beta.make("conversation.item.done") is None  # no beta twin
    first, second = ga.make("session.updated"), ga.make("session.updated")
    assert first is not None and second is not None and first["event_id"] != second["event_id"]
    error = ga.error(rt.ProtocolError("bad", code="invalid_value", event_id="e1", param="audio"))
    assert error["type"] == "error" and error["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "bad",
        "param": "audio",
        "event_id": "e1",
    }


def test_turn_detection_maps_onto_this_servers_turn_taking() -> None:
    server = TurnSettings(end_of_turn="smart-turn", min_silence_ms=650)
    silence = turn_settings(rt.TurnDetection(type="server_vad"), server)
    assert silence.end_of_turn == "silence" and silence.min_silence_ms == 650  # unset: the server's, not 200
    tuned = turn_settings(
        rt.TurnDetection(type="server_vad", silence_duration_ms=900, threshold=0.6, prefix_padding_ms=300),
        server,
    )
    assert (tuned.min_silence_ms, tuned.vad_threshold, tuned.speech_pad_ms) == (900, 0.6, 300)
    assert tuned.vad_neg_threshold < tuned.vad_threshold
    eager = turn_settings(rt.TurnDetection(type="semantic_vad", eagerness="high"), server)
    patient = turn_settings(rt.TurnDetection(type="semantic_vad", eagerness="low"), server)
    assert eager.end_of_turn == "smart-turn"
    assert eager.end_of_turn_quick_ms < server.end_of_turn_quick_ms < patient.end_of_turn_quick_ms
    shown = described(rt.TurnDetection(type="server_vad"), server)
    assert shown is not None and shown["silence_duration_ms"] == 650 and described(None, server) is None


def test_client_secrets_carry_their_session_and_expire() -> None:
    secrets = ClientSecrets(("sk-a", "sk-b"), ttl_s=60)
    value, expires_at = secrets.mint({"instructions": "Hi"}, now=1000.0)
    assert value.startswith("ek_") and expires_at == 1060
    assert secrets.session(value, now=1030.0) == {"instructions": "Hi"}
    assert secrets.session(value, now=1061.0) is None  # expired
    assert ClientSecrets(("sk-b", "sk-a"), ttl_s=60).session(value, now=1030.0) is not None  # any instance
    assert ClientSecrets(("sk-other",), ttl_s=60).session(value, now=1030.0) is None
    body, signature = value.split(".")
    assert secrets.session(body[:-2] + "xx." + signature, now=1030.0) is None  # tampered
    assert secrets.session("ek_garbage", now=1030.0) is None


def test_the_sentences_of_a_whole_reply_are_numbered_as_they_were_spoken() -> None:
    # A line of markup alone is no sentence spoken (nor numbered); a sentence keeps its text as written.
    text = "Hello there.\n___\n**How** are you? Fine"
    assert spoken_sentences(text) == ["Hello there.", "**How** are you?", "Fine"]


async def test_a_session_that_cannot_be_opened_is_an_error_event_and_a_close_not_a_traceback() -> None:
    async def store_away(_: RealtimeConnection) -> SessionPipeline:
        raise OSError("connection refused")

    socket = ScriptedRealtimeSocket()
    metrics = Metrics()
    connection = RealtimeConnection(
        socket,  # type: ignore[arg-type]
        session_id="s1",
        open_pipeline=store_away,
        store=None,  # type: ignore[arg-type]
        metrics=metrics,
        model_name="tiny",
        instructions="Be brief.",
        events=rt.ServerEvents(),
        messages=MessageRate(100),
        max_text_chars=1000,
    )
    await connection.run()
    assert [event["type"] for event in socket.sent] == ["error"]
    assert socket.sent[0]["error"]["code"] == "session_unavailable"
    assert "OSError" in socket.sent[0]["error"]["message"]
    assert socket.closed is not None and socket.closed[0] == 1011


@pytest.mark.parametrize("message", ["short", "x" * 500, "é" * 100, "the model '\U0001f600" + "\u4e2d" * 80])
def test_a_close_reason_fits_a_close_frame_cut_between_characters(message: str) -> None:
    """A refusal quotes the query (a model name, a session id): 120 characters of it were up to 480
    bytes, which failed the close and dropped the client (1006)."""
    reason = close_reason(message)
    assert len(reason.encode()) <= MAX_REASON_BYTES and message.startswith(reason)
    assert reason == message or len(reason.encode()) > MAX_REASON_BYTES - 4
