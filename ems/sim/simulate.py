"""``ems simulate``: serve every hall's simulated devices until SIGTERM or SIGINT (exit status 0)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import datetime, timezone

from ems.errors import UsageError
from ems.config import load_fleet
from ems.signals import stop_on_signals

log = logging.getLogger(__name__)


def make_clock(speed: float, start: str | None):
    """Wall clock at speed 1 from now, else an accelerated clock from ``start`` (ISO 8601) or now."""
    from devices.simulator.clock import AcceleratedClock, WallClock

    if speed <= 0:
        raise UsageError(f"--speed: must be > 0, got {speed}")
    if start is None and speed == 1.0:
        return WallClock()
    t0 = datetime.now(timezone.utc)
    if start is not None:
        try:
            t0 = datetime.fromisoformat(start)
        except ValueError:
            raise UsageError(f"--start: not an ISO 8601 time: {start!r}") from None
        if t0.tzinfo is None:
            raise UsageError(f"--start: give a UTC offset, e.g. {start}+09:00")
        t0 = t0.astimezone(timezone.utc)
    return AcceleratedClock(start=t0, speed=speed)


async def run_simulate(args: argparse.Namespace) -> int:
    """Serve the simulated halls until Ctrl-C; returns the exit status."""
    from devices.simulator.server import FleetSimulator

    fleet = load_fleet(args.config)
    if args.site:
        for sid in args.site:
            fleet.site(sid)  # KeyError names the known ids
        fleet = fleet.model_copy(update={"sites": [s for s in fleet.sites if s.id in set(args.site)]})
    clock = make_clock(args.speed, args.start)
    sim = FleetSimulator(fleet, clock)
    stop = asyncio.Event()
    with stop_on_signals(stop):  # a clean stop, exit status 0; caught before the banner says we are up
        try:
            await sim.start()
            served = [s for s in fleet.sites if s.simulator is not None]
            for s in served:
                log.info("serving %s (%s) on 127.0.0.1:%d", s.id, s.name, s.simulator.port)
            print(f"serving {len(served)} simulated halls at speed {args.speed:g}x; Ctrl-C stops", flush=True)
            await stop.wait()
        except asyncio.CancelledError:
            pass
        finally:
            await sim.stop()
    return 0
