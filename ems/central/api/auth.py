"""Login, logout and "who am I".  Logins are rate limited per user name and address, and audited."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ems.central.api.deps import Principal, client_ip, current_principal, service_of
from ems.central.roles import permissions_of
from ems.central.sessions import cookie_kwargs, cookie_name

router = APIRouter(prefix="/api", tags=["auth"])


class LoginRequest(BaseModel):
    """User name and password."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/login", summary="Log in; sets the session cookie and returns the CSRF token")
def login(body: LoginRequest, request: Request, response: Response) -> dict:
    service = service_of(request)
    sec = service.security
    ip = client_ip(request)
    name = body.username.strip().lower()
    wait = sec.limiter.check(name, ip)
    if wait is not None:
        service.audit.append(name, "login_failed", name, reason="rate limited", details={"ip": ip})
        raise HTTPException(429, f"too many failed logins; try again in {int(wait) + 1} s",
                            headers={"Retry-After": str(int(wait) + 1)})
    user = sec.users.authenticate(name, body.password)
    if user is None:
        sec.limiter.failure(name, ip)
        service.audit.append(name, "login_failed", name, reason="wrong user name or password", details={"ip": ip})
        raise HTTPException(401, "wrong user name or password")
    sec.limiter.success(name, ip)
    session = sec.sessions.create(user)
    max_age = max(1, int((session.expires_at - service.clock()).total_seconds()))
    response.set_cookie(cookie_name(sec.secure_cookies), session.id, **cookie_kwargs(sec.secure_cookies, max_age))
    service.audit.append(user.username, "login", user.username, details={"ip": ip, "via": "password"})
    return {"username": user.username, "display_name": user.display_name,
            "roles": sorted(r.value for r in user.roles),
            "permissions": sorted(p.value for p in permissions_of(user.roles)), "csrf_token": session.csrf_token}


@router.post("/logout", summary="End the session")
def logout(request: Request, response: Response, principal: Principal = Depends(current_principal)) -> dict:
    service = service_of(request)
    if principal.session is not None:
        service.security.sessions.revoke(principal.session.id)
    secure = service.security.secure_cookies
    response.delete_cookie(cookie_name(secure), path="/", secure=secure, httponly=True, samesite="strict")
    service.audit.append(principal.username, "logout", principal.username)
    return {"ok": True}


@router.get("/me", summary="The logged-in user, roles, permissions and CSRF token")
def me(request: Request, principal: Principal = Depends(current_principal)) -> dict:
    out = principal.to_dict()
    if principal.session is not None:
        out["csrf_token"] = principal.session.csrf_token
    user = service_of(request).security.users.get(principal.username)
    out["display_name"] = user.display_name if user else ""
    return out
