"""A person at the central service's web API: log in, switch halls, return them, read operations and audit.

Plain HTTP with the standard library (the drill must not need test-only
packages): the session cookie is kept in a cookie jar and the CSRF token
sent on every unsafe request, exactly as the dashboard does.  Blocking:
the runner calls it in a worker thread.
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ems.central.sessions import CSRF_HEADER  # stdlib-only module: the drill still needs no extra package


class ApiError(RuntimeError):
    """The API answered with an error status (``status``) or not at all (status None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class StaffClient:
    """One user at ``base_url`` (http://127.0.0.1:port); ``timeout_s`` [s] per request."""

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 20.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._csrf: str | None = None
        self._jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._jar))

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self._csrf and method != "GET":
            req.add_header(CSRF_HEADER, self._csrf)
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                text = resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise ApiError(f"{method} {path}: HTTP {exc.code}: {detail}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"{method} {path}: no answer: {exc}") from None
        return json.loads(text) if text else None

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        """A request, logging in first (and again once if the session was lost, e.g. a restart)."""
        if self._csrf is None:
            self.login()
        try:
            return self._request(method, path, body)
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise
            self.login()
            return self._request(method, path, body)

    def login(self) -> dict:
        """POST /api/login; keeps the session cookie and CSRF token."""
        self._csrf = None
        out = self._request("POST", "/api/login", {"username": self.username, "password": self._password})
        self._csrf = out["csrf_token"]
        return out

    @staticmethod
    def _scope_body(scope: str, reason: str, area_code: str | None, halls: list[str] | None) -> dict:
        body: dict[str, Any] = {"scope": "sites" if scope == "halls" else scope, "reason": reason, "confirm": True}
        if area_code:
            body["area_code"] = area_code
        if halls:
            body["sites"] = list(halls)
        return body

    def switch_to_disaster(self, scope: str, reason: str, area_code: str | None = None,
                           halls: list[str] | None = None) -> dict:
        """POST /api/disaster/switch; returns the operation (id, commands)."""
        return self._call("POST", "/api/disaster/switch", self._scope_body(scope, reason, area_code, halls))

    def return_to_vpp(self, scope: str, reason: str, area_code: str | None = None,
                      halls: list[str] | None = None) -> dict:
        """POST /api/disaster/return; returns the operation."""
        return self._call("POST", "/api/disaster/return", self._scope_body(scope, reason, area_code, halls))

    def operations(self, limit: int = 200) -> list[dict]:
        """GET /api/operations: recent operations with each hall's ack."""
        return self._call("GET", f"/api/operations?limit={limit}")["operations"]

    def audit(self, action: str | None = None, since_seq: int = 0, limit: int = 5000) -> list[dict]:
        """GET /api/audit (admins): records after ``since_seq``, oldest first."""
        q = {"since_seq": since_seq, "limit": limit}
        if action:
            q["action"] = action
        return self._call("GET", "/api/audit?" + urllib.parse.urlencode(q))["records"]

    def alarms(self, state: str = "all", limit: int = 5000) -> list[dict]:
        """GET /api/alarms: the central alarm book (open, active or all)."""
        return self._call("GET", f"/api/alarms?state={state}&limit={limit}")["alarms"]

    def fleet(self) -> Any:
        """GET /api/fleet: the overview rows."""
        return self._call("GET", "/api/fleet")

    def jma_arrivals(self) -> dict:
        """GET /api/jma/arrivals: typhoon storm-wind arrival forecast per hall ({site: {arrival, …}})."""
        return self._call("GET", "/api/jma/arrivals")["arrivals"]
