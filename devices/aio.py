"""Small asyncio helpers shared by the device layer and the daemon."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task | None, nudge_s: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has really ended.

    Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that
    arrives just as its inner operation completes, so a polling loop built on
    it may run on after one ``cancel()``.  Cancelling again every ``nudge_s``
    [s] lands in the loop's next await and ends it; a stop that awaited the
    task once would hang instead.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=nudge_s)
    if not task.cancelled():
        task.exception()  # retrieve it: the loop logged its own failure; stopping is what matters here
