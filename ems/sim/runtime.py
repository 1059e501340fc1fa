"""FleetRuntime: the whole system in one process on loopback, on an injected clock.

One object starts, in order:

1. an MQTT broker (:mod:`ems.sim.broker`: Mosquitto when installed, else
   the embedded amqtt; random passwords per run, the production ACL);
2. the simulated fleet (:class:`devices.simulator.server.FleetSimulator`),
   by default on free loopback ports so it never collides with a running demo;
3. one :class:`ems.gateway.daemon.EdgeDaemon` per hall with the optimizer's plan
   (:class:`ems.gateway.planning.OptimizerPlanSource`) and an
   :class:`ems.gateway.link.EdgeLink` (EdgeMqtt + durable outbox in the run's
   state folder), the outbox shipped by the real InfluxShipper to InfluxDB
   (``influx=``) or to a local SQLite history store whose point count proves
   "nothing lost" (:mod:`ems.sim.telemetry_count`);
4. the central service (:mod:`ems.sim.central_server`): CentralMqtt,
   FleetStateStore, the FastAPI app served by uvicorn on a free port, the JMA
   poller on a folder, users of every role with random passwords.

The same code paths as production: Modbus TCP, MQTT with ACLs, HTTP.  The
demo (``ems demo``) and the drills (``ems drill``) are thin layers on top.

Accelerated time: pass an :class:`devices.simulator.clock.AcceleratedClock`.
The daemons cycle every ``cycle_s`` wall seconds and scale their staleness
and grid-return debounce by ``clock.speed``; EdgeMqtt and the central
service judge command lifetimes on the same clock (scaled too).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from devices.readings import Nature
from ems.config import FleetConfig
from ems.gateway.heap import freeze_after_first_plans
from ems.sim.broker import Broker, free_port, make_broker
from ems.sim.central_server import CentralServer, CentralTiming
from ems.sim.telemetry_count import CountingOutbox, HistoryStore, TelemetryCount, count_telemetry
from telemetry.mosquitto_acl import gateway_username
from telemetry.mqtt_client import MqttSettings

log = logging.getLogger(__name__)

DEFAULT_MAPS_DIR = Path(__file__).resolve().parents[2] / "config" / "devicemaps"


@dataclass(frozen=True)
class InfluxTarget:
    """An InfluxDB 1.x to ship telemetry to: url, database, optional user and password (from a file/env)."""

    url: str
    database: str
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run the fleet.

    state_dir: folder for modes, outboxes, broker and central data (None: a
    new temporary folder); free_ports: move every simulated hall to a free
    loopback port; broker: auto | mosquitto | embedded; influx: ship
    telemetry there instead of the local history store; central: run the
    central service; jma_dir: folder the JMA poller reads (None: <state>/jma);
    cycle_s [s wall]: control period (None: the sites' own); poll_s [s wall]:
    battery and meter poll period (None: the sites' own); sim_tick_s [s wall]:
    physics step period; rule_only: no optimizer; telemetry_every /
    state_every: cycles between telemetry points / state messages.
    """

    state_dir: Path | None = None
    free_ports: bool = True
    broker: str = "auto"
    influx: InfluxTarget | None = None
    central: bool = True
    jma_dir: Path | None = None
    cycle_s: float | None = None
    poll_s: float | None = None
    sim_tick_s: float = 0.05
    rule_only: bool = False
    telemetry_every: int = 1
    state_every: int = 1
    central_timing: CentralTiming = CentralTiming()
    central_port: int | None = None  # None: a free loopback port
    user_prefix: str = "drill"  # the run's central users are <prefix>-admin, -municipal, -operator


def _port_not_in(taken: set[int]) -> int:
    """A free loopback port not yet in ``taken`` (added to it).  The OS may hand out a port it just gave us
    again (the probe socket is closed), so the fleet remembers what it already uses."""
    port = free_port()
    while port in taken:
        port = free_port()
    taken.add(port)
    return port


def relocated_fleet(fleet: FleetConfig, free_ports: bool, cycle_s: float | None,
                    poll_s: float | None) -> FleetConfig:
    """A copy of ``fleet`` with each simulated hall (its Modbus devices, its ECHONET Lite node) on free loopback ports,
    and the control cycle / battery and meter poll periods [s] replaced when given."""
    data = fleet.model_dump(mode="python")
    taken: set[int] = set()
    for site in data["sites"]:
        sim = site.get("simulator")
        if sim is not None and free_ports:
            new = _port_not_in(taken)
            old = sim["port"]
            sim["port"] = new
            udp: dict[int, int] = {}  # ECHONET Lite node port -> its free port
            for dev in site["devices"]:
                t = dev["transport"]
                if t["kind"] == "modbus_tcp" and t["port"] == old:
                    t["port"], t["host"] = new, "127.0.0.1"
                elif t["kind"] == "echonet_lite":
                    if t["port"] not in udp:
                        udp[t["port"]] = _port_not_in(taken)
                    t["port"], t["host"], t["local_port"] = udp[t["port"]], "127.0.0.1", 0
        if cycle_s is not None:
            site["control"]["cycle_s"] = cycle_s
        # Every device must stay fresh at the (possibly faster) cycle: the fleet file refuses a poll period
        # at or above stale_cycles × cycle_s.  PV keeps a slower poll, half the stale limit at most.
        stale_limit_s = site["control"]["stale_cycles"] * site["control"]["cycle_s"]
        for dev in site["devices"]:
            control = dev["nature"] in (Nature.BATTERY, Nature.METER, "battery", "meter")
            period = min(dev["period_s"], poll_s) if (control and poll_s is not None) else dev["period_s"]
            dev["period_s"] = min(period, 0.5 * stale_limit_s)
            dev["timeout_s"] = min(dev["timeout_s"], max(0.1, dev["period_s"]))
    return FleetConfig.model_validate(data)


class FleetRuntime:
    """The simulated fleet with its daemons, broker, telemetry and central service (see the module docstring).

    ``fleet``: the validated fleet; ``clock``: WallClock / AcceleratedClock;
    ``maps_dir``: register maps (default: the shipped ones).
    """

    def __init__(self, fleet: FleetConfig, clock: Any, options: RuntimeOptions = RuntimeOptions(),
                 maps_dir: Path | None = None):
        self.options = options
        self.clock = clock
        self.maps_dir = Path(maps_dir) if maps_dir else DEFAULT_MAPS_DIR
        self.fleet = relocated_fleet(fleet, options.free_ports, options.cycle_s, options.poll_s)
        self.state_dir = Path(options.state_dir or tempfile.mkdtemp(prefix="ems-run-"))
        self.jma_dir = Path(options.jma_dir) if options.jma_dir else self.state_dir / "jma"
        self.broker: Broker | None = None
        self.sim: Any = None
        self.gateways: dict[str, Any] = {}  # site id → ems.gateway.compose.Gateway
        self.daemons: dict[str, Any] = {}
        self.links: dict[str, Any] = {}
        self.edges: dict[str, Any] = {}
        self.outboxes: dict[str, CountingOutbox] = {}
        self.shippers: dict[str, Any] = {}
        self.history: HistoryStore | None = None
        self.central: CentralServer | None = None
        self.events: list[tuple[datetime, str]] = []  # (sim time, what the runtime did)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._timers: list[tuple[datetime, str, Callable[[], Any]]] = []
        self._started = False
        self._stopped = False

    # -- accessors ----------------------------------------------------------------------------
    @property
    def speed(self) -> float:
        return float(getattr(self.clock, "speed", 1.0) or 1.0)

    @property
    def halls(self) -> dict[str, Any]:
        """site id → HallSimulator (its ``physics`` holds the outage counters)."""
        return self.sim.halls if self.sim else {}

    @property
    def central_url(self) -> str | None:
        return self.central.url if self.central else None

    def credentials(self, role: str) -> tuple[str, str]:
        """(user, password) of the run's central user with ``role``: admin, municipal or operator."""
        if self.central is None:
            raise RuntimeError("the central service is not part of this runtime")
        return self.central.credentials(role)

    def describe(self) -> str:
        """One line: broker, ports, central URL, state folder."""
        ports = [h.port for h in self.halls.values()]
        broker = f"{self.broker.kind} broker on 127.0.0.1:{self.broker.port}" if self.broker else "no broker"
        central = f", central {self.central_url}" if self.central else ""
        return (f"{len(self.daemons)} halls on 127.0.0.1 ports {min(ports)}–{max(ports)}, {broker}{central}, "
                f"telemetry to {'InfluxDB ' + self.options.influx.url if self.options.influx else 'local history'}"
                f", speed {self.speed:g}x, state in {self.state_dir}")

    def note(self, what: str) -> None:
        """Record something the runtime did at the current simulated time."""
        self.events.append((self.clock.now(), what))
        log.info("runtime: %s", what)

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start broker, simulator, daemons, telemetry and central; on failure stop what started and raise."""
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        from devices.simulator.server import FleetSimulator

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.jma_dir.mkdir(parents=True, exist_ok=True)
        site_ids = [s.id for s in self.fleet.sites]
        self.broker = make_broker(self.options.broker, self.state_dir, site_ids)
        await asyncio.to_thread(self.broker.start)
        log.info("MQTT: %s broker on 127.0.0.1:%d", self.broker.kind, self.broker.port)
        self.sim = FleetSimulator(self.fleet, self.clock, maps_dir=self.maps_dir, tick_s=self.options.sim_tick_s)
        await self.sim.start()
        if self.options.influx is None:
            self.history = HistoryStore(self.state_dir / "history.sqlite")
        for site in self.fleet.sites:
            if site.simulator is not None:
                await self._start_hall(site)
        if self.options.central:
            self.central = CentralServer(self.fleet, self.state_dir / "central", self._mqtt("central"), self.clock,
                                         self.options.central_port or free_port(), self.jma_dir,
                                         self.options.central_timing, user_prefix=self.options.user_prefix)
            await asyncio.to_thread(self.central.start)
            await asyncio.to_thread(self.central.wait_connected, 30.0)
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="runtime-timers"))
        for site_id, gateway in self.gateways.items():
            self._tasks.append(asyncio.create_task(gateway.run(self._stop), name=f"daemon-{site_id}"))
        await asyncio.gather(*(g.wait_connected(30.0) for g in self.gateways.values()))
        self._tasks.append(asyncio.create_task(freeze_after_first_plans(self.gateways.values(), self._stop),
                                               name="gc-freeze"))
        self.note("started: " + self.describe())

    def _mqtt(self, user: str) -> MqttSettings:
        assert self.broker is not None
        # Loopback: reconnect fast, a drill's broker outage lasts seconds of wall time.  At 3600x each second
        # of backoff is a simulated hour in which commands wait (paho's backoff counts whole seconds: 1 is
        # its least); with 2 s the central service was sometimes still waiting when the hostile drill
        # restarted it, so the warning's commands reached the halls only after the restart.
        return MqttSettings("127.0.0.1", self.broker.port, username=user, password=self.broker.passwords[user],
                            keepalive_s=10, min_reconnect_s=0.5, max_reconnect_s=1.0)

    async def _start_hall(self, site: Any) -> None:
        """One hall's gateway, composed by the same function as ``ems run`` builds a real one."""
        from ems.gateway.compose import Gateway, simulated_wiring

        wiring = simulated_wiring(
            site, self.fleet, self.state_dir / "halls" / site.id, self.maps_dir,
            uplink=self._mqtt(gateway_username(site.id)), writer=self._writer(), optimizer=not self.options.rule_only,
            outbox_factory=lambda path, max_bytes, fsync: CountingOutbox(path, max_bytes=max_bytes, fsync=fsync),
            telemetry_every=self.options.telemetry_every, state_every=self.options.state_every,
            prices_from_central=self.options.central)
        gateway = Gateway(wiring, self.clock)
        await gateway.start()
        self.gateways[site.id] = gateway
        self.daemons[site.id], self.links[site.id], self.edges[site.id] = gateway.daemon, gateway.link, gateway.edge
        self.outboxes[site.id], self.shippers[site.id] = gateway.outbox, gateway.shipper

    def _writer(self) -> Any:
        influx = self.options.influx
        if influx is None:
            assert self.history is not None
            return self.history
        from telemetry.influx_writers import InfluxV1Writer

        return InfluxV1Writer(influx.url, influx.database, username=influx.username, password=influx.password)

    async def stop(self, drain_timeout_s: float = 20.0) -> None:
        """Stop everything (daemons first, telemetry drained, then central, simulator, broker); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()  # daemon loops end after their cycle: no new telemetry from here on
        cycles = [t for t in self._tasks if t.get_name().startswith("daemon-")]
        await asyncio.wait(cycles, timeout=5.0) if cycles else None
        # Each gateway stops as in production: pollers, plan worker, outbox shipped, uplink closed.
        await asyncio.gather(*(g.stop(drain_timeout_s) for g in self.gateways.values()), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.edges.clear()
        if self.central is not None:
            await asyncio.to_thread(self.central.stop)
        if self.sim is not None:
            await self.sim.stop()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        gc.unfreeze()  # the process may go on (a test session, the next drill): let its garbage be collected

    def failed_tasks(self) -> list[str]:
        """Daemon, shipper and timer tasks that ended with an exception (name: error)."""
        tasks = [*self._tasks, *(g.shipper_task for g in self.gateways.values() if g.shipper_task is not None)]
        return [f"{t.get_name()}: {t.exception()!r}"[:200] for t in tasks
                if t.done() and not t.cancelled() and t.exception() is not None]

    def close_stores(self) -> None:
        """Close outboxes and the history store (after :meth:`stop` and any counting)."""
        for gateway in self.gateways.values():
            gateway.close()
        if self.history is not None:
            self.history.close()

    async def __aenter__(self) -> "FleetRuntime":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.close_stores()

    # -- telemetry ----------------------------------------------------------------------------
    async def drain_telemetry(self, timeout_s: float = 20.0) -> bool:
        """Wait until every outbox is shipped; False if one is not empty after ``timeout_s`` [s]."""
        results = await asyncio.gather(*(s.drain(timeout_s) for s in self.shippers.values() if s is not None))
        return all(results)

    def telemetry_count(self) -> TelemetryCount | None:
        """Points produced vs stored (None when shipping to InfluxDB: count there instead)."""
        if self.history is None:
            return None
        return count_telemetry(self.outboxes.values(), self.history)

    # -- faults and weather -------------------------------------------------------------------
    def call_at(self, at: datetime, label: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (may return an awaitable) once simulated time reaches ``at``."""
        self._timers.append((at, label, fn))
        self._timers.sort(key=lambda t: t[0])

    async def _timer_loop(self) -> None:
        while not self._stop.is_set():
            while self._timers and self.clock.now() >= self._timers[0][0]:
                _, label, fn = self._timers.pop(0)
                try:
                    result = fn()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("runtime: %s failed", label)
            await asyncio.sleep(0.01)

    def set_grid(self, site_id: str, available: bool) -> None:
        """Cut (False) or restore (True) the grid at a hall now."""
        self.sim.hall(site_id).physics.set_grid(available)
        self.note(f"grid {'restored' if available else 'cut'} at {site_id}")

    def inject_outage(self, site_id: str, start: datetime, length: timedelta) -> None:
        """A grid outage at ``site_id`` from ``start`` for ``length`` (simulated time)."""
        self.sim.hall(site_id)  # KeyError naming the simulated sites
        self.call_at(start, f"outage {site_id}", lambda: self.set_grid(site_id, False))
        self.call_at(start + length, f"grid return {site_id}", lambda: self.set_grid(site_id, True))

    def fail_battery(self, site_id: str, code: int = 0x0101) -> None:
        """The battery inverter of ``site_id`` faults now (state FAULT, no power)."""
        self.sim.hall(site_id).physics.inject_battery_fault(code)
        self.note(f"battery fault at {site_id} (code 0x{code:04X})")

    def set_weather(self, site_ids: list[str], cloud_factor: float) -> None:
        """Set the cloud factor [0..1] (1 = dark) of halls from now on; their forecasts follow it.

        The sky changes in the simulator (its seeded cloud series is replaced:
        same seed, new mean, so runs stay repeatable), and the forecast
        reaches the halls as in production: the central service publishes
        the day's weather factor (1 - cloud factor) for their areas.
        """
        from devices.simulator.solar import CloudSeries

        for site_id in site_ids:
            physics = self.sim.hall(site_id).physics
            physics.step()
            physics._clouds = CloudSeries(physics.seed, cloud_factor, lon_deg=physics.site.lon)
        if self.central is not None and self.central.service is not None:
            areas = sorted({self.fleet.site(s).area_code for s in site_ids})
            self.central.service.set_weather(areas, 1.0 - cloud_factor, source="drill weather")
        self.note(f"weather: cloud factor {cloud_factor:g} at {', '.join(site_ids)}")

    # -- broker and central outages -----------------------------------------------------------
    async def kill_broker(self) -> None:
        """The MQTT broker dies (SIGKILL for Mosquitto)."""
        assert self.broker is not None
        await asyncio.to_thread(self.broker.kill)
        self.note(f"{self.broker.kind} broker killed")

    async def restart_broker(self) -> None:
        """Start the broker again on the same port."""
        assert self.broker is not None
        await asyncio.to_thread(self.broker.start)
        self.note(f"{self.broker.kind} broker started again")

    async def restart_central(self) -> float:
        """Stop and start the central service (same port and data); returns the wall seconds it took."""
        assert self.central is not None
        took = await asyncio.to_thread(self.central.restart)
        await asyncio.to_thread(self.central.wait_connected, 30.0)
        self.note(f"central service restarted ({took:.1f} s wall)")
        return took

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
        """Wait (wall time) until ``predicate()`` is true; False after ``timeout_s`` [s]."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(poll_s)
        return predicate()
