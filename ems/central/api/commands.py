"""Disaster panel (switch halls to disaster_reserve, return to VPP) and VPP dispatch; operations and acks."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator

from ems.central.api.deps import (NEEDS_LOGIN, Principal, errors, field_error, require, sane_time, service_of,
                                  visible_text)
from ems.central.dispatch import DispatchRequestError
from ems.central.roles import Permission
from ems.central.service import ScopeError

router = APIRouter(prefix="/api", tags=["commands"], responses=NEEDS_LOGIN)

#: Largest fleet request [kW]: far above 14 halls, catches W/kW mix-ups.
MAX_REQUEST_KW = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopeRequest(_Strict):
    """Which halls: ``all``, ``area`` (give area_code) or ``sites`` (give sites); why; and the confirmation."""

    scope: Literal["all", "area", "sites"]
    area_code: str | None = Field(None, pattern=r"^\d{6,7}$")
    sites: list[str] | None = Field(None, max_length=1000)
    reason: str = Field(min_length=3, max_length=500, description="visible text: why (no control characters)")
    # Strict: only the JSON boolean true confirms; "true", 1 or "yes" from a careless client are refused.
    confirm: StrictBool = Field(description="must be the JSON boolean true: the person confirmed the switch")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return visible_text(value)


def _checked_sites(service, body: ScopeRequest) -> list[str]:
    if body.confirm is not True:
        raise field_error("confirm", "must be true (confirm the switch)")
    if not body.reason.strip():
        raise field_error("reason", "give a reason")
    try:
        return service.resolve_scope(body.scope, body.area_code, body.sites)
    except ScopeError as exc:
        raise field_error(exc.field, exc.message) from None


def _switch(request: Request, body: ScopeRequest, who: Principal, mode: str, action: str) -> dict:
    """Switch the halls ``body`` names to ``mode``, audited as ``action``."""
    service = service_of(request)
    sites = _checked_sites(service, body)
    op = service.switch_mode(sites, mode, body.reason.strip(), who.username, action,
                             scope=body.model_dump(exclude={"reason", "confirm"}, exclude_none=True))
    return op.to_dict()


@router.post("/disaster/switch", summary="Switch halls to disaster_reserve (municipal staff)")
def disaster_switch(body: ScopeRequest, request: Request,
                    who: Principal = Depends(require(Permission.SWITCH_DISASTER))) -> dict:
    return _switch(request, body, who, "disaster_reserve", "disaster")


@router.post("/disaster/return", summary="Return halls to VPP operation (a separate, explicit action)")
def disaster_return(body: ScopeRequest, request: Request,
                    who: Principal = Depends(require(Permission.RETURN_TO_VPP))) -> dict:
    return _switch(request, body, who, "vpp", "return_to_vpp")


class DispatchRequest(_Strict):
    """A fleet request: power_kw [kW] (+ more discharge / − more charge) from start to end (slot boundaries)."""

    power_kw: float = Field(ge=-MAX_REQUEST_KW, le=MAX_REQUEST_KW, allow_inf_nan=False)
    start: AwareDatetime
    end: AwareDatetime

    @field_validator("start", "end")
    @classmethod
    def _sane(cls, value):
        return sane_time(value)  # before any arithmetic: year 9999 with an offset overflows
    reason: str = Field(default="", max_length=500, description="visible text (required to dispatch), "
                                                             "e.g. the aggregator's call id")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return visible_text(value, required=False)


def _preview(service, body: DispatchRequest):
    if body.power_kw == 0:
        raise field_error("power_kw", "must not be 0")
    try:
        return service.preview_dispatch(body.power_kw * 1000, body.start, body.end)
    except DispatchRequestError as exc:
        raise field_error(exc.field, exc.message) from None


@router.post("/vpp/preview", summary="Allocation of a fleet request across the halls (nothing is sent)")
def vpp_preview(body: DispatchRequest, request: Request, _: Principal = Depends(require(Permission.DISPATCH))) -> dict:
    return _preview(service_of(request), body).to_dict()


@router.post("/vpp/dispatch", summary="Allocate a fleet request and send the dispatch commands (operators)",
             responses=errors(409, e409="No hall can take part in this request"))
def vpp_dispatch(body: DispatchRequest, request: Request, who: Principal = Depends(require(Permission.DISPATCH))) -> dict:
    service = service_of(request)
    if not body.reason.strip():
        raise field_error("reason", "give a reason (e.g. the aggregator's call id)")
    pre = _preview(service, body)  # the same checks, answered as 422 before anything is sent
    if not pre.leases():
        raise HTTPException(409, "no hall can take part in this request: " + (
            ", ".join(f"{s} ({why})" for s, why in sorted(pre.excluded.items())) or pre.status))
    # The checked allocation is the one sent: solving again could give other leases than the 409 check saw.
    op = service.dispatch(body.power_kw * 1000, body.start, body.end, body.reason.strip(), who.username,
                          preview=pre)
    return op.to_dict()


@router.get("/operations", summary="Recent operations (switches, returns, dispatches) with per-hall acks")
def operations(request: Request, kind: Literal["disaster", "return_to_vpp", "dispatch", "jma_warning"] | None = None,
               limit: int = Query(20, ge=1, le=200), _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    ops = service_of(request).operations.recent(limit, kind)
    return {"operations": [o.to_dict() for o in ops]}


@router.get("/operations/{op_id}", summary="One operation with each hall's ack",
            responses=errors(404, e404="Unknown operation"))
def operation(op_id: str, request: Request, _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    op = service_of(request).operations.get(op_id)
    if op is None:
        raise HTTPException(404, f"unknown operation {op_id!r}")
    return op.to_dict()
