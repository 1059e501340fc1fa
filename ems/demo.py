"""``ems demo``: the simulated fleet and one edge daemon per hall in one process, with live status.

Everything talks over real Modbus TCP on loopback, exactly as in a hall:
the simulator serves each hall's registers on its configured port, each
daemon polls them, decides and writes setpoints.  Time runs ``--speed``
times faster than the wall clock so a day of PV and load passes in minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from ems.errors import UsageError
from ems.config import FleetConfig, load_fleet
from ems.daemon import DaemonStatus, EdgeDaemon, format_status_line, make_plan_source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutagePlan:
    """A grid outage to inject: site, start and length in minutes of simulated time."""

    site_id: str
    start_min: float
    length_min: float


def parse_outage(text: str, fleet: FleetConfig) -> OutagePlan:
    """Parse ``SITE:START_MIN:LEN_MIN``; UsageError names what is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"--outage {text!r}: expected SITE:START_MIN:LEN_MIN, e.g. hall-03:30:120")
    site_id, start, length = parts
    fleet.site(site_id)
    try:
        start_min, length_min = float(start), float(length)
    except ValueError:
        raise UsageError(f"--outage {text!r}: START_MIN and LEN_MIN must be numbers of minutes") from None
    if start_min < 0 or length_min <= 0:
        raise UsageError(f"--outage {text!r}: START_MIN must be >= 0 and LEN_MIN > 0")
    return OutagePlan(site_id, start_min, length_min)


def status_table(statuses: list[DaemonStatus], now: datetime, tz: ZoneInfo, speed: float):
    """A rich Table of every hall's status."""
    from rich.table import Table

    table = Table(title=f"Shelter fleet — {now.astimezone(tz):%Y-%m-%d %H:%M} {tz.key} (speed {speed:g}x)",
                  title_justify="left")
    for col, justify in (("hall", "left"), ("mode", "left"), ("SoC %", "right"), ("battery kW", "right"),
                         ("grid kW", "right"), ("PV kW", "right"), ("setpoint kW", "right"),
                         ("reserve kWh", "right"), ("hours left", "right"), ("cycle ms", "right"),
                         ("alarms", "left")):
        table.add_column(col, justify=justify)
    styles = {"vpp": "green", "disaster_reserve": "yellow", "islanded": "bold red", "manual": "cyan",
              "safe": "bold magenta"}

    def kw(x: float | None) -> str:
        return "–" if x is None else f"{x / 1000:.1f}"

    for s in statuses:
        mode = s.mode.effective.value
        table.add_row(
            s.site_id, f"[{styles.get(mode, '')}]{mode}[/]",
            "–" if s.soc_pct is None else f"{s.soc_pct:.1f}",
            kw(s.battery_w), kw(s.grid_w), kw(s.pv_w), kw(s.setpoint_w),
            f"{s.reserve_floor_wh / 1000:.1f}",
            "–" if s.hours_left is None else f"{s.hours_left:.1f}",
            f"{s.stats.last_cycle_ms:.1f}",
            ", ".join(a.code for a in s.alarms) or "",
        )
    return table


async def run_demo(args: argparse.Namespace) -> int:
    """Run the simulated fleet with its daemons until Ctrl-C or ``--duration`` [s]."""
    from devices.simulator.clock import AcceleratedClock
    from devices.simulator.server import FleetSimulator

    fleet = load_fleet(args.config)
    if args.speed <= 0:
        raise UsageError(f"--speed: must be > 0, got {args.speed}")
    outages = [parse_outage(o, fleet) for o in (args.outage or [])]
    tz = ZoneInfo(fleet.fleet.timezone)
    # Start at 07:00 local time so the first minutes already show PV and load.
    local_now = datetime.now(tz)
    start = local_now.replace(hour=7, minute=0, second=0, microsecond=0).astimezone(timezone.utc)
    clock = AcceleratedClock(start=start, speed=args.speed)
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="ems-demo-"))
    maps_dir = Path(args.config).resolve().parent / "devicemaps"

    sim = FleetSimulator(fleet, clock, maps_dir=maps_dir)
    await sim.start()
    daemons = [EdgeDaemon(site, state_dir=state_dir, clock=clock, slot_minutes=fleet.fleet.slot_minutes,
                          maps_dir=maps_dir,
                          plan_source=make_plan_source(site, fleet.fleet.slot_minutes, args.rule_only))
               for site in fleet.sites if site.simulator is not None]
    for d in daemons:
        await d.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop), name=f"daemon-{d.site.id}") for d in daemons]
    tasks.append(asyncio.create_task(_inject_outages(sim, clock, start, outages, stop)))
    print(f"demo: {len(daemons)} halls simulated on 127.0.0.1 ports "
          f"{min(s.simulator.port for s in fleet.sites if s.simulator)}–"
          f"{max(s.simulator.port for s in fleet.sites if s.simulator)}, speed {args.speed:g}x, "
          f"state in {state_dir}; Ctrl-C stops", flush=True)
    if args.duration:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    try:
        if args.plain:
            await _plain_output(daemons, stop)
        else:
            await _live_output(daemons, clock, tz, args.speed, stop)
    except asyncio.CancelledError:
        pass
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in daemons:
            await d.stop()
        await sim.stop()
    return 0


async def _inject_outages(sim, clock, start: datetime, outages: list[OutagePlan], stop: asyncio.Event) -> None:
    """Switch each planned outage on and off at its simulated times."""
    pending = sorted(
        [(start + timedelta(minutes=o.start_min), o.site_id, False) for o in outages]
        + [(start + timedelta(minutes=o.start_min + o.length_min), o.site_id, True) for o in outages]
    )
    while pending and not stop.is_set():
        at, site_id, available = pending[0]
        if clock.now() >= at:
            pending.pop(0)
            sim.hall(site_id).physics.set_grid(available)
            log.info("demo: grid %s at %s", "restored" if available else "cut", site_id)
            continue
        await asyncio.sleep(0.1)


async def _plain_output(daemons: list[EdgeDaemon], stop: asyncio.Event, every_s: float = 2.0) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass
        for d in daemons:
            if d.status is not None:
                print(format_status_line(d.status), flush=True)


async def _live_output(daemons: list[EdgeDaemon], clock, tz: ZoneInfo, speed: float, stop: asyncio.Event) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    # Library logs would tear the live table apart; keep only warnings.
    logging.getLogger().setLevel(logging.WARNING)
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while not stop.is_set():
            statuses = [d.status for d in daemons if d.status is not None]
            live.update(status_table(statuses, clock.now(), tz, speed))
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
