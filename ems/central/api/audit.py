"""The audit log for admins: records, CSV export, chain verification."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ems.central.api.deps import NEEDS_LOGIN, SQLITE_INT_MAX, Principal, require, service_of
from ems.central.roles import Permission

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=NEEDS_LOGIN)


def record_dict(rec: Any) -> dict[str, Any]:
    """An AuditRecord as JSON (time ISO 8601 UTC)."""
    t = rec.time
    return {"seq": rec.seq, "time": t.isoformat() if isinstance(t, datetime) else t, "actor": rec.actor,
            "action": rec.action, "target": rec.target, "reason": rec.reason, "details": rec.details,
            "hash": rec.hash}


@router.get("", summary="Audit records after since_seq, oldest first (or newest first); filter by action, "
                        "target and actor")
def records(request: Request, since_seq: int = Query(0, ge=0, le=SQLITE_INT_MAX), limit: int = Query(200, ge=1, le=5000),
            newest_first: bool = False, actor: str | None = Query(None, max_length=200),
            action: str | None = Query(None, max_length=64), target: str | None = Query(None, max_length=200),
            _: Principal = Depends(require(Permission.VIEW_AUDIT))) -> dict:
    audit = service_of(request).audit
    return {"records": [record_dict(r) for r in audit.records(since_seq=since_seq, limit=limit, action=action,
                                                                target=target, actor=actor,
                                                                newest_first=newest_first)]}


@router.get("/verify", summary="Check the whole log: hash chain, MACs (with the key) and the head log: what was "
                             "changed (first bad seq) and what was cut (head log seq against the database's)")
def verify(request: Request, who: Principal = Depends(require(Permission.VIEW_AUDIT))) -> dict:
    # ok, checked, first_bad_seq, problem; changed_seq, cuts, last_seq, head_seq, signed, unsigned, head_log, notes
    return service_of(request).audit.verify().to_dict()


@router.get("/export.csv", summary="The audit log as CSV (admins)", response_class=Response,
            responses={200: {"description": "The whole log, one record a row", "content": {"text/csv": {}}}})
def export_csv(request: Request, who: Principal = Depends(require(Permission.EXPORT_AUDIT))) -> Response:
    service = service_of(request)
    buf = io.StringIO()
    service.audit.export_csv(buf)
    service.audit.append(who.username, "audit_export", "audit", details={"bytes": len(buf.getvalue())})
    stamp = service.clock().strftime("%Y%m%dT%H%M%SZ")
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="ems-audit-{stamp}.csv"'})
