"""Login, logout and "who am I".  Failed logins lock the account (with backoff) and slow the address; audited."""

from __future__ import annotations

import asyncio
import math
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ems.central.api.deps import (NEEDS_LOGIN, Principal, client_ip, current_principal, errors, service_of,
                                  visible_text)
from ems.central.roles import permissions_of
from ems.central.sessions import cookie_kwargs, cookie_name
from ems.central.users import LANGUAGES

router = APIRouter(prefix="/api", tags=["auth"])


class LoginRequest(BaseModel):
    """User name and password."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("username")
    @classmethod
    def _name(cls, value: str) -> str:
        # " " would become an empty name, which the limiter and the audit log cannot key on.
        return visible_text(value)


@router.post("/login", summary="Log in; sets the session cookie and returns the CSRF token",
             responses=errors(401, 429, e401="Wrong user name or password (or the account is disabled)"))
async def login(body: LoginRequest, request: Request, response: Response) -> dict:
    """Accounts are locked with backoff after failed logins; an address with many failures gets its
    failures answered late but is never locked (see ems.central.ratelimit)."""
    service = service_of(request)
    ip = client_ip(request)
    name = body.username.strip().lower()
    # Password hashing and the stores block: run them on a worker thread.
    user, outcome = await run_in_threadpool(_attempt, service, name, body.password, ip)
    if user is None:
        if outcome.delay_s > 0:
            # A throttled address waits without holding a worker thread, so it cannot starve anybody else.
            await asyncio.sleep(outcome.delay_s)
        raise HTTPException(401, "wrong user name or password")
    sec = service.security
    session = await run_in_threadpool(sec.sessions.create, user)
    max_age = max(1, int((session.expires_at - service.clock()).total_seconds()))
    response.set_cookie(cookie_name(sec.secure_cookies), session.id, **cookie_kwargs(sec.secure_cookies, max_age))
    await run_in_threadpool(service.audit.append, user.username, "login", user.username,
                            details={"ip": ip, "via": "password"})
    return {"username": user.username, "display_name": user.display_name,
            "roles": sorted(r.value for r in user.roles),
            "permissions": sorted(p.value for p in permissions_of(user.roles)), "csrf_token": session.csrf_token}


def _attempt(service, name: str, password: str, ip: str):
    """(user, None) for a good login; (None, FailureOutcome) for a wrong one; 429 while the account is locked.
    Audits failures, the start of each lock, the first refusal during a lock and an address's throttling."""
    sec = service.security
    limiter = sec.limiter
    wait = limiter.check(name, ip)
    if wait is not None:
        retry = max(1, math.ceil(wait))
        if limiter.refused_before(name) <= 1:  # one record per lock: refusals cost nothing, a flood must not fill the log
            service.audit.append(name, "login_failed", name, reason="rate limited",
                                 details={"ip": ip, "locked_for_s": retry})
        raise HTTPException(429, f"too many failed logins for this account; try again in {retry} s",
                            headers={"Retry-After": str(retry)})
    user = sec.users.authenticate(name, password)
    if user is not None:
        limiter.success(name, ip)
        return user, None
    outcome = limiter.failure(name, ip)
    service.audit.append(name, "login_failed", name, reason="wrong user name or password",
                         details={"ip": ip, "failures": outcome.failures})
    if outcome.locked_s is not None:
        service.audit.append("central", "login_locked", name,
                             reason=f"{outcome.failures} failed logins in a row; "
                                    f"locked for {int(outcome.locked_s)} s",
                             details={"ip": ip, "failures": outcome.failures, "lock_s": outcome.locked_s})
    if outcome.throttle_started:
        service.audit.append("central", "login_throttled", ip,
                             reason=f"{limiter.address_limit} failed logins within {int(limiter.window_s)} s "
                                    f"from this address; its failures are answered {limiter.throttle_delay_s:g} s "
                                    "late (no account of it is locked by this)",
                             details={"ip": ip})
    return None, outcome


@router.post("/logout", summary="End the session", responses=NEEDS_LOGIN)
def logout(request: Request, response: Response, principal: Principal = Depends(current_principal)) -> dict:
    service = service_of(request)
    if principal.session is not None:
        service.security.sessions.revoke(principal.session.id)
    secure = service.security.secure_cookies
    response.delete_cookie(cookie_name(secure), path="/", secure=secure, httponly=True, samesite="strict")
    service.audit.append(principal.username, "logout", principal.username)
    return {"ok": True}


@router.get("/me", summary="The logged-in user, roles, permissions and CSRF token", responses=errors(401))
def me(request: Request, principal: Principal = Depends(current_principal)) -> dict:
    out = principal.to_dict()
    if principal.session is not None:
        out["csrf_token"] = principal.session.csrf_token
    users = service_of(request).security.users
    user = users.get(principal.username)
    out["display_name"] = user.display_name if user else ""
    out["language"] = users.language(principal.username) if user else None
    return out


class LanguageRequest(BaseModel):
    language: Literal[LANGUAGES] = Field(  # type: ignore[valid-type]
        description="the dashboard language: ja (日本語) or en (English)")


@router.put("/me/language", summary="Remember the dashboard language of the logged-in user (ja or en)",
            responses=errors(401, 403))
def set_language(body: LanguageRequest, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    users = service_of(request).security.users
    if users.get(principal.username) is None:  # an API token of a removed user: nothing to remember it on
        raise HTTPException(403, "no user account to remember the language on")
    users.set_language(principal.username, body.language)
    return {"language": body.language}
