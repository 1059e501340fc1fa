"""Helpers for the hall simulator tests: a small test site and fixed times."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ems.config import SiteConfig

#: 2025-06-21 00:00 JST (15:00 UTC the day before): a Saturday night in Tottori.
JUNE_NIGHT = datetime(2025, 6, 20, 15, 0, tzinfo=timezone.utc)
#: 2025-06-21 12:00 JST: a clear-sky June noon.
JUNE_NOON = datetime(2025, 6, 21, 3, 0, tzinfo=timezone.utc)


def make_site(port: int = 15999, **overrides: Any) -> SiteConfig:
    """A hall in Tottori like hall-01 of the example fleet, with its devices on ``port``."""
    data: dict[str, Any] = {
        "id": "hall-t",
        "name": "test hall",
        "area_code": "3120100",
        "lat": 35.5117,
        "lon": 134.1787,
        "battery": {"capacity_wh": 15000, "max_charge_w": 5000, "max_discharge_w": 5000,
                    "soc_min_pct": 10, "soc_max_pct": 95, "initial_soc_pct": 50},
        "inverter": {"rated_w": 4000},
        "pv": {"capacity_w": 10000},
        "grid": {"import_limit_w": 15000, "export_limit_w": 10000},
        "loads": {"base_w": 500, "peak_w": 3600, "critical_w": 900},
        "simulator": {"port": port, "seed": 7, "cloud_factor": 0.2},
        "devices": [
            {"id": "battery", "nature": "battery", "map": "generic_battery", "rated_w": 4000,
             "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit": 1}},
            {"id": "meter", "nature": "meter", "map": "sdm630",
             "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit": 2}},
            {"id": "pv", "nature": "pv", "map": "sunspec", "rated_w": 10000,
             "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit": 3}},
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return SiteConfig.model_validate(data)

