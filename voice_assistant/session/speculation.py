"""A reply started at a pause, before anyone knows whether the turn is over.

Nothing of it is sent or stored until the turn ends in the same pause and the conversation adopts
it; if the user speaks on, it is discarded and leaves no trace. What it gains is the model's time
to first token, spent while the silence was still being confirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from voice_assistant.model.base import AudioLM
from voice_assistant.session.window import Window

_END = None


class Speculation:
    def __init__(self, model: AudioLM, window: Callable[[], Awaitable[Window]]) -> None:
        self._deltas: asyncio.Queue[str | Exception | None] = asyncio.Queue()
        self.window: asyncio.Future[Window] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(model, window))

    async def _run(self, model: AudioLM, window: Callable[[], Awaitable[Window]]) -> None:
        try:
            built = await window()
        except Exception as exc:
            # Void, not failed: a turn that ends here reads its window again (and reports a failure then),
            # and a discarded speculation leaves no exception that nobody retrieves. Adopted all the same,
            # its stream raises instead of waiting for deltas that never come.
            self.window.cancel()
            self._deltas.put_nowait(exc)
            return
        self.window.set_result(built)
        try:
            async for delta in model.stream_reply(built.messages):
                self._deltas.put_nowait(delta)
        except Exception as exc:  # the adopted reply raises it (a backend bug too: it must not hang)
            self._deltas.put_nowait(exc)
        self._deltas.put_nowait(_END)

    async def stream(self) -> AsyncIterator[str]:
        """What was generated so far, then the rest as it comes (for the adopted reply)."""
        try:
            while (item := await self._deltas.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.cancel()  # closed early (barge-in): stop generating

    def cancel(self) -> None:
        """Discard it: generation stops between two tokens; nothing was sent or stored."""
        self._task.cancel()
        if not self.window.done():
            self.window.cancel()
