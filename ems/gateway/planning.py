"""The optimizer's schedule as the daemon's plan (MPC): re-plan every slot, follow it through the guard.

:class:`OptimizerPlanSource` keeps one :class:`optimizer.planner.SitePlanner`
per site (warm re-solves), builds the forecast from the site's configuration
(clear-sky PV, configured load profiles, what it learnt of the hall), a
:class:`PriceProvider` and a :class:`WeatherProvider`, and re-plans

* at every slot boundary,
* when the effective mode changes,
* when dispatch commitments change,
* when the measured net load strays far from the plan's for a while,
* when the plan has expired.

Planning never runs on the event loop.  ``setpoint_at`` (once per cycle, on
the loop) decides whether a re-plan is due and, if so, takes its inputs
there: SoC, mode, commitments, prices and weather from the providers, and
the forecast made from them.  It hands them to one worker thread per plan
source and answers from the latest *finished* plan; it never waits for a
solve.  At most one job runs; a trigger while it runs queues exactly one
follow-up (the latest inputs replace an older queued job).  Until the first
plan exists, and while the latest plan was made for another mode, the
daemon's rule decides.

The forecaster belongs to the loop alone (no lock): it learns from the
loop's snapshots, and a forecast costs ~0.5 ms (~2 ms for a day's first),
little against the solve moved away; the worker gets an immutable forecast.
The worker thread and the loop share only the job/result hand-over, behind
one lock (``_cond``).  The worker calls the planner in the thread itself
(``worker="thread"``; thread workers of all plan sources in a process plan
one at a time, see ``_PLAN_LOCK``) or in a child process
(``worker="process"``, :class:`ProcessPlanner`): there its Python (Pyomo's
build and extract) and its garbage collection cannot hold this process' GIL
while the cycle wants it (``ems bench control --optimizer`` measures both
workers).

In vpp the cycle carries out the slot with
:func:`optimizer.execution.self_use_setpoint`: the battery charges the PV
surplus that would otherwise be exported beyond the plan and covers
unexpected load where the plan meant not to import, but never charges more
from the grid than planned nor discharges to keep up a planned export.  The backtest uses
the same function, and the guard still clips whatever the physics or the
reserve forbid.  In
disaster_reserve the plan's battery power is used as it is.  Other modes
(manual, safe, islanded) have no optimizer plan: the rule applies.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from devices.readings import Nature
from ems.config import SiteConfig
from ems.gateway.history_store import history_path, load_history, save_history
from ems.gateway.modes import Mode
from ems.gateway.snapshot import SiteSnapshot
from optimizer.data import prepare_run
from optimizer.execution import self_use_setpoint
from optimizer.extract import assemble_plan
from optimizer.forecast import HallProfile, clear_sky_pv_w
from optimizer.forecaster import HallForecaster
from optimizer.inputs import SiteForecast
from optimizer.plan import Plan, PlanExpired, PlanStatus
from optimizer.planner import SitePlanner
from optimizer.prices import JST, synthetic_spot_prices
from optimizer.rule import rule_schedule
from optimizer.settings import Commitment, PlanSettings

log = logging.getLogger(__name__)

#: Modes the optimizer plans for; the rest follow the rule.
PLANNED_MODES = (Mode.VPP, Mode.DISASTER_RESERVE)

#: One plan at a time in this process (thread workers): Pyomo does not promise that building and extracting
#: models from several threads at once is safe, and the halls of a simulation gain nothing from taking the GIL
#: from each other.  (Pyomo's swap of the process' stdout/stderr while it hands a model to HiGHS, which once made
#: this lock necessary, is switched off in :mod:`optimizer.solver`.)  A process worker plans in its own process.
_PLAN_LOCK = threading.Lock()

#: After a re-plan that produced no plan at all (the forecast itself failed), wait this long [s of wall time]
#: before retrying on a trigger other than a new slot, mode change or new inputs.
RETRY_AFTER_FAILURE_S = 30.0


@dataclass(frozen=True, slots=True)
class SlotPrices:
    """Buy and sell prices [JPY/kWh] per slot, and where they came from (shown with the plan)."""

    buy: np.ndarray
    sell: np.ndarray
    source: str


class PriceProvider(Protocol):
    """Prices for the slots a plan covers; never raises for a missing slot (it falls back and says so)."""

    def prices(self, times: Sequence[datetime]) -> SlotPrices: ...


class WeatherProvider(Protocol):
    """The PV weather factor [0..1] (1 = clear sky) for the day of ``t``, and where it came from."""

    def weather_factor(self, t: datetime) -> tuple[float, str]: ...


@dataclass(frozen=True, slots=True)
class PriceSource:
    """A :class:`PriceProvider` from a spot price function: buy and sell prices [JPY/kWh] per slot start.

    spot: JEPX-like spot price per time (default: the seeded synthetic
    generator; a loaded JEPX CSV's ``PriceSeries.at`` fits too);
    buy = spot + buy_adder_jpy_per_kwh (network charges, retail margin);
    sell = spot × sell_factor; name: the source shown with each plan.
    """

    spot: Callable[[Sequence[datetime]], np.ndarray]
    buy_adder_jpy_per_kwh: float = 12.0
    sell_factor: float = 1.0
    name: str = "spot prices"

    def prices(self, times: Sequence[datetime]) -> SlotPrices:
        """Buy and sell [JPY/kWh] for ``times``, with this source's name."""
        spot = np.asarray(self.spot(times), dtype=float)
        return SlotPrices(spot + self.buy_adder_jpy_per_kwh, spot * self.sell_factor, self.name)


def synthetic_prices(seed: int = 0) -> PriceSource:
    """JEPX-like synthetic prices (seeded), for the simulated fleet and tests; source "synthetic (seed N)"."""
    return PriceSource(spot=lambda times: synthetic_spot_prices(times, seed=seed), name=f"synthetic (seed {seed})")


@dataclass(slots=True)
class TypicalWeather:
    """A :class:`WeatherProvider` with one factor [0..1] for every day (no forecast; source "typical")."""

    factor: float
    source: str = "typical"

    def weather_factor(self, t: datetime) -> tuple[float, str]:
        """(factor [0..1], source) for the day of ``t``: the same every day."""
        return self.factor, self.source


def typical_weather(site: SiteConfig) -> TypicalWeather:
    """1 − the site's (simulator's) cloud factor, 0.8 without one: the weather the default forecast assumes."""
    cloud = site.simulator.cloud_factor if site.simulator else 0.2
    return TypicalWeather(1.0 - cloud)


def hall_profile(site: SiteConfig) -> HallProfile:
    """What the forecaster needs of a site, from its configuration."""
    return HallProfile(
        lat=site.lat, lon=site.lon, pv_capacity_w=site.pv.capacity_w,
        base_w=site.loads.base_w, peak_w=site.loads.peak_w, critical_w=site.loads.critical_w,
        tilt_deg=site.pv.tilt_deg, azimuth_deg=site.pv.azimuth_deg, profile=site.loads.profile,
    )


def slot_start(t: datetime, slot: timedelta) -> datetime:
    """Start of the market slot containing ``t`` (slots aligned to UTC midnight, hence to JST too)."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((t - epoch) // slot) * slot


class SlotMeans:
    """Mean hall load and PV [W] over each market slot, from the snapshots the daemon sees.

    load = net load + PV (net load = meter + battery).  A slot counts only if
    its fresh samples span at least ``min_cover`` of it (a slot half lost to
    a restart or a meter outage would teach a wrong mean).  The meter and
    battery readings of a sample must describe the same moment: taken more
    than half the stale limit apart, they are skipped.  Why: when the battery
    starts charging at full power the meter sees it at once; paired with a
    battery reading from before, the sum is a load the hall never drew (seen
    in a 3600× drill under CPU load: a slot of 16 kW learnt by a 4.8 kW hall).
    """

    def __init__(self, slot: timedelta, has_pv: bool, min_cover: float = 0.5, max_age_s: float = 60.0,
                 is_dark: Callable[[datetime], bool] | None = None):
        self.slot, self.has_pv, self.min_cover, self.max_age_s = slot, has_pv, min_cover, max_age_s
        self.is_dark = is_dark
        self._start: datetime | None = None
        self._first = self._last = None
        self._sum = np.zeros(2)
        self._n = 0

    def add(self, snap: SiteSnapshot) -> tuple[datetime, float, float | None] | None:
        """Take one snapshot; return (slot start, mean load [W], mean PV [W] or None) when a slot has finished."""
        start = slot_start(snap.time, self.slot)
        done = None
        if self._start is not None and start != self._start:
            covered = (self._last - self._first).total_seconds() if self._n else 0.0
            if self._n and covered >= self.min_cover * self.slot.total_seconds() - 60.0:
                mean = self._sum / self._n
                done = (self._start, float(mean[0]), float(mean[1]) if self.has_pv else None)
            self._first, self._n, self._sum = None, 0, np.zeros(2)
        self._start = start
        sample = self._sample(snap)
        if sample is not None:
            self._sum += sample
            self._n += 1
            self._first = self._first or snap.time
            self._last = snap.time
        return done

    def _fresh(self, snap: SiteSnapshot, reading) -> bool:
        return reading is not None and (snap.age_s(reading) or 0.0) <= self.max_age_s

    def _sample(self, snap: SiteSnapshot) -> np.ndarray | None:
        net = snap.net_load_w
        if net is None or not (self._fresh(snap, snap.meter) and self._fresh(snap, snap.battery)):
            return None
        if abs((snap.meter.time - snap.battery.time).total_seconds()) > 0.5 * self.max_age_s:
            return None  # readings of different moments (see the class docstring)
        if not self.has_pv:
            pv = 0.0
        elif self._fresh(snap, snap.pv):
            pv = max(0.0, snap.pv.power_w)
        elif self.is_dark is not None and self.is_dark(snap.time):
            pv = 0.0  # many inverters sleep (stop answering) at night: the hall's night load is still learnt
        else:
            return None
        load = net + pv
        if not (np.isfinite(load) and load >= 0):
            return None  # implausible combination (e.g. readings taken at different moments): skip
        return np.array([load, pv])


class Planner(Protocol):
    """What the worker calls to make a plan (:class:`optimizer.planner.SitePlanner`; tests inject others)."""

    def plan(self, forecast: SiteForecast, soc_pct: float, mode: str, *, now: datetime | None = None,
             commitments: Sequence[Commitment] = ()) -> Plan: ...


def _serve_plans(conn: Any, planner: Planner) -> None:
    """Child process of :class:`ProcessPlanner`: plan every job received on ``conn`` until None or EOF.

    Answers ("ok", plan, CPU [s]) or ("error", text, CPU [s]).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends this process
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        forecast, soc_pct, mode, now, commitments = job
        cpu0 = time.process_time()
        try:
            plan = planner.plan(forecast, soc_pct, mode, now=now, commitments=commitments)
            answer = ("ok", plan)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back
            answer = ("error", f"{exc.__class__.__name__}: {exc}")
        conn.send((*answer, time.process_time() - cpu0))


class ProcessPlanner:
    """A :class:`Planner` whose planner (model, solver, warm state) lives in a child process.

    The child (spawned on the first plan, again after it died) has its own
    interpreter: its GIL and its garbage collector never pause the event
    loop, and a stuck solve can be ended by ending the process.  The parent
    sends the forecast and receives the plan (a few kB, pickled).  Costs a
    Python process with Pyomo loaded (~100 MB) and ~2 s before the first plan.
    Used by the worker thread only (``terminate`` by anyone).
    """

    def __init__(self, planner: Planner, name: str = "planner"):
        self._planner = planner  # pickled into the child at its start (before any plan: small)
        self._name = name
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()  # start, send and end: the worker thread and aclose may meet here
        self.cpu_s = 0.0  # the child's CPU spent planning [s]

    def plan(self, forecast: SiteForecast, soc_pct: float, mode: str, *, now: datetime | None = None,
             commitments: Sequence[Commitment] = ()) -> Plan:
        """Plan in the child; raises RuntimeError if the planner raised there or the child died."""
        try:
            with self._lock:
                if self._proc is None or not self._proc.is_alive():
                    self._start()
                conn = self._conn
                conn.send((forecast, soc_pct, mode, now, tuple(commitments)))
            kind, value, cpu_s = conn.recv()
        except (EOFError, OSError, ValueError) as exc:  # ValueError: the pipe was closed by terminate()
            self.terminate()
            raise RuntimeError(f"the planner process ended: {exc.__class__.__name__}: {exc}") from None
        self.cpu_s += cpu_s
        if kind != "ok":
            raise RuntimeError(f"in the planner process: {value}")
        return value

    @property
    def alive(self) -> bool:
        """True while the child process runs."""
        return self._proc is not None and self._proc.is_alive()

    def stop(self) -> None:
        """Ask the child to exit after its current job (it also exits when the parent goes)."""
        with self._lock:
            try:
                if self._conn is not None:
                    self._conn.send(None)
            except (OSError, ValueError):
                pass

    def terminate(self) -> None:
        """End the child now (a solve in progress is lost)."""
        with self._lock:
            self._end()

    def _end(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2.0)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def _start(self) -> None:
        import multiprocessing as mp

        self._end()
        ctx = mp.get_context("spawn")  # not fork: the parent runs threads and an event loop
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_plans, args=(child, self._planner), name=self._name, daemon=True)
        self._proc.start()
        child.close()


@dataclass(frozen=True, slots=True)
class _Job:
    """One re-plan's inputs, all taken on the event loop; the worker reads nothing else of the loop's."""

    reason: str
    now: datetime
    mode: Mode
    soc_pct: float
    forecast: SiteForecast
    commitments: tuple[Commitment, ...]
    price_source: str
    weather_source: str


@dataclass(frozen=True, slots=True)
class _Asked:
    """What the latest submitted job planned for: its slot and mode (the re-plan triggers compare with it)."""

    slot: datetime
    mode: Mode


@dataclass(slots=True)
class WorkerStats:
    """The planning worker's work so far: jobs run, plans made, jobs that made none; CPU [s] of the worker
    thread (``time.thread_time``: with a thread worker, all the planning) and of the child process (a process
    worker's planning); wall time spent in jobs [s] and the longest job [ms]."""

    jobs: int = 0
    plans: int = 0
    failures: int = 0
    thread_cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    busy_s: float = 0.0
    max_job_ms: float = 0.0

    @property
    def cpu_s(self) -> float:
        """All the CPU planning took [s]."""
        return self.thread_cpu_s + self.process_cpu_s


_NO_INFO = {"reason": None, "price_source": None, "weather_source": None, "created_at": None, "status": None,
            "fallback": None, "solve_ms": None}


@dataclass(frozen=True, slots=True)
class _Result:
    plan: Plan
    info: dict[str, Any]


class OptimizerPlanSource:
    """PlanSource for :class:`ems.gateway.daemon.EdgeDaemon`: the Pyomo/HiGHS planner in a worker.

    Forecasts come from a :class:`~optimizer.forecaster.HallForecaster` fed
    with each finished slot's measured load and PV (:class:`SlotMeans`): it
    learns the hall's profile and corrects the day's weather as it goes.

    prices: where the slot prices come from (default: :func:`synthetic_prices`
    with the site simulator's seed); weather: the day-ahead PV weather factor
    (default: :func:`typical_weather`).  Both are called on the event loop
    when a re-plan is submitted; a provider that raises is replaced by the
    default for that plan, and the plan's ``plan_info`` says so.
    horizon_slots: slots planned ahead (48 = one day of 30-minute slots);
    deviation_w [W] and deviation_s [s]: a measured net load further than
    this from the plan's for this long triggers a re-plan.  planner: what
    makes the plan (default: a :class:`~optimizer.planner.SitePlanner`).
    worker: "thread" (the planner runs in the worker thread, in this
    process) or "process" (in a child process, see :class:`ProcessPlanner`;
    the planner is pickled into it, so an injected one must pickle).

    Call :meth:`aclose` when done: it stops the worker.
    """

    def __init__(self, site: SiteConfig, *, slot_minutes: int = 30, horizon_slots: int = 48,
                 prices: PriceProvider | None = None, weather: WeatherProvider | None = None,
                 settings: PlanSettings = PlanSettings(), deviation_w: float | None = None,
                 deviation_s: float = 300.0, state_dir: str | Path | None = None, planner: Planner | None = None,
                 worker: str = "thread"):
        if worker not in ("thread", "process"):
            raise ValueError(f"worker must be 'thread' or 'process', not {worker!r}")
        self.site = site
        self.slot = timedelta(minutes=slot_minutes)
        self.horizon_slots = horizon_slots
        self._default_prices = synthetic_prices(site.simulator.seed if site.simulator else 0)
        self._default_weather = typical_weather(site)
        self.prices: PriceProvider = prices or self._default_prices
        self.weather: WeatherProvider = weather or self._default_weather
        self.settings = settings
        self.policy = site.safety_policy()
        self.worker = worker
        # The worker thread's only planner (never called on the loop); a process worker wraps it.
        self.planner: Planner = planner or SitePlanner(self.policy, settings, site.id)
        self._remote = ProcessPlanner(self.planner, f"planner-{site.id}") if worker == "process" else None
        self.profile = hall_profile(site)
        self.forecaster = HallForecaster(self.profile, self.slot)  # the event loop's alone
        self._slot_means = SlotMeans(self.slot, has_pv=site.device(Nature.PV) is not None,
                                     is_dark=self._is_dark)
        self.history_file = history_path(state_dir, site.id) if state_dir is not None else None
        self._restored = False
        self._dark_minute: tuple[datetime, bool] | None = None
        self.deviation_w = deviation_w if deviation_w is not None else 0.5 * site.inverter.rated_w
        self.deviation_s = deviation_s
        # Loop side (touched by the event loop only).
        self._commitments: tuple[Commitment, ...] = ()
        self._dirty_reason: str | None = None
        self._asked: _Asked | None = None
        self._deviating_since: datetime | None = None
        self._input_errors: set[str] = set()  # logged once each
        # Shared with the worker thread: only behind _cond (its lock).
        self._cond = threading.Condition()
        self._pending: _Job | None = None
        self._running = False
        self._closed = False
        self._latest: _Result | None = None
        self._retry_at = 0.0  # time.monotonic() before which a failed re-plan is not retried on its own
        self._stats = WorkerStats()
        self._recent: deque[tuple[float, float]] = deque(maxlen=256)
        self._thread: threading.Thread | None = None

    # -- inputs from the daemon (event loop) ------------------------------------------
    def set_commitments(self, commitments: Sequence[Commitment]) -> None:
        """Replace the dispatch commitments (leases); the next cycle re-plans."""
        self._commitments = tuple(commitments)
        self._dirty_reason = "commitments changed"

    @property
    def commitments(self) -> tuple[Commitment, ...]:
        """Dispatch commitments in force."""
        return self._commitments

    def use_stale_limit(self, max_age_s: float) -> None:
        """Readings older than this [s of the daemon's clock] are not learnt from (the daemon's own stale limit,
        which scales with a simulation's speed)."""
        self._slot_means.max_age_s = max_age_s

    def invalidate(self, why: str) -> None:
        """Re-plan at the next cycle (e.g. a mode change, new weather); ``why`` becomes the plan's reason."""
        self._dirty_reason = why

    # -- what the worker made (any thread) --------------------------------------------
    @property
    def plan(self) -> Plan | None:
        """The latest finished plan, or None before the first."""
        with self._cond:
            return self._latest.plan if self._latest else None

    @property
    def plan_info(self) -> dict[str, Any]:
        """What the latest plan was made from and how (JSON-ready): reason, price_source, weather_source,
        created_at (ISO 8601), status, fallback, solve_ms [ms]; all None before the first plan."""
        with self._cond:
            return dict(self._latest.info) if self._latest else dict(_NO_INFO)

    @property
    def last_reason(self) -> str:
        """Why the latest plan was made ("" before the first)."""
        return self.plan_info["reason"] or ""

    @property
    def plans_made(self) -> int:
        """Plans the worker has finished (fallback plans included)."""
        with self._cond:
            return self._stats.plans

    @property
    def worker_stats(self) -> WorkerStats:
        """A copy of the worker's figures (jobs, plans, failures, CPU [s], busy [s], longest job [ms])."""
        with self._cond:
            return copy.copy(self._stats)

    @property
    def recent_jobs(self) -> list[tuple[float, float]]:
        """(start, end) of the latest 256 jobs on ``time.perf_counter`` [s] (benchmarks: what overlapped them)."""
        with self._cond:
            return list(self._recent)

    @property
    def busy(self) -> bool:
        """True while a re-plan is running or queued."""
        with self._cond:
            return self._running or self._pending is not None

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Block until no re-plan is running or queued; False on time-out.

        For tests and tools outside the event loop: never call it on the loop.
        """
        with self._cond:
            return self._cond.wait_for(lambda: not (self._running or self._pending), timeout_s)

    async def aclose(self, timeout_s: float = 3.0) -> None:
        """Stop the worker: drop a queued job, wait up to ``timeout_s`` [s] for a running one, then abandon it
        (its plan is thrown away; a process worker is ended, a thread is left to finish as a daemon thread).
        The latest plan stays readable; no new plans are made."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        thread = self._thread
        if self._remote is not None:
            self._remote.stop()
        deadline = time.monotonic() + timeout_s
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._remote is not None:
            while self._remote.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            self._remote.terminate()  # ends a solve still running: the worker thread's recv then returns
        elif thread is not None and thread.is_alive():
            log.warning("%s: the planning worker is still solving after %.1f s; abandoned", self.site.id, timeout_s)

    # -- the PlanSource protocol (event loop) -----------------------------------------
    def setpoint_at(self, snap: SiteSnapshot, mode: Mode) -> tuple[float, str] | None:
        """Requested setpoint [W] and why, or None to let the rule decide.  Never waits for a solve."""
        if mode not in PLANNED_MODES or snap.battery is None:
            return None
        now = snap.time
        self._learn(snap, mode)
        self._drop_lapsed(now)
        why = self._replan_reason(snap, mode)
        if why:
            self._asked = _Asked(slot_start(now, self.slot), mode)
            self._dirty_reason = None
            job = self._capture(snap, mode, why)
            if job is not None:
                self._submit(job)
        plan = self.plan
        if plan is None or plan.mode != mode.value:
            return None  # no plan yet, or the one for this mode is on its way: the rule decides meanwhile
        try:
            i = plan.slot_index(now)
        except PlanExpired:
            return None
        tag = f"{'fallback ' if plan.fallback else ''}plan {plan.status.value}"
        plan_w = float(plan.battery_w[i])
        if mode is Mode.VPP and snap.net_load_w is not None:
            planned_net = float(plan.grid_import_w[i] - plan.grid_export_w[i]) + plan_w
            w = self_use_setpoint(plan_w, float(plan.grid_import_w[i]), float(plan.grid_export_w[i]), planned_net,
                                  snap.net_load_w)
            return w, f"{tag}: battery {plan_w:.0f} W planned, {w - plan_w:+.0f} W for the forecast error"
        return plan_w, f"{tag}: battery {plan_w:.0f} W"

    # -- internals: learning (event loop) ----------------------------------------------
    def _is_dark(self, t: datetime) -> bool:
        """No sun on the panels at ``t``: a sleeping inverter's silence then means 0 W, not unknown.

        Asked every cycle while the inverter sleeps; the sun moves little in a
        minute, so the answer (~80 µs of sun geometry) is kept per minute.
        """
        minute = t.replace(second=0, microsecond=0)
        if self._dark_minute is None or self._dark_minute[0] != minute:
            p = self.profile
            dark = float(clear_sky_pv_w([minute], p.lat, p.lon, max(p.pv_capacity_w, 1.0), p.tilt_deg,
                                        p.azimuth_deg, slot=timedelta(minutes=1))[0]) < 1.0
            self._dark_minute = (minute, dark)
        return self._dark_minute[1]

    def _learn(self, snap: SiteSnapshot, mode: Mode) -> None:
        """Average the measured load and PV over each slot and teach the forecaster each finished one.

        Only grid-connected planned modes get here, so shed (islanded) load
        never enters the profile.  In disaster_reserve a full battery with no
        export means curtailed PV: its load is learnt, its PV is not (it
        would look like cloud).
        """
        if not self._restored:
            self._restored = True  # on the first snapshot: its time tells which saved rows are from the future
            self._restore_history(snap.time)
        finished = self._slot_means.add(snap)
        if finished is None:
            return
        start, load_w, pv_w = finished
        if mode is Mode.DISASTER_RESERVE:
            pv_w = None
        try:
            self.forecaster.observe(start, load_w, pv_w)
        except ValueError as exc:  # an implausible mean must not stop planning; the guard sees the readings
            log.warning("%s: forecaster refused slot %s: %s", self.site.id, start.isoformat(), exc)
            return
        if self.history_file is not None:
            try:
                save_history(self.history_file, self.forecaster.history())
            except OSError as exc:  # a full or read-only disk must not stop control
                log.warning("%s: cannot save the forecaster history to %s: %s", self.site.id, self.history_file, exc)

    def _restore_history(self, now: datetime) -> None:
        if self.history_file is None:
            return
        rows, problems = load_history(self.history_file)
        for problem in problems[:10]:
            log.warning("%s: forecaster history: %s (line skipped)", self.site.id, problem)
        if rows:
            taken = self.forecaster.restore(rows, now)
            log.info("%s: forecaster restored %d of %d slots from %s", self.site.id, taken, len(rows),
                     self.history_file)

    def _drop_lapsed(self, now: datetime) -> None:
        """Dispatch leases lapse back to the local plan at their end."""
        live = tuple(c for c in self._commitments if c.end > now)
        if live != self._commitments:
            self._commitments = live
            self._dirty_reason = "a dispatch lease lapsed"

    # -- internals: when to re-plan, and with what (event loop) ------------------------
    def _replan_reason(self, snap: SiteSnapshot, mode: Mode) -> str:
        """Why a re-plan is due now ("" if none).  New slot and mode compare with the latest *submitted* job,
        so a job in flight is not asked for again; expiry and deviation look at the latest finished plan."""
        now, asked = snap.time, self._asked
        with self._cond:
            if self._closed:
                return ""
            busy = self._running or self._pending is not None
            plan = self._latest.plan if self._latest else None
            retry_later = time.monotonic() < self._retry_at
        if asked is None:
            return "first plan"
        if self._dirty_reason is not None:
            return self._dirty_reason or "inputs changed"
        if asked.mode is not mode:
            return f"mode is now {mode.value}"
        if not busy and not retry_later and (plan is None or not plan.is_valid_at(now)):
            return "no plan yet" if plan is None else "plan expired"
        if slot_start(now, self.slot) > asked.slot:
            return "new slot"
        if busy or plan is None or plan.mode != mode.value:
            return ""  # what is being planned has the latest slot and mode; deviation is judged on its plan
        return self._deviation_reason(snap, plan)

    def _deviation_reason(self, snap: SiteSnapshot, plan: Plan) -> str:
        net = snap.net_load_w
        if net is None:
            return ""
        try:
            i = plan.slot_index(snap.time)
        except PlanExpired:
            return ""
        planned_net = float(plan.grid_import_w[i] - plan.grid_export_w[i] + plan.battery_w[i])
        if abs(net - planned_net) <= self.deviation_w:
            self._deviating_since = None
            return ""
        if self._deviating_since is None:
            self._deviating_since = snap.time
            return ""
        if (snap.time - self._deviating_since).total_seconds() >= self.deviation_s:
            self._deviating_since = None
            return f"net load {net:.0f} W far from the plan's {planned_net:.0f} W"
        return ""

    def _capture(self, snap: SiteSnapshot, mode: Mode, why: str) -> _Job | None:
        """The job: prices and weather from the providers, the forecast (~0.5 ms, a day's first ~2 ms), SoC,
        commitments, all taken now on the loop.  None (logged, retried later) if the forecast cannot be made."""
        start = slot_start(snap.time, self.slot)
        times = [start + k * self.slot for k in range(self.horizon_slots)]
        prices = self._ask("prices", lambda: self.prices.prices(times), lambda: self._default_prices.prices(times))
        weather, weather_source = self._weather_per_slot(times)
        try:
            forecast = self.forecaster.forecast(times, prices.buy, prices.sell, weather_factor=weather)
        except ValueError as exc:  # e.g. a provider's NaN price: SiteForecast names the field
            self._log_input_error("forecast", exc)
            with self._cond:
                self._retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
            return None
        soc = min(100.0, max(0.0, snap.battery.soc_pct))
        commitments = self._commitments if mode is Mode.VPP else ()
        return _Job(why, snap.time, mode, soc, forecast, commitments, prices.source, weather_source)

    def _weather_per_slot(self, times: Sequence[datetime]) -> tuple[np.ndarray, str]:
        """The provider's factor for each local (JST) day the horizon touches, per slot, and the source(s)."""
        factors, sources, by_day = np.empty(len(times)), [], {}
        for i, t in enumerate(times):
            day = t.astimezone(JST).date()
            if day not in by_day:
                by_day[day] = self._ask("weather", lambda: self.weather.weather_factor(t),
                                        lambda: self._default_weather.weather_factor(t))
                if by_day[day][1] not in sources:
                    sources.append(by_day[day][1])
            factors[i] = by_day[day][0]
        return np.clip(factors, 0.0, 1.0), " + ".join(sources)

    def _ask(self, what: str, ask: Callable[[], Any], default: Callable[[], Any]) -> Any:
        """``ask()``, or the built-in default when the provider breaks its promise not to raise (logged once
        per distinct error; the plan's source then names the default and the failure)."""
        try:
            return ask()
        except Exception as exc:  # noqa: BLE001 - whatever a provider raises, the plan is made
            self._log_input_error(f"{what} provider", exc)
            text = f"{exc.__class__.__name__}: {exc}"
            got = default()
            if isinstance(got, SlotPrices):
                return SlotPrices(got.buy, got.sell, f"{got.source} (provider failed: {text})")
            return got[0], f"{got[1]} (provider failed: {text})"

    def _log_input_error(self, what: str, exc: Exception) -> None:
        text = f"{what}: {exc.__class__.__name__}: {exc}"
        if text not in self._input_errors:
            self._input_errors.add(text)
            log.error("%s: %s (the default is used or the re-plan waits)", self.site.id, text)

    def _submit(self, job: _Job) -> None:
        """Queue ``job`` for the worker (replacing a queued one: the latest inputs win) and start the worker."""
        with self._cond:
            if self._closed:
                return
            self._pending = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"planner-{self.site.id}", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    # -- internals: the worker thread ------------------------------------------------------
    def _work(self) -> None:
        """The worker: take the queued job, make its plan, publish it; until closed."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                job, self._pending = self._pending, None
                self._running = True
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            child_cpu0 = self._remote.cpu_s if self._remote is not None else 0.0
            result: _Result | None = None
            try:
                result = self._make_plan(job)
            except Exception:  # noqa: BLE001 - the worker must survive anything a job does
                log.exception("%s: re-plan (%s) failed; keeping the previous plan", self.site.id, job.reason)
            wall1 = time.perf_counter()
            job_ms = (wall1 - wall0) * 1e3
            with self._cond:
                s = self._stats
                s.jobs += 1
                s.thread_cpu_s += time.thread_time() - cpu0
                s.process_cpu_s += self._remote.cpu_s - child_cpu0 if self._remote is not None else 0.0
                self._recent.append((wall0, wall1))
                s.busy_s += job_ms / 1e3
                s.max_job_ms = max(s.max_job_ms, job_ms)
                if result is None:
                    s.failures += 1
                    self._retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
                elif not self._closed:
                    s.plans += 1
                    self._latest = result
                self._running = False
                self._cond.notify_all()
            if result is not None:
                p = result.plan
                log.log(logging.WARNING if p.fallback else logging.DEBUG,
                        "%s: re-planned (%s): %s, %.1f ms solve, %.1f ms in all, shortfall %.0f Wh%s", self.site.id,
                        job.reason, p.status.value, p.solve_ms, job_ms, p.reserve_shortfall_wh,
                        f"; {p.message}" if p.message else "")

    def _make_plan(self, job: _Job) -> _Result:
        """Plan ``job`` (worker thread); a planner that raises (or a planner process that died) gives the
        rule-based plan, flagged as the fallback."""
        try:
            if self._remote is not None:
                plan = self._remote.plan(job.forecast, job.soc_pct, job.mode.value, now=job.now,
                                         commitments=job.commitments)
            else:
                with _PLAN_LOCK:
                    plan = self.planner.plan(job.forecast, job.soc_pct, job.mode.value, now=job.now,
                                             commitments=job.commitments)
        except Exception as exc:  # noqa: BLE001 - always publish a plan
            with self._cond:
                closing = self._closed
            if not closing:
                log.error("%s: the planner raised %s: %s; following the rule-based plan", self.site.id,
                          exc.__class__.__name__, exc, exc_info=self._remote is None)
            plan = self._rule_plan(job, f"planner raised {exc.__class__.__name__}: {exc}")
        info = {"reason": job.reason, "price_source": job.price_source, "weather_source": job.weather_source,
                "created_at": plan.created_at.isoformat(), "status": plan.status.value, "fallback": plan.fallback,
                "solve_ms": round(float(plan.solve_ms), 3)}
        return _Result(plan, info)

    def _rule_plan(self, job: _Job, why: str) -> Plan:
        """The rule-based plan over the job's forecast, flagged as the fallback (like the planner's own on a
        solver failure)."""
        run = prepare_run(job.forecast, self.policy, job.soc_pct, job.mode.value, self.settings, job.commitments)
        return assemble_plan(rule_schedule(run), run, PlanStatus.FALLBACK, site_id=self.site.id, now=job.now,
                             objective=None, build_ms=0.0, solve_ms=0.0, message=f"rule-based fallback: {why}")
