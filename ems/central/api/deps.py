"""Who is asking: session cookie (+ CSRF header for unsafe methods) or bearer token; permission checks.

* 401 when nobody is logged in (no or unknown session/token, or the user was disabled);
* 403 when the user lacks the permission, or a cookie-authenticated unsafe
  request (POST, PUT, PATCH, DELETE) lacks the right ``X-CSRF-Token`` header.

Bearer tokens need no CSRF header: a browser never adds them by itself.
The user's roles are read from the user store on every request, so a role
change or a disabled account takes effect at once.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel

from ems.central.roles import Permission, Role, permissions_of
from ems.central.sessions import CSRF_HEADER, check_csrf, cookie_name

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: user name, roles, permissions, how (session | token), the session."""

    username: str
    roles: frozenset[Role]
    permissions: frozenset[Permission]
    via: str
    session: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "roles": sorted(r.value for r in self.roles),
                "permissions": sorted(p.value for p in self.permissions), "via": self.via}


def service_of(request: Request):
    """The CentralService of the app."""
    return request.app.state.service


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or, when the peer is a configured trusted proxy
    (``listen.trusted_proxies``), the right-most untrusted address in its ``X-Forwarded-For``."""
    peer = request.client.host if request.client else "unknown"
    proxies = getattr(service_of(request).security.limiter, "proxies", None)
    if not proxies:
        return peer
    return proxies.client_address(peer, request.headers.getlist("x-forwarded-for"))


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def current_principal(request: Request) -> Principal:
    """The caller, or 401.  Enforces CSRF for cookie sessions on unsafe methods (403)."""
    service = service_of(request)
    sec = service.security
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Authorization header must be 'Bearer <token>'")
        username = sec.sessions.token_user(token.strip())
        user = sec.users.get(username) if username else None
        if user is None or user.disabled:
            raise _unauthorized("invalid or revoked token")
        return Principal(user.username, frozenset(user.roles), permissions_of(user.roles), "token")
    session_id = request.cookies.get(cookie_name(sec.secure_cookies))
    session = sec.sessions.get(session_id) if session_id else None
    if session is None:
        raise _unauthorized("not logged in")
    user = sec.users.get(session.username)
    if user is None or user.disabled:
        sec.sessions.revoke(session_id)
        raise _unauthorized("account disabled")
    if request.method in UNSAFE_METHODS and not check_csrf(session, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    return Principal(user.username, frozenset(user.roles), permissions_of(user.roles), "session", session)


def require(permission: Permission) -> Callable[..., Principal]:
    """Dependency: the caller must be logged in (401) and hold ``permission`` (403)."""

    def check(principal: Principal = Depends(current_principal)) -> Principal:
        if permission not in principal.permissions:
            raise HTTPException(403, f"your roles ({', '.join(sorted(r.value for r in principal.roles))}) "
                                     f"do not allow {permission.value}")
        return principal

    check.__name__ = f"require_{permission.value}"
    return check


class ErrorAnswer(BaseModel):
    """An error answer: ``detail`` (text; for 422 the list of field errors with ``loc``) and ``message``."""

    detail: str | list[dict[str, Any]]
    message: str | None = None


#: What each error answer of the API means (the OpenAPI schema declares these per route).
_ERRORS = {
    401: "Not logged in: no or unknown session or token, a wrong user name or password, or the account is disabled",
    403: "Logged in, but the roles do not allow this, or the X-CSRF-Token header is missing or wrong "
         "(cookie sessions, unsafe methods)",
    404: "No such item",
    409: "The request conflicts with the current state",
    429: "Too many failed logins for this account: wait Retry-After seconds",
    501: "Not available with this configuration",
    502: "The history backend did not answer",
}


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: the error answers ``codes`` it really gives
    (a description per code may be overridden as ``e404="unknown hall"``)."""
    return {code: {"model": ErrorAnswer, "description": descriptions.get(f"e{code}", _ERRORS[code])}
            for code in codes}


#: Every route behind require(): not logged in, or not allowed (or a missing CSRF header).
NEEDS_LOGIN = errors(401, 403)


def field_error(field: str, message: str, where: str = "body") -> HTTPException:
    """A 422 in FastAPI's own shape, naming the field."""
    return HTTPException(422, [{"loc": [where, field], "msg": message, "type": "value_error"}])


#: Largest integer SQLite stores (signed 64 bit): integer query and path parameters stay within it.
SQLITE_INT_MAX = 2**63 - 1
#: Years an API time may name: far enough for any history or dispatch, and arithmetic on it
#: (time zones, ranges, slots) cannot leave datetime's years 1..9999.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100


def sane_time(t: datetime) -> datetime:
    """``t`` if its year (as written, before any conversion) is within EARLIEST_YEAR..LATEST_YEAR,
    else ValueError: year 1 or 9999 with an offset would overflow on conversion to UTC."""
    if not EARLIEST_YEAR <= t.year <= LATEST_YEAR:
        raise ValueError(f"must be within the years {EARLIEST_YEAR}..{LATEST_YEAR}")
    return t


#: Unicode categories that show nothing: controls, format (zero-width, bidi marks), spaces, line/paragraph separators.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def no_control_characters(value: str) -> str:
    """``value`` unless it holds a control character (Unicode Cc: NUL, newline, escape, ...) or a lone
    surrogate (not text: it cannot be stored as UTF-8); ValueError naming the first one."""
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cc":
            raise ValueError(f"must not contain control characters (U+{ord(ch):04X} found)")
        if category == "Cs":
            raise ValueError(f"must not contain lone surrogates (U+{ord(ch):04X} found)")
    return value


def visible_text(value: str, required: bool = True) -> str:
    """``value`` if it is usable free text (a reason, a note): no control character (NUL, newline, ...,
    Unicode Cc) and no lone surrogate, and, when ``required`` or not empty, at least one visible
    character once whitespace and zero-width/format characters (Cc, Cf, Zs, Zl, Zp) are left out.
    Returned without invisible characters at either end; ValueError saying which rule failed (pydantic
    names the field)."""
    no_control_characters(value)
    visible = [i for i, ch in enumerate(value) if unicodedata.category(ch) not in INVISIBLE_CATEGORIES]
    if not visible:
        if required or value:
            raise ValueError("must hold visible text, not only spaces or invisible (zero-width, format) characters")
        return value
    return value[visible[0]:visible[-1] + 1]  # trimmed like str.strip(), zero-width characters included
