"""The central service inside a :class:`ems.sim.runtime.FleetRuntime`: built like ``ems central``, served by uvicorn.

The service runs in a thread of its own with its own event loop (uvicorn
``Server.run``), exactly as a separate process would: the halls' daemons
never wait for it and it can be stopped and started again
(:meth:`CentralServer.restart`) while the fleet keeps running.  Its data
folder (users, sessions, audit, alarms, history, JMA seen set) survives the
restart, as on a real server.

Time: the service, its fleet state store and its command envelopes use the
runtime's clock (simulated time in a drill), so audit rows of commands,
operations and acks line up with the halls' timeline.  Lifetimes that are
meant in wall time (command TTL, ack timeout, staleness) are multiplied by
the clock's speed.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from ems.config import FleetConfig
from telemetry.mqtt_client import MqttSettings

log = logging.getLogger(__name__)

#: Seed of the synthetic day-ahead prices the simulation's central service publishes to every hall.
SIM_PRICE_SEED = 0

#: The run's users of the central service: (user name, role).  Passwords are random per run.
RUN_ROLES = ("admin", "municipal", "operator")


@dataclass(frozen=True)
class CentralTiming:
    """Wall-time lifetimes [s] the service works with; scaled by the clock's speed when built."""

    command_ttl_s: float = 120.0
    ack_timeout_s: float = 30.0
    stale_after_s: float = 30.0
    jma_poll_s: float = 0.5


class CentralServer:
    """Build, serve, stop and restart the central service on 127.0.0.1:``port``.

    ``mqtt`` are the central user's broker settings; ``jma_dir`` the folder
    of JMA XML files the poller reads (None: no JMA polling); ``clock`` the
    runtime's clock (``now()``, ``speed``).
    """

    def __init__(self, fleet: FleetConfig, data_dir: Path, mqtt: MqttSettings, clock: Any, port: int,
                 jma_dir: Path | None = None, timing: CentralTiming = CentralTiming(), user_prefix: str = "drill"):
        self.fleet = fleet
        self.data_dir = Path(data_dir)
        self.mqtt = mqtt
        self.clock = clock
        self.port = port
        self.jma_dir = jma_dir
        self.timing = timing
        self.user_prefix = user_prefix
        self.url = f"http://127.0.0.1:{port}"
        self.passwords: dict[str, str] = {}
        self.roles: dict[str, str] = {}
        self.service: Any = None
        self.restarts = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- users ---------------------------------------------------------------------------------
    def _ensure_users(self, users: Any) -> None:
        for role in RUN_ROLES:
            name = f"{self.user_prefix}-{role}"
            if name in self.passwords:
                continue
            password = "run-" + secrets.token_urlsafe(18)
            if users.get(name) is None:
                users.add(name, password, [role], display_name=f"{role} (this run)")
            else:
                users.set_password(name, password)
            self.passwords[name] = password
            self.roles[role] = name

    def credentials(self, role: str) -> tuple[str, str]:
        """(user name, password) of the run's user with ``role`` (admin, municipal, operator)."""
        name = self.roles[role]
        return name, self.passwords[name]

    # -- building -------------------------------------------------------------------------------
    def _build(self) -> Any:
        """The service as ``ems central`` builds it (:func:`ems.central.cli.build_service`), from a config
        made here: the run's broker, a local history store, the drill's JMA folder, synthetic day-ahead
        prices for the gateways, and lifetimes on the simulation's clock."""
        from ems.central.audit import create_key_file
        from ems.central.cli import USERS_DB, build_service
        from ems.central.config import (AuditSpec, CentralConfig, CommandSpec, JmaSpec, ListenSpec, MarketSpec,
                                        SessionSpec)
        from ems.central.history import LocalHistory
        from ems.central.users import UserStore

        data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        users = UserStore(data / USERS_DB)
        try:
            self._ensure_users(users)
        finally:
            users.close()
        # The audit log is signed as in production, with a random key made for this data folder (a run's,
        # or a --state-dir used again); key and head log lie beside the database: a demo, not a vault.
        create_key_file(data / "audit.key")
        t = self.timing
        cfg = CentralConfig(
            data_dir=str(data), listen=ListenSpec(port=self.port),
            jma=JmaSpec(enabled=self.jma_dir is not None, source=str(self.jma_dir) if self.jma_dir else None),
            sessions=SessionSpec(max_login_failures=5, lockout_s=60),
            commands=CommandSpec(ttl_s=t.command_ttl_s, ack_timeout_s=t.ack_timeout_s),
            market=MarketSpec(source="synthetic", seed=SIM_PRICE_SEED, check_s=1.0), stale_after_s=t.stale_after_s,
            audit=AuditSpec(key_file=str(data / "audit.key"), head_log=str(data / "audit-head.log")))
        cfg._base_dir = data
        speed = float(getattr(self.clock, "speed", 1.0) or 1.0)
        service = build_service(cfg, self.fleet, mqtt_settings=self.mqtt,
                                history=LocalHistory(data / "history.sqlite", min_interval_s=600.0),
                                clock=self.clock.now, speed=speed, jma_poll_s=t.jma_poll_s)
        if service.jma is not None:
            # A drill writes 訓練 (drill) telegrams, which a real central service ignores; this simulated
            # one is the only service built to act on them.
            service.jma.trigger.accept_drills = True
        return service

    # -- serving --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 30.0) -> None:
        """Build a new service and serve it; RuntimeError if uvicorn does not come up."""
        import uvicorn

        from ems.central.app import create_app

        if self.running:
            return
        self.service = self._build()
        app = create_app(self.service)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                               access_log=False, server_header=False, lifespan="on"))
        self._server = server
        self._thread = threading.Thread(target=server.run, name="central-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not server.started and self._thread.is_alive():
            time.sleep(0.02)
        if not server.started:
            self.stop()
            raise RuntimeError(f"central service did not start on {self.url}")
        log.info("central service on %s", self.url)

    def wait_connected(self, timeout_s: float = 30.0) -> bool:
        """Wait until the service's MQTT link is connected and subscribed."""
        return bool(self.service and self.service.link.wait_connected(timeout_s))

    def stop(self) -> None:
        """Stop serving (the app's lifespan stops the service and its MQTT link) and close its files."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(30)
            if thread.is_alive():  # do not wait on its locks: leave its files to the process exit
                log.error("central service thread did not stop within 30 s; its stores stay open")
                self._server = self._thread = self.service = None
                return
        self._server = self._thread = None
        service, self.service = self.service, None
        if service is not None:
            _close_quietly(service.security.users.close, service.security.sessions.close,
                           service.security.audit.close, getattr(service.alarms, "close", None),
                           getattr(service.history, "close", None), service.operations.close,
                           getattr(service.jma.reader, "close", None) if service.jma else None)

    def restart(self) -> float:
        """Stop and start again on the same port with the same data; returns the wall seconds it took."""
        t0 = time.monotonic()
        self.stop()
        self.start()
        self.restarts += 1
        return time.monotonic() - t0


def _close_quietly(*closers: Callable[[], Any] | None) -> None:
    for close in closers:
        if close is None:
            continue
        try:
            close()
        except Exception as exc:  # closing is best effort; a leaked handle is not worth a crash
            log.debug("closing a central store failed: %s", exc)
