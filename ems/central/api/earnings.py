"""VPP earnings per hall and for the fleet (ems.central.earnings), as JSON and CSV."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from ems.central.api.deps import NEEDS_LOGIN, Principal, errors, require, service_of
from ems.central.earnings import earnings, period_start, to_csv
from ems.central.history import LocalHistory
from ems.central.roles import Permission

router = APIRouter(prefix="/api", tags=["earnings"], responses=NEEDS_LOGIN)

#: How many periods back by default, and at most (the local history keeps about 35 days).
DEFAULT_COUNT = {"day": 31, "month": 12}
MAX_COUNT = 400


def _compute(request: Request, period: str, count: int | None, site: str | None = None):
    """Earnings of every hall, or of ``site`` alone (a hall's page needs only its own: the work is a query
    over every measured sample of each hall in the range)."""
    service = service_of(request)
    history = service.history
    if not isinstance(history, LocalHistory):
        raise HTTPException(501, f"earnings need the local history store; the history backend is {history.name!r}")
    if site is not None and site not in service.sites:
        raise HTTPException(404, f"unknown hall {site!r}")
    now = service.clock()
    start = period_start(now, period, count or DEFAULT_COUNT[period])
    sites = [site] if site is not None else [s.id for s in service.fleet.sites]
    return earnings(history, sites, start, now, period)


@router.get("/earnings", summary="Earnings [JPY] per JST day or month, fleet and per hall: cost without battery "
                                 "minus cost with battery, from measured import/export [kWh] and the plans' prices",
            responses=errors(404, 501, e404="No hall with this id",
                             e501="The history backend keeps no measured energy (InfluxDB)"))
def earnings_json(request: Request, period: Literal["day", "month"] = Query("day"),
                  count: int | None = Query(None, ge=1, le=MAX_COUNT, description="periods back (default 31 days, 12 months)"),
                  site: str | None = Query(None, max_length=64, description="one hall only (its id)"),
                  _: Principal = Depends(require(Permission.VIEW_HISTORY))) -> dict:
    fleet, halls = _compute(request, period, count, site)
    return {"period": period, "fleet": [e.to_dict() for e in fleet], "halls": [e.to_dict() for e in halls]}


@router.get("/earnings.csv", summary="The same as CSV (fleet rows with site '*', then every hall)",
            response_class=Response,
            responses={200: {"description": "One row per period and hall", "content": {"text/csv": {}}},
                       **errors(501, e501="The history backend keeps no measured energy (InfluxDB)")})
def earnings_csv(request: Request, period: Literal["day", "month"] = Query("day"),
                 count: int | None = Query(None, ge=1, le=MAX_COUNT),
                 _: Principal = Depends(require(Permission.VIEW_HISTORY))) -> Response:
    fleet, halls = _compute(request, period, count)
    return Response(to_csv(fleet, halls), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="ems-earnings-{period}.csv"'})
