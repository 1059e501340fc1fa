"""The edge daemon of one hall: pollers, control cycle, mode requests.

One cycle (``site.control.cycle_s`` of wall time, 1 s by default):

1. freeze the latest reading of every device into a :class:`SiteSnapshot`;
2. the mode machine decides the effective mode (safe / islanded / requested);
3. the plan asks for a setpoint (the rule until a plan from the optimizer
   is attached through ``plan_source``);
4. the guard narrows the allowed range in its stated order and the request
   is clipped into it; every clip is kept in the status;
5. the setpoint is written to the battery (verified by read-back).

Each device has its own poller task, so a dead device never stalls the
cycle: the cycle only reads what the pollers last got.

Time: readings, snapshots and mode records use the injected clock (real or
accelerated simulated time).  Under a clock running ``speed`` times faster
than the wall, one wall-time cycle spans ``cycle_s × speed`` seconds of
simulated time, so staleness limits and the guard's ``dt`` are scaled by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

from devices.aio import cancel_and_wait
from devices.config import MqttTransport
from devices.configfile import ConfigError
from devices.errors import DeviceError
from devices.factory import build_devices, close_all
from devices.modbus.connection import quiet_library_logs
from devices.natures import BatteryDevice
from devices.poller import DevicePoller
from devices.readings import BatteryReading, MeterReading, Nature, PVReading
from ems.gateway import alarms as al
from ems.gateway.alarms import AlarmCondition
from ems.config import SiteConfig
from ems.gateway.guard import Clip, GuardResult, allowed_range, apply
from ems.gateway.modes import Mode, ModeChange, ModeMachine, ModeRequest, ModeState, ModeTiming
from ems.gateway.modestore import ModeStore
from ems.gateway.obedience import SetpointObedience
from ems.gateway.reserve_policy import ReservePolicy
from ems.gateway.rules import rule_setpoint
from ems.gateway.snapshot import CycleStats, SiteSnapshot
from optimizer.reserve import hours_of_power

log = logging.getLogger(__name__)

#: Cycles over which the guard remembers how long setpoints really held (see :func:`expected_hold_s`).
HOLD_WINDOW = 16
#: ... and the most it assumes, as a multiple of the nominal cycle (a restart's long pause is not a cycle).
HOLD_MAX_FACTOR = 4.0


def expected_hold_s(nominal_s: float, recent_gaps_s: Iterable[float]) -> float:
    """How long [s] a setpoint will hold until the next cycle replaces it: the nominal cycle, or the longest
    gap between the last cycles when they ran late, at most ``HOLD_MAX_FACTOR`` × nominal.

    Why: the guard limits power so that one cycle cannot cross the reserve floor or a SoC limit; a cycle
    that comes late lets the battery run on at the old setpoint.  At 1 s per cycle this is a few watt-
    seconds; in a drill at 3600x a late cycle of 0.5 s wall is half an hour of a battery discharging, which
    took halls below their VPP reserve."""
    longest = max(recent_gaps_s, default=nominal_s)
    return max(nominal_s, min(longest, HOLD_MAX_FACTOR * nominal_s))


class Clock(Protocol):
    """What the daemon needs of a clock: the time (tz-aware UTC) and how fast it runs."""

    @property
    def speed(self) -> float: ...

    def now(self) -> datetime: ...


class PlanSource(Protocol):
    """A schedule the cycle follows (the optimizer's MPC, :class:`ems.gateway.planning.OptimizerPlanSource`).

    ``setpoint_at`` is called once per cycle on the event loop and must not
    block: planning happens elsewhere (a worker), the cycle takes the latest
    finished plan.  A daemon without a plan source follows the rule.
    """

    def setpoint_at(self, snap: SiteSnapshot, mode: Mode) -> tuple[float, str] | None:
        """Requested battery setpoint [W] and why, or None to let the rule decide."""
        ...

    def invalidate(self, why: str) -> None:
        """Inputs changed (mode, weather, …): re-plan soon."""
        ...

    def use_stale_limit(self, max_age_s: float) -> None:
        """Readings older than this [s of the daemon's clock] are not learnt from."""
        ...

    def set_commitments(self, commitments: Sequence[Any]) -> None:
        """Replace the dispatch leases (optimizer.settings.Commitment) the plan must try to meet."""
        ...

    @property
    def commitments(self) -> tuple[Any, ...]:
        """Dispatch leases in force."""
        ...

    @property
    def plan(self) -> Any:
        """The latest finished plan (optimizer.plan.Plan) or None."""
        ...

    @property
    def plan_info(self) -> Mapping[str, Any]:
        """What the latest plan was made from: reason, price_source, weather_source (JSON-ready)."""
        ...

    async def aclose(self) -> None:
        """Stop planning (the worker) and let go of its resources."""
        ...


class _Standing:
    """Alarm conditions fixed at start (from the configuration), reported every cycle."""

    def __init__(self, conditions: Sequence[AlarmCondition]):
        self._conditions = list(conditions)

    def alarm_conditions(self) -> list[AlarmCondition]:
        return self._conditions


class DaemonListener(Protocol):
    """Told of every cycle's status and every mode change (the uplink, status printers).

    Called on the event loop right after the cycle; must not block.
    """

    def on_status(self, status: "DaemonStatus") -> None: ...

    def on_mode_change(self, change: ModeChange) -> None: ...


class AlarmSource(Protocol):
    """Something whose conditions become the site's alarms; asked once per cycle (must not block)."""

    def alarm_conditions(self) -> Iterable[AlarmCondition]: ...


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """What one cycle decided, for status tables, telemetry and the state topic.

    Powers [W] (battery + discharge, grid + import), energies [Wh], hours [h].
    """

    site_id: str
    time: datetime
    mode: ModeState
    soc_pct: float | None
    battery_w: float | None
    grid_w: float | None
    pv_w: float | None
    grid_ok: bool | None
    requested_w: float
    setpoint_w: float
    allowed_min_w: float
    allowed_max_w: float
    plan_reason: str
    written: bool
    stored_wh: float | None
    reserve_floor_wh: float
    hours_left: float | None
    clips: tuple[Clip, ...]
    alarms: tuple[al.Alarm, ...]
    stats: CycleStats
    device_health: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the retained state message of the site)."""
        return {
            "site_id": self.site_id,
            "time": self.time.isoformat(),
            "mode": self.mode.to_dict(),
            "soc_pct": self.soc_pct,
            "battery_w": self.battery_w,
            "grid_w": self.grid_w,
            "pv_w": self.pv_w,
            "grid_ok": self.grid_ok,
            "requested_w": self.requested_w,
            "setpoint_w": self.setpoint_w,
            "allowed_w": [self.allowed_min_w, self.allowed_max_w],
            "plan_reason": self.plan_reason,
            "written": self.written,
            "stored_wh": self.stored_wh,
            "reserve_floor_wh": self.reserve_floor_wh,
            "hours_left": self.hours_left,
            "clips": [c.to_dict() for c in self.clips],
            "alarms": [a.to_dict() for a in self.alarms],
            "cycle": {"last_ms": self.stats.last_cycle_ms, "count": self.stats.cycle_count,
                      "overruns": self.stats.overruns},
            "devices": {k: _health_dict(h) for k, h in self.device_health.items()},
        }


def _health_dict(h: Any) -> dict[str, Any]:
    return {
        "ok": h.ok,
        "last_ok_at": h.last_ok_at.isoformat() if h.last_ok_at else None,
        "latency_ms": h.last_latency_ms,
        "consecutive_failures": h.consecutive_failures,
        "total_failures": h.total_failures,
        "total_polls": h.total_polls,
        "last_error": h.last_error,
    }


class EdgeDaemon:
    """The control loop of one site.

    ``devices`` may be given (tests, benchmarks); otherwise they are built
    from the site's device list.  Listeners (:meth:`add_listener`) hear
    every cycle's status and every mode change; alarm sources
    (:meth:`add_alarm_source`) report conditions the daemon turns into the
    site's alarms.
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        state_dir: str | Path,
        clock: Clock,
        slot_minutes: int = 30,
        devices: Mapping[str, Any] | None = None,
        maps_dir: Path | None = None,
        plan_source: PlanSource | None = None,
    ):
        self.site = site
        self.clock = clock
        self.policy = site.safety_policy()
        self.slot_h = slot_minutes / 60.0
        self.store = ModeStore(state_dir, site.id)
        self.alarms = al.AlarmSet(site.id)
        self.plan_source = plan_source
        self.reserve = ReservePolicy(self.policy, site.loads.critical_w, self.slot_h)
        self.obedience = SetpointObedience(site.inverter.rated_w, site.battery.soc_min_pct, site.battery.soc_max_pct)
        self._listeners: list[DaemonListener] = []
        self._alarm_sources: list[AlarmSource] = [self.obedience]
        self._given_devices = devices
        self._maps_dir = maps_dir
        self._device_hub = None  # MqttDeviceHub while MQTT devices are read
        self.devices: dict[str, Any] = {}
        self.pollers: dict[str, DevicePoller] = {}
        self.machine: ModeMachine | None = None
        self.status: DaemonStatus | None = None
        self.mode_log: list[ModeChange] = []
        self._previous_setpoint_w: float | None = None
        self._last_cycle_at: datetime | None = None
        self._cycle_gaps_s: deque[float] = deque(maxlen=HOLD_WINDOW)
        self._stats = CycleStats()
        self._heartbeat_task: asyncio.Task | None = None
        self._ids: dict[Nature, str] = {}

    # -- wiring ------------------------------------------------------------------

    def add_listener(self, listener: DaemonListener) -> None:
        """Tell ``listener`` of every cycle's status and mode change from now on."""
        self._listeners.append(listener)

    def add_alarm_source(self, source: AlarmSource) -> None:
        """Raise and clear the site's alarms from ``source``'s conditions at every cycle."""
        self._alarm_sources.append(source)

    # -- life cycle ------------------------------------------------------------

    @property
    def speed(self) -> float:
        """How many simulated seconds pass per wall-clock second (1 for real time)."""
        return float(getattr(self.clock, "speed", 1.0) or 1.0)

    @property
    def cycle_s(self) -> float:
        """Wall-clock period of the control cycle [s]."""
        return self.site.control.cycle_s

    async def start(self) -> None:
        """Load the persisted mode, build devices and start one poller per device."""
        quiet_library_logs()  # pymodbus logs every failed connect; the pollers report once
        now = self.clock.now()
        loaded = self.store.load(now, self.alarms)
        if loaded.source == "fallback":
            log.error("%s: mode file unusable, starting in %s", self.site.id, loaded.request.mode.value)
        timing = ModeTiming.from_control(self.site.control, self.site.inverter.rated_w, speed=self.speed)
        self.machine = ModeMachine(self.site.id, loaded.request, timing, now)
        # A reserve larger than the battery cannot be enforced (the floor is capped at full): say so, with figures.
        shortfalls = self.reserve.shortfall_alarms(now)
        for c in shortfalls:
            if c.active:
                log.warning("%s: %s", self.site.id, c.message)
        self.add_alarm_source(_Standing(shortfalls))
        if self.plan_source is not None:  # learn only from readings the mode machine calls fresh
            self.plan_source.use_stale_limit(timing.stale_after_s)
        self._emit([self.machine.start_change])
        if self._given_devices is not None:
            self.devices = dict(self._given_devices)
        else:
            self._device_hub = self._start_device_hub()
            self.devices = build_devices(self.site.devices, self._maps_dir, clock=self.clock.now,
                                         mqtt_kwargs={"hub": self._device_hub} if self._device_hub else None)
        # Device id per nature, looked up three times a cycle.
        self._ids = {n: d.id for n in Nature if (d := self.site.device(n)) is not None}
        for dev_id, dev in self.devices.items():
            poller = DevicePoller(dev, clock=self.clock.now)
            self.pollers[dev_id] = poller
            poller.start()
        battery = self._battery_device()
        if battery is not None and getattr(battery, "heartbeat_period_s", None):
            self._heartbeat_task = asyncio.create_task(self._kick_heartbeat(battery), name=f"hb-{self.site.id}")
        log.info("%s: daemon started, requested mode %s (%s)", self.site.id,
                 loaded.request.mode.value, loaded.source)

    def _start_device_hub(self):
        """Connect to the hall's device broker when MQTT devices are configured (None otherwise).

        The hub connects in the background and retries: a broker that is down
        leaves those devices stale (so the mode machine goes safe), it does
        not stop the daemon.
        """
        spec = self.site.device_broker
        if spec is None or not any(isinstance(d.transport, MqttTransport) for d in self.site.devices):
            return None
        from devices.mqtt_device import MqttDeviceHub

        config_dir = self._maps_dir.parent if self._maps_dir is not None else Path.cwd()
        try:
            password = spec.password(config_dir)
        except ValueError as exc:
            raise ConfigError([f"{self.site.id}: device_broker: {exc}"]) from None
        hub = MqttDeviceHub(spec.host, spec.port, spec.username, password, tls=spec.tls, ca_file=spec.ca_file,
                            client_id=f"{self.site.id}-devices")
        hub.start()
        return hub

    async def stop(self) -> None:
        """Stop pollers and the heartbeat, close device connections and the device broker link."""
        await cancel_and_wait(self._heartbeat_task)
        self._heartbeat_task = None
        await asyncio.gather(*(p.stop() for p in self.pollers.values()), return_exceptions=True)
        self.pollers.clear()
        if self._given_devices is None:
            await close_all(self.devices)
        if self._device_hub is not None:
            await asyncio.to_thread(self._device_hub.stop)
            self._device_hub = None

    def _hold_s(self, now: datetime) -> float:
        """How long [s of clock time] the setpoint written now will hold: see :func:`expected_hold_s`."""
        if self._last_cycle_at is not None:
            gap = (now - self._last_cycle_at).total_seconds()
            if gap > 0:
                self._cycle_gaps_s.append(gap)
        self._last_cycle_at = now
        return expected_hold_s(self.cycle_s * self.speed, self._cycle_gaps_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Run cycles every ``cycle_s`` [s] of wall time until ``stop`` is set.

        The first cycle comes half a period after the pollers started, so the
        cycle does not fire in the same instant as every poll and wait behind
        them (measured with 50 devices: mean cycle 52 ms → 4.5 ms, same CPU).
        """
        next_at = time.monotonic() + self.cycle_s / 2
        while not stop.is_set():
            await self.run_cycle()
            next_at += self.cycle_s
            delay = next_at - time.monotonic()
            if delay < 0:  # overrun: start the next cycle now, do not try to catch up
                self._stats = replace(self._stats, overruns=self._stats.overruns + 1)
                next_at = time.monotonic()
                delay = 0
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    # -- commands ----------------------------------------------------------------

    def request_mode(self, req: ModeRequest) -> list[ModeChange]:
        """Persist, then apply a mode request; returns the changes.

        The request is saved before the machine acts on it, so a request the
        site follows cannot be lost by a crash; if saving fails the OSError
        propagates and the request is not applied.
        """
        assert self.machine is not None, "start() first"
        self.store.save(req, self.clock.now())
        changes = self.machine.request(req, self.clock.now())
        self._emit(changes)
        return changes

    # -- the cycle ---------------------------------------------------------------

    def _battery_device(self) -> Any:
        dev = self.site.device(Nature.BATTERY)
        return self.devices.get(dev.id) if dev else None

    def _latest(self, nature: Nature) -> Any:
        dev_id = self._ids.get(nature)
        poller = self.pollers.get(dev_id) if dev_id else None
        return poller.latest if poller else None

    def snapshot(self) -> SiteSnapshot:
        """The frozen process image of this moment."""
        battery = self._latest(Nature.BATTERY)
        meter = self._latest(Nature.METER)
        pv = self._latest(Nature.PV)
        return SiteSnapshot(
            time=self.clock.now(),
            site_id=self.site.id,
            battery=battery if isinstance(battery, BatteryReading) else None,
            meter=meter if isinstance(meter, MeterReading) else None,
            pv=pv if isinstance(pv, PVReading) else None,
            device_health={k: p.health for k, p in self.pollers.items()},
            stats=self._stats,
        )

    async def run_cycle(self) -> DaemonStatus:
        """One control cycle; returns (and keeps) its status."""
        assert self.machine is not None, "start() first"
        started = time.perf_counter()
        snap = self.snapshot()
        changes = self.machine.update(snap)
        self._emit(changes)
        state = self.machine.state
        mode = state.effective
        snap = snap.with_mode(state)
        now = snap.time

        critical, pv = self.reserve.critical_forecast(now)
        # The effective mode is safe, islanded or the requested one: the floor always follows the request.
        floor_wh = self.reserve.floor_wh(state.requested.mode, critical, pv)

        plan = self.plan_source.setpoint_at(snap, mode) if self.plan_source is not None else None
        if plan is None:
            rule = rule_setpoint(snap, mode, self.policy, state.manual_setpoint_w)
            requested_w, plan_reason = rule.setpoint_w, rule.reason
        else:
            requested_w, plan_reason = plan
        requested_w, plan_reason = self.reserve.restore(snap, mode, floor_wh, requested_w, plan_reason)

        guard: GuardResult = allowed_range(
            snap, self.policy, mode, floor_wh, self._previous_setpoint_w, self._hold_s(now)
        )
        setpoint_w, final_clips = apply(guard.range, requested_w)
        clips = guard.clips + tuple(final_clips)
        self.obedience.observe(snap.battery)  # the answer to the setpoint taken in the previous cycle
        written = await self._write_setpoint(mode, snap, setpoint_w)
        self._sync_alarms(snap, mode, clips, now)

        stored = snap.stored_wh(self.policy.capacity_wh)
        if stored is None:
            hours = None
        elif snap.battery is not None and snap.battery.faulted:
            hours = 0.0  # a faulted battery delivers nothing, whatever its SoC says
        else:
            hours = hours_of_power(stored, self.policy, critical, pv, self.slot_h)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._stats = replace(self._stats, last_cycle_ms=elapsed_ms, cycle_count=self._stats.cycle_count + 1)
        status = DaemonStatus(
            site_id=self.site.id, time=now, mode=state,
            soc_pct=snap.battery.soc_pct if snap.battery else None,
            battery_w=snap.battery.power_w if snap.battery else None,
            grid_w=snap.meter.power_w if snap.meter else None,
            pv_w=snap.pv.power_w if snap.pv else None,
            grid_ok=snap.meter.grid_ok if snap.meter else None,
            requested_w=requested_w, setpoint_w=setpoint_w, allowed_min_w=guard.range.min_w,
            allowed_max_w=guard.range.max_w, plan_reason=plan_reason, written=written,
            stored_wh=stored, reserve_floor_wh=floor_wh, hours_left=hours,
            clips=clips, alarms=tuple(self.alarms.active()), stats=self._stats,
            device_health=snap.device_health,
        )
        self.status = status
        for listener in self._listeners:
            listener.on_status(status)
        return status

    async def _write_setpoint(self, mode: Mode, snap: SiteSnapshot, setpoint_w: float) -> bool:
        """Write the setpoint unless the inverter is grid-forming or the battery is unreachable.

        Returns True when the battery took it.  In islanded mode the
        inverter follows the load by itself; writing would be meaningless.
        With a battery we cannot read, a write would only wait for a timeout
        every cycle: the device watchdog (heartbeat / revert timer) idles it.
        """
        battery = self._battery_device()
        if battery is None or mode is Mode.ISLANDED or snap.battery is None:
            self.obedience.not_written()
            return False
        poller = self.pollers.get(battery.id)
        if poller is not None and not poller.health.ok:
            self.obedience.not_written()
            return False
        try:
            await asyncio.wait_for(battery.set_power_w(setpoint_w), max(1.0, 4 * battery.config.timeout_s))
        except (DeviceError, asyncio.TimeoutError) as exc:
            # Logged once per run of failures; the setpoint_refused alarm is what reaches the dashboard.
            if self.obedience.failures == 0:
                log.warning("%s: battery setpoint %.0f W not written: %s", self.site.id, setpoint_w, exc)
            self.obedience.write_failed(setpoint_w, str(exc) or type(exc).__name__)
            return False
        if self.obedience.failures:
            log.info("%s: battery takes setpoints again", self.site.id)
        self.obedience.write_ok(setpoint_w)
        self._previous_setpoint_w = setpoint_w
        return True

    def _sync_alarms(self, snap: SiteSnapshot, mode: Mode, clips: tuple[Clip, ...], now: datetime) -> None:
        state = self.machine.state if self.machine else None
        self.alarms.sync(al.SAFE_MODE, mode is Mode.SAFE, al.Severity.CRITICAL,
                         f"safe mode: {state.reason if state else ''}", now)
        self.alarms.sync(al.GRID_LOST, mode is Mode.ISLANDED, al.Severity.CRITICAL,
                         "grid lost: islanded, serving critical load from the battery", now)
        b = snap.battery
        self.alarms.sync(al.DEVICE_FAULT, bool(b and b.faulted), al.Severity.CRITICAL,
                         f"battery fault: state {b.state.name if b else ''} code {b.fault_code if b else ''}", now)
        al.sync_clip_alarm(self.alarms, clips, now)
        problems = self._data_problems(snap)
        for kind, code in (("stale", al.STALE_DATA), ("missing", al.MISSING_DATA), ("implausible", al.IMPLAUSIBLE_DATA)):
            self.alarms.sync(code, kind in problems, al.Severity.WARNING, f"{kind} data: {problems.get(kind, '')}", now)
        for source in self._alarm_sources:
            for c in source.alarm_conditions():
                self.alarms.sync(c.code, c.active, c.severity, c.message, now)

    def _data_problems(self, snap: SiteSnapshot) -> dict[str, str]:
        """Why the battery and meter data cannot be used: 'stale', 'missing', 'implausible' → reasons.

        The mode machine judges the snapshot (stale, missing, implausible).
        The device layer has usually refused an implausible value before the
        snapshot sees it (the poll fails with kind "implausible" and the data
        goes stale): that is named here, so the alarm says why.
        """
        problems = dict(self.machine.data_problems) if self.machine else {}
        refused = []
        for nature in (Nature.BATTERY, Nature.METER):
            dev_id = self._ids.get(nature)
            health = self.pollers[dev_id].health if dev_id in self.pollers else None
            if health is not None and not health.ok and health.last_error_kind == "implausible":
                refused.append(f"{dev_id}: {health.last_error}")
        if refused:
            problems["implausible"] = "; ".join(filter(None, [problems.get("implausible"), *refused]))
        return problems

    def _emit(self, changes: list[ModeChange]) -> None:
        for ch in changes:
            self.mode_log.append(ch)
            log.info("%s: %s mode %s -> %s (%s, by %s)", self.site.id, ch.layer,
                     ch.from_mode.value if ch.from_mode else "-", ch.to_mode.value, ch.reason, ch.requested_by)
            if ch.layer == "effective" and self.plan_source is not None:
                self.plan_source.invalidate(f"mode {ch.to_mode.value}")
            for listener in self._listeners:
                listener.on_mode_change(ch)
        if len(self.mode_log) > 1000:
            del self.mode_log[:-500]

    async def _kick_heartbeat(self, battery: BatteryDevice) -> None:
        """Keep the battery's watchdog alive; failures only log (the poller reports the device)."""
        period = battery.heartbeat_period_s or 5.0
        # Kick at least twice per heartbeat period, and no more than once a
        # cycle.  Wall time on purpose: a watchdog guards the link, which runs
        # in wall time even when the hall's physics is accelerated.
        interval = min(self.cycle_s, period / 2.0)
        failing = False
        while True:
            try:
                await asyncio.wait_for(battery.kick_heartbeat(), max(1.0, 4 * battery.config.timeout_s))
                if failing:
                    log.info("%s: heartbeat to %s recovered", self.site.id, battery.id)
                failing = False
            except (DeviceError, asyncio.TimeoutError) as exc:
                if not failing:
                    log.warning("%s: heartbeat to %s failed: %s", self.site.id, battery.id, exc)
                failing = True
            await asyncio.sleep(interval)


def format_status_line(s: DaemonStatus) -> str:
    """One human line: mode, SoC, powers, setpoint, hours of power left."""
    def w(x: float | None) -> str:
        return "  n/a" if x is None else f"{x / 1000:5.1f}kW"
    soc = "n/a" if s.soc_pct is None else f"{s.soc_pct:5.1f}%"
    hours = "n/a" if s.hours_left is None else f"{s.hours_left:4.1f}h"
    return (f"{s.site_id} {s.mode.effective.value:16s} SoC {soc} bat {w(s.battery_w)} grid {w(s.grid_w)} "
            f"pv {w(s.pv_w)} set {w(s.setpoint_w)} left {hours} cycle {s.stats.last_cycle_ms:.1f}ms")


async def print_status_lines(daemons: Sequence[EdgeDaemon], stop: asyncio.Event, every_s: float = 5.0) -> None:
    """Print one status line per daemon every ``every_s`` [s] until ``stop`` is set."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass
        for daemon in daemons:
            if daemon.status is not None:
                print(format_status_line(daemon.status), flush=True)
