"""One poller per device: an asyncio task that keeps the latest reading and a health record.

Home Assistant coordinator style: one failure type (DeviceError), logged on
the FIRST failure and on recovery only; a dead device is retried with
exponential backoff (period x 2^n, capped, with jitter) so it costs little,
and since every device has its own task and every read has a deadline, a
dead device never stalls the others.  The reading is kept when reads fail:
the consumer decides staleness from ``latest.time`` (e.g. older than N
periods), nothing is deleted here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable

from devices.aio import cancel_and_wait
from devices.errors import DeviceError
from devices.natures import Clock, Device, utc_now
from devices.readings import Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """Snapshot of a device's polling health.

    ok: the last read succeeded; last_ok_at: time of the last good read (UTC);
    last_latency_ms [ms] of the last good read; consecutive_failures /
    total_failures / total_polls: counters; last_error: message of the last
    failure (kept after recovery, for the operator); last_error_kind: its
    DeviceError kind; next_attempt_at: when the next read is due (UTC).
    """

    device_id: str
    ok: bool = False
    last_ok_at: datetime | None = None
    last_latency_ms: float | None = None
    consecutive_failures: int = 0
    total_failures: int = 0
    total_polls: int = 0
    last_error: str | None = None
    last_error_kind: str | None = None
    next_attempt_at: datetime | None = None


def backoff_delay_s(period_s: float, failures: int, max_backoff_s: float, jitter: float = 0.1,
                    rnd: Callable[[], float] = random.random) -> float:
    """Delay [s] before the next attempt after ``failures`` consecutive failures.

    0 failures: ``period_s``; else ``min(period_s * 2**failures, max_backoff_s)``,
    spread by +-``jitter`` (fraction) so many dead devices do not retry in step.
    """
    if failures <= 0:
        return period_s
    base = min(period_s * (2 ** min(failures, 30)), max(max_backoff_s, period_s))
    return base * (1.0 + jitter * (2.0 * rnd() - 1.0))


class DevicePoller:
    """Polls ``device.read()`` every ``period_s`` [s] in its own task.

    ``read_timeout_s`` [s] is the deadline of one whole read (several
    requests, one retry); default ``max(4 x timeout_s, period_s)`` from the
    device config.  ``max_backoff_s`` [s] caps the retry interval of a dead
    device.  ``on_reading`` is called with every good reading.
    """

    def __init__(
        self,
        device: Device,
        *,
        period_s: float | None = None,
        read_timeout_s: float | None = None,
        max_backoff_s: float = 60.0,
        clock: Clock = utc_now,
        on_reading: Callable[[Reading], None] | None = None,
        jitter: float = 0.1,
    ):
        cfg = getattr(device, "config", None)
        self.device = device
        self.period_s = period_s or getattr(cfg, "period_s", 1.0)
        timeout_s = getattr(cfg, "timeout_s", 0.5)
        self.read_timeout_s = read_timeout_s or max(4 * timeout_s, self.period_s)
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.on_reading = on_reading
        self.jitter = jitter
        self.latest: Reading | None = None
        self.health = DeviceHealth(device_id=device.id)
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    @property
    def running(self) -> bool:
        """True while the polling task runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the polling task (idempotent)."""
        if not self.running:
            self._task = asyncio.create_task(self._run(), name=f"poll-{self.device.id}")

    async def stop(self) -> None:
        """Stop the polling task and wait for it."""
        await cancel_and_wait(self._task)
        self._task = None

    def age_s(self, now: datetime | None = None) -> float | None:
        """Age [s] of the latest reading at ``now`` (default: the clock), None without one."""
        if self.latest is None:
            return None
        return ((now or self.clock()) - self.latest.time).total_seconds()

    def is_stale(self, now: datetime | None = None, periods: float = 3.0) -> bool:
        """True when there is no reading or it is older than ``periods`` poll periods."""
        age = self.age_s(now)
        return age is None or age > periods * self.period_s

    def poll_now(self) -> None:
        """Cut the current wait short (e.g. after a setpoint write, or an operator's retry)."""
        self._wake.set()

    async def poll_once(self) -> Reading | None:
        """One read with deadline and bookkeeping; returns the reading or None on failure."""
        started = time.monotonic()
        try:
            reading = await asyncio.wait_for(self.device.read(), self.read_timeout_s)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            self._failed(DeviceError(self.device.id, "timeout", f"read took longer than {self.read_timeout_s:g} s"))
            return None
        except DeviceError as exc:
            self._failed(exc)
            return None
        except Exception as exc:  # a bug in a device adapter must not kill the poller
            log.exception("%s: unexpected error while reading", self.device.id)
            self._failed(DeviceError(self.device.id, "decode", f"unexpected {exc.__class__.__name__}: {exc}"))
            return None
        latency_ms = (time.monotonic() - started) * 1000.0
        self._succeeded(reading, latency_ms)
        return reading

    def _failed(self, exc: DeviceError) -> None:
        h = self.health
        if h.consecutive_failures == 0:
            log.warning("%s: unavailable: %s", self.device.id, exc.message)
        else:
            log.debug("%s: still unavailable (%d): %s", self.device.id, h.consecutive_failures + 1, exc.message)
        self.health = replace(
            h,
            ok=False,
            consecutive_failures=h.consecutive_failures + 1,
            total_failures=h.total_failures + 1,
            total_polls=h.total_polls + 1,
            last_error=exc.message,
            last_error_kind=exc.kind,
        )

    def _succeeded(self, reading: Reading, latency_ms: float) -> None:
        h = self.health
        if h.consecutive_failures > 0:
            log.info("%s: back after %d failed reads", self.device.id, h.consecutive_failures)
        self.latest = reading
        self.health = replace(
            h,
            ok=True,
            last_ok_at=reading.time,
            last_latency_ms=round(latency_ms, 3),
            consecutive_failures=0,
            total_polls=h.total_polls + 1,
        )
        if self.on_reading is not None:
            try:
                self.on_reading(reading)
            except Exception:
                log.exception("%s: on_reading callback failed", self.device.id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.poll_once()
            delay = backoff_delay_s(self.period_s, self.health.consecutive_failures, self.max_backoff_s, self.jitter)
            # Healthy devices keep a fixed rate (no drift); a slow read that
            # overran its slot starts the next one immediately but only once.
            next_at = max(next_at + delay, loop.time()) if self.health.ok else loop.time() + delay
            self.health = replace(self.health, next_attempt_at=self.clock() + timedelta(seconds=next_at - loop.time()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_at - loop.time()))
                next_at = loop.time()
            except asyncio.TimeoutError:
                pass
