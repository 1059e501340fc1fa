"""``ems demo``: the whole system on an embedded default, with a live status table.

Everything talks the production protocols on loopback: the simulator serves
each hall's registers over Modbus TCP, each daemon polls them, plans with the
optimizer, guards and writes setpoints, publishes over MQTT and keeps its
telemetry in the durable outbox; the central service serves the dashboard
and commands the halls.  Time runs ``--speed`` times faster than the wall
clock so a day of PV and load passes in minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from ems.errors import UsageError
from ems.config import FleetConfig, load_fleet
from ems.signals import stop_on_signals
from ems.gateway.daemon import DaemonStatus, EdgeDaemon, print_status_lines

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
    """Run the whole embedded system until Ctrl-C or ``--duration`` [s] of wall time.

    The simulated fleet, one daemon per hall (optimizer, guard, MQTT link,
    telemetry outbox), an MQTT broker (Mosquitto when installed, else the
    embedded amqtt), the local history store in place of InfluxDB, and the
    central service with its dashboard: everything :class:`ems.sim.runtime.FleetRuntime`
    starts, on loopback.  The users of this run get one-time passwords.
    """
    from devices.simulator.clock import AcceleratedClock
    from ems.sim.runtime import FleetRuntime, RuntimeOptions

    fleet = load_fleet(args.config)
    if getattr(args, "echonet_halls", 0):
        from ems.sim.echonet_halls import with_echonet_halls

        fleet = with_echonet_halls(fleet, args.echonet_halls)
    if args.speed <= 0:
        raise UsageError(f"--speed: must be > 0, got {args.speed}")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port: must be 1..65535, got {args.port}")
    outages = [parse_outage(o, fleet) for o in (args.outage or [])]
    tz = ZoneInfo(fleet.fleet.timezone)
    # Start at 07:00 local time so the first minutes already show PV and load.
    local_now = datetime.now(tz)
    start = local_now.replace(hour=7, minute=0, second=0, microsecond=0).astimezone(timezone.utc)
    clock = AcceleratedClock(start=start, speed=args.speed)
    options = RuntimeOptions(
        state_dir=Path(args.state_dir) if args.state_dir else None,
        central_port=args.port, user_prefix="demo", rule_only=args.rule_only,
        broker="embedded" if args.embedded_broker else "auto",
    )
    runtime = FleetRuntime(fleet, clock, options, maps_dir=Path(args.config).resolve().parent / "devicemaps")
    stop = asyncio.Event()
    # SIGTERM like Ctrl-C: stop the gateways, the central service and the broker child, exit 0.  Caught from
    # before the start: a SIGTERM right after the banner (or during the start) must not kill the process
    # and leave the broker child behind.
    with stop_on_signals(stop):
        try:
            try:
                await runtime.start()
            except OSError as exc:
                raise UsageError(f"cannot start the demo: {exc} (is --port {args.port} in use?)") from None
            for o in outages:
                runtime.inject_outage(o.site_id, start + timedelta(minutes=o.start_min),
                                      timedelta(minutes=o.length_min))
            print(start_banner(runtime), flush=True)
            if args.duration:
                asyncio.get_running_loop().call_later(args.duration, stop.set)
            daemons = list(runtime.daemons.values())
            if args.plain:
                await print_status_lines(daemons, stop, every_s=2.0)
            else:
                await _live_output(daemons, clock, tz, args.speed, stop)
        except asyncio.CancelledError:
            pass
        finally:
            await runtime.stop()
            runtime.close_stores()
    return 0


def start_banner(runtime) -> str:
    """What a newcomer needs: where the dashboard is, how to log in, what is embedded."""
    lines = [f"demo: {runtime.describe()}"]
    if runtime.central_url:
        lines.append(f"  dashboard      {runtime.central_url}/   (OpenAPI docs at /api/docs)")
        lines.append(f"  public page    {runtime.central_url}/public   (residents: shelters and hours of power)")
        for role in ("admin", "municipal", "operator"):
            user, password = runtime.credentials(role)
            lines.append(f"  log in as      {user:16s} password {password}   ({role}; valid for this run only)")
    lines.append("  embedded: a local history store stands in for InfluxDB; "
                 f"MQTT: {runtime.broker.kind} broker on 127.0.0.1 with per-run passwords and the fleet ACL")
    lines.append("  Ctrl-C stops")
    return "\n".join(lines)


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
