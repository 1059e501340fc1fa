"""The polling loop that joins feed, trigger and whoever carries out the actions (the central service)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable

from ems.jma.feed import AtomFeedReader
from ems.jma.models import WarningReport
from ems.jma.trigger import Action, WarningTrigger

log = logging.getLogger(__name__)

Handler = Callable[[WarningReport, list[Action]], Awaitable[None] | None]


async def poll_once(reader: AtomFeedReader, trigger: WarningTrigger, handle: Handler) -> int:
    """Poll once (in a worker thread: urllib and SQLite block), hand every new report and its actions
    to ``handle`` in order; returns the number of reports.  A failing handler is logged, not raised."""
    reports = await asyncio.to_thread(reader.poll)
    for report in reports:
        actions = trigger.evaluate(report)
        try:
            result = handle(report, actions)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("JMA: handling %s (%s) failed", report.entry_id, report.title)
    return len(reports)


async def run_warning_service(reader: AtomFeedReader, trigger: WarningTrigger, handle: Handler,
                              interval_s: float = 60.0, stop: asyncio.Event | None = None) -> None:
    """Poll every ``interval_s`` [s] until ``stop`` is set (or the task is cancelled)."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await poll_once(reader, trigger, handle)
        except Exception:  # the reader never raises for feed problems; this is a bug guard
            log.exception("JMA: poll failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except asyncio.TimeoutError:
            pass
