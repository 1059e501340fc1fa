"""The asyncio task that moves points from the outbox to InfluxDB.

One loop: fetch the oldest batch, send it (in a worker thread: the writers
block), delete it from the outbox only when the server acknowledged it.
When the server is away: exponential backoff with jitter (each wait is
between half and all of ``min(max_backoff_s, min_backoff_s * 2**failures)``)
so a fleet of gateways does not hammer a database that just came back.
When the server refuses the content (HTTP 400): the batch is split in halves
until the refused lines are isolated; they move to the outbox's ``rejected``
table and everything else goes through (re-sending the good halves is
harmless: writes are idempotent).  Logs on the first failure and on recovery
only.

Usage in the daemon::

    shipper = InfluxShipper(outbox, InfluxV1Writer(...))
    task = asyncio.create_task(shipper.run())
    ...
    shipper.stop(); await task
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Sequence

from telemetry.influx_writers import LineWriter, WriteError
from telemetry.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShipperStatus:
    """sent_points / batches since start, rejected_points (refused by the server), failures in a row,
    last error text, times [s unix] of the last success and last error, auth_failed (HTTP 401/403)."""

    sent_points: int = 0
    batches: int = 0
    rejected_points: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    auth_failed: bool = False


class InfluxShipper:
    """Ships an :class:`Outbox` through a :class:`LineWriter` until stopped.

    batch_points: rows per request; min_backoff_s / max_backoff_s [s]: retry
    waits; idle_wait_s [s]: how long to sleep when the outbox is empty (a put
    wakes the shipper earlier).
    """

    def __init__(self, outbox: Outbox, writer: LineWriter, batch_points: int = 5000, min_backoff_s: float = 0.5,
                 max_backoff_s: float = 60.0, idle_wait_s: float = 1.0, rng: random.Random | None = None):
        if batch_points < 1:
            raise ValueError("batch_points must be >= 1")
        self.outbox = outbox
        self.writer = writer
        self.batch_points = batch_points
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.idle_wait_s = idle_wait_s
        self._rng = rng or random.Random()
        self.status = ShipperStatus()
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None

    def backoff_s(self, failures: int) -> float:
        """Wait [s] before the next try after ``failures`` failures in a row (jittered)."""
        cap = min(self.max_backoff_s, self.min_backoff_s * 2 ** max(0, failures - 1))
        return cap / 2 + self._rng.random() * cap / 2

    async def run(self) -> None:
        """Ship until :meth:`stop`; never raises for server or network trouble."""
        loop = asyncio.get_running_loop()
        self._wake, self._stop_event = asyncio.Event(), asyncio.Event()
        notify = lambda: loop.call_soon_threadsafe(self._wake.set)  # noqa: E731 - put() may run in any thread
        self.outbox.add_listener(notify)
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    shipped = await asyncio.to_thread(self._ship_once)
                except (WriteError, OutboxError) as exc:
                    delay = self._failed(exc)
                    await self._sleep(delay, wake_on_put=False)
                    continue
                if shipped:
                    self._succeeded(shipped)
                    continue  # more may be waiting: go again at once
                await self._sleep(self.idle_wait_s, wake_on_put=True)
        finally:
            self.outbox.remove_listener(notify)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in flight."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def drain(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> bool:
        """Wait until the outbox is empty; False if it is not after ``timeout_s`` [s]."""
        deadline = time.monotonic() + timeout_s
        while len(self.outbox):
            if time.monotonic() > deadline:
                return False
            if self._wake is not None:
                self._wake.set()
            await asyncio.sleep(poll_s)
        return True

    # -- one round (worker thread) ------------------------------------------------------
    def _ship_once(self) -> int:
        rows = self.outbox.fetch(self.batch_points)
        if not rows:
            return 0
        self._send(rows)
        self.outbox.ack(rows[0][0], rows[-1][0])
        return len(rows)

    def _send(self, rows: Sequence[tuple[int, str]]) -> None:
        try:
            self.writer.write([line for _, line in rows])
        except WriteError as exc:
            if not (exc.bad_data or exc.too_large):
                raise
            if exc.too_large and self.batch_points > 1:
                self.batch_points = max(1, len(rows) // 2)
                log.warning("batch of %d points too large for the server; now %d", len(rows), self.batch_points)
            if len(rows) == 1:
                n = self.outbox.reject([rows[0][0]], str(exc))
                self.status = replace(self.status, rejected_points=self.status.rejected_points + n)
                log.error("server refused a point, moved to the outbox's rejected table: %s: %.200s",
                          exc, rows[0][1])
                return
            half = len(rows) // 2
            self._send(rows[:half])
            self._send(rows[half:])

    # -- bookkeeping (event loop) -------------------------------------------------------
    def _failed(self, exc: Exception) -> float:
        failures = self.status.consecutive_failures + 1
        if failures == 1:
            log.warning("telemetry not delivered, will retry with backoff (backlog %d points): %s",
                        len(self.outbox), exc)
        retry_after = getattr(exc, "retry_after_s", None)
        self.status = replace(self.status, consecutive_failures=failures, last_error=str(exc),
                              last_error_at=time.time(), auth_failed=bool(getattr(exc, "auth_failed", False)))
        delay = self.backoff_s(failures)
        if retry_after:
            delay = max(delay, min(retry_after, self.max_backoff_s))
        return delay

    def _succeeded(self, shipped: int) -> None:
        if self.status.consecutive_failures:
            log.info("telemetry delivered again after %d failed attempts", self.status.consecutive_failures)
        self.status = replace(self.status, sent_points=self.status.sent_points + shipped,
                              batches=self.status.batches + 1, consecutive_failures=0, auth_failed=False,
                              last_success_at=time.time())

    async def _sleep(self, seconds: float, wake_on_put: bool) -> None:
        waiters = [asyncio.ensure_future(self._stop_event.wait())]
        if wake_on_put:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
