"""``ems deploy influx-users``: create the deployment's InfluxDB 1.x database and users.

With ``influx_auth`` each gateway writes as ``edge-<site>`` (WRITE on the
database) and the central service reads as ``central`` (READ); their
passwords are the ``secrets/influx.password`` files ``ems deploy`` wrote.
Run it from the machine holding the deployment folder, with an InfluxDB
admin, after ``init`` and after every ``add-hall``: users that exist get
their password set again (the files are the truth), grants are repeated.
Statements go in the POST body, never in a URL (InfluxDB logs URLs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import urllib3

from ems.deploy.configs import INFLUX_SECRET, influx_username, secret_file
from ems.deploy.layout import Folder, Options
from ems.errors import UsageError


@dataclass(frozen=True)
class InfluxUser:
    name: str
    privilege: str  # READ | WRITE
    secret: Path


def influx_users(folder: Folder, sites: list[str]) -> list[InfluxUser]:
    """The users a deployment needs: central (READ) and one writer per hall that has a folder."""
    users = [InfluxUser(influx_username(None), "READ", secret_file(folder.central, INFLUX_SECRET))]
    users += [InfluxUser(influx_username(s), "WRITE", secret_file(folder.gateway(s), INFLUX_SECRET)) for s in sites]
    return users


class InfluxAdmin:
    """Runs InfluxQL as an admin over HTTP (``POST /query``)."""

    def __init__(self, url: str, username: str, password: str, timeout_s: float = 15.0):
        self.url = url.rstrip("/")
        self._headers = urllib3.make_headers(basic_auth=f"{username}:{password}")
        self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=timeout_s))

    def run(self, statement: str, what: str) -> dict:
        """Run one statement; UsageError naming ``what`` (never the statement: it may hold a password)."""
        try:
            r = self._http.request("POST", f"{self.url}/query", fields={"q": statement}, encode_multipart=False,
                                   headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise UsageError(f"InfluxDB {self.url}: {what}: {exc}") from None
        try:
            body = json.loads(r.data or b"{}")
        except ValueError:
            body = {}
        error = body.get("error") or next((res["error"] for res in body.get("results", []) if "error" in res), None)
        if r.status != 200 or error:
            raise UsageError(f"InfluxDB {self.url}: {what}: HTTP {r.status}: {error or r.data[:200]!r}")
        return body

    def users(self) -> set[str]:
        body = self.run("SHOW USERS", "list users")
        series = body["results"][0].get("series") or []
        return {row[0] for s in series for row in s.get("values", [])}


def _quote_password(password: str) -> str:
    if "'" in password or "\\" in password or "\n" in password:
        raise UsageError("a password file holds ' or \\ or a line break: not usable in InfluxQL")
    return f"'{password}'"


def create_influx_users(folder: Folder, opts: Options, sites: list[str], admin_user: str, admin_password: str,
                        url: str | None = None) -> list[str]:
    """Create the database and users (or set their passwords again); returns the user names."""
    if not opts.influx_url or not opts.influx_auth:
        raise UsageError("this deployment has no InfluxDB users (it was made without --influx-url or with "
                         "--influx-no-auth)")
    admin = InfluxAdmin(url or opts.influx_url, admin_user, admin_password)
    db = opts.influx_db
    admin.run(f'CREATE DATABASE "{db}"', f"create database {db}")
    existing = admin.users()
    names = []
    for user in influx_users(folder, sites):
        if not user.secret.is_file():
            raise UsageError(f"{user.secret}: missing (run `ems deploy init` or `add-hall` first)")
        password = _quote_password(user.secret.read_text(encoding="utf-8").strip())
        if user.name in existing:
            admin.run(f'SET PASSWORD FOR "{user.name}" = {password}', f"set the password of {user.name}")
        else:
            admin.run(f'CREATE USER "{user.name}" WITH PASSWORD {password}', f"create user {user.name}")
        admin.run(f'GRANT {user.privilege} ON "{db}" TO "{user.name}"', f"grant {user.privilege} to {user.name}")
        names.append(user.name)
    return names
