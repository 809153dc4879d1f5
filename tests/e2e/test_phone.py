"""The phone bridge end to end: a real server process and a real WebSocket client that speaks Twilio's
Media Streams protocol exactly, with real speech as 8 kHz mu-law in real time. Twilio's cloud cannot run
here, so benchmarks/phone_client.py plays its documented part (webhook, TwiML, stream, marks)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from benchmarks.human_speech import MissingSpeech, asterisk_prompt
from benchmarks.phone_client import TwilioCall, twiml_stream
from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

AUTH_TOKEN = "test-twilio-auth-token"
ADMIN = "admin-for-phone-tests"


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start(
        "phone",
        {
            "VA_MAX_NEW_TOKENS": "24",
            "VA_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "VA_ADMIN_TOKEN": ADMIN,
            "VA_MAX_CALLS": "3",
        },
        public_url=True,
    )


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


async def sessions(server: ServerProcess) -> list[dict[str, Any]]:
    """Every session, newest first (the admin listing)."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = await http.get("/api/sessions", headers={"Authorization": f"Bearer {ADMIN}"})
    return list(listed.json()["sessions"])


async def test_each_turn_is_answered_aloud_and_the_caller_is_remembered(server: ServerProcess) -> None:
    call = TwilioCall(server.url, caller="+15550001111", auth_token=AUTH_TOKEN)
    await call.dial()
    async with asyncio.timeout(15):  # the greeting is spoken first
        await call.wait(lambda: any(h.message["mark"]["name"] == "greeting.0" for h in call.of("mark")))
    ends = []
    for turn, utterance in enumerate(
        (Utterance(("Hello there,", "how are you?")), Utterance(("What time is it?",)))
    ):
        call.play(silence(0.5))
        ends.append(await call.play(utterance.audio()))
        call.play(silence(3.0))
        async with asyncio.timeout(20):  # its spoken reply, then the reply's first mark
            await call.wait(
                lambda turn=turn: any(h.message["mark"]["name"] == f"turn-{turn}.0" for h in call.of("mark"))
            )
    await call.hang_up()

    first_audio = [call.reply_audio(after=end)[0].at - end for end in ends]
    print(f"\nphone: speech end -> first reply audio frame (espeak) {[round(t, 3) for t in first_audio]} s")
    assert all(0.3 < t < 3.0 for t in first_audio)
    media = call.of("media")
    assert media and all(h.message["streamSid"] == call.stream_sid for h in media)
    assert all(len(base64.b64decode(h.message["media"]["payload"])) == 160 for h in media)  # 20 ms each
    marks = [(h.at, h.message["mark"]["name"]) for h in call.of("mark")]
    for end in ends:  # each reply's audio is followed by its mark
        first = call.reply_audio(after=end)[0].at
        assert any(at >= first and name.startswith("turn-") for at, name in marks), (first, marks)
    assert [name for _, name in marks][:1] == ["greeting.0"]

    before = {s["session_id"]: s["turn_count"] for s in await sessions(server)}
    again = TwilioCall(server.url, caller="+15550001111", auth_token=AUTH_TOKEN)
    await again.dial()
    again.play(silence(1.0))
    end = await again.play(Utterance(("Do you remember me?",)).audio())
    again.play(silence(3.0))
    async with asyncio.timeout(20):
        await again.wait(lambda: again.reply_audio(after=end))
    await again.hang_up()
    await asyncio.sleep(0.5)
    after = {s["session_id"]: s["turn_count"] for s in await sessions(server)}
    grown = [sid for sid, count in after.items() if count != before.get(sid)]
    assert len(grown) == 1 and after[grown[0]] == before[grown[0]] + 1 == 3  # the same session went on


async def test_speech_over_a_reply_clears_it_and_the_turn_is_stored_interrupted(
    server: ServerProcess,
) -> None:
    call = TwilioCall(server.url, caller="+15550002222", auth_token=AUTH_TOKEN)
    await call.dial()
    call.play(silence(2.5))  # after the greeting
    end = await call.play(Utterance(("Tell me a long story.",)).audio())
    async with asyncio.timeout(20):
        await call.wait(lambda: call.reply_audio(after=end))
    barge_in = call.play(Utterance(("Stop, stop, wait a moment.",)).audio())  # a turn, while the reply plays
    call.play(silence(3.0))
    async with asyncio.timeout(20):
        await call.wait(lambda: call.of("clear"))
    stop_end = await barge_in
    async with asyncio.timeout(20):  # the interruption is a turn of its own, answered in turn
        await call.wait(lambda: call.reply_audio(after=stop_end))
    await call.hang_up()
    assert all(h.message["streamSid"] == call.stream_sid for h in call.of("clear"))
    await asyncio.sleep(0.5)
    mine = (await sessions(server))[0]  # this caller's session is the newest
    async with httpx.AsyncClient(base_url=server.url) as http:
        turns = (await http.get(f"/api/sessions/{mine['session_id']}")).json()["turns"]
    assert turns[0]["interrupted"] is True  # its reply was cut short while it played
    # Stored once, when the reply ended: all it generated, and only the sentences the caller heard.
    generated, heard = turns[0]["reply_text"], turns[0]["heard_text"]
    assert heard is not None and len(heard) < len(generated)
    assert all(sentence in generated for sentence in heard.split(". ") if sentence)
    assert turns[1]["audio_seconds"] > 0.3


async def test_webhooks_without_a_valid_signature_are_refused(server: ServerProcess) -> None:
    unsigned = TwilioCall(server.url)  # no auth token: no signature header
    assert (await unsigned.ring()).status_code == 403
    forged = TwilioCall(server.url, auth_token="not-the-real-token")
    assert (await forged.ring()).status_code == 403
    signed = await TwilioCall(server.url, auth_token=AUTH_TOKEN).ring()
    assert signed.status_code == 200 and signed.headers["content-type"].startswith("application/xml")
    url, parameters = twiml_stream(signed.text)
    assert url == server.url.replace("http://", "ws://") + "/telephone/stream" and parameters["token"]
    call = TwilioCall(server.url)  # the answer holds a place (VA_MAX_CALLS) until its stream ends
    await call.open_stream(url, parameters)
    async with asyncio.timeout(10):
        await call.wait(lambda: call.reply_audio())
    await call.hang_up()


async def test_streams_without_a_valid_unused_token_are_closed(server: ServerProcess) -> None:
    stream_url = server.url.replace("http://", "ws://") + "/telephone/stream"
    for parameters in ({}, {"token": "made-up"}):
        call = TwilioCall(server.url)
        await call.open_stream(stream_url, parameters)
        async with asyncio.timeout(10):
            await call.wait(lambda call=call: call.closed is not None)
        assert call.closed is not None and call.closed[0] == 1008
        await call.close()
    answer = await TwilioCall(server.url, auth_token=AUTH_TOKEN).ring()
    url, parameters = twiml_stream(answer.text)
    first, replay = TwilioCall(server.url), TwilioCall(server.url)
    await first.open_stream(url, parameters)
    async with asyncio.timeout(10):
        await first.wait(lambda: first.reply_audio())  # accepted: the greeting plays
    await replay.open_stream(url, parameters)  # the same token again
    async with asyncio.timeout(10):
        await replay.wait(lambda: replay.closed is not None)
    assert replay.closed is not None and replay.closed[0] == 1008
    await first.hang_up()
    await replay.close()


async def test_garbage_is_ignored_or_closes_only_its_own_call(server: ServerProcess) -> None:
    victim = TwilioCall(server.url, caller="+15550003333", auth_token=AUTH_TOKEN)
    bystander = TwilioCall(server.url, caller="+15550004444", auth_token=AUTH_TOKEN)
    await victim.dial()
    await bystander.dial()
    for garbage in (
        "{not json",
        json.dumps({"event": "media", "streamSid": victim.stream_sid, "media": {"payload": "***"}}),
        json.dumps({"event": "start-over", "streamSid": victim.stream_sid}),
        json.dumps([1, 2, 3]),
    ):
        await victim.send(garbage)
    bystander.play(silence(1.0))
    end = await bystander.play(Utterance(("Are you still there?",)).audio())
    bystander.play(silence(3.0))
    victim.play(silence(0.5))
    victim_end = await victim.play(Utterance(("And me?",)).audio())
    victim.play(silence(3.0))
    async with asyncio.timeout(20):
        await victim.wait(lambda: victim.reply_audio(after=victim_end))  # the garbage was ignored
    await victim.send(
        json.dumps({"event": "media", "streamSid": victim.stream_sid, "media": {"payload": "A" * 200_000}})
    )
    async with asyncio.timeout(10):
        await victim.wait(lambda: victim.closed is not None)
    assert victim.closed is not None and victim.closed[0] == 1009
    async with asyncio.timeout(20):
        await bystander.wait(lambda: bystander.reply_audio(after=end))
    assert bystander.closed is None
    await bystander.hang_up()
    await victim.close()


async def test_callers_past_the_limit_hear_a_polite_refusal(server: ServerProcess) -> None:
    calls = [TwilioCall(server.url, caller=f"+1555000500{i}", auth_token=AUTH_TOKEN) for i in range(3)]
    for call in calls:
        await call.dial()
        call.play(silence(1.0))
    await asyncio.sleep(1.0)
    refused = await TwilioCall(server.url, caller="+15550005999", auth_token=AUTH_TOKEN).ring()
    assert "<Say>" in refused.text and "busy" in refused.text and "<Hangup" in refused.text
    assert "<Stream" not in refused.text
    for call in calls:
        await call.hang_up()


async def test_a_plain_websocket_client_that_says_nothing_is_closed(server: ServerProcess) -> None:
    url = server.url.replace("http://", "ws://") + "/telephone/stream"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": ""}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_short_word_over_a_reply_clears_it_then_it_is_sent_again_and_nothing_is_interrupted(
    server: ServerProcess,
) -> None:
    try:
        # "six", a real voice: 0.42-0.45 s of speech as Silero hears it after other speech (see
        # tests/e2e/test_false_interruptions.py for why not "eight" or "at").
        word = asterisk_prompt("digits/6")
    except MissingSpeech as exc:
        pytest.skip(str(exc))
    call = TwilioCall(server.url, caller="+15550006666", auth_token=AUTH_TOKEN)
    await call.dial()
    call.play(silence(2.5))  # after the greeting
    end = await call.play(Utterance(("Tell me a long story.",)).audio())
    async with asyncio.timeout(20):
        await call.wait(lambda: call.reply_audio(after=end))
    await asyncio.sleep(1.0)
    call.play(word)  # while the reply plays: Twilio holds all of it by now
    call.play(silence(3.0))
    async with asyncio.timeout(20):
        await call.wait(lambda: call.of("clear"))
        cleared = call.of("clear")[0].at
        await call.wait(lambda: call.reply_audio(after=cleared))  # the held sentences, sent again
        await call.wait(lambda: [h for h in call.of("mark") if h.at >= cleared])
    replayed = [h for h in call.of("media") if h.at >= cleared]
    await asyncio.sleep(len(replayed) * 0.02 + 1.0)  # they play (and their marks come back)
    mine = (await sessions(server))[0]  # a caller no other test uses: its session is the newest
    async with httpx.AsyncClient(base_url=server.url) as http:
        turns = (await http.get(f"/api/sessions/{mine['session_id']}")).json()["turns"]
    await call.hang_up()
    assert [turn["interrupted"] for turn in turns] == [False]  # the word is no turn; the reply played out
    assert str(turns[0]["heard_text"]).split() == str(turns[0]["reply_text"]).split()
