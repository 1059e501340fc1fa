"""History for the hall charts: one interface, two backends.

* :class:`InfluxHistory` asks InfluxDB 1.x (``GET /query``, InfluxQL) for the
  measurements the edge writes (``docs/telemetry.md``): ``battery``,
  ``meter``, ``pv``, ``site``, ``plan`` and ``mode``.
* :class:`LocalHistory` keeps what the central service hears on MQTT (the
  sites' retained state messages) in SQLite, for the demo without servers.

Both answer :meth:`HistoryBackend.series` with the same :class:`History`:
bucket means per step for SoC [%], battery / PV / grid power [W] (battery +
discharging, grid + importing), hours of critical power [h], the plan's
battery power [W] and SoC [%], the price [JPY/kWh], and the mode changes.
Times are UTC.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from ems.central.sqlite_recovery import WAL, OnRecovered, open_sqlite_or_recover

log = logging.getLogger(__name__)

#: Names of the chart series, in display order.
SERIES = ("soc_pct", "battery_w", "pv_w", "grid_w", "hours_left_h", "plan_battery_w", "plan_soc_pct",
          "price_jpy_per_kwh", "price_sell_jpy_per_kwh")
#: Aim for about this many points per series, whatever the range.
TARGET_POINTS = 300
MIN_STEP_S = 10


class HistoryError(Exception):
    """The history backend could not answer (unreachable, refused, bad reply)."""


@dataclass(frozen=True)
class History:
    """Chart data of one site: ``series[name]`` is a list of (time UTC, value) pairs, ``modes`` the
    mode changes (time, mode, reason, previous); step_s [s]: bucket width."""

    site: str
    start: datetime
    end: datetime
    step_s: int
    series: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    modes: list[dict[str, Any]] = field(default_factory=list)
    backend: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 UTC, series as ``[[time, value], ...]``."""
        return {
            "site": self.site, "start": self.start.isoformat(), "end": self.end.isoformat(), "step_s": self.step_s,
            "backend": self.backend,
            "series": {k: [[t.isoformat(), v] for t, v in pts] for k, pts in self.series.items()},
            "modes": [{**m, "time": m["time"].isoformat()} for m in self.modes],
        }


def step_for(start: datetime, end: datetime) -> int:
    """Bucket width [s] giving about TARGET_POINTS points between ``start`` and ``end``."""
    span = (end - start).total_seconds()
    return max(MIN_STEP_S, int(math.ceil(span / TARGET_POINTS / MIN_STEP_S)) * MIN_STEP_S)


class HistoryBackend(Protocol):
    """What the API needs from a history store."""

    name: str

    def series(self, site: str, start: datetime, end: datetime) -> History:
        """Chart data of ``site`` between ``start`` and ``end`` (UTC); HistoryError if unavailable."""
        ...


class NoHistory:
    """No history configured: empty charts."""

    name = "none"

    def series(self, site: str, start: datetime, end: datetime) -> History:
        return History(site, start, end, step_for(start, end), {k: [] for k in SERIES}, [], self.name)


# ---------------------------------------------------------------------------------------------
# InfluxDB 1.x
# ---------------------------------------------------------------------------------------------

#: (measurement, field, series name, extra condition) queried as bucket means.
_INFLUX_MEANS = (
    ("battery", "soc_pct", "soc_pct", ""),
    ("battery", "power_w", "battery_w", ""),
    ("pv", "power_w", "pv_w", ""),
    ("meter", "power_w", "grid_w", ""),
    ("site", "hours_left_h", "hours_left_h", ""),
    ("plan", "battery_w", "plan_battery_w", ""),
    ("plan", "soc_pct", "plan_soc_pct", ""),
    ("plan", "price_jpy_per_kwh", "price_jpy_per_kwh", ""),
)


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InfluxHistory:
    """History from InfluxDB 1.x over its HTTP ``/query`` endpoint (read-only user recommended).

    url: e.g. ``http://influx:8086``; database / retention_policy as the
    edge writes them; username / password: HTTP basic auth (None: no auth);
    timeout_s [s] per request.
    """

    name = "influx1"

    def __init__(self, url: str, database: str, retention_policy: str | None = None, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.username, self._password = username, password
        self.timeout_s = timeout_s

    def _from(self, measurement: str) -> str:
        if self.retention_policy:
            return f"{_quote_ident(self.database)}.{_quote_ident(self.retention_policy)}.{_quote_ident(measurement)}"
        return _quote_ident(measurement)

    def query(self, statements: list[str]) -> list[dict[str, Any]]:
        """Run InfluxQL statements (joined by ';') and return the ``results`` list; HistoryError on failure."""
        params = {"db": self.database, "q": ";".join(statements), "epoch": "ms"}
        req = urllib.request.Request(f"{self.url}/query?{urllib.parse.urlencode(params)}")
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self._password or ''}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
                body = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise HistoryError(f"InfluxDB {self.url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HistoryError(f"InfluxDB {self.url}: {getattr(exc, 'reason', exc)}") from None
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise HistoryError(f"InfluxDB {self.url}: unexpected reply {str(body)[:200]}")
        for res in results:
            if "error" in res:
                # InfluxDB 1.6 says only "not executed" when the database does not exist.
                raise HistoryError(f"InfluxDB {self.url} database {self.database!r}: {res['error']}")
        return results

    def series(self, site: str, start: datetime, end: datetime) -> History:
        step = step_for(start, end)
        where = f"{_quote_ident('site')} = {_quote_str(site)} AND time >= '{_rfc3339(start)}' AND time < '{_rfc3339(end)}'"
        statements = [
            f"SELECT mean({_quote_ident(fld)}) FROM {self._from(m)} WHERE {where} GROUP BY time({step}s) fill(none)"
            for m, fld, _, _ in _INFLUX_MEANS
        ]
        statements.append(f"SELECT {_quote_ident('mode')}, {_quote_ident('reason')}, {_quote_ident('previous')} "
                          f"FROM {self._from('mode')} WHERE {where} ORDER BY time ASC LIMIT 1000")
        results = self.query(statements)
        series: dict[str, list[tuple[datetime, float]]] = {}
        for (_, _, name, _), res in zip(_INFLUX_MEANS, results):
            pts = []
            for s in res.get("series") or []:
                for t_ms, value in s.get("values", []):
                    if value is not None:
                        pts.append((_from_ms(t_ms), float(value)))
            series[name] = pts
        modes = []
        for s in results[-1].get("series") or []:
            cols = s.get("columns", [])
            for row in s.get("values", []):
                rec = dict(zip(cols, row))
                modes.append({"time": _from_ms(rec["time"]), "mode": rec.get("mode"), "reason": rec.get("reason"),
                              "previous": rec.get("previous")})
        return History(site, start, end, step, series, modes, self.name)


def _from_ms(ms: int | float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)


# ---------------------------------------------------------------------------------------------
# Local SQLite store (demo)
# ---------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    site TEXT NOT NULL, t REAL NOT NULL,
    soc_pct REAL, battery_w REAL, pv_w REAL, grid_w REAL, hours_left_h REAL,
    PRIMARY KEY (site, t)
);
CREATE TABLE IF NOT EXISTS plan_slots (
    site TEXT NOT NULL, t REAL NOT NULL, battery_w REAL, soc_pct REAL, price_jpy_per_kwh REAL,
    price_sell_jpy_per_kwh REAL,
    PRIMARY KEY (site, t)
);
CREATE TABLE IF NOT EXISTS modes (
    site TEXT NOT NULL, t REAL NOT NULL, mode TEXT NOT NULL, reason TEXT, previous TEXT
);
CREATE INDEX IF NOT EXISTS modes_site_t ON modes (site, t);
"""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def mode_of(state: dict[str, Any]) -> tuple[str | None, str]:
    """(effective mode, reason) from a site's state message (``DaemonStatus.to_dict()`` form)."""
    mode = state.get("mode")
    if isinstance(mode, dict):
        eff = mode.get("effective")
        return (eff if isinstance(eff, str) else None), str(mode.get("reason") or "")
    if isinstance(mode, str):
        return mode, str(state.get("mode_reason") or "")
    return None, ""


class LocalHistory:
    """SQLite history fed by :meth:`record_state` / :meth:`record_plan` (thread-safe).

    min_interval_s [s]: state messages closer together than this are
    thinned (the daemon publishes every cycle); keep_days: older samples are
    deleted on write.  A damaged file is moved aside and a fresh one started
    (ems.central.sqlite_recovery; ``on_recovered`` hears of it).
    """

    name = "local"

    def __init__(self, db_path: str | Path, min_interval_s: float = 10.0, keep_days: float = 35.0,
                 on_recovered: OnRecovered | None = None):
        self.path = Path(db_path)
        self.min_interval_s = min_interval_s
        self.keep_s = keep_days * 86400
        self._lock = threading.Lock()
        self._db = open_sqlite_or_recover(self.path, _SCHEMA, what="history store", on_recovered=on_recovered,
                                          pragmas=(*WAL, "synchronous=NORMAL"))
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(plan_slots)")}
        if "price_sell_jpy_per_kwh" not in columns:  # a file from before sell prices were kept
            self._db.execute("ALTER TABLE plan_slots ADD COLUMN price_sell_jpy_per_kwh REAL")
        self._last_t: dict[str, float] = {}
        self._last_mode: dict[str, str] = {}
        for site, mode in self._db.execute(
                "SELECT site, mode FROM modes m WHERE t = (SELECT MAX(t) FROM modes WHERE site = m.site)"):
            self._last_mode[site] = mode
        self._writes = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_state(self, site: str, state: dict[str, Any], received_at: datetime) -> bool:
        """Store one state message (its own ``time`` if it has one, else ``received_at``); True if kept."""
        t = (_parse_time(state.get("time")) or received_at).timestamp()
        mode, reason = mode_of(state)
        with self._lock:
            if mode is not None and self._last_mode.get(site) != mode:
                self._db.execute("INSERT INTO modes VALUES (?, ?, ?, ?, ?)",
                                 (site, t, mode, reason, self._last_mode.get(site)))
                self._last_mode[site] = mode
            last = self._last_t.get(site)
            if last is not None and 0 <= t - last < self.min_interval_s:
                return False
            self._last_t[site] = t
            hours = _num(state.get("hours_left"))
            self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (site, t, _num(state.get("soc_pct")), _num(state.get("battery_w")),
                              _num(state.get("pv_w")), _num(state.get("grid_w")), hours))
            self._writes += 1
            if self._writes % 1000 == 0:
                self._db.execute("DELETE FROM samples WHERE t < ?", (t - self.keep_s,))
        return True

    def record_plan(self, site: str, plan: dict[str, Any]) -> int:
        """Store the slots of a plan message (``slots``: rows with time, battery_w or charge_w/discharge_w,
        soc_pct, price_jpy_per_kwh (buy), price_sell_jpy_per_kwh); a newer plan overwrites the same slots.
        Returns slots stored."""
        rows = []
        for slot in plan.get("slots") or []:
            if not isinstance(slot, dict):
                continue
            t = _parse_time(slot.get("time"))
            if t is None:
                continue
            battery = _num(slot.get("battery_w"))
            if battery is None and _num(slot.get("discharge_w")) is not None:
                battery = (_num(slot.get("discharge_w")) or 0.0) - (_num(slot.get("charge_w")) or 0.0)
            rows.append((site, t.timestamp(), battery, _num(slot.get("soc_pct")),
                         _num(slot.get("price_jpy_per_kwh")), _num(slot.get("price_sell_jpy_per_kwh"))))
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO plan_slots (site, t, battery_w, soc_pct, price_jpy_per_kwh, "
                                 "price_sell_jpy_per_kwh) VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def series(self, site: str, start: datetime, end: datetime) -> History:
        step = step_for(start, end)
        t0, t1 = start.timestamp(), end.timestamp()
        out: dict[str, list[tuple[datetime, float]]] = {k: [] for k in SERIES}
        bucket = f"CAST((t - {t0}) / {step} AS INTEGER)"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {bucket} AS b, AVG(soc_pct), AVG(battery_w), AVG(pv_w), AVG(grid_w), AVG(hours_left_h) "
                f"FROM samples WHERE site = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b", (site, t0, t1)).fetchall()
            plan = self._db.execute(
                f"SELECT {bucket} AS b, AVG(battery_w), AVG(soc_pct), AVG(price_jpy_per_kwh), AVG(price_sell_jpy_per_kwh) "
                f"FROM plan_slots WHERE site = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b", (site, t0, t1)).fetchall()
            modes = self._db.execute("SELECT t, mode, reason, previous FROM modes WHERE site = ? AND t >= ? AND t < ? "
                                     "ORDER BY t LIMIT 1000", (site, t0, t1)).fetchall()
        for b, *values in rows:
            when = datetime.fromtimestamp(t0 + b * step, timezone.utc)
            for name, v in zip(("soc_pct", "battery_w", "pv_w", "grid_w", "hours_left_h"), values):
                if v is not None:
                    out[name].append((when, float(v)))
        for b, *values in plan:
            when = datetime.fromtimestamp(t0 + b * step, timezone.utc)
            for name, v in zip(("plan_battery_w", "plan_soc_pct", "price_jpy_per_kwh", "price_sell_jpy_per_kwh"), values):
                if v is not None:
                    out[name].append((when, float(v)))
        mode_list = [{"time": datetime.fromtimestamp(t, timezone.utc), "mode": m, "reason": r, "previous": p}
                     for t, m, r, p in modes]
        return History(site, start, end, step, out, mode_list, self.name)

    # -- energy and prices for the earnings (ems.central.earnings) ------------------------------
    def energy_by_slot(self, site: str, start: datetime, end: datetime, slot_s: int = 1800,
                       max_gap_s: float = 120.0) -> list[tuple[float, float, float, float, float, float]]:
        """Measured energy of ``site`` per slot (epoch-aligned, ``slot_s`` [s]) between ``start`` and ``end``:
        rows (slot start [epoch s], import Wh, export Wh, import Wh without battery, export Wh without
        battery, seconds covered).  Each sample holds until the next one, at most ``max_gap_s`` [s] (a
        hall not heard from is not counted), or three times the mean spacing of the samples in the range
        when that is longer (an accelerated simulation hears from its halls every few simulated minutes).
        Without a battery the grid would carry grid_w + battery_w (battery + discharging)."""
        sql = f"""
            WITH s AS (
              SELECT t, grid_w, COALESCE(battery_w, 0) AS battery_w,
                     MIN(COALESCE(LEAD(t) OVER (ORDER BY t) - t, {float(self.min_interval_s)}), ?) AS dt
              FROM samples WHERE site = ? AND t >= ? AND t < ? AND grid_w IS NOT NULL)
            SELECT CAST(t / {int(slot_s)} AS INTEGER) * {int(slot_s)} AS slot,
                   SUM(dt * MAX(grid_w, 0)) / 3600.0, SUM(dt * MAX(-grid_w, 0)) / 3600.0,
                   SUM(dt * MAX(grid_w + battery_w, 0)) / 3600.0, SUM(dt * MAX(-(grid_w + battery_w), 0)) / 3600.0,
                   SUM(dt)
            FROM s GROUP BY slot ORDER BY slot"""
        with self._lock:
            n, t_min, t_max = self._db.execute(
                "SELECT COUNT(*), MIN(t), MAX(t) FROM samples WHERE site = ? AND t >= ? AND t < ? AND grid_w IS NOT NULL",
                (site, start.timestamp(), end.timestamp())).fetchone()
            if n > 1:
                max_gap_s = max(max_gap_s, 3 * (t_max - t_min) / (n - 1))
            rows = self._db.execute(sql, (max_gap_s, site, start.timestamp(), end.timestamp())).fetchall()
        return [tuple(float(v) for v in r) for r in rows]

    def price_slots(self, site: str, start: datetime, end: datetime) -> list[tuple[float, float | None, float | None]]:
        """The prices the plans of ``site`` used: (slot start [epoch s], buy, sell [JPY/kWh]) ordered by time."""
        with self._lock:
            return self._db.execute(
                "SELECT t, price_jpy_per_kwh, price_sell_jpy_per_kwh FROM plan_slots WHERE site = ? AND t >= ? "
                "AND t < ? AND price_jpy_per_kwh IS NOT NULL ORDER BY t", (site, start.timestamp(), end.timestamp())).fetchall()
