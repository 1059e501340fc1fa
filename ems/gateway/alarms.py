"""Alarms of one site: raised and cleared by code, de-duplicated.

An alarm is a condition, not an event: "battery data stale" stays one alarm
for as long as the condition holds, however many cycles see it.  Raising an
active code again is a no-op, so the daemon can call :meth:`AlarmSet.sync`
every cycle and publish only what :meth:`AlarmSet.raise_` / :meth:`clear`
return (the moments an alarm starts or ends).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Iterable, Protocol


class Severity(str, enum.Enum):
    """How urgently an operator must look: info, warning, critical."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


# Alarm codes used by the control core.  Other parts may add their own codes;
# a code is just a stable string that names the condition.
STALE_DATA = "stale_data"
IMPLAUSIBLE_DATA = "implausible_data"
MISSING_DATA = "missing_data"
DEVICE_FAULT = "device_fault"
SAFE_MODE = "safe_mode"
GRID_LOST = "grid_lost"
CORRUPT_STATE_FILE = "corrupt_state_file"
SAFETY_RULE_UNMET = "safety_rule_unmet"
SETPOINT_REFUSED = "setpoint_refused"
BATTERY_NOT_FOLLOWING = "battery_not_following"
RESERVE_SHORT_DISASTER = "reserve_short_disaster"
RESERVE_SHORT_VPP = "reserve_short_vpp"


@dataclass(frozen=True, slots=True)
class AlarmCondition:
    """A condition another part of the gateway reports (the outbox dropping telemetry, a battery that
    does not obey).  The daemon owns the site's alarm set and raises or clears ``code`` from it."""

    code: str
    active: bool
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm of one site.

    id: unique per raise; site: site id; code: stable condition name;
    raised_at / cleared_at: tz-aware UTC times (cleared_at None while active).
    """

    id: str
    site: str
    severity: Severity
    code: str
    message: str
    raised_at: datetime
    cleared_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True until the alarm is cleared."""
        return self.cleared_at is None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready form (times as ISO 8601 UTC)."""
        return {
            "id": self.id,
            "site": self.site,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "raised_at": self.raised_at.isoformat(),
            "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
        }


def _check_utc(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("alarm times must be timezone-aware (UTC)")


class AlarmSet:
    """The active alarms of one site plus a bounded history of cleared ones."""

    def __init__(self, site: str, history: int = 200):
        self.site = site
        self._active: dict[str, Alarm] = {}
        self._history: deque[Alarm] = deque(maxlen=history)
        self._seq = 0

    def raise_(self, code: str, severity: Severity, message: str, now: datetime) -> Alarm | None:
        """Raise ``code``; returns the new alarm, or None if it was already active."""
        _check_utc(now)
        if code in self._active:
            return None
        self._seq += 1
        alarm = Alarm(
            id=f"{self.site}:{code}:{now.strftime('%Y%m%dT%H%M%S.%fZ')}:{self._seq}",
            site=self.site, severity=Severity(severity), code=code,
            message=message, raised_at=now,
        )
        self._active[code] = alarm
        return alarm

    def clear(self, code: str, now: datetime) -> Alarm | None:
        """Clear ``code``; returns the cleared alarm, or None if it was not active."""
        _check_utc(now)
        alarm = self._active.pop(code, None)
        if alarm is None:
            return None
        done = replace(alarm, cleared_at=now)
        self._history.append(done)
        return done

    def sync(self, code: str, condition: bool, severity: Severity, message: str,
             now: datetime) -> Alarm | None:
        """Raise ``code`` while ``condition`` holds, clear it otherwise; returns any change."""
        if condition:
            return self.raise_(code, severity, message, now)
        return self.clear(code, now)

    def is_active(self, code: str) -> bool:
        """True when ``code`` is currently raised."""
        return code in self._active

    def active(self) -> list[Alarm]:
        """Active alarms, oldest first."""
        return sorted(self._active.values(), key=lambda a: a.raised_at)

    def history(self) -> list[Alarm]:
        """Recently cleared alarms, oldest first (bounded)."""
        return list(self._history)


#: Clip stages whose "unmet" is not a safety concern (see :func:`sync_clip_alarm`).
_NOT_SAFETY = ("ramp", "request")


class _ClipLike(Protocol):
    stage: object
    reason: str
    unmet: bool


def sync_clip_alarm(alarms: AlarmSet, clips: Iterable[_ClipLike], now: datetime) -> Alarm | None:
    """Raise :data:`SAFETY_RULE_UNMET` while any guard clip reports a rule that could not be met.

    Ordinary narrowing (a plan asking more than the SoC allows) is normal
    operation and is only logged; a rule that *could not be met* (e.g. the
    grid import limit while the battery is empty) needs an operator.  A ramp
    that gives way to a safety bound is intended behaviour and raises nothing.
    """
    unmet = [c for c in clips if c.unmet and getattr(c.stage, "value", c.stage) not in _NOT_SAFETY]
    message = "; ".join(f"{getattr(c.stage, 'value', c.stage)}: {c.reason}" for c in unmet)
    return alarms.sync(SAFETY_RULE_UNMET, bool(unmet), Severity.WARNING, message, now)
