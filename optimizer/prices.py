"""Prices [JPY/kWh]: the JEPX yearly spot CSV, buy tariffs, and a seeded synthetic spot series.

JEPX publishes ``spot_summary_<FY>.csv`` in Shift_JIS with one row per
delivery day (受渡日) and time code (時刻コード, 1 = 00:00–00:30 JST … 48 =
23:30–24:00), a system price and one area price per area.  The parser takes
the file's bytes (the optimizer does no I/O; the caller reads the file) and
maps the chosen column to canonical (UTC slot start, price) pairs.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Sequence

import numpy as np

JST = timezone(timedelta(hours=9), "JST")
#: JEPX's price floor [JPY/kWh]: spot prices are never below it.
JEPX_FLOOR_JPY_PER_KWH = 0.01

#: English area names → the Japanese name in the CSV's area-price column.
JEPX_AREAS = {
    "hokkaido": "北海道", "tohoku": "東北", "tokyo": "東京", "chubu": "中部", "hokuriku": "北陸",
    "kansai": "関西", "chugoku": "中国", "shikoku": "四国", "kyushu": "九州",
}
SYSTEM_PRICE_COLUMN = "システムプライス(円/kWh)"
DATE_COLUMN = "受渡日"
CODE_COLUMN = "時刻コード"


class PriceDataError(ValueError):
    """A price file is malformed; the message names the source, line and column."""


@dataclass(frozen=True, eq=False)
class PriceSeries:
    """Prices [JPY/kWh] at 30-minute slot starts (aware UTC), sorted, no duplicates."""

    times: tuple[datetime, ...]
    price: np.ndarray
    label: str = ""

    def at(self, times: Sequence[datetime]) -> np.ndarray:
        """Price for each slot start in ``times``; KeyError names the first missing slot."""
        index = {t: i for i, t in enumerate(self.times)}
        out = np.empty(len(times))
        for k, t in enumerate(times):
            i = index.get(t.astimezone(timezone.utc))
            if i is None:
                raise KeyError(f"no {self.label or 'price'} for the slot starting {t.isoformat()}")
            out[k] = self.price[i]
        return out


def area_column(area: str) -> str:
    """CSV column for ``area``: 'system', an English area name, or the column's own name."""
    key = area.strip().lower()
    if key in ("system", "システム", SYSTEM_PRICE_COLUMN.lower()):
        return SYSTEM_PRICE_COLUMN
    if key in JEPX_AREAS:
        return f"エリアプライス{JEPX_AREAS[key]}(円/kWh)"
    if area in JEPX_AREAS.values():
        return f"エリアプライス{area}(円/kWh)"
    if area.startswith("エリアプライス"):
        return area
    raise ValueError(f"unknown JEPX area {area!r} (system, {', '.join(JEPX_AREAS)})")


def _parse_date(text: str, where: str) -> date:
    for fmt in ("%Y/%m/%d", "%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise PriceDataError(f"{where}: column {DATE_COLUMN}: not a date: {text!r}")


def parse_jepx_spot_csv(raw: bytes | str, area: str = "chugoku", source: str = "spot_summary.csv") -> PriceSeries:
    """Parse a JEPX yearly spot CSV (bytes in Shift_JIS, or already-decoded text) for one area column.

    Returns the prices at UTC slot starts.  Errors name ``source``, the line
    and the column: undecodable bytes, missing columns, bad dates, time codes
    outside 1–48, non-numeric or negative prices, duplicate slots.
    """
    column = area_column(area)
    if isinstance(raw, bytes):
        try:
            text = raw.decode("cp932")  # Microsoft's Shift_JIS, which JEPX uses
        except UnicodeDecodeError as exc:
            raise PriceDataError(f"{source}: not Shift_JIS text (byte {exc.start})") from None
    else:
        text = raw
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise PriceDataError(f"{source}: file is empty") from None
    for needed in (DATE_COLUMN, CODE_COLUMN, column):
        if needed not in header:
            raise PriceDataError(f"{source}: line 1: column {needed} is missing (columns: {', '.join(header)})")
    i_date, i_code, i_price = header.index(DATE_COLUMN), header.index(CODE_COLUMN), header.index(column)
    rows: dict[datetime, float] = {}
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{source}: line {line_no}"
        if len(row) <= max(i_date, i_code, i_price):
            raise PriceDataError(f"{where}: {len(row)} fields, expected {len(header)}")
        day = _parse_date(row[i_date], where)
        try:
            code = int(row[i_code])
        except ValueError:
            raise PriceDataError(f"{where}: column {CODE_COLUMN}: not an integer: {row[i_code]!r}") from None
        if not 1 <= code <= 48:
            raise PriceDataError(f"{where}: column {CODE_COLUMN}: {code} outside 1–48")
        try:
            price = float(row[i_price])
        except ValueError:
            raise PriceDataError(f"{where}: column {column}: not a number: {row[i_price]!r}") from None
        if not math.isfinite(price) or price < 0:
            raise PriceDataError(f"{where}: column {column}: invalid price {row[i_price]!r}")
        start = datetime(day.year, day.month, day.day, tzinfo=JST) + timedelta(minutes=30 * (code - 1))
        start = start.astimezone(timezone.utc)
        if start in rows:
            raise PriceDataError(f"{where}: duplicate slot {day.isoformat()} code {code}")
        rows[start] = price
    if not rows:
        raise PriceDataError(f"{source}: no data rows")
    times = tuple(sorted(rows))
    return PriceSeries(times, np.array([rows[t] for t in times]), label=column)


@dataclass(frozen=True, slots=True)
class FlatTariff:
    """One buy price for every slot [JPY/kWh]."""

    price_jpy_per_kwh: float

    def prices(self, times: Sequence[datetime]) -> np.ndarray:
        """Price per slot [JPY/kWh]."""
        return np.full(len(times), float(self.price_jpy_per_kwh))


@dataclass(frozen=True, slots=True)
class TimeOfUseTariff:
    """Buy price by local (JST) hour [JPY/kWh]: ``periods`` = ((start_hour, price), …) from hour 0, increasing."""

    periods: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        hours = [h for h, _ in self.periods]
        if not hours or hours[0] != 0 or any(b <= a for a, b in zip(hours, hours[1:])) or hours[-1] >= 24:
            raise ValueError("periods must start at hour 0 and increase below 24")

    def prices(self, times: Sequence[datetime]) -> np.ndarray:
        """Price per slot [JPY/kWh], by the local hour at the slot start."""
        starts = np.array([h for h, _ in self.periods])
        values = np.array([p for _, p in self.periods])
        out = np.empty(len(times))
        for i, t in enumerate(times):
            lt = t.astimezone(JST)
            out[i] = values[np.searchsorted(starts, lt.hour + lt.minute / 60, side="right") - 1]
        return out


def spot_linked(spot_jpy_per_kwh: np.ndarray, adder_jpy_per_kwh: float = 0.0, factor: float = 1.0) -> np.ndarray:
    """Market-linked retail price [JPY/kWh]: factor × spot + adder (wheeling, fees, margin)."""
    return factor * np.asarray(spot_jpy_per_kwh, dtype=float) + adder_jpy_per_kwh


#: Synthetic daily shape (local hour, × the day's level) on a day without PV surplus.
_SHAPE = ((0, 0.85), (4, 0.8), (6, 0.9), (8, 1.15), (10, 1.0), (13, 0.95), (16, 1.1), (18, 1.6),
          (20, 1.5), (22, 1.05), (24, 0.85))
#: Depth of the midday solar dip by month (spring and autumn: PV meets low demand).
_DIP_BY_MONTH = {1: 0.3, 2: 0.5, 3: 0.8, 4: 0.95, 5: 0.95, 6: 0.7, 7: 0.4, 8: 0.4, 9: 0.6, 10: 0.85, 11: 0.7, 12: 0.3}
#: Level by month (summer and winter demand peaks).
_LEVEL_BY_MONTH = {1: 1.25, 2: 1.2, 3: 1.0, 4: 0.85, 5: 0.85, 6: 0.95, 7: 1.2, 8: 1.3, 9: 1.05, 10: 0.9, 11: 0.95, 12: 1.15}


def synthetic_spot_prices(times: Sequence[datetime], seed: int = 0, mean_jpy_per_kwh: float = 11.0,
                          sunny: Sequence[float] | None = None) -> np.ndarray:
    """A JEPX-like spot price [JPY/kWh] per slot: evening peak, midday PV dip toward the 0.01 floor.

    Each local day draws its level (lognormal) and, unless ``sunny`` gives one
    factor [0..1] per slot, its sunniness from a generator seeded with
    (seed, day), so a slot's price does not depend on which window is asked.
    Rounded to 0.01 and never below :data:`JEPX_FLOOR_JPY_PER_KWH`.
    """
    xs, ys = zip(*_SHAPE)
    out = np.empty(len(times))
    cache: dict[date, tuple[float, float, float, np.ndarray]] = {}
    for i, t in enumerate(times):
        lt = t.astimezone(JST)
        day = lt.date()
        if day not in cache:
            rng = np.random.default_rng([seed, day.toordinal()])
            cache[day] = (float(rng.lognormal(0.0, 0.25)), float(rng.uniform(0, 1)), float(rng.normal(0, 1)),
                          rng.normal(0, 1, 96))  # one noise value per quarter hour
        level, sun_draw, peak_noise, slot_noise = cache[day]
        hour = lt.hour + lt.minute / 60 + 0.25
        base = float(np.interp(hour, xs, ys))
        if hour >= 17:
            base *= 1 + 0.15 * peak_noise
        sun = float(sunny[i]) if sunny is not None else sun_draw
        # ×1.25: on the sunniest spring days the dip reaches the floor for a few slots.
        shape = max(0.0, math.sin(math.pi * (hour - 8) / 8)) if 8 < hour < 16 else 0.0
        dip = min(1.0, 1.25 * _DIP_BY_MONTH[lt.month] * sun * shape)
        price = mean_jpy_per_kwh * _LEVEL_BY_MONTH[lt.month] * level * base * (1 - dip)
        price *= 1 + 0.05 * float(slot_noise[(lt.hour * 60 + lt.minute) // 15])
        out[i] = max(JEPX_FLOOR_JPY_PER_KWH, round(price, 2))
    return out
