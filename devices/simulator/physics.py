"""The physics of one community hall: battery, PV, hall load, grid meter, outages.

Signs as everywhere in the project (:mod:`devices.readings`): battery power
+ = discharging, grid power + = importing.  Power [W], energy [Wh], SoC [%].

``step(now)`` integrates from the previous step to ``now`` in sub-steps of
at most ``max_substep_s``.  Within a sub-step PV and loads are taken at its
midpoint and the battery power is constant (its average), so the balance
grid = load − PV − battery holds exactly for every sub-step and the stored
energy changes by −P·Δt/η_d (discharging) or −P·Δt·η_c (charging).

PV available [W] is the clear-sky power of :mod:`devices.simulator.solar`
(pvlib, the same sun model the forecaster uses) times the hall's seeded
cloud series (:class:`~devices.simulator.solar.CloudSeries`), which the
forecaster does not know.

Grid connected, the battery follows its setpoint (with a first-order lag of
``lag_s``), clipped to its power limits (the smaller of battery and inverter
rating) and stopped at soc_min / soc_max.  A heartbeat watchdog reverts the
setpoint to 0 when the heartbeat register has not changed for the watchdog
timeout.

Islanded (:meth:`HallPhysics.set_grid` False) the meter reads 0 V, 0 Hz,
0 W; only the critical (shelter) load is served from the backup panel; the
battery forms the grid and supplies critical − PV whatever its setpoint,
PV is curtailed when the battery cannot take the surplus.  When the battery
cannot carry the deficit (empty, power limit, fault) the panel is dark for
the share of the step it cannot carry: that energy counts as unserved.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from devices.readings import BatteryState, Nature
from devices.simulator.clock import SimClock
from devices.simulator.faults import RegisterFaults
from devices.simulator.profiles import HallLoad, MinuteNoise
from devices.simulator.solar import DEFAULT_PV_LOSSES, CloudSeries, clear_sky_poa_w_m2, pv_power_w
from devices.simulator.hallspec import HallSpec

log = logging.getLogger(__name__)

NOMINAL_VOLTAGE_V = 101.0  # Japanese low voltage, single-phase three-wire 101/202 V
NOMINAL_FREQUENCY_HZ = 60.0  # western Japan (Tottori) is in the 60 Hz area
DEFAULT_WATCHDOG_TIMEOUT_S = 30.0
DEFAULT_FAULT_CODE = 0x0101
_IDLE_BAND_W = 1.0  # |P| below this reads as idle


@dataclass(frozen=True, slots=True)
class HallState:
    """Everything the simulated hall shows after a step.

    Battery: soc_pct [%], stored_wh [Wh], battery_power_w [W] (+ discharging,
    average over the last sub-step), max_charge_w / max_discharge_w [W]
    allowed now (0 at a SoC limit or in a fault), capacity_wh [Wh], soh_pct
    [%], setpoint_w [W] (what the setpoint register holds), heartbeat (the
    register value), watchdog_timeout_s [s].
    PV: pv_power_w [W] delivered (after curtailment), pv_available_w [W],
    pv_energy_wh [Wh] cumulative.  Loads: hall_load_w [W] (whole hall, normal
    times), critical_load_w [W] (shelter circuit), served_load_w [W].
    Grid: grid_available, grid_power_w [W] (+ import), import_wh / export_wh
    [Wh] cumulative, voltage_v [V] (L–N), frequency_hz [Hz].
    Outage counters [Wh]: served_critical_wh, unserved_critical_wh,
    shed_noncritical_wh; battery counters [Wh, AC side]: charged_wh,
    discharged_wh.
    """

    time: datetime
    soc_pct: float
    stored_wh: float
    battery_power_w: float
    battery_state: BatteryState
    fault_code: int
    max_charge_w: float
    max_discharge_w: float
    capacity_wh: float
    soh_pct: float
    setpoint_w: float
    heartbeat: int
    watchdog_timeout_s: float
    watchdog_trips: int
    pv_power_w: float
    pv_available_w: float
    pv_energy_wh: float
    hall_load_w: float
    critical_load_w: float
    served_load_w: float
    grid_available: bool
    grid_power_w: float
    import_wh: float
    export_wh: float
    voltage_v: float
    frequency_hz: float
    served_critical_wh: float
    unserved_critical_wh: float
    shed_noncritical_wh: float
    charged_wh: float
    discharged_wh: float


class HallPhysics:
    """One simulated hall stepping in time on an injected clock.

    ``seed`` (default: the site's ``simulator.seed``, else 0) makes PV
    clouds, load noise and meter noise reproducible; ``noise`` is the load
    noise share (0: bare profiles); ``lag_s`` [s] the battery's first-order
    response time (0: instant); ``max_substep_s`` [s] the longest
    integration step.  The watchdog timeout [s] counts wall time when
    ``watchdog_in_wall_time`` (a gateway kicks it in wall time, also during
    an accelerated drill): in simulated time it lasts timeout × clock.speed.
    """

    def __init__(self, site: HallSpec, clock: SimClock, seed: int | None = None, *,
                 noise: float = 0.05, lag_s: float = 0.5, max_substep_s: float = 60.0,
                 watchdog_timeout_s: float = DEFAULT_WATCHDOG_TIMEOUT_S,
                 watchdog_in_wall_time: bool = True, cloud_factor: float | None = None,
                 pv_losses: float = DEFAULT_PV_LOSSES, soh_pct: float = 100.0):
        if lag_s < 0 or max_substep_s <= 0:
            raise ValueError("lag_s must be >= 0 and max_substep_s > 0")
        sim = site.simulator
        self.site = site
        self.clock = clock
        self.seed = seed if seed is not None else (sim.seed if sim else 0)
        self.lag_s = lag_s
        self.max_substep_s = max_substep_s
        self.watchdog_in_wall_time = watchdog_in_wall_time
        self.pv_losses = pv_losses
        self.soh_pct = soh_pct
        self.register_faults = RegisterFaults()
        cf = cloud_factor if cloud_factor is not None else (sim.cloud_factor if sim else 0.2)
        self._clouds = CloudSeries(self.seed, cf, lon_deg=site.lon)
        self._loads = HallLoad(site.loads, self.seed, noise=noise)
        self._grid_noise = MinuteNoise(self.seed, stream=3)
        b = site.battery
        self.capacity_wh = b.capacity_wh
        self.e_min_wh = b.capacity_wh * b.soc_min_pct / 100
        self.e_max_wh = b.capacity_wh * b.soc_max_pct / 100
        self.max_charge_limit_w = min(b.max_charge_w, site.inverter.rated_w)
        self.max_discharge_limit_w = min(b.max_discharge_w, site.inverter.rated_w)
        # Mutable state.
        self._t = clock.now()
        self._stored_wh = b.capacity_wh * b.initial_soc_pct / 100
        self._power_w = 0.0  # battery power at the end of the last sub-step (lag state)
        self._avg_power_w = 0.0
        self._setpoint_w = 0.0
        self._heartbeat = 0
        self._heartbeat_changed_at = self._t
        self._watchdog_timeout_s = float(watchdog_timeout_s)
        self._watchdog_trips = 0
        self._grid_available = True
        self._fault_code = 0
        self._counters = dict(pv_energy_wh=0.0, import_wh=0.0, export_wh=0.0, served_critical_wh=0.0,
                              unserved_critical_wh=0.0, shed_noncritical_wh=0.0, charged_wh=0.0,
                              discharged_wh=0.0)
        self._state = self._snapshot(self._t, *self._sample(self._t))

    # ----------------------------------------------------------------- commands
    @property
    def state(self) -> HallState:
        """The state after the last step."""
        return self._state

    def set_setpoint(self, power_w: float) -> None:
        """Write the battery setpoint [W] (+ discharge); the battery follows it within its limits."""
        if not math.isfinite(power_w):
            raise ValueError(f"setpoint must be a finite number of W, got {power_w}")
        self.step()
        self._setpoint_w = float(power_w)
        self._state = replace(self._state, setpoint_w=self._setpoint_w)

    def kick_heartbeat(self, value: int) -> None:
        """Write the heartbeat register; a changed value restarts the watchdog."""
        self.step()
        if int(value) != self._heartbeat:
            self._heartbeat = int(value)
            self._heartbeat_changed_at = self._t
        self._state = replace(self._state, heartbeat=self._heartbeat)

    @property
    def watchdog_timeout_s(self) -> float:
        """Heartbeat watchdog timeout [s] (the map point ``watchdog_timeout``)."""
        return self._watchdog_timeout_s

    @watchdog_timeout_s.setter
    def watchdog_timeout_s(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"watchdog timeout must be > 0 s, got {seconds}")
        self.step()
        self._watchdog_timeout_s = float(seconds)
        self._state = replace(self._state, watchdog_timeout_s=self._watchdog_timeout_s)

    def set_grid(self, available: bool) -> None:
        """Inject a grid outage (False) or restore the grid (True) from now on."""
        self.step()
        if available != self._grid_available:
            log.info("%s: grid %s at %s", self.site.id, "restored" if available else "lost",
                     self._t.isoformat())
        self._grid_available = bool(available)
        self._resnapshot()

    def inject_battery_fault(self, code: int = DEFAULT_FAULT_CODE) -> None:
        """Fault the battery inverter: state FAULT, ``fault_code`` (≠ 0), power 0 until cleared."""
        if not 0 < code <= 0xFFFF:
            raise ValueError(f"fault code must be in 1..65535, got {code}")
        self.step()
        self._fault_code = int(code)
        self._power_w = self._avg_power_w = 0.0
        self._resnapshot()

    def clear_battery_fault(self) -> None:
        """Clear an injected battery fault; the battery resumes following its setpoint."""
        self.step()
        self._fault_code = 0
        self._resnapshot()

    def freeze_registers(self, nature: Nature | str, on: bool = True) -> None:
        """Stop (or resume) refreshing the registers of the ``nature`` device."""
        self.register_faults.freeze(nature, on)

    def serve_garbage(self, nature: Nature | str, point: str, value: float) -> None:
        """Serve ``value`` for map point ``point`` instead of the physics value (e.g. soc 140 %)."""
        self.register_faults.serve_garbage(nature, point, value)

    def serve_sentinels(self, nature: Nature | str, on: bool = True) -> None:
        """Serve SunSpec "not implemented" raw values for every point of the ``nature`` device."""
        self.register_faults.serve_sentinels(nature, on)

    # -------------------------------------------------------------- integration
    def step(self, now: datetime | None = None) -> HallState:
        """Integrate from the last step to ``now`` (default: the clock's now) and return the state.

        A ``now`` at or before the last step changes nothing (time never runs back).
        """
        now = self.clock.now() if now is None else now
        if now <= self._t:
            return self._state
        t = self._t
        while t < now:
            self._check_watchdog()  # a setpoint written after the deadline never runs
            end = min(now, t + timedelta(seconds=self.max_substep_s))
            trip_at = self._watchdog_deadline()
            if trip_at is not None and t < trip_at < end:
                end = trip_at  # end the sub-step exactly where the watchdog fires
            sample = self._advance(t, end)
            t = end
            self._t = t
            self._check_watchdog()
        # Only the last sub-step's state is kept: build it once.
        self._state = self._snapshot(t, *sample)
        return self._state

    def _watchdog_deadline(self) -> datetime | None:
        if self._setpoint_w == 0.0:
            return None
        scale = self.clock.speed if self.watchdog_in_wall_time else 1.0
        return self._heartbeat_changed_at + timedelta(seconds=self._watchdog_timeout_s * scale)

    def _check_watchdog(self) -> None:
        deadline = self._watchdog_deadline()
        if deadline is not None and self._t >= deadline:
            log.warning("%s: heartbeat unchanged for %.0f s: setpoint %.0f W reverts to idle",
                        self.site.id, self._watchdog_timeout_s, self._setpoint_w)
            self._setpoint_w = 0.0
            self._watchdog_trips += 1

    def _sample(self, t: datetime) -> tuple[float, float, float, float, float, float]:
        """(pv_available, pv, load, crit, served, grid) [W] at ``t`` for a state without a step."""
        pv = self._pv_available_w(t)
        load, crit = self._loads.hall_w(t), self._loads.critical_w(t)
        if self._grid_available:
            return pv, pv, load, crit, load, load - pv - self._avg_power_w
        return pv, 0.0, load, crit, 0.0, 0.0

    def _pv_available_w(self, t: datetime) -> float:
        pv = self.site.pv
        if pv.capacity_w <= 0:
            return 0.0
        poa = clear_sky_poa_w_m2(t, self.site.lat, self.site.lon, pv.tilt_deg, pv.azimuth_deg)
        return pv_power_w(pv.capacity_w, poa, self.pv_losses, self._clouds.factor(t))

    def _limits_w(self, hours: float) -> tuple[float, float]:
        """(max charge, max discharge) average power [W] possible over ``hours`` [h] from the stored energy."""
        if self._fault_code:
            return 0.0, 0.0
        b = self.site.battery
        room_up = max(0.0, self.e_max_wh - self._stored_wh)
        room_down = max(0.0, self._stored_wh - self.e_min_wh)
        max_ch = min(self.max_charge_limit_w, room_up / b.charge_efficiency / hours)
        max_dis = min(self.max_discharge_limit_w, room_down * b.discharge_efficiency / hours)
        return max_ch, max_dis

    def _follow_setpoint(self, dt_s: float, max_ch: float, max_dis: float) -> float:
        """Average battery power [W] over ``dt_s`` following the setpoint with the lag."""
        target = min(max_dis, max(-max_ch, self._setpoint_w))
        if self.lag_s > 0:
            decay = math.exp(-dt_s / self.lag_s)
            end = target + (self._power_w - target) * decay
            avg = target + (self._power_w - target) * self.lag_s / dt_s * (1 - decay)
        else:
            end = avg = target
        avg = min(max_dis, max(-max_ch, avg))
        self._power_w = min(max_dis, max(-max_ch, end))
        return avg

    def _advance(self, t0: datetime, t1: datetime) -> tuple[float, float, float, float, float, float]:
        """Integrate one sub-step with constant power; returns the sample for the snapshot."""
        dt_s = (t1 - t0).total_seconds()
        h = dt_s / 3600.0
        mid = t0 + (t1 - t0) / 2
        pv_avail = self._pv_available_w(mid)
        load, crit = self._loads.hall_w(mid), self._loads.critical_w(mid)
        max_ch, max_dis = self._limits_w(h)
        c = self._counters
        if self._grid_available:
            p = self._follow_setpoint(dt_s, max_ch, max_dis)
            pv, served = pv_avail, load
            grid = load - pv - p
            c["import_wh"] += max(0.0, grid) * h
            c["export_wh"] += max(0.0, -grid) * h
        else:
            p, pv, served = self._island(h, pv_avail, load, crit, max_ch, max_dis)
            self._power_w = p
            grid = 0.0
        self._avg_power_w = p
        b = self.site.battery
        if p >= 0:
            self._stored_wh -= p * h / b.discharge_efficiency
            c["discharged_wh"] += p * h
        else:
            self._stored_wh += -p * h * b.charge_efficiency
            c["charged_wh"] += -p * h
        self._stored_wh = min(self.capacity_wh, max(0.0, self._stored_wh))
        c["pv_energy_wh"] += pv * h
        return pv_avail, pv, load, crit, served, grid

    def _island(self, h: float, pv_avail: float, load: float, crit: float,
                max_ch: float, max_dis: float) -> tuple[float, float, float]:
        """One islanded sub-step: (battery power, PV used, load served) [W]; updates outage counters."""
        c = self._counters
        c["shed_noncritical_wh"] += max(0.0, load - crit) * h
        if self._fault_code:
            # No grid-forming source: the PV inverters cannot run either.
            c["unserved_critical_wh"] += crit * h
            return 0.0, 0.0, 0.0
        need = crit - pv_avail
        if need <= 0:
            p = -min(-need, max_ch)  # take what the battery can, curtail the rest of the PV
            c["served_critical_wh"] += crit * h
            return p, crit - p, crit
        share = min(1.0, max_dis / need)  # share of the step the panel stays lit
        c["served_critical_wh"] += share * crit * h
        c["unserved_critical_wh"] += (1 - share) * crit * h
        return share * need, share * pv_avail, share * crit

    # ----------------------------------------------------------------- snapshot
    def _resnapshot(self) -> None:
        self._state = self._snapshot(self._t, *self._sample(self._t))

    def _snapshot(self, t: datetime, pv_avail: float, pv: float, load: float, crit: float,
                  served: float, grid: float) -> HallState:
        b = self.site.battery
        p = self._avg_power_w
        if self._fault_code:
            state = BatteryState.FAULT
        elif abs(p) < _IDLE_BAND_W:
            state = BatteryState.IDLE
        else:
            state = BatteryState.DISCHARGING if p > 0 else BatteryState.CHARGING
        at_min = self._stored_wh <= self.e_min_wh + 1e-6
        at_max = self._stored_wh >= self.e_max_wh - 1e-6
        healthy = not self._fault_code
        if self._grid_available:
            noise = self._grid_noise.value(t)
            # Import pulls the voltage down a little, export pushes it up.
            voltage = NOMINAL_VOLTAGE_V + 0.4 * noise - 0.0001 * grid
            frequency = NOMINAL_FREQUENCY_HZ + 0.01 * noise
        else:
            voltage = frequency = 0.0
        c = self._counters
        return HallState(
            time=t, soc_pct=100.0 * self._stored_wh / self.capacity_wh, stored_wh=self._stored_wh,
            battery_power_w=p, battery_state=state, fault_code=self._fault_code,
            max_charge_w=self.max_charge_limit_w if healthy and not at_max else 0.0,
            max_discharge_w=self.max_discharge_limit_w if healthy and not at_min else 0.0,
            capacity_wh=b.capacity_wh, soh_pct=self.soh_pct, setpoint_w=self._setpoint_w,
            heartbeat=self._heartbeat, watchdog_timeout_s=self._watchdog_timeout_s,
            watchdog_trips=self._watchdog_trips, pv_power_w=pv, pv_available_w=pv_avail,
            pv_energy_wh=c["pv_energy_wh"], hall_load_w=load, critical_load_w=crit, served_load_w=served,
            grid_available=self._grid_available, grid_power_w=grid, import_wh=c["import_wh"],
            export_wh=c["export_wh"], voltage_v=voltage, frequency_hz=frequency,
            served_critical_wh=c["served_critical_wh"], unserved_critical_wh=c["unserved_critical_wh"],
            shed_noncritical_wh=c["shed_noncritical_wh"], charged_wh=c["charged_wh"],
            discharged_wh=c["discharged_wh"],
        )
