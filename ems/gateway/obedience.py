"""Does the battery do what it is told?  Setpoint writes refused, and a battery that does not follow.

The guard and the plan decide a setpoint; none of it matters if the
battery refuses the write (a Modbus exception, a failed read-back) or takes
it and does something else (an inverter left in local mode, a BMS limit it
does not report).  Either is an alarm the dashboard shows:

* ``setpoint_refused`` (critical): the last ``refused_after`` writes in a
  row failed;
* ``battery_not_following`` (critical): for ``follow_after_s`` [s of wall
  time] the measured battery power stayed further than the tolerance from
  the setpoint written the cycle before, although the battery's own limits
  and state of charge allowed it.

Both clear by themselves once the battery obeys again.
"""

from __future__ import annotations

import time
from typing import Callable

from devices.readings import BatteryReading
from ems.gateway import alarms as al
from ems.gateway.alarms import AlarmCondition


class SetpointObedience:
    """Watches writes and the battery's answer to them (one per daemon).

    rated_w [W]: the inverter's rating (the tolerance is ``max(min_tolerance_w,
    tolerance_share × rated_w)``); soc_min_pct / soc_max_pct [%]: near these the
    battery may rightly deliver less than asked (within ``soc_margin_pct``);
    monotonic: the wall clock [s] (tests move it).
    """

    def __init__(self, rated_w: float, soc_min_pct: float, soc_max_pct: float, *, refused_after: int = 3,
                 follow_after_s: float = 60.0, tolerance_share: float = 0.1, min_tolerance_w: float = 200.0,
                 soc_margin_pct: float = 2.0, monotonic: Callable[[], float] = time.monotonic):
        self.tolerance_w = max(min_tolerance_w, tolerance_share * rated_w)
        self.soc_min_pct, self.soc_max_pct, self.soc_margin_pct = soc_min_pct, soc_max_pct, soc_margin_pct
        self.refused_after = refused_after
        self.follow_after_s = follow_after_s
        self._monotonic = monotonic
        self._failures = 0
        self._last_error = ""
        self._asked_w: float | None = None  # the last setpoint the battery took
        self._off_since: float | None = None
        self._off_text = ""

    @property
    def failures(self) -> int:
        """Setpoint writes that failed in a row."""
        return self._failures

    # -- what the daemon tells it -------------------------------------------------------
    def write_failed(self, setpoint_w: float, error: str) -> None:
        """A setpoint write [W] failed with ``error``."""
        self._failures += 1
        self._last_error = f"battery setpoint {setpoint_w:.0f} W refused {self._failures} times in a row: {error}"
        self._asked_w = None  # what the battery does now is not an answer to a setpoint it refused

    def write_ok(self, setpoint_w: float) -> None:
        """The battery took a setpoint [W] (written and read back)."""
        self._failures = 0
        self._asked_w = setpoint_w

    def not_written(self) -> None:
        """No setpoint this cycle (islanded, no battery reading): nothing to compare with."""
        self._asked_w = None
        self._off_since = None

    def observe(self, battery: BatteryReading | None) -> None:
        """Compare the battery's measured power [W] with the setpoint it took the cycle before."""
        asked = self._asked_w
        if battery is None or asked is None or battery.power_w is None:
            self._off_since = None
            return
        soc = battery.soc_pct
        if soc is not None and ((asked > 0 and soc <= self.soc_min_pct + self.soc_margin_pct)
                                or (asked < 0 and soc >= self.soc_max_pct - self.soc_margin_pct)):
            self._off_since = None  # a nearly empty (full) battery rightly delivers less than asked
            return
        expected = asked  # within the battery's own limits of the moment
        if battery.max_discharge_w is not None:
            expected = min(expected, battery.max_discharge_w)
        if battery.max_charge_w is not None:
            expected = max(expected, -battery.max_charge_w)
        if abs(battery.power_w - expected) <= self.tolerance_w or battery.faulted:
            self._off_since = None  # a faulted battery has its own alarm
            return
        now = self._monotonic()
        if self._off_since is None:
            self._off_since = now
        self._off_text = (f"battery does not follow its setpoint: asked {asked:.0f} W, delivers "
                          f"{battery.power_w:.0f} W")

    # -- what the daemon raises -----------------------------------------------------------
    def alarm_conditions(self) -> list[AlarmCondition]:
        """The two alarms, active or not (an AlarmSource of the daemon)."""
        refused = self._failures >= self.refused_after
        off_for = self._monotonic() - self._off_since if self._off_since is not None else 0.0
        following = self._off_since is None or off_for < self.follow_after_s
        return [
            AlarmCondition(al.SETPOINT_REFUSED, refused, al.Severity.CRITICAL, self._last_error if refused else ""),
            AlarmCondition(al.BATTERY_NOT_FOLLOWING, not following, al.Severity.CRITICAL,
                           f"{self._off_text} for {off_for:.0f} s" if not following else ""),
        ]
