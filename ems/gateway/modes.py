"""Mode state machine of one site.

Two layers:

* the REQUESTED mode (vpp, disaster_reserve, manual + setpoint) is what a
  person or service asked for.  It is persisted (``ems/modestore.py``) and
  changes only by a new :class:`ModeRequest` – so disaster mode never lapses
  by itself.
* the EFFECTIVE mode is what the site does now:
  ``safe`` if battery/meter data are stale, missing or implausible beyond the
  configured cycles, or the battery reports a fault;
  else ``islanded`` if the meter has reported the grid lost (debounced);
  else the requested mode.
  When the condition ends, the effective mode returns to the requested one by
  itself (safe → previous, islanded → previous).

Every change of either layer yields a :class:`ModeChange` for the daemon to
log and publish; :attr:`ModeMachine.state` is the published state.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ems.gateway.snapshot import DataCheck, SiteSnapshot, check_data, is_stale, stale_after_s


class Mode(str, enum.Enum):
    """Operating mode of a site (DESIGN.md, "Modes of a site")."""

    VPP = "vpp"
    DISASTER_RESERVE = "disaster_reserve"
    ISLANDED = "islanded"
    MANUAL = "manual"
    SAFE = "safe"


#: Modes a person or service may request; safe and islanded follow from data.
REQUESTABLE = (Mode.VPP, Mode.DISASTER_RESERVE, Mode.MANUAL)


class ModeRequestError(ValueError):
    """A mode request that is refused; the message says why."""


def _aware(t: Any) -> bool:
    return isinstance(t, datetime) and t.tzinfo is not None and t.utcoffset() is not None


@dataclass(frozen=True, slots=True)
class ModeRequest:
    """A request for a mode: who asked, why, when.

    mode: vpp | disaster_reserve | manual; setpoint_w [W] (+ discharge) only
    and always with manual; issued_at: tz-aware time of issue; command_id:
    id of the command that carried it, if any.  Invalid requests raise
    :class:`ModeRequestError` at construction.
    """

    mode: Mode
    reason: str
    issued_by: str
    issued_at: datetime
    setpoint_w: float | None = None
    command_id: str | None = None

    def __post_init__(self) -> None:
        mode = self.mode
        if not isinstance(mode, Mode):
            try:
                mode = Mode(mode)
            except ValueError:
                raise ModeRequestError(
                    f"unknown mode {self.mode!r} (one of {', '.join(m.value for m in REQUESTABLE)})"
                ) from None
            object.__setattr__(self, "mode", mode)
        if mode not in REQUESTABLE:
            why = ("it is entered automatically on stale data or a device fault" if mode is Mode.SAFE
                   else "it is entered automatically when the meter reports the grid lost")
            raise ModeRequestError(f"mode {mode.value!r} cannot be requested: {why}")
        if mode is Mode.MANUAL:
            sp = self.setpoint_w
            if sp is None:
                raise ModeRequestError("mode 'manual' needs setpoint_w [W] (+ discharge, − charge)")
            if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not math.isfinite(sp):
                raise ModeRequestError(f"setpoint_w must be a finite number of watts, got {sp!r}")
            object.__setattr__(self, "setpoint_w", float(sp))
        elif self.setpoint_w is not None:
            raise ModeRequestError(f"setpoint_w is only allowed with mode 'manual', not {mode.value!r}")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ModeRequestError("a mode request needs a reason")
        if not isinstance(self.issued_by, str) or not self.issued_by.strip():
            raise ModeRequestError("a mode request needs issued_by (who asked)")
        if not _aware(self.issued_at):
            raise ModeRequestError("issued_at must be a timezone-aware time")
        if self.command_id is not None and not isinstance(self.command_id, str):
            raise ModeRequestError("command_id must be a string")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (issued_at as ISO 8601)."""
        return {
            "mode": self.mode.value,
            "reason": self.reason,
            "issued_by": self.issued_by,
            "issued_at": self.issued_at.isoformat(),
            "setpoint_w": self.setpoint_w,
            "command_id": self.command_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "ModeRequest":
        """Inverse of :meth:`to_dict`; raises ModeRequestError on any bad field."""
        if not isinstance(data, dict):
            raise ModeRequestError("mode request must be a JSON object")
        unknown = set(data) - {"mode", "reason", "issued_by", "issued_at", "setpoint_w", "command_id"}
        if unknown:
            raise ModeRequestError(f"unknown field(s) {', '.join(sorted(unknown))}")
        try:
            issued_at = datetime.fromisoformat(data["issued_at"])
        except KeyError:
            raise ModeRequestError("issued_at is missing") from None
        except (TypeError, ValueError):
            raise ModeRequestError(f"issued_at {data.get('issued_at')!r} is not an ISO 8601 time") from None
        for key in ("mode", "reason", "issued_by"):
            if key not in data:
                raise ModeRequestError(f"{key} is missing")
        return cls(mode=data["mode"], reason=data["reason"], issued_by=data["issued_by"],
                   issued_at=issued_at, setpoint_w=data.get("setpoint_w"),
                   command_id=data.get("command_id"))


def default_request(now: datetime) -> ModeRequest:
    """The request a site starts with when nothing was ever stored: vpp."""
    return ModeRequest(Mode.VPP, "default at first start", "system", now)


@dataclass(frozen=True, slots=True)
class ModeChange:
    """One transition, for the log and the state topic.

    layer: "requested" (someone asked for a new mode) or "effective" (what
    the site does changed); from_mode is None for the start record;
    requested_by: issuer of the request, or "system" for automatic changes.
    """

    time: datetime
    layer: Literal["requested", "effective"]
    from_mode: Mode | None
    to_mode: Mode
    reason: str
    requested_by: str
    command_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "time": self.time.isoformat(), "layer": self.layer,
            "from": self.from_mode.value if self.from_mode else None, "to": self.to_mode.value,
            "reason": self.reason, "requested_by": self.requested_by, "command_id": self.command_id,
        }


@dataclass(frozen=True, slots=True)
class ModeState:
    """Published mode state: effective mode, the request behind it, reason, since (UTC), grid_lost."""

    effective: Mode
    requested: ModeRequest
    reason: str
    since: datetime
    grid_lost: bool = False

    @property
    def manual_setpoint_w(self) -> float | None:
        """The manual setpoint [W] while the effective mode is manual, else None."""
        return self.requested.setpoint_w if self.effective is Mode.MANUAL else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "effective": self.effective.value, "requested": self.requested.to_dict(),
            "reason": self.reason, "since": self.since.isoformat(), "grid_lost": self.grid_lost,
        }


@dataclass(frozen=True, slots=True)
class ModeTiming:
    """Debounce settings.

    stale_after_s [s]: reading age that makes data stale (enters safe at once:
    the age already spans the configured cycles); bad_data_cycles: consecutive
    cycles with missing or implausible data before safe; recover_cycles:
    consecutive good cycles before leaving safe; grid_loss_cycles: consecutive
    cycles of "grid lost" before islanded; grid_return_s [s]: how long the
    grid must be stable before leaving islanded; max_power_w [W]: battery
    rating for the plausibility check.
    """

    stale_after_s: float
    bad_data_cycles: int
    recover_cycles: int = 3
    grid_loss_cycles: int = 2
    grid_return_s: float = 10.0
    max_power_w: float | None = None

    def __post_init__(self) -> None:
        if not self.stale_after_s > 0:
            raise ValueError("stale_after_s must be > 0")
        for name in ("bad_data_cycles", "recover_cycles", "grid_loss_cycles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.grid_return_s < 0:
            raise ValueError("grid_return_s must be >= 0")

    @classmethod
    def from_control(cls, control: Any, max_power_w: float | None = None, speed: float = 1.0,
                     **kw: Any) -> "ModeTiming":
        """From a site's ``ControlSpec`` (cycle_s [s of wall time], stale_cycles).

        speed: simulated seconds per wall second (1 for a real hall): limits are
        in the clock's seconds, so a cycle lasts ``cycle_s × speed`` of them.
        The grid must be back for two cycles (at least 10 s) unless
        ``grid_return_s`` is given.
        """
        cycle = control.cycle_s * speed
        kw.setdefault("grid_return_s", max(10.0, 2 * cycle))
        return cls(stale_after_s=stale_after_s(cycle, control.stale_cycles),
                   bad_data_cycles=control.stale_cycles, max_power_w=max_power_w, **kw)


class ModeMachine:
    """Decides the effective mode each cycle from the requested mode and the snapshot.

    Starts in ``safe`` ("waiting for good data") and leaves it after
    ``recover_cycles`` good cycles: a freshly started daemon proves its data
    before it moves the battery.  The start record is :attr:`start_change`.
    """

    def __init__(self, site_id: str, requested: ModeRequest, timing: ModeTiming, now: datetime):
        if not _aware(now):
            raise ValueError("now must be timezone-aware (UTC)")
        self.site_id = site_id
        self.timing = timing
        self._requested = requested
        self._safe = True
        self._safe_reason = "starting: waiting for good battery and meter data"
        self._bad_cycles = 0
        self._check = DataCheck()
        self._good_cycles = 0
        self._grid_lost = False
        self._loss_cycles = 0
        self._grid_ok_since: datetime | None = None
        self._state = ModeState(Mode.SAFE, requested, self._safe_reason, now)
        self.start_change = ModeChange(now, "effective", None, Mode.SAFE, self._safe_reason, "system")

    @property
    def state(self) -> ModeState:
        """Current published state."""
        return self._state

    @property
    def requested(self) -> ModeRequest:
        """The request in force (what is persisted)."""
        return self._requested

    def request(self, req: ModeRequest, now: datetime) -> list[ModeChange]:
        """Apply a validated request; returns the requested-layer record and, if the
        site follows it at once, the effective-layer record.

        Persist the request (ModeStore.save) BEFORE calling this, so a request
        the site acts on can never be lost by a crash.
        """
        if not isinstance(req, ModeRequest):
            raise ModeRequestError(f"expected a ModeRequest, got {type(req).__name__}")
        old = self._requested
        self._requested = req
        detail = req.reason + (f" (setpoint {req.setpoint_w:.0f} W)" if req.setpoint_w is not None else "")
        changes = [ModeChange(now, "requested", old.mode, req.mode, detail, req.issued_by, req.command_id)]
        changes += self._settle(now, self._follow_reason())
        return changes

    def update(self, snap: SiteSnapshot) -> list[ModeChange]:
        """Run one cycle on ``snap``; returns the effective-mode change, if any."""
        now = snap.time
        t = self.timing
        check = check_data(snap, t.stale_after_s, t.max_power_w)
        self._update_data(check)
        meter = snap.meter
        meter_usable = (meter is not None and not is_stale(meter, now, t.stale_after_s)
                        and isinstance(meter.power_w, (int, float)) and math.isfinite(meter.power_w))
        grid_reason = self._update_grid(snap, now, meter_usable)
        if self._safe:
            reason = self._safe_reason
        elif self._grid_lost:
            reason = grid_reason
        else:
            reason = self._follow_reason()
        return self._settle(now, reason)

    # -- internals -----------------------------------------------------------

    @property
    def data_problems(self) -> dict[str, str]:
        """The data problems of the last cycle that count: 'stale', and 'missing' / 'implausible' once they
        lasted as long as it takes to enter safe mode (a single odd reading is not an alarm); each with
        its reasons."""
        check = self._check
        out: dict[str, str] = {}
        if check.stale:
            out["stale"] = "; ".join(check.stale)
        if self._bad_cycles >= self.timing.bad_data_cycles:
            if check.missing:
                out["missing"] = "; ".join(check.missing)
            if check.implausible:
                out["implausible"] = "; ".join(check.implausible)
        return out

    def _update_data(self, check: DataCheck) -> None:
        self._check = check
        if check.fault or check.stale:
            # A fault or data older than stale_cycles × cycle_s: safe at once.
            self._safe = True
            self._safe_reason = check.fault or "; ".join(check.stale)
            self._bad_cycles += 1
            self._good_cycles = 0
        elif check.missing or check.implausible:
            self._bad_cycles += 1
            self._good_cycles = 0
            if self._bad_cycles >= self.timing.bad_data_cycles:
                self._safe = True
                self._safe_reason = "; ".join(check.missing + check.implausible) + \
                    f" for {self._bad_cycles} cycles"
        else:
            self._bad_cycles = 0
            self._good_cycles += 1
            if self._safe and self._good_cycles >= self.timing.recover_cycles:
                self._safe = False

    def _update_grid(self, snap: SiteSnapshot, now: datetime, meter_usable: bool) -> str:
        t = self.timing
        if not meter_usable:
            # Cannot confirm a stable grid without a meter: restart the wait.
            self._grid_ok_since = None
            return f"grid lost at meter {t.grid_loss_cycles}+ cycles; meter data unusable"
        assert snap.meter is not None
        if not snap.meter.grid_ok:
            self._loss_cycles += 1
            self._grid_ok_since = None
            if self._loss_cycles >= t.grid_loss_cycles:
                self._grid_lost = True
            return f"grid lost at meter {snap.meter.device_id} for {self._loss_cycles} cycles"
        self._loss_cycles = 0
        if self._grid_lost:
            if self._grid_ok_since is None:
                self._grid_ok_since = now
            stable_s = (now - self._grid_ok_since).total_seconds()
            if stable_s >= t.grid_return_s:
                self._grid_lost = False
                self._grid_ok_since = None
            return f"grid back for {stable_s:.0f} s of {t.grid_return_s:.0f} s needed"
        return ""

    def _follow_reason(self) -> str:
        r = self._requested
        return f"requested by {r.issued_by}: {r.reason}"

    def _settle(self, now: datetime, reason: str) -> list[ModeChange]:
        if self._safe:
            target = Mode.SAFE
        elif self._grid_lost:
            target = Mode.ISLANDED
        else:
            target = self._requested.mode
        old = self._state
        changes: list[ModeChange] = []
        since = old.since
        if target is not old.effective:
            since = now
            by = self._requested.issued_by if target is self._requested.mode else "system"
            cmd = self._requested.command_id if by != "system" else None
            if target is self._requested.mode and old.effective in (Mode.SAFE, Mode.ISLANDED):
                reason = f"recovered from {old.effective.value}; back to {reason}"
            changes.append(ModeChange(now, "effective", old.effective, target, reason, by, cmd))
        self._state = ModeState(target, self._requested, reason, since, self._grid_lost)
        return changes
