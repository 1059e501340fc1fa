"""The forecast and price inputs of one site's plan, validated once at the edge.

A :class:`SiteForecast` is a regular series of slots (slot start times,
timezone-aware, stored in UTC) with, per slot, the buy and sell prices
[JPY/kWh] and the forecast hall load, PV and critical load [W] (slot means).
Bad data raises :class:`InputError`, which names the row (1-based slot
number) and the column, so the CLI can point at the line of a CSV file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import numpy as np

#: The five data columns of a forecast, in the order of the CLI's inputs.csv.
COLUMNS = ("price_buy", "price_sell", "load_w", "pv_w", "critical_load_w")
#: Columns that are powers and may not be negative.
_NON_NEGATIVE = ("load_w", "pv_w", "critical_load_w")


class InputError(ValueError):
    """A forecast value is missing or wrong.  ``row`` is 1-based (None: whole series); ``column`` names the field."""

    def __init__(self, message: str, row: int | None = None, column: str | None = None):
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.row = row
        self.column = column
        self.detail = message


@dataclass(frozen=True, eq=False)
class SiteForecast:
    """Forecasts and prices for a regular series of slots.

    times: slot starts (aware, UTC); price_buy / price_sell [JPY/kWh];
    load_w: the whole hall as it will be used [W]; pv_w [W];
    critical_load_w: the shelter circuit's load when the hall serves as a
    shelter [W] (sizes the reserve; it may exceed a quiet hall's normal
    night load).  All slot means.  Use :meth:`from_columns` to build one;
    it validates everything.
    """

    times: tuple[datetime, ...]
    price_buy: np.ndarray
    price_sell: np.ndarray
    load_w: np.ndarray
    pv_w: np.ndarray
    critical_load_w: np.ndarray

    @classmethod
    def from_columns(cls, times: Sequence[datetime], *, price_buy, price_sell, load_w, pv_w,
                     critical_load_w) -> "SiteForecast":
        """Validate and build: aware regular times, finite values, non-negative powers."""
        if len(times) < 1:
            raise InputError("at least one slot is required")
        utc = []
        for i, t in enumerate(times):
            if not isinstance(t, datetime):
                raise InputError(f"not a datetime: {t!r}", i + 1, "time")
            if t.tzinfo is None or t.utcoffset() is None:
                raise InputError(f"time {t.isoformat()} has no UTC offset", i + 1, "time")
            utc.append(t.astimezone(timezone.utc))
        if len(utc) > 1:
            step = utc[1] - utc[0]
            if step <= timedelta(0):
                raise InputError("times must increase", 2, "time")
            for i in range(1, len(utc)):
                if utc[i] - utc[i - 1] != step:
                    raise InputError(
                        f"irregular time step: {utc[i] - utc[i - 1]} after {utc[i - 1].isoformat()}, expected {step}",
                        i + 1, "time")
        arrays = {}
        raw = dict(price_buy=price_buy, price_sell=price_sell, load_w=load_w, pv_w=pv_w,
                   critical_load_w=critical_load_w)
        for name in COLUMNS:
            values = raw[name]
            if len(values) != len(utc):
                raise InputError(f"{len(values)} values for {len(utc)} slots", None, name)
            arr = np.empty(len(utc), dtype=float)
            for i, v in enumerate(values):
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    raise InputError(f"not a number: {v!r}", i + 1, name) from None
                if not math.isfinite(x):
                    raise InputError(f"value is {v!r}; a finite number is required", i + 1, name)
                if name in _NON_NEGATIVE and x < 0:
                    raise InputError(f"negative value {x:g} (a power [W] here is never negative)", i + 1, name)
                arr[i] = x
            arr.setflags(write=False)
            arrays[name] = arr
        return cls(times=tuple(utc), **arrays)

    @property
    def n(self) -> int:
        """Number of slots."""
        return len(self.times)

    @property
    def step(self) -> timedelta:
        """Slot length (30 minutes unless the series says otherwise; one-slot series assume 30 min)."""
        return self.times[1] - self.times[0] if len(self.times) > 1 else timedelta(minutes=30)

    @property
    def slot_h(self) -> float:
        """Slot length [h]."""
        return self.step.total_seconds() / 3600.0

    @property
    def end(self) -> datetime:
        """End of the last slot (UTC)."""
        return self.times[-1] + self.step

    def window(self, start: int, n: int) -> "SiteForecast":
        """Slots ``start`` … ``start + n − 1`` (fewer at the end of the series)."""
        if start < 0 or start >= self.n or n < 1:
            raise IndexError(f"window start {start} / length {n} outside {self.n} slots")
        sl = slice(start, start + n)
        return SiteForecast(self.times[sl], *(getattr(self, c)[sl] for c in COLUMNS))

    def replace(self, **columns) -> "SiteForecast":
        """A copy with some columns replaced (validated again)."""
        data = {c: columns.get(c, getattr(self, c)) for c in COLUMNS}
        return SiteForecast.from_columns(columns.get("times", self.times), **data)
