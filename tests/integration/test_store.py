"""The history store on real databases: SQLite (default) and PostgreSQL (several instances)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from voice_assistant.audio.codec import decode
from voice_assistant.errors import UnknownSession
from voice_assistant.history.limits import RATE_WINDOW, Rate
from voice_assistant.history.store import CUT_OFF, HistoryStore, NewTurn, ReplyOutcome

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def turn(seconds: float, value: float = 0.25, at: datetime = T0) -> NewTurn:
    return NewTurn(
        audio=np.full(int(seconds * 16_000), value, dtype=np.float32),
        speech_start=at,
        speech_end=at + timedelta(seconds=seconds),
        turn_ended_at=at + timedelta(seconds=seconds + 0.5),
        context={"audio_turns": [], "text_turns": [], "estimated_tokens": 10},
    )


async def test_a_turn_and_its_reply_round_trip(store: HistoryStore) -> None:
    session_id = await store.create_session(now=T0)
    assert len(session_id) == 32 and int(session_id, 16) >= 0
    index = await store.add_turn(session_id, turn(1.5))
    await store.finish_reply(
        session_id,
        index,
        ReplyOutcome(
            "Hi.", False, None, T0 + timedelta(seconds=2.2), T0 + timedelta(seconds=2.6), {"first_delta": 0.7}
        ),
    )
    record = await store.get_session(session_id)
    assert record.turn_count == 1
    stored = record.turns[0]
    assert (stored.index, stored.reply_text, stored.interrupted, stored.error) == (0, "Hi.", False, None)
    assert stored.audio_seconds == pytest.approx(1.5)
    assert stored.speech_end == T0 + timedelta(seconds=1.5)
    assert stored.first_delta_at == T0 + timedelta(seconds=2.2)
    assert stored.timings == {"first_delta": 0.7}
    assert stored.context == {"audio_turns": [], "text_turns": [], "estimated_tokens": 10}
    json = record.to_json()
    assert json["turns"][0]["speech_start"] == "2026-11-25T12:00:00+00:00"
    assert json["turns"][0]["transcript"] is None
    assert json["turns"][0]["heard_text"] is None  # not spoken

    samples, rate = decode(await store.turn_audio(session_id, 0))
    assert rate == 16_000 and len(samples) == 24_000
    assert np.allclose(samples, 0.25, atol=1e-4)


async def test_replies_that_never_ended_read_as_cut_off_and_a_late_end_heals_the_mark(
    store: HistoryStore,
) -> None:
    session_id, other = await store.create_session(now=T0), await store.create_session(now=T0)
    done = await store.add_turn(session_id, turn(1.0))
    await store.finish_reply(session_id, done, ReplyOutcome("Hi.", False, None, T0, T0, {}))
    in_flight = await store.add_turn(session_id, turn(1.0))
    later = await store.add_turn(session_id, turn(1.0, at=T0 + timedelta(minutes=5)))
    elsewhere = await store.add_turn(other, turn(1.0))

    before = T0 + timedelta(minutes=1)
    assert await store.mark_cut_off(before=before, session_id=session_id) == 1
    assert await store.mark_cut_off(before=before) == 1  # the other session's, the rest already marked
    turns = (await store.get_session(session_id)).turns
    assert [(t.interrupted, t.error) for t in turns] == [(False, None), (True, CUT_OFF), (False, None)]
    assert (await store.get_session(other)).turns[elsewhere].error == CUT_OFF
    assert later == 2

    # The reply was alive after all (another instance's): its end overwrites the mark.
    await store.finish_reply(session_id, in_flight, ReplyOutcome("Late.", False, None, T0, T0, {}))
    healed = (await store.get_session(session_id)).turns[in_flight]
    assert (healed.reply_text, healed.interrupted, healed.error) == ("Late.", False, None)


async def test_indices_follow_each_other_even_when_written_at_once(store: HistoryStore) -> None:
    session_id = await store.create_session(now=T0)
    indices = await asyncio.gather(*(store.add_turn(session_id, turn(0.2)) for _ in range(6)))
    assert sorted(indices) == list(range(6))
    assert await store.turn_count(session_id) == 6


async def test_recent_turns_are_oldest_first_with_audio_only_for_the_newest(store: HistoryStore) -> None:
    session_id = await store.create_session(now=T0)
    for i in range(5):
        await store.add_turn(session_id, turn(0.5, value=i / 10))
        await store.finish_reply(session_id, i, ReplyOutcome(f"r{i}", False, None, None, T0, {}))
    recent = await store.recent_turns(session_id, limit=3, audio_for_last=2)
    assert [t.index for t in recent] == [2, 3, 4]
    assert recent[0].audio is None
    assert recent[1].audio is not None and recent[1].audio[0] == pytest.approx(0.3, abs=1e-4)
    assert [t.reply_text for t in recent] == ["r2", "r3", "r4"]


async def test_a_spoken_reply_keeps_both_texts_and_the_conversation_keeps_what_was_heard(
    store: HistoryStore,
) -> None:
    session_id = await store.create_session(now=T0)
    # Spoken whole; not spoken (no speech out); cut short by barge-in.
    for i, (heard, interrupted) in enumerate((("Yes, it is.", False), (None, False), ("Turn left at", True))):
        await store.add_turn(session_id, turn(0.2))
        outcome = ReplyOutcome(f"reply {i}", interrupted, None, None, T0, {}, heard=heard)
        await store.finish_reply(session_id, i, outcome)
    stored = (await store.get_session(session_id)).turns
    assert [(t.reply_text, t.heard_text) for t in stored] == [
        ("reply 0", "Yes, it is."),
        ("reply 1", None),
        ("reply 2", "Turn left at"),
    ]
    recent = await store.recent_turns(session_id, limit=3, audio_for_last=0)
    assert [t.reply_text for t in recent] == ["Yes, it is.", "reply 1", "Turn left at"]


async def test_unknown_sessions_are_refused(store: HistoryStore) -> None:
    for call in (
        store.get_session("0" * 32),
        store.delete_session("0" * 32),
        store.add_turn("0" * 32, turn(0.1)),
        store.turn_audio("0" * 32, 0),
    ):
        with pytest.raises(UnknownSession):
            await call
    assert not await store.session_exists("0" * 32)


async def test_a_missing_turn_of_a_known_session_is_a_lookup_error(store: HistoryStore) -> None:
    session_id = await store.create_session(now=T0)
    with pytest.raises(LookupError, match="no turn 3"):
        await store.turn_audio(session_id, 3)


async def test_listing_is_newest_first_with_turn_counts_and_delete_removes_everything(
    store: HistoryStore,
) -> None:
    older = await store.create_session(now=T0)
    newer = await store.create_session(now=T0 + timedelta(minutes=1))
    await store.add_turn(older, turn(0.1))
    await store.add_turn(older, turn(0.1))
    listed = await store.list_sessions()
    assert [(s.session_id, s.turn_count) for s in listed[:2]] == [(newer, 0), (older, 2)]
    await store.delete_session(older)
    assert not await store.session_exists(older)
    assert await store.turn_count(older) == 0


async def test_two_stores_on_one_database_see_each_other(store: HistoryStore) -> None:
    """What several instances do: one writes, another (a new engine) reads."""
    other = HistoryStore(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        session_id = await store.create_session(now=T0)
        await store.add_turn(session_id, turn(0.3))
        assert (await other.get_session(session_id)).turn_count == 1
        assert await other.add_turn(session_id, turn(0.3)) == 1
        assert await store.turn_count(session_id) == 2
    finally:
        other.close()


async def test_a_caller_is_known_only_by_a_keyed_hash_and_keeps_one_session(store: HistoryStore) -> None:
    first = await store.caller_hash("+15551234567")
    assert first == await store.caller_hash(" +15551234567 ") and "5551234567" not in first
    assert first != await store.caller_hash("+15557654321")
    session = await store.caller_session(first, now=T0)
    assert await store.caller_session(first, now=T0) == session
    assert await store.caller_session(await store.caller_hash("+15557654321"), now=T0) != session
    await store.delete_session(session)  # a forgotten caller starts afresh
    assert await store.caller_session(first, now=T0) != session


async def test_a_call_token_is_spent_once_and_expires(store: HistoryStore) -> None:
    session = await store.create_session(now=T0)
    token = await store.issue_call_token(session, now=T0)
    ttl = timedelta(seconds=60)
    spent = await asyncio.gather(*(store.spend_call_token(token, now=T0, ttl=ttl) for _ in range(4)))
    assert spent.count(None) == 3 and session in spent  # exactly one of four stream starts wins
    late = await store.issue_call_token(session, now=T0)
    assert await store.spend_call_token(late, now=T0 + timedelta(seconds=61), ttl=ttl) is None
    assert await store.spend_call_token("made-up", now=T0, ttl=ttl) is None


async def test_any_text_a_model_emits_reads_back_alike_on_every_database(store: HistoryStore) -> None:
    """The tiny models emit NUL often (a real one can), and PostgreSQL's text types refuse it: every text
    column reads back with U+FFFD in its place, on SQLite as on PostgreSQL, and so do lone surrogates."""
    session_id = await store.create_session(now=T0)
    context = {"audio_turns": [], "text_turns": [], "note": "a\x00b\ud800c"}  # JSON escapes both: kept
    index = await store.add_turn(session_id, replace(turn(0.2), context=context))
    outcome = ReplyOutcome(
        "re\x00ply", True, "mo\x00del \ud83d failed", None, T0, {"reply_done": 1.0}, heard="he\x00ard"
    )
    await store.finish_reply(session_id, index, outcome)
    await store.set_transcript(session_id, index, "\x00words\x00")

    (stored,) = (await store.get_session(session_id)).turns
    assert (stored.reply_text, stored.heard_text, stored.error, stored.transcript) == (
        "re\ufffdply",
        "he\ufffdard",
        "mo\ufffddel \ufffd failed",
        "\ufffdwords\ufffd",
    )
    assert stored.context == context and stored.timings == {"reply_done": 1.0}
    (past,) = await store.recent_turns(session_id, limit=1, audio_for_last=0)
    assert (past.transcript, past.reply_text) == ("\ufffdwords\ufffd", "he\ufffdard")


async def test_an_id_holding_nul_is_simply_unknown(store: HistoryStore) -> None:
    """A client may send anything as a session id or a call token: a lookup finds nothing, it never fails."""
    session_id = await store.create_session(now=T0)
    assert not await store.session_exists(session_id[:-1] + "\x00")
    with pytest.raises(UnknownSession):
        await store.get_session("\x00" * 32)
    assert await store.spend_call_token("to\x00ken", now=T0, ttl=timedelta(seconds=60)) is None
    assert await store.turn_count("\ud800") == 0


async def test_instances_racing_for_the_last_places_never_pass_a_limit(store: HistoryStore) -> None:
    """Eight at once, each in its own transaction on its own connection, as eight instances would be."""
    expires = T0 + timedelta(seconds=30)
    taken = await asyncio.gather(
        *(
            store.take_lease("site:k", holder=f"instance-{i}", name="c", expires_at=expires, now=T0, limit=3)
            for i in range(8)
        )
    )
    assert taken.count(None) == 3 and set(taken) == {None, 3}
    rate = Rate("address:10.0.0.1", 3, RATE_WINDOW)
    hits = await asyncio.gather(*(store.hit([rate], now=T0) for _ in range(8)))
    assert hits.count(None) == 3
    assert all(refused is None or refused.retry_after_s == 60 for refused in hits)
    assert await store.hit([rate], now=T0 + RATE_WINDOW) is None  # the window moved on


async def test_a_place_reserved_by_one_instance_and_taken_over_by_another_counts_once(
    store: HistoryStore,
) -> None:
    reserved = T0 + timedelta(seconds=60)
    assert await store.take_lease("calls", holder="a", name="t", expires_at=reserved, now=T0, limit=1) is None
    held = T0 + timedelta(seconds=30)
    assert (
        await store.take_lease(
            "calls", holder="b", name="t", expires_at=held, now=T0, limit=None, take_over=True
        )
        is None
    )
    assert await store.count_leases("calls", now=T0, holder="a") == 1
    assert await store.take_lease("calls", holder="a", name="u", expires_at=reserved, now=T0, limit=1) == 1
