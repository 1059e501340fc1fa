"""Run a drill: the fleet runtime on a drill clock, the scenario's events at their times, then promises and report.

Everything goes through production paths: warnings are JMA XML files the
central service's poller reads, staff actions are HTTP requests to the
central API as a municipal user, outages and battery faults happen in the
simulated halls, the broker and the central service are really stopped.
The recorder samples the halls; after the end the telemetry is drained and
counted, operations and audit are read from the API, the promises checked
(:mod:`ems.sim.drill.promises`) and the report written (:mod:`ems.sim.drill.report`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from ems.config import FleetConfig
from ems.sim.drill import scenario as sc
from ems.sim.drill.jmagen import earthquake_report_xml, typhoon_report_xml, warning_reports_xml, write_report
from ems.sim.drill.promises import DrillOutcome, evaluate
from ems.sim.drill.recorder import DrillClock, Recorder
from ems.sim.drill.staff import ApiError, StaffClient
from ems.sim.runtime import FleetRuntime, InfluxTarget, RuntimeOptions
from ems.sim.central_server import CentralTiming

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 120.0  # [s wall] shutting the whole fleet down takes a few seconds


class ErrorCounter(logging.Handler):
    """Counts log records with a traceback (something raised where it should not) during the drill."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()}"[:300])


@dataclass
class Operations:
    """Operations (switches, returns) seen through the API, by id, newest version of each."""

    by_id: dict[str, dict] = field(default_factory=dict)
    fetch_errors: int = 0

    def merge(self, ops: list[dict]) -> None:
        for op in ops:
            self.by_id[op["id"]] = op


def seeded_fleet(fleet: FleetConfig, seed: int) -> FleetConfig:
    """The fleet with every simulated hall's seed shifted by ``seed`` (weather, loads, prices change with it)."""
    if seed == 0:
        return fleet
    data = fleet.model_dump(mode="python")
    for site in data["sites"]:
        if site.get("simulator") is not None:
            site["simulator"]["seed"] = int(site["simulator"]["seed"]) + 1000 * seed
    return FleetConfig.model_validate(data)


class DrillRun:
    """One run of ``scenario`` over ``fleet``; :meth:`run` returns the outcome (report written by the caller)."""

    def __init__(self, scenario: sc.Scenario, fleet: FleetConfig, *, speed: float | None = None,
                 seed: int | None = None, broker: str = "auto", state_dir: Path | None = None,
                 influx: InfluxTarget | None = None, progress: Callable[[str], None] | None = None):
        self.scenario = scenario
        self.speed = float(speed or scenario.speed)
        self.seed = scenario.seed if seed is None else seed
        self.fleet = seeded_fleet(fleet, self.seed)
        self.progress = progress or (lambda text: None)
        self.clock = DrillClock(scenario.start, self.speed)
        t = scenario.timing
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="ems-drill-"))
        timing = CentralTiming(ack_timeout_s=scenario.promises.ack_within_s, jma_poll_s=0.1)
        self.runtime = FleetRuntime(self.fleet, self.clock, RuntimeOptions(
            state_dir=self.state_dir, broker=broker, influx=influx, cycle_s=t.cycle_s, poll_s=t.poll_s,
            central_timing=timing))
        self.recorder: Recorder | None = None
        self.ops = Operations()
        self.outages: list[dict[str, Any]] = []  # {site, start, end, planned_h}
        self.actions: list[dict[str, Any]] = []  # staff/JMA actions as the runner issued them
        self.errors = ErrorCounter()
        self._tasks: list[asyncio.Task] = []
        self._staff: StaffClient | None = None
        self._admin: StaffClient | None = None

    # -- the run -----------------------------------------------------------------------------
    async def run(self) -> DrillOutcome:
        s = self.scenario
        logging.getLogger().addHandler(self.errors)
        wall0 = time.monotonic()
        rt = self.runtime
        try:
            await rt.start()
            self.progress(f"{s.name}: {rt.describe()}")
            ready = await rt.wait_until(lambda: all(d.status and d.status.mode.effective.value != "safe"
                                                    for d in rt.daemons.values()), 60.0)
            if not ready:
                self.progress("warning: not every hall left its start-up safe mode before the clock started")
            url = rt.central_url
            self._staff = StaffClient(url, *rt.credentials("municipal"))
            self._admin = StaffClient(url, *rt.credentials("admin"))
            self.clock.release()
            self.recorder = Recorder(rt, s.timing.sample_s)
            self._tasks.append(asyncio.create_task(self.recorder.run(), name="drill-recorder"))
            self._tasks.append(asyncio.create_task(self._poll_operations(), name="drill-operations"))
            await self._play_events()
            await self._wait_sim(s.end)
            self.recorder.sample()
            self.recorder.stop()  # the figures end at the scenario's end ...
            await self._await_acks(s.promises.ack_within_s, s.end)  # ... but a command sent just before has its time
            await self._collect_operations(final=True)
            audit = await self._audit()
            central_alarms = await self._central_alarms()
            alive = await self._liveness()
            try:
                await asyncio.wait_for(rt.stop(), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.error("drill: the runtime did not stop within %.0f s", STOP_TIMEOUT_S)
                alive["stop_timeout"] = True
            telemetry = rt.telemetry_count()
            for o in self.outages:
                o["end"] = o["end"] or s.end
            return evaluate(s, self.fleet, self.clock, self.recorder, self.ops.by_id, audit, self.outages,
                            self.actions, telemetry, alive, list(self.errors.records), time.monotonic() - wall0,
                            central_alarms)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await rt.stop()
            rt.close_stores()
            logging.getLogger().removeHandler(self.errors)

    async def _wait_sim(self, t: datetime) -> None:
        while self.clock.now() < t:
            remaining = (t - self.clock.now()).total_seconds() / self.speed
            await asyncio.sleep(min(0.02, max(0.001, remaining)))

    async def _play_events(self) -> None:
        for index, event in self.scenario.sorted_events():
            at = self.scenario.time_of(event.at_h)
            await self._wait_sim(at)
            self.progress(f"  t+{event.at_h:5.1f} h  {event.type}{': ' + event.note if event.note else ''}")
            self._tasks.append(asyncio.create_task(self._safe(self._do, index, event), name=f"event-{index}"))

    async def _safe(self, fn, *args) -> None:
        try:
            await fn(*args)
        except Exception as exc:  # an event that fails is reported, the drill goes on
            log.error("drill event %s failed: %s", args[0], exc)
            self.actions.append({"kind": "event_failed", "event": args[0], "error": str(exc),
                                 "t": self.clock.now()})

    # -- events --------------------------------------------------------------------------------
    async def _do(self, index: int, e: Any) -> None:
        rt, rec = self.runtime, self.recorder
        assert rec is not None
        if isinstance(e, sc.JmaWarning):
            names = {s.area_code: s.area_name for s in self.fleet.sites}
            now = self.clock.now()
            for n, xml in enumerate(warning_reports_xml(now, [(a, names.get(a, a)) for a in e.areas], e.kinds,
                                                        e.format)):
                write_report(rt.jma_dir, f"drill-{index:03d}-{n}-{e.format}.xml", xml)
            halls = [s.id for s in self.fleet.sites if s.area_code in e.areas]
            rec.mark("warning", halls, f"JMA {'/'.join(e.kinds)} ({e.format}) for {', '.join(e.areas)}")
            self.actions.append({"kind": "jma_warning", "t": now, "areas": e.areas, "halls": halls})
        elif isinstance(e, sc.JmaEarthquake):
            sites = {s.area_code: s for s in self.fleet.sites}
            cities = [(c.area, sites[c.area].area_name or c.area, c.intensity, sites[c.area].seismic_area_code)
                      for c in e.cities]
            now = self.clock.now()
            write_report(rt.jma_dir, f"drill-{index:03d}-vxse53.xml",
                         earthquake_report_xml(now, cities, e.magnitude, e.epicentre, e.lat, e.lon, e.depth_km,
                                               issued_after_s=0))
            halls = [s.id for s in self.fleet.sites if s.area_code in {c.area for c in e.cities}]
            rec.mark("warning", halls, f"JMA 震源・震度に関する情報 M{e.magnitude:g} "
                                       + ", ".join(f"{c.area} 震度{c.intensity}" for c in e.cities))
            self.actions.append({"kind": "jma_earthquake", "t": now, "halls": halls})
        elif isinstance(e, sc.JmaTyphoon):
            now = self.clock.now()
            write_report(rt.jma_dir, f"drill-{index:03d}-vptw60.xml", typhoon_report_xml(
                now, e.number, e.name, [(p.after_h, p.lat, p.lon, p.radius_km) for p in e.points]))
            rec.mark("warning", [], f"JMA 台風解析・予報情報 台風{e.number[-2:]}号 {e.name}")
            await self._record_arrivals(now)
        elif isinstance(e, (sc.StaffSwitch, sc.StaffReturn)):
            await self._staff_action(e)
        elif isinstance(e, sc.Outage):
            for sid in e.resolve(self.fleet):
                self._outage_start(sid, e.length_h)
        elif isinstance(e, sc.GridReturn):
            for sid in e.resolve(self.fleet):
                self._outage_end(sid)
        elif isinstance(e, sc.BatteryFailure):
            rt.fail_battery(e.hall, e.code)
            rec.mark("battery_failure", [e.hall], f"battery fault at {e.hall}")
        elif isinstance(e, sc.BrokerDown):
            await rt.kill_broker()
            rec.mark("broker_down", [], f"{rt.broker.kind} broker killed")
        elif isinstance(e, sc.BrokerUp):
            await rt.restart_broker()
            rec.mark("broker_up", [], f"{rt.broker.kind} broker back")
        elif isinstance(e, sc.CentralRestart):
            rec.mark("central_restart", [], "central service restart begins")
            took = await rt.restart_central()
            rec.mark("central_restart", [], f"central service back after {took:.1f} s wall")
        elif isinstance(e, sc.Weather):
            halls = e.resolve(self.fleet)
            rt.set_weather(halls, e.cloud_factor)
            rec.mark("weather", halls, f"cloud factor {e.cloud_factor:g}")

    async def _staff_action(self, e: sc.StaffScope) -> None:
        assert self._staff is not None and self.recorder is not None
        switch = isinstance(e, sc.StaffSwitch)
        call = self._staff.switch_to_disaster if switch else self._staff.return_to_vpp
        t = self.clock.now()
        try:
            op = await asyncio.to_thread(call, e.scope, e.reason, e.area_code, e.halls or None)
        except ApiError as exc:
            self.actions.append({"kind": "staff_failed", "t": t, "error": str(exc), "switch": switch})
            self.recorder.mark("switch" if switch else "return", [], f"staff action FAILED: {exc}"[:120], t)
            raise
        self.ops.merge([op])
        halls = [c["site"] for c in op["commands"]]
        self.actions.append({"kind": "staff_switch" if switch else "staff_return", "t": t, "op": op["id"],
                             "halls": halls, "user": self._staff.username})
        self.recorder.mark("switch" if switch else "return", halls,
                           f"{self._staff.username}: {'disaster' if switch else 'return to VPP'} ({e.scope})", t)

    async def _record_arrivals(self, issued: datetime) -> None:
        """The forecast arrival per hall as the central service computed it from the typhoon telegram (read
        from its API once the poller has taken the file in), kept for the reserve_by_arrival promise."""
        assert self._admin is not None
        deadline = time.monotonic() + 10.0
        arrivals: dict = {}
        while time.monotonic() < deadline:
            try:
                arrivals = await asyncio.to_thread(self._admin.jma_arrivals)
            except ApiError:
                arrivals = {}
            if arrivals and all(datetime.fromisoformat(a["report_time"]) >= issued.replace(second=0, microsecond=0)
                                for a in arrivals.values()):
                break
            await asyncio.sleep(0.1)
        self.actions.append({"kind": "typhoon_forecast", "t": issued,
                             "arrivals": {s: datetime.fromisoformat(a["arrival"]) for s, a in arrivals.items()}})

    def _outage_start(self, sid: str, length_h: float | None) -> None:
        if any(o["site"] == sid and o["end"] is None for o in self.outages):
            return  # already out
        rt = self.runtime
        rt.set_grid(sid, False)
        now = self.clock.now()
        self.outages.append({"site": sid, "start": now, "end": None, "planned_h": length_h})
        self.recorder.mark("outage_start", [sid], f"outage at {sid}" + (f" ({length_h:g} h)" if length_h else ""))
        if length_h:
            rt.call_at(now + timedelta(hours=length_h), f"grid return {sid}", lambda: self._outage_end(sid))

    def _outage_end(self, sid: str) -> None:
        for o in self.outages:
            if o["site"] == sid and o["end"] is None:
                self.runtime.set_grid(sid, True)
                o["end"] = self.clock.now()
                self.recorder.mark("outage_end", [sid], f"grid back at {sid}")

    # -- what the central service saw --------------------------------------------------------------
    async def _await_acks(self, limit_s: float, end: datetime) -> None:
        """Wait up to ``limit_s`` [s wall] for commands sent within ``limit_s`` of the scenario's ``end`` that
        still await their ack.  Why: a command sent in the scenario's last simulated hours (a return to VPP at
        30 h of 32 h is 2 s of wall time at 3600x) would otherwise be judged "no ack" when the drill stops,
        although its promise is ``limit_s``; older commands have had their time."""
        recent = end - timedelta(seconds=limit_s * self.speed)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:  # self.ops is kept fresh by the drill-operations task
            waiting = [c for op in self.ops.by_id.values() for c in op.get("commands", [])
                       if not c.get("acked_at") and c.get("status") == "sent"
                       and datetime.fromisoformat(c["sent_at"]) >= recent]
            if not waiting:
                return
            await asyncio.sleep(0.5)

    async def _poll_operations(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._collect_operations()

    async def _collect_operations(self, final: bool = False) -> None:
        assert self._admin is not None
        try:
            self.ops.merge(await asyncio.to_thread(self._admin.operations, 200))
        except ApiError as exc:  # e.g. during a central restart; the next poll catches up
            self.ops.fetch_errors += 1
            if final:
                log.warning("drill: operations not readable at the end: %s", exc)

    async def _audit(self) -> list[dict]:
        assert self._admin is not None
        try:
            return await asyncio.to_thread(self._admin.audit)
        except ApiError as exc:
            log.warning("drill: audit log not readable: %s", exc)
            return []

    async def _central_alarms(self) -> list[dict]:
        assert self._admin is not None
        try:
            return await asyncio.to_thread(self._admin.alarms, "all")
        except ApiError as exc:
            log.warning("drill: central alarms not readable: %s", exc)
            return []

    async def _liveness(self) -> dict[str, Any]:
        """Which daemon/shipper tasks died, whether the central answers, cycles still running."""
        rt = self.runtime
        dead = rt.failed_tasks()
        stalled = [sid for sid, d in rt.daemons.items()
                   if d.status is None or (self.clock.now() - d.status.time).total_seconds() > 10 * self.speed]
        central_ok = rt.central is not None and rt.central.running
        try:
            if self._admin is not None:
                await asyncio.to_thread(self._admin.fleet)
        except ApiError:
            central_ok = False
        return {"dead_tasks": dead, "stalled_halls": stalled, "central_ok": central_ok}


async def run_drill(scenario: sc.Scenario, fleet: FleetConfig, report_dir: Path, **kw: Any) -> DrillOutcome:
    """Run ``scenario`` and write the report into ``report_dir``; returns the outcome (``exit_code``)."""
    from ems.sim.drill.report import write_report as write_drill_report

    outcome = await DrillRun(scenario, fleet, **kw).run()
    write_drill_report(outcome, Path(report_dir))
    return outcome
