"""Fixtures for the central service tests: the shipped 14-hall fleet, users of every role, a service
with a recording command link (no broker), and helpers to feed site messages into it."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ems.central.alarmbook import AlarmBook
from ems.central.audit import AuditLog
from ems.central.history import LocalHistory
from ems.central.ratelimit import LoginLimiter
from ems.central.service import CentralService, Security
from ems.central.sessions import SessionStore
from ems.central.users import UserStore
from ems.config import load_fleet
from telemetry.fleet_state import FleetStateStore
from telemetry.mqtt_topics import SiteTopics

ROOT = Path(__file__).resolve().parents[2]
FLEET_FILE = ROOT / "config" / "fleet.yaml"

#: Test users: name -> roles.  Passwords are random per run.
ROLES = {
    "vera": ["viewer"],
    "otto": ["operator"],
    "mika": ["municipal"],
    "omar": ["operator", "municipal"],
    "ada": ["admin"],
}


def random_password(username: str = "") -> str:
    """A random password that passes the policy for ``username`` (it may not contain the name:
    a short name like 'ada' turns up in random text now and then)."""
    while True:
        password = "pw-" + secrets.token_urlsafe(16)
        if not username or username not in password.lower():
            return password


@pytest.fixture(scope="session")
def fleet():
    return load_fleet(FLEET_FILE)


@dataclass
class RecordingLink:
    """A CommandLink that records what the service publishes (no broker)."""

    published: list[tuple[str, dict]] = field(default_factory=list)
    started: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def connected(self) -> bool:
        return self.started

    def publish_raw(self, topic: str, payload, qos: int = 1) -> None:
        with self._lock:
            self.published.append((topic, json.loads(payload)))

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def commands(self, kind: str | None = None) -> list[dict]:
        with self._lock:
            return [env for topic, env in self.published if kind is None or env["kind"] == kind]


def state_message(site: str, mode: str = "vpp", soc_pct: float = 60.0, hours_left: float = 8.0,
                  grid_ok: bool = True, battery_w: float = -500.0, capacity_wh: float = 15000.0,
                  reason: str = "default", alarms: list | None = None, time: datetime | None = None) -> dict:
    """A state message shaped like ems.gateway.daemon.DaemonStatus.to_dict()."""
    now = time or datetime.now(timezone.utc)
    return {
        "site_id": site, "time": now.isoformat(),
        "mode": {"effective": mode, "requested": {"mode": mode, "reason": reason, "issued_by": "test",
                                                  "issued_at": now.isoformat(), "setpoint_w": None,
                                                  "command_id": None},
                 "reason": reason, "since": now.isoformat(), "grid_lost": not grid_ok},
        "soc_pct": soc_pct, "battery_w": battery_w, "grid_w": 800.0, "pv_w": 1200.0, "grid_ok": grid_ok,
        "requested_w": battery_w, "setpoint_w": battery_w, "plan_reason": "rule", "written": True,
        "stored_wh": capacity_wh * soc_pct / 100, "reserve_floor_wh": capacity_wh * 0.4, "hours_left": hours_left,
        "clips": [], "alarms": alarms or [], "cycle": {"last_ms": 5.0, "count": 1, "overruns": 0}, "devices": {},
    }


def feed(store: FleetStateStore, site: str, leaf: str, payload: dict) -> None:
    """Deliver one site message as CentralMqtt would."""
    topics = SiteTopics(site)
    topic = {"state": topics.state, "online": topics.online, "ack": topics.ack, "alarm": topics.alarm,
             "plan": topics.plan}[leaf]
    store.handle(topic, json.dumps(payload).encode())


def feed_fleet(store: FleetStateStore, fleet, **kw) -> None:
    """Every hall online with a plausible state."""
    for s in fleet.sites:
        feed(store, s.id, "online", {"online": True})
        feed(store, s.id, "state", state_message(s.id, capacity_wh=s.battery.capacity_wh, **kw))


def ack_for(env: dict, status: str = "ok", error: str | None = None) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    return {"command_id": env["id"], "site": env["site"], "kind": env["kind"], "status": status,
            "code": None if status == "ok" else "rejected", "error": error, "outcome": None,
            "received_at": now, "acked_at": now}


@dataclass
class Env:
    """A service with its parts and the users' passwords."""

    service: CentralService
    link: Any
    store: FleetStateStore
    passwords: dict[str, str]
    data: Path


def make_env(tmp: Path, fleet, users: dict[str, list[str]] | None = None, link_factory=None, **service_kw) -> Env:
    """A service over ``fleet`` with ``users`` (default: ROLES); ``link_factory(store)`` makes the command
    link (default: a RecordingLink)."""
    tmp.mkdir(parents=True, exist_ok=True)
    store = FleetStateStore([s.id for s in fleet.sites])
    link = link_factory(store) if link_factory else RecordingLink()
    user_store = UserStore(tmp / "users.sqlite")
    passwords = {}
    for name, roles in (users if users is not None else ROLES).items():
        passwords[name] = random_password(name)
        user_store.add(name, passwords[name], roles, display_name=name.title())
    security = Security(user_store, SessionStore(tmp / "users.sqlite"), AuditLog(tmp / "audit.sqlite"),
                        LoginLimiter(max_failures=3, lockout_s=60))
    service = CentralService(fleet, store, link, security, AlarmBook(tmp / "alarms.sqlite"),
                             LocalHistory(tmp / "history.sqlite", min_interval_s=0), **service_kw)
    return Env(service, link, store, passwords, tmp)


class Api:
    """A TestClient for the app of an Env, with login and bearer helpers."""

    def __init__(self, env: Env):
        from ems.central.app import create_app

        self.env = env
        self.app = create_app(env.service)
        self._clients = []
        self._tokens: dict[str, str] = {}

    def client(self):
        from fastapi.testclient import TestClient

        c = TestClient(self.app, raise_server_exceptions=True)
        c.__enter__()
        self._clients.append(c)
        return c

    def login(self, name: str):
        """A client logged in as ``name`` (cookie), with its CSRF header set."""
        c = self.client()
        r = c.post("/api/login", json={"username": name, "password": self.env.passwords[name]})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def bearer(self, name: str):
        """A client that authenticates as ``name`` with an API token."""
        if name not in self._tokens:
            self._tokens[name] = self.env.service.security.sessions.create_token(name, "tests")
        c = self.client()
        c.headers["Authorization"] = f"Bearer {self._tokens[name]}"
        return c

    def close(self) -> None:
        for c in self._clients:
            c.__exit__(None, None, None)


@pytest.fixture
def env(tmp_path, fleet) -> Env:
    e = make_env(tmp_path / "central", fleet)
    feed_fleet(e.store, fleet)
    return e


@pytest.fixture
def api(env):
    a = Api(env)
    yield a
    a.close()


def pytest_configure(config):
    # starlette's TestClient warns that it will move to httpx2; not our concern here.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory, fleet) -> Env:
    """One service per test module (for tests that do not change it)."""
    e = make_env(tmp_path_factory.mktemp("central"), fleet)
    feed_fleet(e.store, fleet)
    return e


@pytest.fixture(scope="module")
def shared_api(shared_env):
    a = Api(shared_env)
    yield a
    a.close()


class LiveServer:
    """The app served by uvicorn on 127.0.0.1:<free port> in a thread (for browsers and real HTTP)."""

    def __init__(self, app):
        import uvicorn

        from tests.netutil import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> "LiveServer":
        from tests.servers import wait_until

        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 30, what="uvicorn start")
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


# -- a real broker with fake halls (one per module that asks) ---------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory, fleet):
    """Mosquitto with the production ACL: user ``central`` and ``edge-<site>`` per hall (random passwords)."""
    from telemetry.mosquitto_acl import acl_text, gateway_username
    from tests.servers import MosquittoServer
    from tests.servers import random_password as server_password

    users = {"central": server_password(), **{gateway_username(s.id): server_password() for s in fleet.sites}}
    with MosquittoServer(tmp_path_factory.mktemp("mqtt"), users=users, acl=acl_text([s.id for s in fleet.sites])) as b:
        b.passwords = users
        yield b


def mqtt_settings(broker, user):
    from telemetry.mqtt_client import MqttSettings

    return MqttSettings("127.0.0.1", broker.port, username=user, password=broker.passwords[user], min_reconnect_s=0.5)


@pytest.fixture(scope="module")
def halls(request, broker, fleet, tmp_path_factory):
    """A FakeHall per site, connected; the test module's ``REFUSING`` site (if any) refuses mode commands."""
    import asyncio

    from telemetry.mosquitto_acl import gateway_username
    from tests.central.edge_fakes import FakeHall

    refusing = getattr(request.module, "REFUSING", None)
    state = tmp_path_factory.mktemp("edges")
    fakes = {s.id: FakeHall(s, mqtt_settings(broker, gateway_username(s.id)), state / s.id, refuse=s.id == refusing)
             for s in fleet.sites}
    for f in fakes.values():
        f.start()
    for f in fakes.values():
        assert asyncio.run(f.edge.wait_connected(30)), f.site.id
    yield fakes
    for f in fakes.values():
        f.stop()
