"""The fleet's totals over time for the overview charts: battery, PV and grid power [W] and stored
energy [Wh], summed over the halls' history buckets (ems.central.history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from ems.central.history import HistoryBackend, step_for

FLEET_SERIES = ("battery_w", "pv_w", "grid_w", "stored_wh", "halls")


def fleet_series(history: HistoryBackend, sites: Iterable[tuple[str, float]], start: datetime,
                 end: datetime) -> dict[str, Any]:
    """Sum per history bucket over ``sites`` ((site id, battery capacity [Wh]) pairs).

    stored_wh: each hall's mean SoC [%] x its capacity; ``halls``: how many halls reported in the
    bucket; only buckets where the most halls reported are kept.  Raises HistoryError like the backend."""
    sums: dict[datetime, dict[str, float]] = {}
    for site, capacity_wh in sites:
        hist = history.series(site, start, end)
        seen: set[datetime] = set()
        for name in ("battery_w", "pv_w", "grid_w"):
            for t, v in hist.series.get(name, []):
                sums.setdefault(t, {}).setdefault(name, 0.0)
                sums[t][name] += v
                seen.add(t)
        for t, v in hist.series.get("soc_pct", []):
            sums.setdefault(t, {}).setdefault("stored_wh", 0.0)
            sums[t]["stored_wh"] += v / 100.0 * capacity_wh
            seen.add(t)
        for t in seen:
            sums[t]["halls"] = sums[t].get("halls", 0.0) + 1
    # Halls report at their own moments, so a bucket at the edge of a hall's reporting holds only some of
    # them and the sum dips for that reason alone: keep the buckets where as many halls reported as ever.
    most = max((v.get("halls", 0.0) for v in sums.values()), default=0.0)
    times = sorted(t for t, v in sums.items() if v.get("halls", 0.0) >= most)
    series = {name: [[t.isoformat(), round(sums[t][name], 1)] for t in times if name in sums[t]]
              for name in FLEET_SERIES}
    return {"start": start.isoformat(), "end": end.isoformat(), "step_s": step_for(start, end),
            "backend": history.name, "series": series}
