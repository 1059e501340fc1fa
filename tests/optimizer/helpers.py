"""Small builders shared by the optimizer tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from optimizer.inputs import SiteForecast
from optimizer.reserve import SafetyPolicy

T0 = datetime(2025, 7, 1, 15, tzinfo=timezone.utc)  # 00:00 JST


def series(n: int, *, minutes: int = 30, start: datetime = T0, price_buy=10.0, price_sell=None, load_w=0.0,
           pv_w=0.0, critical_load_w=0.0) -> SiteForecast:
    """A forecast of ``n`` slots; scalars are broadcast."""
    times = [start + timedelta(minutes=minutes * i) for i in range(n)]

    def arr(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()
    buy = arr(price_buy)
    return SiteForecast.from_columns(times, price_buy=buy, price_sell=arr(price_sell if price_sell is not None else 0.0),
                                     load_w=arr(load_w), pv_w=arr(pv_w), critical_load_w=arr(critical_load_w))


def policy(**kw) -> SafetyPolicy:
    """A simple policy: 10 kWh, 0–100 % band, 2 kW both ways, lossless, no reserve unless given."""
    base = dict(capacity_wh=10_000, soc_min_pct=0.0, soc_max_pct=100.0, max_charge_w=2000, max_discharge_w=2000,
                charge_efficiency=1.0, discharge_efficiency=1.0, reserve_hours={"vpp": 0.0, "disaster_reserve": 0.0},
                grid_import_limit_w=50_000, grid_export_limit_w=0.0)
    base.update(kw)
    return SafetyPolicy(**base)
