"""The ``ems`` command line: simulate, run, demo, plan, bench, check-config.

Errors are one clear line on stderr (configuration errors: one line per
problem, naming file and field) and a non-zero exit status: 2 for bad input,
1 for a failure at run time.  ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Callable, Sequence

from devices.configfile import ConfigError
from ems.errors import UsageError

DEFAULT_CONFIG = "config/fleet.yaml"

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"fleet configuration YAML (default: {DEFAULT_CONFIG})")


def _cmd_check_config(args: argparse.Namespace) -> int:
    from ems.config import load_fleet, state_dir_for

    fleet = load_fleet(args.config)  # the file, its maps and every device built as `ems run` builds it
    state_dir_for(args.config, fleet)  # where `ems run --site` would keep its mode
    print(f"{args.config}: OK, {len(fleet.sites)} sites, "
          f"{sum(len(s.devices) for s in fleet.sites)} devices")
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ems.sim.simulate import run_simulate

    return asyncio.run(run_simulate(args))


def _cmd_run(args: argparse.Namespace) -> int:
    from ems.gateway.main import run_gateway_cli

    return asyncio.run(run_gateway_cli(args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from ems.sim.demo import run_demo

    return asyncio.run(run_demo(args))


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run ``benchmarks/bench_<what>.py`` in a process of its own.

    The benchmarks are development tools (some use the test suite's server
    helpers); the CLI does not import them, and a benchmark measured in its
    own process is not disturbed by what the CLI loaded.
    """
    import subprocess

    module = f"benchmarks.bench_{args.what}"
    return subprocess.call([sys.executable, "-m", module, *args.bench_args])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ems",
        description="Shelter-battery microgrid and VPP control: edge daemon, simulator, optimizer.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("check-config", help="validate a fleet configuration and exit",
                       description="Validate the fleet file and every device map it names.")
    _add_config(p)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("simulate", help="serve every hall's simulated devices over Modbus TCP and ECHONET Lite",
                       description="Serve the simulated battery, meter and PV inverter of every hall "
                                   "that has a 'simulator:' section, on 127.0.0.1 at its port.")
    _add_config(p)
    p.add_argument("--speed", type=float, default=1.0, help="time acceleration, e.g. 60 or 3600 (default 1)")
    p.add_argument("--site", action="append", help="serve only this site (repeatable)")
    p.add_argument("--start", help="simulated start time, ISO 8601 (default: now)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("run", help="run one hall's gateway",
                       description="Run the gateway of one hall: poll its devices, run the control cycle "
                                   "under the safety guard, write setpoints; with a gateway file also the "
                                   "uplink to the fleet broker, telemetry to InfluxDB and prices from the "
                                   "central service. SIGTERM or Ctrl-C stops it cleanly.")
    p.add_argument("--config", required=True, metavar="FILE",
                   help="the hall's gateway file (ems deploy init writes one), or with --site a fleet file")
    p.add_argument("--site", help="run this hall of the fleet file given as --config, on its own (no uplink)")
    p.add_argument("--state-dir", help="where mode, outbox and learnt history persist (default: from the config)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--rule-only", action="store_true", help="no optimizer: follow the rule-based plan")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="the whole system on an embedded default: fleet, daemons, dashboard",
                       description="Start the simulated 14-hall fleet, one edge daemon per hall, an MQTT "
                                   "broker, a local history store and the central service with its "
                                   "dashboard, all on 127.0.0.1, and show a live status table. Needs no "
                                   "external servers.")
    _add_config(p)
    p.add_argument("--speed", type=float, default=60.0, help="time acceleration (default 60)")
    p.add_argument("--duration", type=float, help="stop after this many seconds of wall time")
    p.add_argument("--state-dir", help="where daemons persist their mode (default: a temp folder)")
    p.add_argument("--echonet-halls", type=int, default=0, metavar="N",
                   help="run the first N halls on ECHONET Lite equipment, the rest on Modbus (default 0)")
    p.add_argument("--outage", action="append", metavar="SITE:START_MIN:LEN_MIN",
                   help="inject a grid outage at a site, minutes of simulated time (repeatable)")
    p.add_argument("--plain", action="store_true", help="print plain status lines instead of a live table")
    p.add_argument("--rule-only", action="store_true", help="no optimizer: every hall follows the rule-based plan")
    p.add_argument("--port", type=int, default=8080, help="port of the dashboard on 127.0.0.1 (default 8080)")
    p.add_argument("--embedded-broker", action="store_true",
                   help="use the embedded Python MQTT broker even when Mosquitto is installed")
    p.set_defaults(func=_cmd_demo)

    from ems.cli.plan import add_plan_parser

    add_plan_parser(sub)

    from ems.central.cli import add_central_parser
    from ems.central.users_cli import add_users_parser

    from ems.cli.drill import add_drill_parser

    add_users_parser(sub)
    add_central_parser(sub)
    add_drill_parser(sub)
    from ems.deploy.cli import add_deploy_parser
    add_deploy_parser(sub)
    from ems.cli.discover import add_discover_parser
    add_discover_parser(sub)

    p = sub.add_parser("bench", help="benchmarks that print figures",
                       description="Run a benchmark and print its figures.")
    p.add_argument("what", choices=["control", "optimizer", "telemetry", "echonet"])
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ems`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (UsageError, KeyError) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if exc.args else str(exc)
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # one clear line, not a traceback
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
