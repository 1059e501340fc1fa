"""One JMA poll: read new reports, evaluate them, hand each to whoever carries out the actions.

The central service (``ems.central.service.CentralService``) owns the polling
loop and its status; this module holds the per-report part, so that a report
whose handling fails is logged and the reports after it are still handled
(the reader has already marked them all as seen: a lost report is never
read again).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable

from ems.central.jma.feed import AtomFeedReader
from ems.central.jma.models import WarningReport
from ems.central.jma.trigger import Action, WarningTrigger

log = logging.getLogger(__name__)

Handler = Callable[[WarningReport, list[Action]], Awaitable[None] | None]
ErrorHandler = Callable[[WarningReport, Exception], None]


async def poll_once(reader: AtomFeedReader, trigger: WarningTrigger, handle: Handler,
                    on_error: ErrorHandler | None = None) -> int:
    """Poll once (in a worker thread: urllib and SQLite block), hand every new report and its actions
    to ``handle`` in order; returns the number of reports.  A report whose evaluation or handling
    raises is logged with its entry id (and given to ``on_error``), never raised: the next report
    is still handled."""
    reports = await asyncio.to_thread(reader.poll)
    for report in reports:
        try:
            result = handle(report, trigger.evaluate(report))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.exception("JMA: handling %s (%s) failed", report.entry_id, report.title)
            if on_error is not None:
                on_error(report, exc)
    return len(reports)
