"""JMA warnings: poller status (with the last telegram of each kind and what it did), the typhoon arrival
forecast per hall, and the suggestions the triggers leave for staff (return to VPP, or disaster mode)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from ems.central.api.deps import NEEDS_LOGIN, SQLITE_INT_MAX, Principal, errors, require, service_of
from ems.central.roles import Permission

router = APIRouter(prefix="/api/jma", tags=["jma"], responses=NEEDS_LOGIN)


@router.get("/status", summary="What the JMA poller did last")
def status(request: Request, _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    return service_of(request).jma_status_dict()


@router.get("/arrivals", summary="Forecast arrival of typhoon storm-force wind per hall (within the lead time)")
def arrivals(request: Request, _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    jma = service_of(request).jma
    return {"arrivals": jma.trigger.typhoon_arrivals() if jma is not None else {}}


@router.get("/suggestions", summary="Open suggestions: warnings cancelled, the hall may return to VPP")
def suggestions(request: Request, _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    return {"suggestions": [s.to_dict() for s in service_of(request).open_suggestions()]}


@router.post("/suggestions/{suggestion_id}/dismiss", summary="Mark a suggestion as seen (does not switch anything)",
             responses=errors(404, e404="No open suggestion with this id"))
def dismiss(request: Request, suggestion_id: int = Path(ge=0, le=SQLITE_INT_MAX), who: Principal = Depends(require(Permission.RETURN_TO_VPP))) -> dict:
    try:
        return service_of(request).dismiss_suggestion(suggestion_id, who.username).to_dict()
    except KeyError:
        raise HTTPException(404, f"no open suggestion {suggestion_id}") from None
