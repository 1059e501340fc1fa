"""``ems drill <scenario> --config config/fleet.yaml --report DIR [--seed N] [--speed X]``.

Runs a disaster drill (see :mod:`ems.sim.drill`) and writes its report into DIR
(summary.md, summary.html, results.json, fleet_soc.png, backup_hours.png and
drill.log with every log line of the run).  Exit status: 0 when every promise
was kept, 1 when one was broken, 2 for a bad scenario or fleet file (the
error names the file and the field).

Wiring (the lead adds it to ems/cli.py)::

    from ems.cli.drill import add_drill_parser
    add_drill_parser(sub)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from ems.errors import UsageError

EXIT_BROKEN = 1


def add_drill_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``drill`` to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "drill", help="run a disaster drill (typhoon, earthquake, ...) and write a report",
        description="Run the simulated fleet through a disaster scenario in accelerated time, through the "
                    "production paths (Modbus, daemons, optimizer, MQTT, central service API, telemetry), "
                    "check the promises and write a report. Exit 1 when a promise is broken.")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario YAML, e.g. config/scenarios/typhoon.yaml")
    p.add_argument("--config", default="config/fleet.yaml", metavar="FILE", help="fleet YAML (default %(default)s)")
    p.add_argument("--report", required=True, metavar="DIR", help="folder for the report (created if missing)")
    p.add_argument("--seed", type=int, help="seed for weather, loads and prices (default: the scenario's)")
    p.add_argument("--echonet-halls", type=int, default=0, metavar="N",
                   help="run the first N halls on ECHONET Lite equipment, the rest on Modbus (default 0)")
    p.add_argument("--speed", type=float, help="simulated seconds per wall second (default: the scenario's)")
    p.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto",
                   help="MQTT broker: Mosquitto if installed (auto), or the embedded one")
    p.add_argument("--state-dir", metavar="DIR", help="keep modes, outboxes and central data here "
                                                      "(default: a temporary folder)")
    p.add_argument("--influx-url", metavar="URL", help="ship telemetry to this InfluxDB 1.x instead of the local "
                                                       "history store (lost points are then not counted)")
    p.add_argument("--influx-db", default="ems", metavar="NAME", help="InfluxDB database (default %(default)s)")
    p.add_argument("--influx-user", metavar="USER", help="InfluxDB user; password from --influx-password-file "
                                                        "or the environment variable EMS_INFLUX_PASSWORD")
    p.add_argument("--influx-password-file", metavar="FILE", help="file whose first line is the InfluxDB password")
    p.set_defaults(func=run_drill_cli)
    return p


def run_drill_cli(args: argparse.Namespace) -> int:
    """Entry point of ``ems drill``; ConfigError / UsageError propagate to the CLI (exit 2)."""
    from ems.config import load_fleet
    from ems.sim.drill.report import results_table
    from ems.sim.drill.runner import run_drill
    from ems.sim.drill.scenario import load_scenario

    if args.speed is not None and not 0 < args.speed <= 20000:
        raise UsageError(f"--speed: must be > 0 and <= 20000 simulated seconds per wall second, got {args.speed:g}")
    influx = _influx_target(args)
    fleet = load_fleet(args.config)
    if getattr(args, "echonet_halls", 0):
        from ems.sim.echonet_halls import with_echonet_halls

        fleet = with_echonet_halls(fleet, args.echonet_halls)
    scenario = load_scenario(args.scenario, fleet)
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    restore = _log_to_file(report / "drill.log")
    try:
        outcome = asyncio.run(run_drill(scenario, fleet, report, speed=args.speed, seed=args.seed,
                                        broker=args.broker, influx=influx,
                                        state_dir=Path(args.state_dir) if args.state_dir else None,
                                        progress=lambda text: print(text, flush=True)))
    finally:
        restore()
    print(results_table(outcome))
    for check in outcome.broken:
        print(f"BROKEN {check.promise} {check.subject}: {check.detail}", file=sys.stderr)
    verdict = "every promise kept" if not outcome.broken else f"{len(outcome.broken)} promise(s) broken"
    print(f"drill {scenario.name}: {verdict}; report in {report / 'summary.md'} (and summary.html)")
    return EXIT_BROKEN if outcome.broken else 0


def _influx_target(args: argparse.Namespace):
    """The InfluxDB to ship to (None: the local history store); UsageError for a bad URL or unreadable secret."""
    from ems.sim.runtime import InfluxTarget
    from telemetry.mqtt_client import read_secret

    if not args.influx_url:
        return None
    if not args.influx_url.startswith(("http://", "https://")):
        raise UsageError(f"--influx-url: must start with http:// or https://, got {args.influx_url!r}")
    password = None
    if args.influx_user:
        try:
            password = (read_secret(file=args.influx_password_file) if args.influx_password_file
                        else read_secret(env="EMS_INFLUX_PASSWORD"))
        except ValueError as exc:
            raise UsageError(f"--influx-user {args.influx_user}: {exc}") from None
    return InfluxTarget(args.influx_url, args.influx_db, args.influx_user, password)


def _log_to_file(path: Path):
    """Send every log line of the run to ``path``; the terminal shows only errors meanwhile."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    old_level = root.level
    quieted = [(h, h.level) for h in root.handlers]
    for h, _ in quieted:
        h.setLevel(max(h.level, logging.ERROR))
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.INFO, logging.INFO))

    def restore() -> None:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
        for h, level in quieted:
            h.setLevel(level)

    return restore
