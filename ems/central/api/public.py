"""The residents' shelter page data: no login, nothing sensitive (no ids, powers, modes or reasons)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from ems.central.api.deps import errors, service_of

router = APIRouter(prefix="/api/public", tags=["public"])


@router.get("/shelters", summary="Each shelter: name, area, power (grid | battery | none | unknown), hours left [h]",
            responses=errors(404, e404="The public page is switched off"))
def shelters(request: Request) -> dict:
    service = service_of(request)
    if not service.public_page:
        raise HTTPException(404, "the public page is switched off")
    return {"time": service.clock().isoformat(), "shelters": service.public_shelters()}
