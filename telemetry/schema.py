"""The telemetry schema: measurements, tags and fields, and builders for each.

Documented for operators in ``docs/telemetry.md``; this module is the source
of truth (a test checks that every measurement here is in the document).

Conventions: tag ``site`` on every measurement, ``device`` on device data,
``area`` (the JMA warning area code of the hall) where given.  Field units
are in the field name (``_w`` [W], ``_wh`` [Wh], ``_pct`` [%], ``_s`` [s],
``_jpy_per_kwh`` [JPY/kWh]).  A field keeps one type forever (InfluxDB
refuses a point whose field type changes), so builders coerce numbers to the
declared type.  Raw values at the cycle rate; downsampling is the database's
job.

Writes are idempotent: a point is identified by measurement, tag set and
timestamp, and writing it again overwrites it.  That is what lets the outbox
re-send after a crash without creating duplicates.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from influxdb_client import Point, WritePrecision

from devices.readings import BatteryReading, MeterReading, PVReading, Reading


class Priority(enum.IntEnum):
    """Drop order when the outbox is full: LOW goes first, HIGH last."""

    LOW = 0  # raw readings, outbox statistics: plentiful, one lost sample is tolerable
    NORMAL = 1  # modes, plans, setpoints, guard clips: the decisions
    HIGH = 2  # alarms, commands, acks: the audit trail


@dataclass(frozen=True, slots=True)
class MeasurementSpec:
    """One measurement: tags, ``fields`` as ``{name: (type, unit/meaning)}``, drop priority."""

    name: str
    description: str
    tags: tuple[str, ...]
    fields: Mapping[str, tuple[type, str]]
    priority: Priority


def _spec(name, description, tags, priority, **fields) -> MeasurementSpec:
    return MeasurementSpec(name, description, tuple(tags), fields, priority)


MEASUREMENTS: dict[str, MeasurementSpec] = {s.name: s for s in (
    _spec("battery", "battery inverter reading, every cycle", ("site", "device", "area"), Priority.LOW,
          soc_pct=(float, "[%] state of charge"), power_w=(float, "[W] + discharging"),
          max_charge_w=(float, "[W] allowed now"), max_discharge_w=(float, "[W] allowed now"),
          capacity_wh=(float, "[Wh] usable"), soh_pct=(float, "[%] state of health"),
          state=(int, "BatteryState code"), fault_code=(int, "vendor fault code")),
    _spec("meter", "grid meter reading, every cycle", ("site", "device", "area"), Priority.LOW,
          power_w=(float, "[W] + importing"), import_wh=(float, "[Wh] counter"), export_wh=(float, "[Wh] counter"),
          voltage_v=(float, "[V]"), frequency_hz=(float, "[Hz]"), grid_ok=(bool, "grid present")),
    _spec("pv", "PV inverter reading, every cycle", ("site", "device", "area"), Priority.LOW,
          power_w=(float, "[W] >= 0"), energy_wh=(float, "[Wh] counter"), rated_w=(float, "[W]")),
    _spec("site", "derived values of the site snapshot, every cycle", ("site", "area"), Priority.LOW,
          load_w=(float, "[W] hall load"), critical_w=(float, "[W] critical load"),
          reserve_wh=(float, "[Wh] energy the battery must keep"),
          hours_left_h=(float, "[h] critical load the battery can carry"),
          allowed_min_w=(float, "[W] guard range low end"), allowed_max_w=(float, "[W] guard range high end"),
          cycle_ms=(float, "[ms] duration of the control cycle")),
    _spec("mode", "mode of the site and why, on every change", ("site", "area"), Priority.NORMAL,
          mode=(str, "vpp|disaster_reserve|islanded|manual|safe"), reason=(str, "why"),
          previous=(str, "mode before")),
    _spec("setpoint", "battery setpoint sent to a device, every cycle", ("site", "device", "area"),
          Priority.NORMAL, requested_w=(float, "[W] + discharge, before the guard"),
          applied_w=(float, "[W] + discharge, sent"), source=(str, "plan|dispatch|manual|mode")),
    _spec("guard_clip", "the safety guard narrowed a request", ("site", "rule", "area"), Priority.NORMAL,
          requested_w=(float, "[W]"), allowed_min_w=(float, "[W]"), allowed_max_w=(float, "[W]"),
          applied_w=(float, "[W]"), reason=(str, "human-readable")),
    _spec("plan", "one slot of the current plan; time = slot start; a new plan overwrites",
          ("site", "area"), Priority.NORMAL,
          battery_w=(float, "[W] + discharge"), grid_w=(float, "[W] + import"), soc_pct=(float, "[%] at slot end"),
          price_jpy_per_kwh=(float, "[JPY/kWh]"), reserve_wh=(float, "[Wh]"), plan_id=(str, "plan identity"),
          made_at=(str, "ISO 8601 UTC"), source=(str, "optimizer|fallback")),
    _spec("alarm", "an alarm raised or cleared", ("site", "code", "severity", "area"), Priority.HIGH,
          message=(str, "text"), active=(bool, "raised (true) or cleared (false)")),
    _spec("command", "a command received by the site", ("site", "kind", "area"), Priority.HIGH,
          command_id=(str, "envelope id"), issued_by=(str, "issuer"), expires_at=(str, "ISO 8601 UTC"),
          payload=(str, "JSON")),
    _spec("ack", "the site's answer to a command", ("site", "kind", "status", "area"), Priority.HIGH,
          command_id=(str, "envelope id"), error=(str, "why refused or failed"), outcome=(str, "JSON")),
    _spec("outbox", "the telemetry outbox of the site", ("site", "area"), Priority.LOW,
          backlog_points=(int, "points waiting"), backlog_bytes=(int, "[bytes] waiting"),
          oldest_age_s=(float, "[s] age of the oldest waiting point"),
          dropped_points=(int, "points dropped for the disk limit, ever")),
)}


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def time_ns(t: datetime) -> int:
    """Nanoseconds since the epoch of a timezone-aware ``t``; ValueError for naive times."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"time {t!r} has no timezone (telemetry times must be timezone-aware UTC)")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def utc_iso(t: datetime) -> str:
    """ISO 8601 text of ``t`` in UTC (``...+00:00``)."""
    time_ns(t)  # rejects naive times
    return t.astimezone(timezone.utc).isoformat()


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """One point: measurement, tags, fields, time [ns since epoch UTC] and drop priority."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, float | int | bool | str]
    time_ns: int
    priority: Priority = Priority.NORMAL

    def to_line(self) -> str:
        """InfluxDB line protocol (escaping by influxdb-client's Point)."""
        p = Point(self.measurement)
        for k, v in self.tags.items():
            p.tag(k, v)
        for k, v in self.fields.items():
            p.field(k, v)
        line = p.time(self.time_ns, WritePrecision.NS).to_line_protocol()
        if not line:
            raise ValueError(f"point {self.measurement!r} has no fields")
        return line


def make_point(measurement: str, time: datetime, tags: Mapping[str, str | None],
               fields: Mapping[str, Any]) -> TelemetryPoint:
    """Build a point checked against :data:`MEASUREMENTS`: unknown tags/fields are errors,
    None values are left out, numbers are coerced to the declared type."""
    spec = MEASUREMENTS.get(measurement)
    if spec is None:
        raise ValueError(f"unknown measurement {measurement!r}")
    clean_tags = {}
    for k, v in tags.items():
        if k not in spec.tags:
            raise ValueError(f"{measurement}: unknown tag {k!r}")
        if v is not None and v != "":
            clean_tags[k] = str(v)
    clean_fields: dict[str, float | int | bool | str] = {}
    for k, v in fields.items():
        if k not in spec.fields:
            raise ValueError(f"{measurement}: unknown field {k!r}")
        if v is None:
            continue
        kind = spec.fields[k][0]
        if kind is float and isinstance(v, bool):
            raise ValueError(f"{measurement}.{k}: expected a number, got {v!r}")
        try:
            value = kind(v) if kind is not str or isinstance(v, str) else json.dumps(v, sort_keys=True)
        except (TypeError, ValueError):
            raise ValueError(f"{measurement}.{k}: expected {kind.__name__}, got {v!r}") from None
        if kind is float and value != value:  # NaN cannot be stored in InfluxDB
            continue
        clean_fields[k] = value
    if not clean_fields:
        raise ValueError(f"{measurement}: no field has a value")
    return TelemetryPoint(measurement, clean_tags, clean_fields, time_ns(time), spec.priority)


#: Measurement of each reading type; its fields are the reading's attributes of the same names.
_READING_MEASUREMENT = {BatteryReading: "battery", MeterReading: "meter", PVReading: "pv"}


def reading_point(site: str, reading: Reading, area: str | None = None) -> TelemetryPoint:
    """Point for one device reading (measurement battery, meter or pv; ``extra`` is not sent)."""
    measurement = _READING_MEASUREMENT[type(reading)]
    return make_point(measurement, reading.time, {"site": site, "device": reading.device_id, "area": area},
                      {n: getattr(reading, n) for n in MEASUREMENTS[measurement].fields})


def site_point(site: str, time: datetime, area: str | None = None, **values: float | None) -> TelemetryPoint:
    """Derived snapshot values (load_w [W], reserve_wh [Wh], hours_left_h [h], ...; see MEASUREMENTS)."""
    return make_point("site", time, {"site": site, "area": area}, values)


def mode_point(site: str, time: datetime, mode: str, reason: str, previous: str | None = None,
               area: str | None = None) -> TelemetryPoint:
    """The site's mode and the reason for it."""
    return make_point("mode", time, {"site": site, "area": area}, {"mode": mode, "reason": reason,
                                                                    "previous": previous})


def setpoint_point(site: str, device: str, time: datetime, requested_w: float | None, applied_w: float,
                   source: str, area: str | None = None) -> TelemetryPoint:
    """A setpoint [W] (+ discharge) as requested and as sent after the guard."""
    return make_point("setpoint", time, {"site": site, "device": device, "area": area},
                      {"requested_w": requested_w, "applied_w": applied_w, "source": source})


def guard_clip_point(site: str, time: datetime, rule: str, requested_w: float, allowed_min_w: float,
                     allowed_max_w: float, applied_w: float, reason: str, area: str | None = None) -> TelemetryPoint:
    """The guard clipped ``requested_w`` [W] into [allowed_min_w, allowed_max_w] [W] because of ``rule``."""
    return make_point("guard_clip", time, {"site": site, "rule": rule, "area": area},
                      {"requested_w": requested_w, "allowed_min_w": allowed_min_w, "allowed_max_w": allowed_max_w,
                       "applied_w": applied_w, "reason": reason})


@dataclass(frozen=True, slots=True)
class PlanSlot:
    """One slot of a plan: start (UTC), battery_w [W] + discharge, soc_pct [%] at the end, optional
    grid_w [W] + import, price_jpy_per_kwh [JPY/kWh], reserve_wh [Wh]."""

    start: datetime
    battery_w: float
    soc_pct: float | None = None
    grid_w: float | None = None
    price_jpy_per_kwh: float | None = None
    reserve_wh: float | None = None


def plan_points(site: str, plan_id: str, made_at: datetime, slots: Iterable[PlanSlot], source: str,
                area: str | None = None) -> list[TelemetryPoint]:
    """One point per slot, stamped with the slot start, so a newer plan overwrites the older one."""
    made = utc_iso(made_at)
    return [make_point("plan", s.start, {"site": site, "area": area},
                       {"battery_w": s.battery_w, "grid_w": s.grid_w, "soc_pct": s.soc_pct,
                        "price_jpy_per_kwh": s.price_jpy_per_kwh, "reserve_wh": s.reserve_wh,
                        "plan_id": plan_id, "made_at": made, "source": source}) for s in slots]


def alarm_point(site: str, time: datetime, code: str, severity: str, message: str, active: bool = True,
                area: str | None = None) -> TelemetryPoint:
    """An alarm raised (active) or cleared."""
    return make_point("alarm", time, {"site": site, "code": code, "severity": severity, "area": area},
                      {"message": message, "active": active})


def command_point(site: str, time: datetime, command_id: str, kind: str, issued_by: str, expires_at: datetime,
                  payload: Any, area: str | None = None) -> TelemetryPoint:
    """A command as received (payload stored as JSON)."""
    return make_point("command", time, {"site": site, "kind": kind, "area": area},
                      {"command_id": command_id, "issued_by": issued_by, "expires_at": utc_iso(expires_at),
                       "payload": payload})


def ack_point(site: str, time: datetime, command_id: str, kind: str, status: str, error: str | None,
              outcome: Any = None, area: str | None = None) -> TelemetryPoint:
    """The answer to a command: status ok|refused|failed, the error, the outcome (JSON)."""
    return make_point("ack", time, {"site": site, "kind": kind or "unknown", "status": status, "area": area},
                      {"command_id": command_id, "error": error, "outcome": outcome})


def outbox_point(site: str, time: datetime, backlog_points: int, backlog_bytes: int, oldest_age_s: float | None,
                 dropped_points: int, area: str | None = None) -> TelemetryPoint:
    """The outbox's own state: backlog size [points, bytes], oldest age [s], drops."""
    return make_point("outbox", time, {"site": site, "area": area},
                      {"backlog_points": backlog_points, "backlog_bytes": backlog_bytes,
                       "oldest_age_s": oldest_age_s, "dropped_points": dropped_points})
