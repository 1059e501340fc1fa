"""What the batteries earned: the electricity cost of each hall with its battery, as measured, against
the cost it would have had without one, per JST day or month, for each hall and the fleet.

    rows = earnings(history, fleet_site_ids, start, end, period="day")

Energy: the measured grid power (``grid_w`` + importing) of the local history,
integrated per 30-minute slot (:meth:`LocalHistory.energy_by_slot`); without a
battery the grid would have carried ``grid_w + battery_w`` (battery +
discharging: what it discharged would have been bought, what it charged not).
Prices: the buy and sell prices [JPY/kWh] the hall's own plans used for that
slot (the plan messages it published); a slot without a known price is not
priced and counts against ``priced_share``; a slot with a buy but no sell
price earns nothing for export.  Earnings = cost without battery − cost with
battery [JPY] (positive: the battery saved money or earned it on the market).
"""

from __future__ import annotations

import bisect
import csv
import io
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

JST = timezone(timedelta(hours=9))
SLOT_S = 1800
#: A plan slot's price applies to measured slots at most this long after the slot's start [s].
PRICE_HOLD_S = 3600
PERIODS = ("day", "month")
CSV_COLUMNS = ("period", "site", "cost_without_battery_jpy", "cost_with_battery_jpy", "earnings_jpy", "import_kwh",
               "export_kwh", "import_kwh_without_battery", "export_kwh_without_battery", "priced_share")


@dataclass
class Earnings:
    """One hall (or the fleet: site ``*``) in one period (JST ``2026-12-07`` or ``2026-12``); JPY, kWh,
    priced_share: the fraction of the measured time [0..1] that had a price."""

    period: str
    site: str
    cost_without_battery_jpy: float = 0.0
    cost_with_battery_jpy: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    import_kwh_without_battery: float = 0.0
    export_kwh_without_battery: float = 0.0
    measured_s: float = 0.0
    priced_s: float = 0.0

    @property
    def earnings_jpy(self) -> float:
        return self.cost_without_battery_jpy - self.cost_with_battery_jpy

    @property
    def priced_share(self) -> float:
        return self.priced_s / self.measured_s if self.measured_s > 0 else 0.0

    def add(self, other: "Earnings") -> None:
        for k in ("cost_without_battery_jpy", "cost_with_battery_jpy", "import_kwh", "export_kwh",
                  "import_kwh_without_battery", "export_kwh_without_battery", "measured_s", "priced_s"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(earnings_jpy=round(self.earnings_jpy, 1), priced_share=round(self.priced_share, 4))
        for k in ("cost_without_battery_jpy", "cost_with_battery_jpy"):
            d[k] = round(d[k], 1)
        for k in ("import_kwh", "export_kwh", "import_kwh_without_battery", "export_kwh_without_battery"):
            d[k] = round(d[k], 3)
        return d


def period_of(epoch_s: float, period: str) -> str:
    """The JST day (``2026-12-07``) or month (``2026-12``) of an epoch time [s]."""
    t = datetime.fromtimestamp(epoch_s, JST)
    return t.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


def _price_at(times: list[float], prices: list[tuple], t: float) -> tuple[float | None, float | None]:
    i = bisect.bisect_right(times, t) - 1
    if i < 0 or t - times[i] >= PRICE_HOLD_S:
        return None, None
    return prices[i][1], prices[i][2]


def site_earnings(history, site: str, start: datetime, end: datetime, period: str) -> list[Earnings]:
    """Per period of one hall, oldest first (periods without measurements are left out)."""
    energy = history.energy_by_slot(site, start, end, SLOT_S)
    prices = history.price_slots(site, start - timedelta(seconds=PRICE_HOLD_S), end)
    times = [p[0] for p in prices]
    out: dict[str, Earnings] = {}
    for slot, imp, exp, imp0, exp0, covered in energy:
        e = out.setdefault(period_of(slot, period), Earnings(period_of(slot, period), site))
        e.import_kwh += imp / 1000
        e.export_kwh += exp / 1000
        e.import_kwh_without_battery += imp0 / 1000
        e.export_kwh_without_battery += exp0 / 1000
        e.measured_s += covered
        buy, sell = _price_at(times, prices, slot)
        if buy is None:
            continue
        sell = sell or 0.0
        e.priced_s += covered
        e.cost_with_battery_jpy += (imp * buy - exp * sell) / 1000
        e.cost_without_battery_jpy += (imp0 * buy - exp0 * sell) / 1000
    return [out[k] for k in sorted(out)]


def earnings(history, sites: Iterable[str], start: datetime, end: datetime,
             period: str = "day") -> tuple[list[Earnings], list[Earnings]]:
    """(fleet totals per period, every hall per period), both oldest first."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    halls: list[Earnings] = []
    fleet: dict[str, Earnings] = {}
    for site in sites:
        for e in site_earnings(history, site, start, end, period):
            halls.append(e)
            fleet.setdefault(e.period, Earnings(e.period, "*")).add(e)
    return [fleet[k] for k in sorted(fleet)], halls


def period_start(now: datetime, period: str, count: int) -> datetime:
    """Start (UTC) of the JST day or month ``count - 1`` periods before the one holding ``now``."""
    local = now.astimezone(JST)
    if period == "day":
        first = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=count - 1)
    else:
        y, m = local.year, local.month - (count - 1)
        while m < 1:
            y, m = y - 1, m + 12
        first = local.replace(year=y, month=m, day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.astimezone(timezone.utc)


def to_csv(fleet: list[Earnings], halls: list[Earnings]) -> str:
    """CSV (UTF-8, one header line): the fleet rows (site ``*``) then every hall's."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in [*fleet, *halls]:
        d = e.to_dict()
        w.writerow([d[c] for c in CSV_COLUMNS])
    return buf.getvalue()
