"""Fleet overview, hall detail and history for the charts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from ems.central.api.deps import NEEDS_LOGIN, Principal, errors, field_error, require, sane_time, service_of
from ems.central.fleet_history import fleet_series
from ems.central.history import HistoryError
from ems.central.roles import Permission

router = APIRouter(prefix="/api", tags=["fleet"], responses=NEEDS_LOGIN)

SORT_KEYS = ("site", "name", "area_code", "mode", "soc_pct", "hours_left", "battery_w", "pv_w", "grid_w",
             "open_alarms", "online")
#: Named ranges of the range picker.
RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
          "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_RANGE = timedelta(days=92)


@router.get("/fleet", summary="Every hall: mode and reason, SoC [%], powers [W], hours left [h], online, alarms, "
                             "the prices and weather its plan used; what the central service publishes")
def fleet(request: Request, area: str | None = Query(None, pattern=r"^\d{6,7}$", description="area code filter"),
          sort: Literal[SORT_KEYS] = Query("site"), desc: bool = False,  # type: ignore[valid-type]
          _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    service = service_of(request)
    rows = service.fleet_rows(area)

    known = [r for r in rows if r.get(sort) is not None]
    known.sort(key=lambda r: r[sort].lower() if isinstance(r[sort], str) else r[sort], reverse=desc)
    rows = known + [r for r in rows if r.get(sort) is None]  # unknown values last, either way
    return {"time": service.clock().isoformat(), "halls": rows, "areas": service.areas(),
            "jma": service.jma_status_dict(), "suggestions": [s.to_dict() for s in service.open_suggestions()],
            "market": service.market_status(),
            "notify": dict(service.notifier.status) if service.notifier is not None else None}


@router.get("/sites/{site_id}", summary="One hall: live values, last state, plan, open alarms, configuration",
            responses=errors(404, e404="Unknown hall"))
def site(site_id: str, request: Request, _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    try:
        return service_of(request).site_detail(site_id)
    except KeyError:
        raise HTTPException(404, f"unknown hall {site_id!r}") from None


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise field_error(name, "not an ISO 8601 time", "query") from None
    if t.tzinfo is None:
        raise field_error(name, "must carry a UTC offset, e.g. 2025-07-01T09:00:00+09:00", "query")
    try:
        sane_time(t)  # before any arithmetic: year 1 or 9999 with an offset overflows
    except ValueError as exc:
        raise field_error(name, str(exc), "query") from None
    return t.astimezone(timezone.utc)


@router.get("/sites/{site_id}/history",
            summary="Chart data: SoC [%], battery/PV/grid [W], hours left [h], plan, price [JPY/kWh], modes",
            responses=errors(404, 502, e404="Unknown hall"))
def history(site_id: str, request: Request, range: str | None = Query(None, description="1h, 6h, 24h, 7d or 30d"),
            start: str | None = Query(None, description="ISO 8601 with a UTC offset (default: end - 24 h)",
                                      json_schema_extra={"format": "date-time"}),
            end: str | None = Query(None, description="ISO 8601 with a UTC offset (default: now)",
                                    json_schema_extra={"format": "date-time"}),
            _: Principal = Depends(require(Permission.VIEW_HISTORY))) -> dict:
    service = service_of(request)
    if site_id not in service.sites:
        raise HTTPException(404, f"unknown hall {site_id!r}")
    t_end = _time(end, "end") or service.clock()
    if range is not None:
        if range not in RANGES:
            raise field_error("range", f"must be one of {', '.join(RANGES)}", "query")
        t_start = t_end - RANGES[range]
    else:
        t_start = _time(start, "start") or t_end - RANGES["24h"]
    if t_end <= t_start:
        raise field_error("end", "must be after start", "query")
    if t_end - t_start > MAX_RANGE:
        raise field_error("start", f"the range may span at most {MAX_RANGE.days} days", "query")
    try:
        hist = service.history.series(site_id, t_start, t_end)
    except HistoryError as exc:
        raise HTTPException(502, f"history backend: {exc}") from None
    return hist.to_dict()


@router.get("/fleet/history", summary="Fleet totals over time: battery, PV, grid [W] and stored energy [Wh], "
                                     "summed over the halls per history bucket",
            responses=errors(502))
def fleet_history(request: Request, range: str = Query("24h", description="1h, 6h, 24h, 7d or 30d"),
                  _: Principal = Depends(require(Permission.VIEW_HISTORY))) -> dict:
    service = service_of(request)
    if range not in RANGES:
        raise field_error("range", f"must be one of {', '.join(RANGES)}", "query")
    end = service.clock()
    try:
        return fleet_series(service.history, [(s.id, s.battery.capacity_wh) for s in service.fleet.sites],
                            end - RANGES[range], end)
    except HistoryError as exc:
        raise HTTPException(502, f"history backend: {exc}") from None
