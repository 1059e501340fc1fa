"""What a drill records while it runs: the clock it runs on, per-hall traces and the timeline of marks.

:class:`DrillClock` holds simulated time still while the fleet starts (so
start-up, seconds of wall time, does not eat hours of the scenario) and then
runs ``speed`` times faster than the wall, like
:class:`devices.simulator.clock.AcceleratedClock`.

:class:`Recorder` samples every hall every ``sample_s`` wall seconds: the
simulator's physics (the truth: stored energy, grid, the outage counters)
and the daemon's status (mode, hours of power it reports).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any


class DrillClock:
    """Simulated time: frozen at ``start`` until :meth:`release`, then ``speed`` [sim s / wall s] times the wall."""

    def __init__(self, start: datetime, speed: float):
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._start = start.astimezone(timezone.utc)
        self._speed = float(speed)
        self._t0: float | None = None
        self.released_wall: datetime | None = None

    @property
    def speed(self) -> float:
        return self._speed

    def release(self) -> None:
        """Let time run from now on."""
        if self._t0 is None:
            self._t0 = time.monotonic()
            self.released_wall = datetime.now(timezone.utc)

    def now(self) -> datetime:
        if self._t0 is None:
            return self._start
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    def sim_of_wall(self, wall: datetime) -> datetime:
        """Simulated time at wall-clock time ``wall`` (e.g. an audit record's time)."""
        if self.released_wall is None:
            return self._start
        return self._start + (wall - self.released_wall) * self._speed


@dataclass
class HallTrace:
    """Samples of one hall, column by column (same index = same sample).

    Energies [Wh] are the simulator's cumulative counters; soc [%]; hours [h]
    as the daemon reports them (None before its first cycle).
    """

    t: list[datetime] = field(default_factory=list)
    soc: list[float] = field(default_factory=list)
    stored_wh: list[float] = field(default_factory=list)
    grid: list[bool] = field(default_factory=list)
    served_wh: list[float] = field(default_factory=list)
    unserved_wh: list[float] = field(default_factory=list)
    shed_wh: list[float] = field(default_factory=list)
    import_wh: list[float] = field(default_factory=list)
    export_wh: list[float] = field(default_factory=list)
    charged_wh: list[float] = field(default_factory=list)
    discharged_wh: list[float] = field(default_factory=list)
    mode: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    hours: list[float | None] = field(default_factory=list)
    alarms: list[tuple[str, ...]] = field(default_factory=list)
    fault: list[bool] = field(default_factory=list)

    def index_at(self, t: datetime) -> int | None:
        """Index of the last sample at or before ``t`` (None before the first)."""
        lo, hi = 0, len(self.t)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.t[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1 if lo > 0 else None


@dataclass(frozen=True)
class Mark:
    """Something that happened at simulated time ``t``: kind (warning, switch, return, outage_start,
    outage_end, battery_failure, broker_down, broker_up, central_restart, weather), the halls it
    concerns and a label for people."""

    t: datetime
    kind: str
    halls: tuple[str, ...]
    label: str


class Recorder:
    """Samples ``runtime``'s halls every ``sample_s`` [s wall] until :meth:`stop`."""

    def __init__(self, runtime: Any, sample_s: float = 0.05):
        self.runtime = runtime
        self.sample_s = sample_s
        self.traces: dict[str, HallTrace] = {sid: HallTrace() for sid in runtime.daemons}
        self.marks: list[Mark] = []
        self._stopping = False

    def mark(self, kind: str, halls: list[str] | tuple[str, ...], label: str, t: datetime | None = None) -> Mark:
        m = Mark(t or self.runtime.clock.now(), kind, tuple(halls), label)
        self.marks.append(m)
        return m

    def sample(self) -> None:
        """Take one sample of every hall now."""
        now = self.runtime.clock.now()
        for sid, trace in self.traces.items():
            st = self.runtime.halls[sid].physics.state
            status = self.runtime.daemons[sid].status
            trace.t.append(now)
            trace.soc.append(st.soc_pct)
            trace.stored_wh.append(st.stored_wh)
            trace.grid.append(st.grid_available)
            trace.served_wh.append(st.served_critical_wh)
            trace.unserved_wh.append(st.unserved_critical_wh)
            trace.shed_wh.append(st.shed_noncritical_wh)
            trace.import_wh.append(st.import_wh)
            trace.export_wh.append(st.export_wh)
            trace.charged_wh.append(st.charged_wh)
            trace.discharged_wh.append(st.discharged_wh)
            trace.fault.append(bool(st.fault_code))
            if status is None:
                trace.mode.append("starting")
                trace.requested.append("")
                trace.hours.append(None)
                trace.alarms.append(())
            else:
                trace.mode.append(status.mode.effective.value)
                trace.requested.append(status.mode.requested.mode.value)
                trace.hours.append(status.hours_left)
                trace.alarms.append(tuple(a.code for a in status.alarms))

    async def run(self) -> None:
        while not self._stopping:
            self.sample()
            await asyncio.sleep(self.sample_s)

    def stop(self) -> None:
        self._stopping = True
