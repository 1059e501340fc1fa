"""Control-loop benchmark: cycle time and CPU of one edge daemon polling 1, 10 and 50 devices.

Goal (from the issue): 50 devices within a 1 s cycle using under 10 % of one
core.  For every size N one :class:`ems.gateway.daemon.EdgeDaemon` runs at its normal
1 s cycle with N simulated devices, each polled every 1 s, for ``--seconds``
of wall time; the same run measures the bare Modbus round trip on loopback as
the reference the figures are compared with.

With ``--optimizer`` every size runs again in the same run, with the
optimizer (:class:`ems.gateway.planning.OptimizerPlanSource`) attached and
forced to re-plan every ``--replan-every`` seconds (default: every cycle)
through ``invalidate``; ``--worker`` says where the planner runs (its worker
thread, a child process, or ``both``: one run each); ``--cold-plans`` makes
every plan build its model anew (~80 ms of Pyomo in Python and the garbage
of the model dropped: the first plan after a start, the worst case for the
GIL).  The goal there is a cycle p99 of at most 50 ms while a plan is being
made (cycles whose time overlaps a re-plan job) at 50 devices, with the
cycle and pollers under 10 % of one core (the planner's own CPU is reported
apart: ``time.thread_time`` of the worker thread plus the child's CPU).

Layout: device i has nature battery / meter / PV in turn (i mod 3); devices
0-2 are the site's own (battery, meter, PV inverter), the rest are extra
devices of the same kinds.  ``--units-per-port`` devices share one simulated
endpoint (one TCP port, one Modbus unit each, one shared connection in the
daemon); the default 3 is the fleet's layout (battery, meter, PV per hall).
The simulators run in a SEPARATE process so that ``time.process_time`` of
this process is the daemon's CPU alone.

What is measured per size, over the window after warm-up (every device read
once, SunSpec discovery done):

* cycle [ms]: ``status.stats.last_cycle_ms`` of every cycle (the decision and
  the verified setpoint write; the pollers run in their own tasks): mean,
  p50, p95, p99, max;
* CPU [% of one core]: process CPU seconds / wall seconds; CPU per cycle [ms];
  with the optimizer, the loop's (process minus planner thread) and the
  planner's apart;
* with the optimizer: plans made, mean and longest re-plan job [ms], the
  cycles that overlapped a job and their p99 and max [ms];
* polls per second, failed polls, Modbus requests per poll, CPU per poll [ms],
  read latency of a device poll [ms] (from the pollers' health records).

Run: ``python benchmarks/bench_control.py`` or ``ems bench control``
(``--help`` for the options, ``--json FILE`` writes the figures).  The goal
verdicts are information, not a pass/fail exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.config import DeviceConfig, ModbusTcpTransport  # noqa: E402
from devices.configfile import ConfigError  # noqa: E402
from devices.readings import Nature  # noqa: E402
from ems.config import FleetConfig, SiteConfig, load_fleet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config" / "fleet.yaml"
HOST = "127.0.0.1"
POLL_PERIOD_S = 1.0  # every device is polled once a second, like the cycle
NATURE_CYCLE = (Nature.BATTERY, Nature.METER, Nature.PV)
GOAL_DEVICES, GOAL_CYCLE_S, GOAL_CPU_PCT = 50, 1.0, 10.0
GOAL_PLANNING_P99_MS = 50.0  # cycle p99 while the optimizer is making a plan

log = logging.getLogger(__name__)


# -- layout of the simulated devices -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One simulated TCP endpoint: the hall (physics) it simulates, its port and devices."""

    hall: SiteConfig
    port: int
    devices: tuple[DeviceConfig, ...]


def plan_layout(fleet: FleetConfig, site_id: str, n_devices: int, units_per_port: int,
                ports: Sequence[int]) -> tuple[SiteConfig, list[Endpoint]]:
    """The daemon's site and the endpoints serving ``n_devices`` devices (at least the site's 3).

    Device i is a battery, meter or PV inverter (i mod 3) at unit
    ``i mod units_per_port + 1`` of endpoint ``i // units_per_port``, polled
    every 1 s; devices 0-2 keep the site's own ids.  Endpoint k simulates the
    k-th hall of the fleet, starting with ``site_id`` (cycled when there are
    more endpoints than halls).  ``ports`` needs one port per endpoint.
    """
    base = fleet.site(site_id)
    halls = [base] + [s for s in fleet.sites if s.id != site_id]
    n = max(n_devices, len(NATURE_CYCLE))
    n_endpoints = math.ceil(n / units_per_port)
    if len(ports) < n_endpoints:
        raise ValueError(f"{n_endpoints} endpoints need {n_endpoints} ports, got {len(ports)}")
    per_endpoint: list[list[DeviceConfig]] = [[] for _ in range(n_endpoints)]
    for i in range(n):
        k, unit = divmod(i, units_per_port)
        hall = halls[k % len(halls)]
        nature = NATURE_CYCLE[i % len(NATURE_CYCLE)]
        template = hall.device(nature) or base.device(nature)
        if template is None or not isinstance(template.transport, ModbusTcpTransport):
            raise ValueError(f"site {hall.id}: no Modbus TCP {nature.value} device to copy")
        dev_id = template.id if i < len(NATURE_CYCLE) else f"{nature.value}-{i:02d}"
        transport = template.transport.model_copy(update={"host": HOST, "port": ports[k], "unit": unit + 1})
        per_endpoint[k].append(template.model_copy(
            update={"id": dev_id, "period_s": POLL_PERIOD_S, "transport": transport}))
    endpoints = [
        # model_copy skips validation on purpose: a hall simulator may serve more
        # than one meter or PV inverter, which a site's device list may not hold
        Endpoint(halls[k % len(halls)].model_copy(update={"devices": devs}), ports[k], tuple(devs))
        for k, devs in enumerate(per_endpoint)
    ]
    own = [d for ep in endpoints for d in ep.devices][: len(NATURE_CYCLE)]
    return base.model_copy(update={"devices": own}), endpoints


def pick_free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# -- the simulator process -----------------------------------------------------------


def _serve(halls: list[tuple[SiteConfig, int]], conn: Any) -> None:
    """Child process: serve the halls until told to stop (or the parent is gone)."""
    asyncio.run(_serve_async(halls, conn))


async def _serve_async(halls: list[tuple[SiteConfig, int]], conn: Any) -> None:
    from devices.modbus.connection import quiet_library_logs
    from devices.simulator.clock import WallClock
    from devices.simulator.server import HallSimulator

    quiet_library_logs()
    clock = WallClock()
    sims = []
    try:
        for site, port in halls:
            sim = HallSimulator(site, clock, HOST, port)
            await sim.start()
            sims.append(sim)
        conn.send(("ready", None))
        while True:  # "cpu" asks for this process' CPU seconds; "stop" or EOF ends it
            if conn.poll():
                msg = conn.recv()
                if msg == "stop":
                    break
                conn.send(("cpu", time.process_time()))
            await asyncio.sleep(0.05)
    except EOFError:
        pass
    except Exception as exc:  # reported to the parent, which prints it
        conn.send(("error", f"{exc.__class__.__name__}: {exc}"))
    finally:
        for sim in sims:
            await sim.stop()


class SimulatorProcess:
    """The simulated endpoints, served by a child process (spawned, not forked)."""

    def __init__(self, endpoints: Sequence[Endpoint], start_timeout_s: float = 60.0):
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        halls = [(ep.hall, ep.port) for ep in endpoints]
        self._proc = ctx.Process(target=_serve, args=(halls, child_conn), name="bench-simulators", daemon=True)
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise RuntimeError(f"simulators not ready after {start_timeout_s:g} s")
        kind, detail = self._conn.recv()
        if kind != "ready":
            self.close()
            raise RuntimeError(f"simulators failed to start: {detail}")

    def cpu_s(self) -> float | None:
        """CPU seconds the simulator process used so far, None if it does not answer."""
        try:
            self._conn.send("cpu")
            if self._conn.poll(5.0):
                kind, value = self._conn.recv()
                return value if kind == "cpu" else None
        except (EOFError, OSError):
            pass
        return None

    def close(self) -> None:
        """Stop the child, politely first; terminate it if it does not exit within 10 s."""
        try:
            self._conn.send("stop")
        except (EOFError, OSError):
            pass
        self._proc.join(10.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
        self._conn.close()


# -- measurements ----------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0-100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class RoundTrip:
    """Bare Modbus TCP round trip on loopback, 10 holding registers per read [ms].

    Back-to-back (``count`` reads, both processes kept busy: the floor) and
    spaced (``spaced_count`` reads ``spaced_gap_ms`` apart, like a poller's:
    includes waking both processes and the simulator re-encoding its image).
    """

    count: int
    median_ms: float
    p99_ms: float
    mean_ms: float
    cpu_ms_per_request: float
    spaced_count: int
    spaced_gap_ms: float
    spaced_median_ms: float
    spaced_p99_ms: float


async def measure_round_trip(port: int, count: int, unit: int = 1, spaced_gap_s: float = 0.05) -> RoundTrip:
    """Read 10 holding registers with a bare AsyncModbusTcpClient: ``count`` back-to-back, then spaced."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(HOST, port=port, timeout=5, retries=0)
    if not await client.connect():
        raise RuntimeError(f"cannot connect to the simulator on {HOST}:{port}")

    async def timed_read() -> float:
        t0 = time.perf_counter()
        rr = await client.read_holding_registers(0, count=10, device_id=unit)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        if rr.isError() or len(rr.registers) != 10:
            raise RuntimeError(f"bad answer from {HOST}:{port} unit {unit}: {rr}")
        return elapsed_ms

    try:
        for _ in range(min(20, count)):  # warm-up: connection, caches
            await timed_read()
        cpu0 = time.process_time()
        times = [await timed_read() for _ in range(count)]
        cpu_s = time.process_time() - cpu0
        spaced: list[float] = []
        for _ in range(max(10, count // 20)):
            await asyncio.sleep(spaced_gap_s)
            spaced.append(await timed_read())
    finally:
        client.close()
    return RoundTrip(count, statistics.median(times), percentile(times, 99), statistics.fmean(times),
                     cpu_s * 1000.0 / count, len(spaced), spaced_gap_s * 1000.0, statistics.median(spaced),
                     percentile(spaced, 99))


@dataclass
class SizeResult:
    """Figures of one daemon polling ``devices`` devices over ``wall_s`` [s] of wall time."""

    devices: int
    endpoints: int
    all_ready: bool
    wall_s: float
    cycles: int
    cycle_mean_ms: float | None
    cycle_p95_ms: float | None
    cycle_max_ms: float | None
    overruns: int
    cpu_pct: float
    cpu_ms_per_cycle: float | None
    polls: int
    polls_per_s: float
    failures: int
    requests_per_poll: float | None
    cpu_ms_per_poll: float | None
    read_median_ms: float | None
    read_p95_ms: float | None
    sim_cpu_pct: float | None
    mode: str  # the daemon's effective mode at the end (with 1 device it has no meter: safe)
    optimizer: bool = False  # the optimizer attached and forced to re-plan
    worker: str = ""  # its worker: "thread" or "process"
    cycle_p50_ms: float | None = None
    cycle_p99_ms: float | None = None
    loop_cpu_pct: float | None = None  # process CPU minus the planner thread's [% of one core]
    plans: int = 0  # plans finished in the window
    planner_cpu_pct: float | None = None  # the planner's CPU, thread and child process [% of one core]
    plan_mean_ms: float | None = None  # one re-plan job in the worker (planner call, with a process: the round trip)
    plan_max_ms: float | None = None
    overlap_cycles: int = 0  # cycles whose time overlapped a re-plan job
    overlap_p99_ms: float | None = None
    overlap_max_ms: float | None = None


class ColdPlanner:
    """A planner that builds a new :class:`optimizer.planner.SitePlanner` (model and solver) for every plan:
    the first plan's cost, every time (picklable, for a process worker too)."""

    def __init__(self, site: SiteConfig):
        self.policy, self.site_id = site.safety_policy(), site.id

    def plan(self, forecast: Any, soc_pct: float, mode: str, **kw: Any) -> Any:
        from optimizer.planner import SitePlanner

        return SitePlanner(self.policy, site_id=self.site_id).plan(forecast, soc_pct, mode, **kw)


class _Recorder:
    """The daemon's listener: every cycle's duration and end, device read latencies; forces re-plans."""

    def __init__(self, plan_source: Any, replan_every_s: float):
        self.recording = False
        self.cycles: list[tuple[float, float]] = []  # (end [perf_counter s], duration [ms])
        self.reads_ms: list[float] = []
        self.seen_ok: dict[str, Any] = {}
        self.plan_source = plan_source
        self.replan_every_s = replan_every_s
        self._last_forced = -math.inf

    def on_status(self, st: Any) -> None:
        now = time.perf_counter()
        if self.plan_source is not None and now - self._last_forced >= self.replan_every_s - 0.05:
            self._last_forced = now
            self.plan_source.invalidate("bench: forced re-plan")  # taken up by the next cycle
        if not self.recording:
            return
        self.cycles.append((now, st.stats.last_cycle_ms))
        for dev_id, h in st.device_health.items():  # one latency per new good read
            if h.last_ok_at is not None and self.seen_ok.get(dev_id) != h.last_ok_at:
                self.seen_ok[dev_id] = h.last_ok_at
                self.reads_ms.append(h.last_latency_ms)

    def on_mode_change(self, change: Any) -> None:
        pass


def overlapping(cycles: Sequence[tuple[float, float]], spans: Sequence[tuple[float, float]]) -> list[float]:
    """Durations [ms] of the cycles (end [s], duration [ms]) whose time overlaps one of ``spans`` ([s], [s])."""
    out = []
    for end, ms in cycles:
        start = end - ms / 1000.0
        if any(a < end and start < b for a, b in spans):
            out.append(ms)
    return out


async def measure_size(site: SiteConfig, devices_cfg: Sequence[DeviceConfig], endpoints: int, seconds: float,
                       warmup_timeout_s: float, sims: SimulatorProcess | None = None,
                       slot_minutes: int = 30, worker: str = "", replan_every_s: float = 1.0,
                       cold_plans: bool = False) -> SizeResult:
    """Run one daemon with ``devices_cfg`` for ``seconds`` [s] after warm-up and measure it.

    worker: "" (no optimizer), or attach the optimizer with this worker ("thread" or "process") and force a
    re-plan every ``replan_every_s`` [s] (cold_plans: each one builds its model anew).
    """
    from devices.factory import build_devices, close_all
    from devices.simulator.clock import WallClock
    from ems.gateway.daemon import EdgeDaemon

    clock = WallClock()
    devices = build_devices(devices_cfg, clock=clock.now)
    plan_source = None
    if worker:
        from ems.gateway.planning import OptimizerPlanSource

        plan_source = OptimizerPlanSource(site, slot_minutes=slot_minutes, worker=worker,
                                          planner=ColdPlanner(site) if cold_plans else None)
    rec = _Recorder(plan_source, replan_every_s)

    def totals(d: EdgeDaemon) -> tuple[int, int, int]:
        hs = [p.health for p in d.pollers.values()]
        conns = {id(c): c for c in (getattr(dev, "connection", None) for dev in devices.values()) if c}
        return (sum(h.total_polls for h in hs), sum(h.total_failures for h in hs),
                sum(c.stats.requests for c in conns.values()))

    with tempfile.TemporaryDirectory(prefix="bench-control-") as state_dir:
        daemon = EdgeDaemon(site, state_dir=state_dir, clock=clock, devices=devices, slot_minutes=slot_minutes,
                            plan_source=plan_source)
        daemon.add_listener(rec)
        stop = asyncio.Event()
        runner: asyncio.Task | None = None
        try:
            await daemon.start()
            runner = asyncio.create_task(daemon.run(stop), name="bench-daemon")
            deadline = time.monotonic() + warmup_timeout_s
            while not all(p.health.ok for p in daemon.pollers.values()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            ready = all(p.health.ok for p in daemon.pollers.values())
            await asyncio.sleep(daemon.cycle_s)  # one more cycle: every poller in its steady rhythm
            if plan_source is not None:  # the first (cold) plan is warm-up too
                deadline = time.monotonic() + warmup_timeout_s
                while plan_source.plan is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            for dev_id, p in daemon.pollers.items():
                rec.seen_ok[dev_id] = p.health.last_ok_at
            overruns0 = daemon.status.stats.overruns if daemon.status else 0
            polls0, fails0, req0 = totals(daemon)
            sim0 = sims.cpu_s() if sims else None
            worker0 = plan_source.worker_stats if plan_source is not None else None
            wall0, cpu0, wall0_perf = time.monotonic(), time.process_time(), time.perf_counter()
            rec.recording = True
            await asyncio.sleep(seconds)
            rec.recording = False
            wall_s, cpu_s = time.monotonic() - wall0, time.process_time() - cpu0
            worker1 = plan_source.worker_stats if plan_source is not None else None
            spans = [j for j in plan_source.recent_jobs if j[1] > wall0_perf] if plan_source is not None else []
            sim1 = sims.cpu_s() if sims else None
            polls1, fails1, req1 = totals(daemon)
            overruns1 = daemon.status.stats.overruns if daemon.status else 0
            mode = daemon.status.mode.effective.value if daemon.status else "none"
        finally:
            stop.set()
            if runner is not None:
                await asyncio.gather(runner, return_exceptions=True)
            await daemon.stop()
            if plan_source is not None:
                await plan_source.aclose()
            await close_all(devices)

    polls, failures, requests = polls1 - polls0, fails1 - fails0, req1 - req0
    cycles_ms = [ms for _end, ms in rec.cycles]
    reads_ms = rec.reads_ms
    n = len(cycles_ms)
    thread_cpu_s = planner_cpu_s = 0.0
    if worker0 is not None and worker1 is not None:
        thread_cpu_s = worker1.thread_cpu_s - worker0.thread_cpu_s  # in this process' CPU
        planner_cpu_s = worker1.cpu_s - worker0.cpu_s  # with a child's
    plan_ms = [(b - a) * 1000.0 for a, b in spans]
    overlap = overlapping(rec.cycles, spans)
    return SizeResult(
        devices=len(devices_cfg), endpoints=endpoints, all_ready=ready, wall_s=wall_s, cycles=n,
        cycle_mean_ms=statistics.fmean(cycles_ms) if n else None,
        cycle_p95_ms=percentile(cycles_ms, 95) if n else None,
        cycle_max_ms=max(cycles_ms) if n else None,
        overruns=overruns1 - overruns0,
        cpu_pct=100.0 * cpu_s / wall_s,
        cpu_ms_per_cycle=cpu_s * 1000.0 / n if n else None,
        polls=polls, polls_per_s=polls / wall_s, failures=failures,
        requests_per_poll=requests / polls if polls else None,
        cpu_ms_per_poll=cpu_s * 1000.0 / polls if polls else None,
        read_median_ms=statistics.median(reads_ms) if reads_ms else None,
        read_p95_ms=percentile(reads_ms, 95) if reads_ms else None,
        sim_cpu_pct=100.0 * (sim1 - sim0) / wall_s if sim0 is not None and sim1 is not None else None,
        mode=mode,
        optimizer=bool(worker), worker=worker,
        cycle_p50_ms=percentile(cycles_ms, 50) if n else None,
        cycle_p99_ms=percentile(cycles_ms, 99) if n else None,
        loop_cpu_pct=100.0 * (cpu_s - thread_cpu_s) / wall_s,
        plans=worker1.plans - worker0.plans if worker0 is not None and worker1 is not None else 0,
        planner_cpu_pct=100.0 * planner_cpu_s / wall_s if worker else None,
        plan_mean_ms=statistics.fmean(plan_ms) if plan_ms else None,
        plan_max_ms=max(plan_ms) if plan_ms else None,
        overlap_cycles=len(overlap),
        overlap_p99_ms=percentile(overlap, 99) if overlap else None,
        overlap_max_ms=max(overlap) if overlap else None,
    )


# -- report ----------------------------------------------------------------------------


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


COLUMNS = (("devices", 7), ("ports", 5), ("cycles", 6), ("cycle mean", 10), ("p50", 6), ("p95", 6), ("p99", 6),
           ("max [ms]", 8), ("overruns", 8), ("CPU [%core]", 11), ("CPU/cycle [ms]", 14), ("polls/s", 7),
           ("fails", 5), ("req/poll", 8), ("CPU/poll [ms]", 13), ("read p95 [ms]", 13), ("sim CPU [%]", 11),
           ("mode", 4))

PLANNING_COLUMNS = (("devices", 7), ("optimizer", 9), ("cycles", 6), ("p50", 6), ("p95", 6), ("p99", 6),
                    ("max [ms]", 8), ("loop CPU [%core]", 16), ("plans", 5), ("plan mean", 9), ("plan max", 8),
                    ("planner CPU [%core]", 19), ("cycles in a plan", 16), ("their p99", 9), ("their max", 9))


def _row(cells: Sequence[str], columns: Sequence[tuple[str, int]]) -> str:
    return "  ".join(c.rjust(w) for c, (_n, w) in zip(cells, columns)).rstrip()


def format_table(results: Sequence[SizeResult]) -> list[str]:
    """The figures, one row per size (the runs without the optimizer)."""
    lines = ["  ".join(name.rjust(w) for name, w in COLUMNS)]
    for r in results:
        if r.optimizer:
            continue
        cells = (str(r.devices), str(r.endpoints), str(r.cycles), _f(r.cycle_mean_ms, ".2f"),
                 _f(r.cycle_p50_ms, ".2f"), _f(r.cycle_p95_ms, ".2f"), _f(r.cycle_p99_ms, ".2f"),
                 _f(r.cycle_max_ms, ".2f"), str(r.overruns), _f(r.cpu_pct, ".2f"),
                 _f(r.cpu_ms_per_cycle, ".2f"), _f(r.polls_per_s), str(r.failures), _f(r.requests_per_poll, ".2f"),
                 _f(r.cpu_ms_per_poll, ".3f"), _f(r.read_p95_ms, ".2f"), _f(r.sim_cpu_pct), " " + r.mode)
        lines.append(_row(cells, COLUMNS))
    return lines


def format_planning_table(results: Sequence[SizeResult]) -> list[str]:
    """Each size without and with the optimizer re-planning: cycle percentiles [ms], CPU, plans."""
    lines = ["  ".join(name.rjust(w) for name, w in PLANNING_COLUMNS)]
    for r in sorted(results, key=lambda x: (x.devices, x.optimizer, x.worker != "thread")):
        cells = (str(r.devices), r.worker or "off", str(r.cycles), _f(r.cycle_p50_ms, ".2f"),
                 _f(r.cycle_p95_ms, ".2f"), _f(r.cycle_p99_ms, ".2f"), _f(r.cycle_max_ms, ".2f"),
                 _f(r.loop_cpu_pct, ".2f"))
        if r.optimizer:
            cells += (str(r.plans), _f(r.plan_mean_ms, ".1f"), _f(r.plan_max_ms, ".1f"),
                      _f(r.planner_cpu_pct, ".2f"), str(r.overlap_cycles), _f(r.overlap_p99_ms, ".2f"),
                      _f(r.overlap_max_ms, ".2f"))
        lines.append(_row(cells, PLANNING_COLUMNS))
    return lines


def format_ratios(results: Sequence[SizeResult], rt: RoundTrip) -> list[str]:
    """Each size's figures expressed in loopback round trips (back-to-back median, unless said spaced)."""
    lines = [f"Ratios to the loopback round trip (back-to-back median {rt.median_ms:.3f} ms, spaced median "
             f"{rt.spaced_median_ms:.3f} ms, CPU {rt.cpu_ms_per_request:.3f} ms per bare request):"]
    for r in results:
        if r.optimizer:
            continue
        parts = [f"{r.devices:3d} devices:"]
        if r.cycle_mean_ms is not None:
            parts.append(f"cycle mean = {r.cycle_mean_ms / rt.median_ms:.0f} round trips"
                         f" ({r.cycle_mean_ms / rt.spaced_median_ms:.1f} spaced);")
        if r.cpu_ms_per_poll is not None:
            parts.append(f"CPU per device poll = {r.cpu_ms_per_poll / rt.cpu_ms_per_request:.1f}x a bare "
                         f"request's CPU;")
        if r.read_median_ms is not None:
            parts.append(f"read median = {r.read_median_ms / rt.spaced_median_ms:.1f} spaced round trips")
        lines.append("  " + " ".join(parts))
    return lines


def _goal_size(results: Sequence[SizeResult]) -> tuple[SizeResult, str]:
    at_goal = [r for r in results if r.devices >= GOAL_DEVICES]
    r = min(at_goal, key=lambda x: x.devices) if at_goal else max(results, key=lambda x: x.devices)
    return r, "" if r.devices >= GOAL_DEVICES else f" (only {r.devices} devices run; the goal is {GOAL_DEVICES})"


def verdicts(results: Sequence[SizeResult]) -> list[dict[str, Any]]:
    """Met / not met for each part of the goal, judged on the size nearest 50 from above (else the largest).

    The first three on the runs without the optimizer; with optimizer runs, two more on those: the cycle
    p99 while a plan is being made, and the loop's CPU (the planner's own apart).
    """
    plain = [r for r in results if not r.optimizer]
    out = _plain_verdicts(plain) if plain else []
    for worker in dict.fromkeys(r.worker for r in results if r.optimizer):
        r, note = _goal_size([r for r in results if r.worker == worker])
        p99 = r.overlap_p99_ms
        out += [
            {"goal": f"cycle p99 <= {GOAL_PLANNING_P99_MS:g} ms while planning ({worker})", "devices": r.devices,
             "met": r.plans > 0 and p99 is not None and p99 <= GOAL_PLANNING_P99_MS,
             "detail": f"p99 {_f(p99, '.2f')} ms, max {_f(r.overlap_max_ms, '.2f')} ms over {r.overlap_cycles} "
                       f"cycles overlapping a re-plan job; {r.plans} plans" + note},
            {"goal": f"loop CPU under {GOAL_CPU_PCT:g} % while planning ({worker})", "devices": r.devices,
             "met": r.loop_cpu_pct is not None and r.loop_cpu_pct < GOAL_CPU_PCT,
             "detail": f"cycle+pollers {_f(r.loop_cpu_pct, '.2f')} %, planner "
                       f"{_f(r.planner_cpu_pct, '.2f')} % of one core" + note},
        ]
    return out


def _plain_verdicts(results: Sequence[SizeResult]) -> list[dict[str, Any]]:
    r, note = _goal_size(results)
    expected = r.devices / POLL_PERIOD_S
    return [
        {"goal": f"every device polled each {POLL_PERIOD_S:g} s", "devices": r.devices,
         "met": r.all_ready and r.failures == 0 and r.polls_per_s >= 0.95 * expected,
         "detail": f"{r.polls_per_s:.1f} polls/s of {expected:.0f}/s, {r.failures} failures" + note},
        {"goal": f"control cycle within {GOAL_CYCLE_S:g} s", "devices": r.devices,
         "met": r.cycle_max_ms is not None and r.cycle_max_ms < GOAL_CYCLE_S * 1000 and r.overruns == 0,
         "detail": f"max {_f(r.cycle_max_ms, '.2f')} ms, {r.overruns} overruns" + note},
        {"goal": f"CPU under {GOAL_CPU_PCT:g} % of one core", "devices": r.devices,
         "met": r.cpu_pct < GOAL_CPU_PCT, "detail": f"{r.cpu_pct:.2f} % of one core" + note},
    ]


# -- command line ----------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of device counts: {text!r}") from None
    if not sizes or any(n < 1 or n > 1000 for n in sizes):
        raise argparse.ArgumentTypeError(f"device counts must be 1..1000, got {text!r}")
    return sizes


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Options of the benchmark."""
    p = argparse.ArgumentParser(prog="ems bench control", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_sizes, default=[1, 10, 50], help="device counts to run (default: 1,10,50)")
    p.add_argument("--seconds", type=_positive(float), default=10.0, help="measured wall time per size [s] (default 10)")
    p.add_argument("--units-per-port", type=_positive(int), default=3,
                   help="devices per simulated endpoint / shared connection (default 3, one hall's)")
    p.add_argument("--rtt-count", type=_positive(int), default=1000, help="bare round trips to time (default 1000)")
    p.add_argument("--warmup-timeout", type=_positive(float), default=30.0,
                   help="longest wait for every device's first read [s] (default 30)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="fleet YAML (default: config/fleet.yaml)")
    p.add_argument("--site", default="hall-01", help="site whose daemon runs (default hall-01)")
    p.add_argument("--optimizer", action="store_true",
                   help="run every size also with the optimizer attached and re-planning (see --replan-every)")
    p.add_argument("--replan-every", type=_positive(float), default=1.0,
                   help="with --optimizer: force a re-plan this often [s] (default 1: every cycle)")
    p.add_argument("--worker", choices=("thread", "process", "both"), default="thread",
                   help="with --optimizer: where the planner runs (default thread; both: each size with each)")
    p.add_argument("--cold-plans", action="store_true",
                   help="with --optimizer: every plan builds its model anew (the first plan's cost)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    return p


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _workers(args: argparse.Namespace) -> list[str]:
    if not args.optimizer:
        return []
    return ["thread", "process"] if args.worker == "both" else [args.worker]


def _planning_section(results: Sequence[SizeResult], args: argparse.Namespace) -> list[str]:
    every = "every cycle" if args.replan_every <= 1.0 else f"every {args.replan_every:g} s"
    return [
        f"With the optimizer: a re-plan forced {every} (invalidate), {'cold' if args.cold_plans else 'warm'} "
        f"plans, the planner in the plan source's worker ({' / '.join(_workers(args))}):",
        *format_planning_table(results),
        "  cycle percentiles [ms] over all cycles; loop CPU: this process minus the worker thread (time.thread_time);",
        "  plans: finished in the window; plan mean/max: one re-plan job in the worker [ms] (the planner call; with",
        "  a process worker the round trip to it); planner CPU: worker thread + child process;",
        "  cycles in a plan: cycles whose time overlapped a re-plan job, with their p99 and max [ms]",
        "  (with 1 device the site has no meter: safe mode, the optimizer does not plan)",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; 0 when it ran, 2 for bad options, 1 when it could not run."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a bad option: argparse already printed why
        return int(exc.code or 0)
    if args.units_per_port > 247:
        _say("--units-per-port: at most 247 Modbus units per endpoint")
        return 2
    try:
        fleet = load_fleet(args.config)
        n_max = max(max(args.sizes), len(NATURE_CYCLE))
        n_ports = math.ceil(n_max / args.units_per_port)
        site, endpoints = plan_layout(fleet, args.site, n_max, args.units_per_port, pick_free_ports(n_ports))
    except (ConfigError, KeyError, ValueError, OSError) as exc:
        _say(f"bench control: {exc}")
        return 2
    _say(f"starting {len(endpoints)} simulated endpoints ({n_max} devices) in a separate process ...")
    try:
        sims = SimulatorProcess(endpoints)
    except RuntimeError as exc:
        _say(f"bench control: {exc}")
        return 1
    all_devices = [d for ep in endpoints for d in ep.devices]
    results: list[SizeResult] = []
    try:
        _say(f"timing {args.rtt_count} bare round trips ...")
        rt = asyncio.run(measure_round_trip(endpoints[0].port, args.rtt_count))
        for n in args.sizes:
            used = {d.transport.port for d in all_devices[:n]}
            for worker in ["", *_workers(args)]:
                _say(f"measuring {n} devices for {args.seconds:g} s"
                     f"{f' with the optimizer re-planning ({worker} worker)' if worker else ''} ...")
                results.append(asyncio.run(measure_size(
                    site, all_devices[:n], len(used), args.seconds, args.warmup_timeout, sims,
                    fleet.fleet.slot_minutes, worker=worker, replan_every_s=args.replan_every,
                    cold_plans=args.cold_plans)))
    finally:
        sims.close()

    goal = verdicts(results)
    out = [
        f"Control loop benchmark: one EdgeDaemon ({args.site}), every device polled each {POLL_PERIOD_S:g} s, "
        f"cycle {site.control.cycle_s:g} s, {args.seconds:g} s measured per size, "
        f"{args.units_per_port} devices per simulated endpoint",
        f"Reference: Modbus TCP round trip on loopback (bare AsyncModbusTcpClient, 10 holding registers of "
        f"unit 1): back-to-back ({rt.count} reads) median {rt.median_ms:.3f} ms, p99 {rt.p99_ms:.3f} ms, "
        f"CPU {rt.cpu_ms_per_request:.3f} ms per request; spaced {rt.spaced_gap_ms:.0f} ms apart "
        f"({rt.spaced_count} reads) median {rt.spaced_median_ms:.3f} ms, p99 {rt.spaced_p99_ms:.3f} ms",
        "",
        *format_table(results),
        "  cycle: run_cycle() (snapshot, decision, verified setpoint write; pollers run in their own tasks);",
        "  CPU: this (daemon) process' CPU / wall time; req/poll: every Modbus request (reads, setpoint writes,",
        "  heartbeats) per device poll; read p95: latency of one device poll; sim CPU: the simulator process",
        "",
        *format_ratios(results, rt),
        "",
        *(_planning_section(results, args) if args.optimizer else []),
        f"Goal: {GOAL_DEVICES} devices within a {GOAL_CYCLE_S:g} s cycle using under {GOAL_CPU_PCT:g} % of one core",
        *(f"  {v['goal']:<44s} {'met' if v['met'] else 'NOT met'} ({v['detail']})" for v in goal),
    ]
    not_ready = [r.devices for r in results if not r.all_ready]
    if not_ready:
        out.append(f"  note: not every device had answered after the warm-up for sizes {not_ready}")
    print("\n".join(out), flush=True)
    if args.json:
        payload = {"settings": {k: v for k, v in vars(args).items() if k != "json"},
                   "round_trip": asdict(rt), "sizes": [asdict(r) for r in results], "verdicts": goal}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
