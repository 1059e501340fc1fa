"""``ems deploy init | add-hall | influx-users``: provision a real fleet.

Wiring (ems/cli/main.py)::

    from ems.deploy.cli import add_deploy_parser
    add_deploy_parser(sub)

Output names the files written, never a secret.  Bad input is a
UsageError or ConfigError (one line, exit 2).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ems.deploy.layout import OPTIONS_FILE, Options
from ems.errors import UsageError

ADMIN_PASSWORD_ENV = "INFLUX_ADMIN_PASSWORD"


def add_deploy_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``deploy`` to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "deploy", help="write a deployment: broker, central, gateways, systemd units, secrets",
        description="Write everything a real fleet needs into one folder: the Mosquitto broker's conf, "
                    "passwords and ACL, central.yaml, a gateway.yaml per hall, their secrets (random, mode "
                    "0600, never printed), systemd units and a README saying which folder goes to which "
                    "machine.")
    sub = p.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)

    a = sub.add_parser("init", help="write (or refresh) a deployment for every hall of the fleet file",
                       description="Write a deployment for every hall of the fleet file. Run again to refresh "
                                   f"it: options not given keep their values from {OPTIONS_FILE}, existing "
                                   "secrets are kept.")
    a.add_argument("--fleet", required=True, metavar="FILE", help="the fleet file (copied with its devicemaps/)")
    a.add_argument("--out", required=True, type=Path, metavar="DIR", help="the deployment folder")
    a.add_argument("--broker-host", help="name or address gateways and central use for the broker "
                                         "(default 127.0.0.1: everything on one machine)")
    a.add_argument("--broker-port", type=int, help="MQTT port (default 1883)")
    a.add_argument("--broker-bind", help="address the broker listens on (default: every interface)")
    a.add_argument("--central-host", help="name operators use for the dashboard (default: the broker host)")
    a.add_argument("--influx-url", help="InfluxDB 1.x URL the gateways write to and the central reads from "
                                        "(default: none)")
    a.add_argument("--influx-db", help="InfluxDB database (default ems)")
    auth = a.add_mutually_exclusive_group()
    auth.add_argument("--influx-no-auth", dest="influx_auth", action="store_false", default=None,
                      help="the InfluxDB has no authentication: write no InfluxDB users")
    auth.add_argument("--influx-auth", dest="influx_auth", action="store_true",
                      help="an InfluxDB user per gateway and one for the central (the default)")
    a.add_argument("--no-jma", dest="jma", action="store_false", default=None,
                   help="do not poll the JMA warning feed (default: poll it)")
    a.add_argument("--jepx-csv", metavar="PATH", help="JEPX spot CSV file or folder on the central machine; the "
                                                     "central service publishes the day-ahead prices from it "
                                                     "(default: none, gateways plan on their tariff)")
    a.add_argument("--prefix", help="virtualenv with ems on the machines (default /opt/ems/.venv)")
    a.add_argument("--etc-dir", help="config root on the machines (default /etc/ems)")
    a.add_argument("--var-dir", help="state root on the machines, systemd's StateDirectory= root "
                                     "(default /var/lib; change only for a test or staging tree)")
    a.add_argument("--mosquitto", help="the broker binary (default /usr/sbin/mosquitto)")
    a.add_argument("--broker-user", help="user the broker runs as (default mosquitto)")
    a.set_defaults(func=_cmd_init)

    h = sub.add_parser("add-hall", help="add a hall of the fleet file to an existing deployment",
                       description="Copy the fleet file again, write the hall's folder with new secrets and add "
                                   "its broker user. Other halls and every existing secret stay unchanged.")
    h.add_argument("--out", required=True, type=Path, metavar="DIR", help="the deployment folder")
    h.add_argument("--site", required=True, help="site id of the new hall, e.g. hall-15")
    h.add_argument("--fleet", metavar="FILE", help=f"the fleet file (default: the one in {OPTIONS_FILE})")
    h.set_defaults(func=_cmd_add_hall)

    i = sub.add_parser("influx-users", help="create the InfluxDB database and users of a deployment",
                       description="Create the database, the central's READ user and a WRITE user per hall "
                                   "with the passwords in the deployment's secrets (existing users get their "
                                   "password set again). The admin password comes from --admin-password-file, "
                                   f"${ADMIN_PASSWORD_ENV} or a prompt.")
    i.add_argument("--out", required=True, type=Path, metavar="DIR", help="the deployment folder")
    i.add_argument("--admin-user", required=True, help="an InfluxDB admin user")
    i.add_argument("--admin-password-file", metavar="FILE", help="file with the admin's password (first line)")
    i.add_argument("--url", help="InfluxDB URL from this machine (default: the deployment's)")
    i.set_defaults(func=_cmd_influx_users)
    return p


def _options(args: argparse.Namespace) -> Options:
    """The saved options of ``--out`` (if any) with the flags given on top."""
    out: Path = args.out
    given = {f.name: getattr(args, f.name) for f in fields(Options)
             if f.name != "fleet_source" and getattr(args, f.name, None) is not None}
    if (out / OPTIONS_FILE).is_file():
        return Options.load(out).with_changes(fleet_source=args.fleet, **given)
    return Options(fleet_source=args.fleet, **given)


def _report(outcome: Any, what: str) -> int:
    folder = outcome.folder.root
    print(f"{what} {folder}: {len(outcome.sites)} halls; broker max_packet_size {outcome.max_packet_size} bytes")
    if outcome.new_secrets:
        print(f"new secrets (mode 0600): {len(outcome.new_secrets)} files, e.g. "
              f"{outcome.new_secrets[0].relative_to(folder)}")
    else:
        print("secrets: all kept")
    for w in outcome.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"next: read {folder / 'README.md'}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from ems.deploy.build import init

    return _report(init(args.out, _options(args)), "wrote")


def _cmd_add_hall(args: argparse.Namespace) -> int:
    from ems.deploy.build import add_hall

    return _report(add_hall(args.out, args.site, args.fleet), f"added {args.site} to")


def _cmd_influx_users(args: argparse.Namespace) -> int:
    from ems.config import load_fleet
    from ems.deploy.influx import create_influx_users
    from ems.deploy.layout import check_url, prepare_out

    folder = prepare_out(args.out, must_exist=True)
    opts = Options.load(folder.root)
    url = check_url("--url", args.url) if args.url else None
    fleet_ids = [s.id for s in load_fleet(folder.fleet_file).sites]
    sites = [s for s in folder.existing_gateways() if s in fleet_ids]
    names = create_influx_users(folder, opts, sites, args.admin_user, _admin_password(args), url)
    print(f"InfluxDB {url or opts.influx_url}: database {opts.influx_db}; users {', '.join(names)}")
    return 0


def _admin_password(args: argparse.Namespace) -> str:
    if args.admin_password_file:
        try:
            text = Path(args.admin_password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"--admin-password-file: {exc.strerror}: {args.admin_password_file}") from None
        password = text[0].strip() if text else ""
    elif os.environ.get(ADMIN_PASSWORD_ENV):
        password = os.environ[ADMIN_PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = getpass.getpass(f"InfluxDB password of {args.admin_user}: ")
    else:
        raise UsageError(f"no admin password: give --admin-password-file or ${ADMIN_PASSWORD_ENV}")
    if not password:
        raise UsageError("the admin password is empty")
    return password
