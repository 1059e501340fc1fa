"""The one place a hall's gateway is put together.

``ems run`` (a real hall), ``ems demo`` and ``ems drill`` (the simulated
fleet) all build their gateways here, so a drill exercises exactly what is
deployed.  The pieces:

* the devices and the control cycle (:class:`ems.gateway.daemon.EdgeDaemon`);
* market inputs: prices and weather from the central service over MQTT, a
  JEPX CSV or a tariff, with fallbacks (:class:`ems.gateway.inputs.MarketInputs`);
* the plan (:class:`ems.gateway.planning.OptimizerPlanSource`, re-planning
  in a worker, never on the event loop), or the rule alone;
* the uplink: :class:`telemetry.edge_mqtt.EdgeMqtt` to the fleet broker and
  :class:`ems.gateway.link.EdgeLink` between it and the daemon;
* telemetry: the durable SQLite outbox and the
  :class:`telemetry.shipper.InfluxShipper` that empties it into InfluxDB.

:class:`GatewayWiring` holds everything resolved (secrets read, paths
absolute); :func:`wiring_from_config` makes it from a gateway file; the
simulation makes it in code (its own broker, history store, clock).  Both
hand it to :class:`Gateway`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ems.config import FleetConfig, SiteConfig, load_fleet
from ems.gateway.alarms import AlarmCondition, Severity
from ems.gateway.config import GatewayConfig, PlannerSection, PricesSection, WeatherSection
from ems.gateway.daemon import Clock, EdgeDaemon
from ems.gateway.link import EdgeLink
from telemetry.config import OutboxConfig, build_writer
from telemetry.commands import MAX_CLOCK_SKEW, MAX_LIFETIME
from telemetry.influx_writers import LineWriter
from telemetry.mosquitto_acl import gateway_username
from telemetry.mqtt_client import MqttSettings
from telemetry.outbox import Outbox

log = logging.getLogger(__name__)

#: Makes the outbox: (path, max_bytes, fsync) → Outbox.  The simulation passes one that counts lines.
OutboxFactory = Callable[[Path, int, bool], Outbox]


def _plain_outbox(path: Path, max_bytes: int, fsync: bool) -> Outbox:
    return Outbox(path, max_bytes=max_bytes, fsync=fsync)


@dataclass(frozen=True)
class ShipperTiming:
    """Retry waits of the Influx shipper [s]: first and longest backoff, idle poll."""

    min_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    idle_wait_s: float = 1.0


@dataclass(frozen=True)
class GatewayWiring:
    """Everything one hall's gateway is built from, resolved.

    site / slot_minutes / jepx_area: from the fleet file; state_dir: mode,
    outbox, command replay, learnt history, last known prices; maps_dir:
    register maps; uplink: the fleet broker (None: the hall runs on its
    own); writer: the InfluxDB writer (None: points wait in the outbox);
    telemetry_every / state_every: cycles between telemetry points / state
    messages; clock_scaled_lifetimes: command lifetimes and skew follow a
    simulation's speed.
    """

    site: SiteConfig
    slot_minutes: int
    jepx_area: str
    state_dir: Path
    maps_dir: Path
    uplink: MqttSettings | None = None
    writer: LineWriter | None = None
    outbox: OutboxConfig = OutboxConfig()
    prices: PricesSection = PricesSection()
    weather: WeatherSection = WeatherSection()
    planner: PlannerSection = PlannerSection()
    config_dir: Path = field(default_factory=Path.cwd)
    telemetry_every: int = 1
    state_every: int = 1
    shipper: ShipperTiming = ShipperTiming()
    outbox_factory: OutboxFactory = _plain_outbox


def wiring_from_config(cfg: GatewayConfig, fleet: FleetConfig | None = None,
                       state_dir: Path | None = None) -> GatewayWiring:
    """The wiring a gateway file describes (secrets read now: ValueError names the file or variable).

    fleet: the already loaded fleet file (default: load ``cfg.fleet``);
    state_dir: overrides the file's (``ems run --state-dir``, systemd's StateDirectory).
    """
    from telemetry.config import mqtt_settings

    fleet = fleet or load_fleet(cfg.fleet_path)
    site = fleet.site(cfg.site)
    return GatewayWiring(
        site=site, slot_minutes=fleet.fleet.slot_minutes, jepx_area=cfg.prices.jepx_area or fleet.fleet.jepx_area,
        state_dir=Path(state_dir) if state_dir is not None else cfg.state_path, maps_dir=cfg.maps_path,
        uplink=mqtt_settings(cfg.uplink, cfg.base_dir) if cfg.uplink is not None else None,
        writer=build_writer(cfg.telemetry.influx, cfg.base_dir) if cfg.telemetry.influx is not None else None,
        outbox=cfg.telemetry.outbox, prices=cfg.prices, weather=cfg.weather, planner=cfg.planner,
        config_dir=cfg.base_dir,
    )


class StoreAlarms:
    """An alarm source of the daemon from a telemetry-level store (Outbox, EdgeMqtt), whose
    ``alarm_conditions()`` gives (code, active, 'warning'|'critical', message) tuples: telemetry/ may not
    import the gateway's alarm types."""

    def __init__(self, store: Any):
        self.store = store

    def alarm_conditions(self) -> list[AlarmCondition]:
        return [AlarmCondition(code, active, Severity(severity), message)
                for code, active, severity, message in self.store.alarm_conditions()]


class Gateway:
    """One hall's gateway: daemon, plan, inputs, uplink and telemetry (see the module docstring).

    ``clock``: WallClock in production, the simulation's accelerated clock in
    demos and drills; ``devices``: already built devices (benchmarks, tests).
    Use :meth:`start`, then :meth:`run` until a stop event, then :meth:`stop`.
    """

    def __init__(self, wiring: GatewayWiring, clock: Clock, devices: Mapping[str, Any] | None = None):
        from ems.gateway.inputs import MarketInputs

        self.wiring = w = wiring
        self.site = w.site
        self.clock = clock
        speed = float(clock.speed or 1.0)
        w.state_dir.mkdir(parents=True, exist_ok=True)
        sim = w.site.simulator
        self.inputs = MarketInputs(
            w.prices, w.weather, site_id=w.site.id, jepx_area=w.jepx_area, area_code=w.site.area_code,
            cloud_factor=sim.cloud_factor if sim is not None else 0.2, state_dir=w.state_dir, clock=clock.now,
            base_dir=w.config_dir, seed=sim.seed if sim is not None else 0)
        self.plan_source = self._plan_source()
        self.daemon = EdgeDaemon(w.site, state_dir=w.state_dir, clock=clock, slot_minutes=w.slot_minutes,
                                 devices=devices, maps_dir=w.maps_dir, plan_source=self.plan_source)
        self.outbox = w.outbox_factory(self._outbox_path(), int(w.outbox.max_mb * 1024 * 1024), w.outbox.fsync)
        self.edge = None
        if w.uplink is not None:
            from telemetry.edge_mqtt import EdgeMqtt

            # In a simulation, command lifetimes and clock skew are judged on its faster clock.
            self.edge = EdgeMqtt(w.site.id, w.uplink, w.state_dir, client_id=f"ems-{gateway_username(w.site.id)}",
                                 clock=clock.now, max_lifetime=MAX_LIFETIME * max(1.0, speed),
                                 max_skew=MAX_CLOCK_SKEW * max(1.0, speed))
            topics = self.inputs.topics()
            if topics:
                self.edge.subscribe(topics, self.inputs.on_message)
        self.link = EdgeLink(self.daemon, mqtt=self.edge, outbox=self.outbox, telemetry_every=w.telemetry_every,
                             state_every=w.state_every, inputs=self.inputs)
        # The stores' own conditions (a damaged file replaced at start, a command that could not be recorded)
        # become the site's alarms.
        self.daemon.add_alarm_source(StoreAlarms(self.outbox))
        if self.edge is not None:
            self.daemon.add_alarm_source(StoreAlarms(self.edge))
        self.shipper = None
        if w.writer is not None:
            from telemetry.shipper import InfluxShipper

            t = w.shipper
            self.shipper = InfluxShipper(self.outbox, w.writer, batch_points=w.outbox.batch_points,
                                         min_backoff_s=t.min_backoff_s, max_backoff_s=t.max_backoff_s,
                                         idle_wait_s=t.idle_wait_s)
        self._shipper_task: asyncio.Task | None = None
        self._started = False

    @property
    def shipper_task(self) -> asyncio.Task | None:
        """The task shipping the outbox (None without InfluxDB or before start)."""
        return self._shipper_task

    def _outbox_path(self) -> Path:
        p = self.wiring.outbox.path
        return p if p.is_absolute() else self.wiring.state_dir / p

    def _plan_source(self) -> Any:
        w = self.wiring
        if not w.planner.optimizer:
            return None
        from ems.gateway.planning import OptimizerPlanSource  # Pyomo is heavy: only load it when planning

        return OptimizerPlanSource(w.site, slot_minutes=w.slot_minutes, horizon_slots=w.planner.horizon_slots,
                                   prices=self.inputs, weather=self.inputs, state_dir=w.state_dir,
                                   worker=w.planner.worker)

    # -- life ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the daemon (mode from its store, pollers), the uplink and the shipper; the cycle starts in run()."""
        await self.daemon.start()
        self._started = True
        if self.plan_source is not None:
            # New prices or weather (from paho's thread) make the plan stale: re-plan on the loop.
            loop = asyncio.get_running_loop()
            source = self.plan_source
            self.inputs.add_listener(lambda why: loop.call_soon_threadsafe(source.invalidate, why))
        if self.edge is not None:
            self.edge.start()
        if self.shipper is not None:
            self._shipper_task = asyncio.create_task(self.shipper.run(), name=f"ship-{self.site.id}")

    async def wait_connected(self, timeout_s: float = 30.0) -> bool:
        """Wait until the uplink is connected and subscribed (True at once without an uplink)."""
        return True if self.edge is None else await self.edge.wait_connected(timeout_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Run control cycles until ``stop`` is set (the cycle in progress finishes)."""
        await self.daemon.run(stop)

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop in order: pollers and plan worker, then ship what the outbox holds (up to ``drain_timeout_s``
        [s]; the rest is kept on disk for the next start), then close the uplink and the outbox."""
        if not self._started:
            return
        self._started = False
        try:
            await self.daemon.stop()
        except Exception as exc:  # keep stopping the rest
            log.warning("%s: daemon stop failed: %s", self.site.id, exc)
        if self.plan_source is not None:
            await self.plan_source.aclose()
        if self.shipper is not None:
            if drain_timeout_s > 0 and not await self.shipper.drain(drain_timeout_s):
                log.info("%s: %d telemetry points kept in the outbox for the next start", self.site.id,
                         len(self.outbox))
            self.shipper.stop()
        if self._shipper_task is not None:
            await asyncio.gather(self._shipper_task, return_exceptions=True)
            self._shipper_task = None
        if self.edge is not None:
            await self.edge.aclose(2.0)

    def close(self) -> None:
        """Close the outbox file (after :meth:`stop` and any counting)."""
        self.outbox.close()


def simulated_wiring(site: SiteConfig, fleet: FleetConfig, state_dir: Path, maps_dir: Path, *,
                     uplink: MqttSettings | None, writer: LineWriter | None, optimizer: bool,
                     outbox_factory: OutboxFactory, telemetry_every: int = 1, state_every: int = 1,
                     prices_from_central: bool = True) -> GatewayWiring:
    """The wiring of a simulated hall: as a gateway file with defaults would give, with the simulation's
    broker, history store and faster retries (a drill's outages last seconds of wall time).

    prices_from_central: take prices from the central service (the simulation's central publishes
    synthetic day-ahead prices); False: a simulation without a central service uses the seeded
    synthetic prices directly.
    """
    prices = PricesSection() if prices_from_central else PricesSection(source="synthetic")
    return GatewayWiring(
        site=site, slot_minutes=fleet.fleet.slot_minutes, jepx_area=fleet.fleet.jepx_area, state_dir=state_dir,
        maps_dir=maps_dir, uplink=uplink, writer=writer, prices=prices,
        # Threads: fourteen planner processes of ~200 MB each would not fit a demo; the simulation's halls
        # take turns in one process (measured: cold plans can then hold a cycle up to ~180 ms).
        planner=PlannerSection(optimizer=optimizer, worker="thread"), telemetry_every=telemetry_every,
        state_every=state_every, shipper=ShipperTiming(min_backoff_s=0.2, max_backoff_s=5.0, idle_wait_s=0.5),
        outbox_factory=outbox_factory,
    )


__all__ = ["Gateway", "GatewayWiring", "ShipperTiming", "simulated_wiring", "wiring_from_config"]
