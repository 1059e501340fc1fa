"""``DIR/README.md``: what goes to which machine and how to install it.

Written for the deployment at hand (its hosts, ports, halls); it names the
secret files but never holds a secret.
"""

from __future__ import annotations

from typing import Sequence

from ems.deploy.configs import CENTRAL_PORT
from ems.deploy.layout import SERVICE_USER, Options
from ems.deploy.units import BROKER_UNIT, CENTRAL_UNIT, GATEWAY_UNIT, GATEWAY_WATCHDOG_S


def readme_text(opts: Options, sites: Sequence[tuple[str, str]], max_packet: int) -> str:
    """The README for a deployment of ``sites`` [(id, name)]."""
    etc, ems = opts.etc(), opts.ems_bin
    first = sites[0][0] if sites else "hall-01"
    halls = "\n".join(f"| `{s}` | {name} | `gateways/{s}/` | `ems-gateway@{s}` |" for s, name in sites)
    influx = ""
    if opts.influx_url:
        influx = f"""
### InfluxDB ({opts.influx_url}, database `{opts.influx_db}`)
"""
        if opts.influx_auth:
            influx += f"""
Authentication is on (`auth-enabled = true` in `/etc/influxdb/influxdb.conf`): every gateway
writes as its own user `edge-<site>` (WRITE on `{opts.influx_db}`), the central service reads as
`central` (READ).  Their passwords are `gateways/<site>/secrets/influx.password` and
`central/secrets/influx.password`.  Create the database and users with an InfluxDB admin
(again after every `add-hall`; it sets existing users' passwords from the files):

    ems deploy influx-users --out <this folder> --admin-user admin --admin-password-file /root/influx-admin.pw
"""
        else:
            influx += f"""
No InfluxDB users (made with `--influx-no-auth`): the InfluxDB must not be reachable from
anywhere but the halls' VPN and the central machine.  Create the database once:
`influx -execute 'CREATE DATABASE "{opts.influx_db}"'`.
"""
    return f"""\
# Shelter EMS deployment

Written by `ems deploy init`.  Re-running it (or `ems deploy add-hall`) rewrites the
configuration files and units but never changes an existing secret.

**This folder holds every password of the fleet** (`*/secrets/*.password`, `broker/passwd`).
Keep it on an encrypted disk of the provisioning machine; each machine gets only its part.

## Machines and ports

| machine | gets | service | listens on |
|---|---|---|---|
| broker `{opts.broker_host}` | `broker/` | `{BROKER_UNIT}` | {opts.broker_port}/tcp MQTT (from halls and central) |
| central `{opts.dashboard_host}` | `fleet/`, `central/` | `{CENTRAL_UNIT}` | 127.0.0.1:{CENTRAL_PORT} (proxy: 443) |
| each hall | `fleet/`, `gateways/<site>/` | `ems-gateway@<site>` | nothing (it connects out) |
| InfluxDB | — | influxdb | {opts.influx_url or "(none: the central keeps its own history)"} |

MQTT is plain on port {opts.broker_port}: keep the broker on a private network or VPN with the halls.
The broker accepts MQTT packets up to {max_packet} bytes (`max_packet_size`; its basis is
written in `broker/mosquitto.conf`).

| site | hall | folder | service |
|---|---|---|---|
{halls}

## Layout on the machines

| what | where | owner, mode |
|---|---|---|
| code (virtualenv) | `{opts.prefix}` (`{ems}`) | root, 0755 |
| configuration (no secrets) | `{etc}/<folder>/` (same names as here) | root, 0755 / files 0644 |
| service secrets | `{etc}/central/secrets/`, `{etc}/gateways/<site>/secrets/` | {SERVICE_USER}, 0700 / 0600 |
| broker files | `{etc}/broker/passwd`, `acl` | {opts.broker_user}:{opts.broker_user}, 0600 |
| gateway state | `{opts.var('ems', '<site>')}` (mode, outbox, command replay) | {SERVICE_USER}, 0750 (systemd) |
| central state | `{opts.var('ems-central')}` (users, audit, alarms, history) | {SERVICE_USER}, 0750 (systemd) |
| broker state | `{opts.var('ems-broker')}` (retained messages, sessions) | {opts.broker_user}, 0700 (systemd) |
| units | `/etc/systemd/system/` | root, 0644 |

Gateway and central run as the system user `{SERVICE_USER}`, the broker as `{opts.broker_user}`
(Debian's mosquitto package).  The units allow writing only the state folder.  Gateway and
central are `Type=notify` with a watchdog (the gateway's is {GATEWAY_WATCHDOG_S} s): a hung process is
restarted.  Copy folders with their modes (`rsync -a`, `scp -rp` or `tar -p`).

## Install

Once on the central machine and on every hall (the code and the service user):

    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {SERVICE_USER}
    python3 -m venv {opts.prefix} && {opts.prefix}/bin/pip install <the shelter-ems wheel>
    install -d -m 0755 {etc}

Broker machine:

    apt-get install mosquitto && systemctl disable --now mosquitto   # Debian's own instance
    install -d -m 0755 {etc} && cp -rp broker {etc}/
    chown -R {opts.broker_user}:{opts.broker_user} {etc}/broker && chmod 0600 {etc}/broker/passwd {etc}/broker/acl
    cp systemd/{BROKER_UNIT} /etc/systemd/system/ && systemctl daemon-reload
    systemctl enable --now {BROKER_UNIT}

Central machine:

    cp -rp fleet central {etc}/
    chown -R root:root {etc}/fleet {etc}/central
    chown -R {SERVICE_USER}:{SERVICE_USER} {etc}/central/secrets
    cp systemd/{CENTRAL_UNIT} /etc/systemd/system/ && systemctl daemon-reload
    systemctl enable --now {CENTRAL_UNIT}
    # the first admin (there is no default account; the password is asked for, twice)
    sudo -u {SERVICE_USER} {ems} users add --db {opts.var('ems-central', 'users.sqlite')} --roles admin <name>

Hall `{first}` (likewise every hall, with its own folder only):

    install -d -m 0755 {etc}/gateways
    cp -rp fleet {etc}/ && cp -rp gateways/{first} {etc}/gateways/
    chown -R root:root {etc}/fleet {etc}/gateways/{first}
    chown -R {SERVICE_USER}:{SERVICE_USER} {etc}/gateways/{first}/secrets
    cp systemd/{GATEWAY_UNIT} /etc/systemd/system/ && systemctl daemon-reload
    systemctl enable --now ems-gateway@{first}
    journalctl -u ems-gateway@{first} -f
{influx}
## Adding a hall

1. Add the hall to the fleet file (`{opts.fleet_source}`) and check it: `ems check-config --config <fleet file>`.
2. `ems deploy add-hall --out <this folder> --site hall-NN` (it copies the fleet file again,
   writes `gateways/hall-NN/` with new secrets and adds the hall's broker user; nothing else changes).
3. Broker: copy `broker/passwd` and `broker/acl`, then `systemctl reload {BROKER_UNIT}`.
4. Central: copy `fleet/`, then `systemctl restart {CENTRAL_UNIT}`.
5. The new hall: install as above.  Other halls may keep their fleet copy (they read only their own hall).
{"6. InfluxDB: run `ems deploy influx-users` again." if opts.influx_url and opts.influx_auth else ""}

Removing a hall: delete it from the fleet file and run `ems deploy init --fleet <fleet file> --out
<this folder>` again (the other options are kept in `deploy.yaml`); its broker user is gone from
`broker/passwd` (copy it, reload the broker), then delete `gateways/<site>/`.
"""
