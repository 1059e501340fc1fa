"""``ems run``: one hall's gateway as a long-running process (systemd unit ``ems-gateway@<site>``).

Two ways to name what to run:

* ``ems run --config gateway.yaml``: the gateway file of a deployment
  (``ems deploy init`` writes one per hall): uplink, telemetry, prices;
* ``ems run --config fleet.yaml --site hall-01``: the hall alone, on the
  defaults of a gateway file that names only the fleet and the site (no
  uplink, telemetry kept in the outbox) — for commissioning a hall.

Either way the gateway is built by :class:`ems.gateway.compose.Gateway`,
the same as in the demo and the drills.  SIGTERM and SIGINT stop it
cleanly: the cycle in progress finishes, the outbox is shipped or kept,
MQTT says offline and closes, exit status 0.  Under systemd it reports
READY and feeds the watchdog only while cycles complete, so a hung cycle
gets the process restarted.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from devices.configfile import ConfigError
from ems.gateway.config import GatewayConfig, load_gateway_config
from ems.gateway.heap import freeze_after_first_plans
from ems.signals import stop_on_signals

log = logging.getLogger(__name__)


def gateway_config_from_args(args: Any) -> GatewayConfig:
    """The gateway file, or (with ``--site``) a gateway of the fleet file's hall on the defaults."""
    if args.site is None:
        return load_gateway_config(args.config)
    path = Path(args.config)
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    cfg = GatewayConfig(fleet=path.resolve(), site=args.site, prices={"source": "tariff"},
                        weather={"source": "typical"})
    cfg._base_dir = path.resolve().parent
    return cfg


def default_state_dir(cfg: GatewayConfig, args: Any) -> Path | None:
    """``--state-dir``, else for a fleet-file run the fleet's state folder / site, else the gateway file's."""
    if args.state_dir:
        return Path(args.state_dir)
    if args.site is not None:
        from ems.config import load_fleet, state_dir_for

        return state_dir_for(args.config, load_fleet(args.config))
    return None


async def run_gateway_cli(args: Any) -> int:
    """Entry point of ``ems run``; returns the exit status (0 after SIGTERM/SIGINT or --duration)."""
    from devices.simulator.clock import WallClock
    from ems.config import load_fleet
    from ems.gateway.compose import Gateway, wiring_from_config

    cfg = gateway_config_from_args(args)
    if args.rule_only:
        cfg = cfg.model_copy(update={"planner": cfg.planner.model_copy(update={"optimizer": False})})
    fleet = load_fleet(cfg.fleet_path)
    try:
        fleet.site(cfg.site)
    except KeyError as exc:
        raise ConfigError([f"{args.config}: site: {exc.args[0]}"]) from None
    try:
        wiring = wiring_from_config(cfg, fleet, default_state_dir(cfg, args))
    except ValueError as exc:  # a secret that vanished since the file was checked
        raise ConfigError([f"{args.config}: {exc}"]) from None
    gateway = Gateway(wiring, WallClock())
    stop = asyncio.Event()
    with stop_on_signals(stop):
        return await _serve(gateway, wiring, stop, args.duration)


async def _serve(gateway: Any, wiring: Any, stop: asyncio.Event, duration_s: float | None) -> int:
    """Start the gateway, report to systemd, run cycles until ``stop``, then stop everything in order."""
    from ems.gateway.daemon import print_status_lines
    from ems.sdnotify import Notifier

    if duration_s:
        asyncio.get_running_loop().call_later(duration_s, stop.set)
    notifier = Notifier()
    await gateway.start()
    helpers = [asyncio.create_task(freeze_after_first_plans([gateway], stop), name="gc-freeze"),
               asyncio.create_task(print_status_lines([gateway.daemon], stop), name="status-lines"),
               asyncio.create_task(_feed_watchdog(gateway, notifier, stop), name="watchdog")]
    notifier.ready()
    log.info("%s: gateway running (uplink %s, telemetry %s, state in %s)", gateway.site.id,
             f"{wiring.uplink.host}:{wiring.uplink.port}" if wiring.uplink else "none",
             "InfluxDB" if wiring.writer else "outbox only", wiring.state_dir)
    try:
        await gateway.run(stop)
    finally:
        stop.set()
        notifier.stopping()
        await asyncio.gather(*helpers, return_exceptions=True)
        await gateway.stop()
        gateway.close()
    log.info("%s: gateway stopped", gateway.site.id)
    return 0


async def _feed_watchdog(gateway: Any, notifier: Any, stop: asyncio.Event) -> None:
    """WATCHDOG=1 at half systemd's WatchdogSec, but only when a cycle completed since the last feed.

    A cycle stuck on a device or a blocked event loop stops the feeding, and
    systemd restarts the gateway (its mode survives in the mode file).
    """
    interval = notifier.watchdog_interval_s
    if interval is None:
        return
    last_count = -1
    while not stop.is_set():
        count = gateway.daemon.status.stats.cycle_count if gateway.daemon.status is not None else 0
        if count != last_count:
            notifier.watchdog()
            last_count = count
        else:
            log.error("%s: no control cycle completed in %.0f s: not feeding the watchdog", gateway.site.id,
                      interval)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass
