"""Alarms of the fleet: list (open, active, all), acknowledge."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ems.central.alarmbook import AlarmAlreadyAcked
from ems.central.api.deps import NEEDS_LOGIN, Principal, errors, no_control_characters, require, service_of
from ems.central.roles import Permission

router = APIRouter(prefix="/api", tags=["alarms"], responses=NEEDS_LOGIN)


@router.get("/alarms", summary="Alarms newest first: open (active or unacknowledged), active, or all (history)")
def alarms(request: Request, state: Literal["open", "active", "all"] = "open", site: str | None = None,
           limit: int = Query(200, ge=1, le=5000), _: Principal = Depends(require(Permission.VIEW_FLEET))) -> dict:
    return {"alarms": [a.to_dict() for a in service_of(request).alarms.list(state, site, limit)]}


class AckRequest(BaseModel):
    """An optional note on what was done."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)

    @field_validator("note")
    @classmethod
    def _note(cls, value: str) -> str:
        return no_control_characters(value)  # a blank note is no note (the route strips it)


@router.post("/alarms/{alarm_id:path}/ack", summary="Acknowledge an alarm (operators)",
             responses=errors(404, 409, e404="Unknown alarm", e409="The alarm is already acknowledged"))
def ack(alarm_id: str, body: AckRequest, request: Request, who: Principal = Depends(require(Permission.ACK_ALARM))) -> dict:
    try:
        return service_of(request).ack_alarm(alarm_id, who.username, body.note.strip()).to_dict()
    except KeyError:
        raise HTTPException(404, f"unknown alarm {alarm_id!r}") from None
    except AlarmAlreadyAcked as exc:
        raise HTTPException(409, str(exc)) from None
