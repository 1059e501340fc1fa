"""``ems central --config central.yaml``: run the central service (HTTP API, dashboard, MQTT, JMA poller).

Wiring (the lead adds it to ems/cli.py)::

    from ems.central.cli import add_central_parser
    add_central_parser(sub)

Files in ``data_dir``: ``users.sqlite`` (users and sessions; create the
first admin with ``ems users add --db <data_dir>/users.sqlite --role admin NAME``),
``audit.sqlite``, ``alarms.sqlite``, ``history.sqlite`` (local history),
``jma-seen.sqlite`` (feed entries already read), ``operations.sqlite`` (recent operations with their
commands: a restart sends again what was never answered).  A damaged one is moved aside
as ``<name>.corrupt-<UTC time>`` and started afresh, with a central alarm
(ems.central.sqlite_recovery).

The ``market:`` section makes the market publisher (ems.central.market):
day-ahead prices and weather, retained on ``ems/v1/_fleet/…`` for every
gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from devices.configfile import ConfigError
from ems.central.alarmbook import AlarmBook
from ems.central.config import CentralConfig, load_central_config
from ems.central.history import HistoryBackend, InfluxHistory, LocalHistory, NoHistory
from ems.central.market import JepxCsvFeed, MarketPublisher, PriceFeed, SyntheticFeed
from ems.central.notify import Notifier
from ems.central.operations import OperationLog
from ems.central.service import CentralService, CommandLink, JmaParts, Security
from ems.central.sqlite_recovery import OnRecovered, Recovery, raise_store_alarms
from ems.config import FleetConfig, load_fleet
from telemetry.fleet_state import FleetStateStore
from telemetry.mqtt_client import MqttSettings

log = logging.getLogger(__name__)

USERS_DB = "users.sqlite"


def build_history(cfg: CentralConfig, on_recovered: OnRecovered | None = None) -> HistoryBackend:
    """The configured history backend (``on_recovered``: told when a damaged local store was replaced)."""
    h = cfg.history
    if h.backend == "influx1":
        return InfluxHistory(h.url or "", h.database, h.retention_policy, h.username, h.secret(cfg.base_dir))
    if h.backend == "local":
        return LocalHistory(cfg.data_path / "history.sqlite", on_recovered=on_recovered)
    return NoHistory()


def build_market(cfg: CentralConfig, fleet: FleetConfig, publish, clock=None) -> MarketPublisher:
    """The market publisher of ``cfg.market``: ``publish(topic, payload)`` publishes retained (QoS 1),
    ``clock`` returns now (default: the wall clock)."""
    m = cfg.market
    areas = m.areas or [fleet.fleet.jepx_area]
    feed: PriceFeed | None = None
    if m.source == "jepx_csv":
        feed = JepxCsvFeed(cfg.path(m.path or ""), areas)
    elif m.source == "synthetic":
        feed = SyntheticFeed(m.seed)
    kw = {"clock": clock} if clock is not None else {}
    return MarketPublisher(publish, areas=areas, area_codes=[s.area_code for s in fleet.sites], prices=feed,
                           weather_file=cfg.path(m.weather_file) if m.weather_file else None, check_s=m.check_s,
                           weather_days_ahead=m.weather_days_ahead, **kw)


def build_service(cfg: CentralConfig, fleet: FleetConfig | None = None, *, mqtt_settings: MqttSettings | None = None,
                  link: CommandLink | None = None, history: HistoryBackend | None = None,
                  clock: Callable[[], datetime] | None = None, speed: float = 1.0,
                  jma_poll_s: float | None = None) -> CentralService:
    """A CentralService from the config (``mqtt_settings`` / ``link`` / ``history`` override the config's,
    e.g. for the demo's embedded broker).

    The simulation builds its central service here too, on its own clock:
    ``clock`` returns now (simulated time), ``speed`` [sim s per wall s]
    scales the config's wall-time lifetimes (command TTL, ack timeout,
    staleness), ``jma_poll_s`` [s] polls a drill's JMA folder faster than a
    config may.

    A store file that is damaged is moved aside and started afresh
    (ems.central.sqlite_recovery); each such recovery is a central alarm, an
    audit record and a log line naming the file.
    """
    from ems.central.ratelimit import LoginLimiter
    from ems.central.sessions import SessionStore
    from ems.central.users import UserStore
    from telemetry.central_mqtt import CentralMqtt

    fleet = fleet or load_fleet(cfg.fleet_path)
    data = cfg.data_path
    data.mkdir(parents=True, exist_ok=True)
    store = FleetStateStore([s.id for s in fleet.sites], **({"clock": clock} if clock is not None else {}))
    if link is None:
        settings = mqtt_settings or cfg.mqtt.settings(cfg.base_dir)
        link = CentralMqtt(settings, store, issued_by="central", client_id=cfg.mqtt.client_id)
    s = cfg.sessions
    recovered: list[Recovery] = []  # damaged store files replaced by fresh ones: alarms once the book is open
    audit = _open_audit(cfg, data, recovered.append)
    alarms = AlarmBook(data / "alarms.sqlite", on_recovered=recovered.append)
    security = Security(users=UserStore(data / USERS_DB, on_recovered=recovered.append),
                        sessions=SessionStore(data / USERS_DB, ttl_s=s.ttl_s, idle_s=s.idle_s,
                                              on_recovered=recovered.append),
                        audit=audit,
                        limiter=LoginLimiter(max_failures=s.max_login_failures, lockout_s=s.lockout_s,
                                             max_lockout_s=s.max_lockout_s, window_s=s.login_window_s,
                                             address_max_failures=s.address_max_failures,
                                             throttle_delay_s=s.throttle_delay_s,
                                             trusted_proxies=cfg.listen.trusted_proxies),
                        secure_cookies=cfg.listen.secure_cookies)
    jma = None
    if cfg.jma.enabled:
        from ems.central.jma.config_spec import trigger_kwargs
        from ems.central.jma.feed import AtomFeedReader, FeedReaders
        from ems.central.jma.trigger import WarningTrigger

        sources = [s if s.startswith(("http://", "https://")) else str(cfg.path(s))
                   for s in [cfg.jma.source or "", *cfg.jma.extra_sources]]
        readers = [AtomFeedReader(s, data / ("jma-seen.sqlite" if i == 0 else f"jma-seen-{i}.sqlite"),
                                  on_recovered=recovered.append) for i, s in enumerate(sources)]
        jma = JmaParts(readers[0] if len(readers) == 1 else FeedReaders(readers),
                       WarningTrigger(list(fleet.sites), **trigger_kwargs(cfg.jma),
                                      **({"clock": clock} if clock is not None else {})),
                       jma_poll_s if jma_poll_s is not None else cfg.jma.poll_s, sources[0])
    publish = getattr(link, "publish_retained", None)
    market = build_market(cfg, fleet, publish, clock) if publish is not None else None
    if market is None and (cfg.market.source != "none" or cfg.market.weather_file):
        raise ValueError("market: the command link cannot publish retained messages (it has no publish_retained)")
    ack_timeout = timedelta(seconds=cfg.commands.ack_timeout_s * speed)
    operations = OperationLog(ack_timeout, data / "operations.sqlite", on_recovered=recovered.append)
    service = CentralService(fleet, store, link, security, alarms,
                             history or build_history(cfg, recovered.append), jma=jma, market=market,
                             command_ttl=timedelta(seconds=cfg.commands.ttl_s * speed),
                             operations=operations,
                             stale_after=timedelta(seconds=cfg.stale_after_s * speed), public_page=cfg.public_page,
                             notifier=Notifier(cfg.notify, cfg.base_dir) if cfg.notify.enabled else None,
                             **({"clock": clock} if clock is not None else {}))
    raise_store_alarms(alarms, audit, recovered, service.clock())
    return service


def _open_audit(cfg: CentralConfig, data: Path, on_recovered: OnRecovered) -> Any:
    """The audit log in ``data``, signed and with its head log when ``cfg.audit`` names them;
    ConfigError naming ``audit.key_file`` / ``audit.head_log`` when they cannot be used."""
    from ems.central.audit import AuditKeyError, open_audit_log

    a = cfg.audit
    try:
        return open_audit_log(data / "audit.sqlite", cfg.path(a.key_file) if a.key_file else None,
                              cfg.path(a.head_log) if a.head_log else None, on_recovered)
    except AuditKeyError as exc:
        raise ConfigError([f"audit.{exc.field}: {exc}"]) from None


def add_central_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``central`` to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("central", help="run the central service: dashboard, API, disaster switch, JMA",
                              description="Run the central service: HTTP API with OpenAPI docs at /api/docs, "
                                          "the operators' and municipal staff's dashboard at /, the public "
                                          "shelter page at /public, fleet MQTT and the JMA warning poller.")
    p.add_argument("--config", required=True, metavar="FILE", help="central service YAML (see config/central.example.yaml)")
    p.add_argument("--host", help="listen address (default: from the config, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: from the config, 8080)")
    p.set_defaults(func=run_central)
    return p


def run_central(args: argparse.Namespace) -> int:
    """Entry point of ``ems central``; ConfigError for bad configuration (the CLI prints it, exit 2)."""
    cfg = load_central_config(args.config)
    host = args.host or cfg.listen.host
    port = args.port or cfg.listen.port
    if not 1 <= port <= 65535:
        raise ConfigError([f"--port: {port} is not a TCP port"])
    service = build_service(cfg)
    users = service.security.users.count()
    if users == 0:
        log.warning("no users yet: create the first admin with  ems users add --db %s --role admin NAME",
                    cfg.data_path / USERS_DB)
    return asyncio.run(serve(service, host, port))


async def serve(service: CentralService, host: str, port: int) -> int:
    """Run the app with uvicorn until SIGTERM or SIGINT; returns 0 after a clean stop.

    uvicorn handles both signals: it stops taking requests, the app's
    lifespan stops the service (its loops and its MQTT link) and closes it.
    Under systemd (``Type=notify``) READY=1 is sent once uvicorn serves, and
    the watchdog is fed while the event loop runs.
    """
    import uvicorn

    from ems.central.app import create_app
    from ems.sdnotify import Notifier

    app = create_app(service)
    server = _CleanExitServer(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,
                                             proxy_headers=False, server_header=False))
    log.info("central service on http://%s:%d/ (API docs /api/docs, public page /public)", host, port)
    notifier = Notifier()
    helper = asyncio.create_task(_notify_systemd(server, notifier), name="sd-notify")
    try:
        await server.serve()
    finally:
        helper.cancel()
        await asyncio.gather(helper, return_exceptions=True)
        notifier.stopping()
    if not server.started:  # e.g. the port was taken: uvicorn logged why
        return 1
    return 0


def _clean_exit_server_class() -> type:
    import contextlib
    import signal
    import threading

    import uvicorn

    class CleanExitServer(uvicorn.Server):
        """uvicorn's server, but SIGTERM and SIGINT end it with status 0.

        uvicorn re-raises the signal after its graceful shutdown, so the
        process dies of SIGTERM (status -15) and systemd counts a requested
        stop as a failure.  Here the signal only asks for the shutdown.
        """

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return CleanExitServer


def _CleanExitServer(config: Any) -> Any:  # noqa: N802 - builds the class lazily (uvicorn is heavy)
    return _clean_exit_server_class()(config)


async def _notify_systemd(server: Any, notifier: Any) -> None:
    """READY=1 once uvicorn serves; then WATCHDOG=1 at half systemd's WatchdogSec while the loop is alive."""
    while not server.started:
        await asyncio.sleep(0.1)
    notifier.ready()
    interval = notifier.watchdog_interval_s
    while interval is not None:
        notifier.watchdog()
        await asyncio.sleep(interval)
