"""One session's data for the person it belongs to (`GET /api/sessions/{id}/export`): a ZIP of
`session.json` (what `GET /api/sessions/{id}` answers, and when it was exported) and each spoken turn's
audio as `turns/<index>.flac`, streamed a turn at a time: a long session never sits in memory whole."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime

from voice_assistant.history.store import HistoryStore, SessionRecord


class _Chunks:
    """A write-only file with no `seek` or `tell`: zipfile then writes each entry's sizes after its data
    instead of going back for them, so what it wrote so far is final and can be sent on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing buffered here: `take` has it all."""

    def close(self) -> None:
        """zipfile leaves a file it was given open; its type asks for `close` all the same."""

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


async def session_archive(
    store: HistoryStore, record: SessionRecord, *, exported_at: datetime
) -> AsyncIterator[bytes]:
    """The ZIP's bytes; the audio is read from the store one turn at a time (typed turns have none)."""
    stamp = exported_at.timetuple()[:6]
    out = _Chunks()
    with zipfile.ZipFile(out, "w") as archive:
        body = {**record.to_json(), "exported_at": exported_at.isoformat()}
        info = zipfile.ZipInfo("session.json", stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, json.dumps(body, indent=2, ensure_ascii=False))
        yield out.take()
        for turn in record.turns:
            if turn.audio_seconds > 0:
                audio = await store.turn_audio(record.session_id, turn.index)
                archive.writestr(zipfile.ZipInfo(f"turns/{turn.index}.flac", stamp), audio)  # FLAC: stored
                yield out.take()
    yield out.take()
