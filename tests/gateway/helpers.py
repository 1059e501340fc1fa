"""Builders for snapshots and policies used by the control-core tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from devices.readings import BatteryReading, BatteryState, MeterReading
from ems.gateway.snapshot import SiteSnapshot
from optimizer.reserve import SafetyPolicy

T0 = datetime(2025, 9, 1, 3, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """T0 + seconds."""
    return T0 + timedelta(seconds=seconds)


def policy(**kw) -> SafetyPolicy:
    """A 15 kWh / 5 kW site with a 15 kW import limit and no export."""
    base = dict(capacity_wh=15000.0, soc_min_pct=10.0, soc_max_pct=95.0, max_charge_w=5000.0,
                max_discharge_w=5000.0, charge_efficiency=0.95, discharge_efficiency=0.95,
                ramp_w_per_s=2000.0, grid_import_limit_w=15000.0, grid_export_limit_w=0.0)
    base.update(kw)
    return SafetyPolicy(**base)


def battery(soc: float = 60.0, power_w: float = 0.0, time: datetime = T0, **kw) -> BatteryReading:
    return BatteryReading(device_id="battery", time=time, soc_pct=soc, power_w=power_w, **kw)


def meter(power_w: float = 0.0, time: datetime = T0, grid_ok: bool = True) -> MeterReading:
    return MeterReading(device_id="meter", time=time, power_w=power_w, grid_ok=grid_ok)


def snap(t: float = 0.0, soc: float = 60.0, battery_w: float = 0.0, meter_w: float = 0.0,
         grid_ok: bool = True, age_s: float = 0.0, bat_kw: dict | None = None,
         no_battery: bool = False, no_meter: bool = False) -> SiteSnapshot:
    """A snapshot at T0+t whose readings are ``age_s`` old."""
    rt = at(t - age_s)
    return SiteSnapshot(
        time=at(t), site_id="hall-01",
        battery=None if no_battery else battery(soc, battery_w, rt, **(bat_kw or {})),
        meter=None if no_meter else meter(meter_w, rt, grid_ok),
    )


__all__ = ["T0", "at", "policy", "battery", "meter", "snap", "BatteryState"]
