"""Injected time for the simulator: real, accelerated or stepped by hand.

Everything in the simulator asks a :class:`SimClock` for the time, so the
same code runs a live demo (:class:`WallClock`), a disaster drill at 60× or
3600× (:class:`AcceleratedClock`) and deterministic tests
(:class:`ManualClock`).  Times are timezone-aware UTC.

``speed`` is simulated seconds per wall-clock second.  Communication
watchdogs use it to measure their timeouts in wall time (a gateway kicks a
heartbeat in wall time, whatever the simulated time does).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable


def _require_utc(t: datetime, what: str) -> datetime:
    """``t`` converted to UTC; ValueError if it is naive (no timezone)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what}: a timezone-aware time is required, got naive {t.isoformat()}")
    return t.astimezone(timezone.utc)


@runtime_checkable
class SimClock(Protocol):
    """Source of simulated time: ``now()`` [UTC datetime], ``speed`` [sim s per wall s]."""

    @property
    def speed(self) -> float:
        """Simulated seconds per wall-clock second [-]."""
        ...

    def now(self) -> datetime:
        """Current simulated time, timezone-aware UTC."""
        ...


class WallClock:
    """Real time: ``now()`` is the system's UTC time, speed 1."""

    @property
    def speed(self) -> float:
        """Always 1 [sim s per wall s]."""
        return 1.0

    def now(self) -> datetime:
        """The system's current UTC time."""
        return datetime.now(timezone.utc)


class AcceleratedClock:
    """Simulated time that starts at ``start`` and runs ``speed`` times faster than wall time.

    Uses the monotonic clock, so changes of the system time do not make the
    simulation jump.  ``speed`` [sim s per wall s] must be > 0.
    """

    def __init__(self, start: datetime, speed: float):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._start = _require_utc(start, "AcceleratedClock start")
        self._speed = float(speed)
        self._t0 = time.monotonic()

    @property
    def speed(self) -> float:
        """Simulated seconds per wall-clock second [-]."""
        return self._speed

    def now(self) -> datetime:
        """start + (wall seconds since construction) × speed, UTC."""
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self._speed)


class ManualClock:
    """A clock that only moves when a test moves it; speed 1 (timeouts in its own seconds)."""

    def __init__(self, start: datetime):
        self._now = _require_utc(start, "ManualClock start")

    @property
    def speed(self) -> float:
        """Always 1 [sim s per wall s]: watchdogs count this clock's seconds."""
        return 1.0

    def now(self) -> datetime:
        """The time the test last set."""
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move forward by ``seconds`` [s] (or a timedelta) and return the new time."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError(f"a clock cannot go backwards (advance by {delta})")
        self._now += delta
        return self._now

    def set(self, t: datetime) -> None:
        """Jump to ``t`` (tz-aware, not before the current time)."""
        t = _require_utc(t, "ManualClock.set")
        if t < self._now:
            raise ValueError(f"a clock cannot go backwards ({t.isoformat()} < {self._now.isoformat()})")
        self._now = t
