"""``gateway.yaml`` per hall and ``central.yaml``, as the real loaders read them.

The files hold no secrets: they name ``secrets/*.password`` beside them
(mode 0600, created once, never overwritten).  Relative paths are taken
from the file's folder, which is the same in the deployment folder and
under ``/etc/ems`` on the machine.

InfluxDB: with ``influx_auth`` (the default) every gateway writes as its own
InfluxDB user (``edge-<site>``, WRITE on the database) and the central
service reads as ``central`` (READ); ``ems deploy influx-users`` creates
them.  Without it (``--influx-no-auth``: an InfluxDB with
``auth-enabled = false`` that only the halls' VPN reaches) no credentials
are written.
"""

from __future__ import annotations

import json
from pathlib import Path

from ems.deploy.layout import CENTRAL_USER, Folder, Options, write_text
from telemetry.mosquitto_acl import gateway_username

GATEWAY_FILE = "gateway.yaml"
CENTRAL_FILE = "central.yaml"
MQTT_SECRET = "mqtt"
INFLUX_SECRET = "influx"
#: The audit log's HMAC key, beside central.yaml (mode 0600): not in the state folder, so a copy of the
#: audit database (a backup, a stolen disk image of /var/lib) does not carry the key that signs it.
AUDIT_KEY = "secrets/audit.key"
#: The audit head log, in the central service's state folder (the only place its unit may write).
AUDIT_HEAD_LOG = "audit-head.log"
JMA_FEED = "https://www.data.jma.go.jp/developer/xml/feed/extra.xml"
#: JMA's earthquake and volcano feed: seismic-intensity (VXSE51/53) and tsunami (VTSE41) telegrams.
JMA_EQVOL_FEED = "https://www.data.jma.go.jp/developer/xml/feed/eqvol.xml"
CENTRAL_PORT = 8080


def q(value: str) -> str:
    """``value`` as a YAML scalar (a JSON string is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def influx_username(site: str | None) -> str:
    """InfluxDB user of a gateway (``site``) or of the central service (None)."""
    return gateway_username(site) if site is not None else CENTRAL_USER


def secret_file(folder: Path, name: str) -> Path:
    return folder / "secrets" / f"{name}.password"


def gateway_yaml(opts: Options, site: str, name: str) -> str:
    """Text of ``gateways/<site>/gateway.yaml`` (schema: ems/gateway/config.py)."""
    influx = "#   (no InfluxDB given: points wait in the outbox up to max_mb, then the oldest are dropped)\n"
    if opts.influx_url:
        auth = (f", username: {q(influx_username(site))},\n           password_file: secrets/{INFLUX_SECRET}.password"
                if opts.influx_auth else "")
        influx = f"  influx: {{api: v1, url: {q(opts.influx_url)}, database: {q(opts.influx_db)}{auth}}}\n"
    return f"""\
# Gateway of {site} ({name}).  Written by `ems deploy init`; schema in ems/gateway/config.py.
# Installed as {opts.etc('gateways', site, 'gateway.yaml')} with ../../fleet/ beside it; run by
# ems-gateway@{site}.service (`ems run --config ... --state-dir {opts.var('ems', site)}`).
fleet: ../../fleet/fleet.yaml
site: {q(site)}
state_dir: {q(opts.var('ems', site))}      # mode, outbox, command replay, learnt history
uplink:                                 # the fleet broker
  host: {q(opts.broker_host)}
  port: {opts.broker_port}
  username: {q(gateway_username(site))}
  password_file: secrets/{MQTT_SECRET}.password
telemetry:
{influx}  outbox: {{max_mb: 256}}
prices:
  source: central                       # day-ahead prices from the central service; the tariff when none
  tariff: {{kind: flat, jpy_per_kwh: 30}}
weather:
  source: central
"""


def central_yaml(opts: Options) -> str:
    """Text of ``central/central.yaml`` (schema: ems/central/config.py)."""
    if opts.influx_url:
        auth = (f"  username: {q(influx_username(None))}\n  password_file: secrets/{INFLUX_SECRET}.password\n"
                if opts.influx_auth else "")
        history = f"""\
history:                          # charts from InfluxDB, where the gateways write
  backend: influx1
  url: {q(opts.influx_url)}
  database: {q(opts.influx_db)}
{auth}"""
    else:
        history = "history:\n  backend: local                  # no InfluxDB: SQLite fed from the MQTT state messages\n"
    jma = (f"jma:\n  enabled: true\n  source: {q(JMA_FEED)}\n  extra_sources: [{q(JMA_EQVOL_FEED)}]\n  poll_s: 60\n"
           "  kinds: [storm, heavy_rain, storm_surge, landslide, typhoon]\n"
           "  typhoon: {lead_h: 24, action: switch}\n"
           "  earthquake: {enabled: true, min_intensity: 5弱, action: switch}\n"
           "  tsunami: {grades: [warning, major_warning], action: switch, lower_action: suggest}\n"
           ) if opts.jma else "jma:\n  enabled: false\n"
    if opts.jepx_csv:
        market = (f"market:                           # day-ahead prices for every gateway, from JEPX spot CSV files\n"
                  f"  source: jepx_csv\n  path: {q(opts.jepx_csv)}   # a file or a folder; read again when it changes\n")
    else:
        market = ("market:                           # no price data yet: gateways plan on their tariff.  Put JEPX\n"
                  "  source: none                    # spot CSVs in a folder and give it with --jepx-csv\n")
    return f"""\
# Central service.  Written by `ems deploy init`; schema in ems/central/config.py.
# Installed as {opts.etc('central', CENTRAL_FILE)} with ../fleet/ beside it; run by ems-central.service.
fleet: ../fleet/fleet.yaml
data_dir: {q(opts.var('ems-central'))}   # users.sqlite, audit.sqlite, alarms.sqlite, history.sqlite

listen:
  host: 127.0.0.1                 # behind a TLS reverse proxy: https://{opts.dashboard_host}/ → here
  port: {CENTRAL_PORT}
  secure_cookies: true            # users come over HTTPS (the proxy), or an SSH tunnel to localhost

mqtt:
  host: {q(opts.broker_host)}
  port: {opts.broker_port}
  username: {CENTRAL_USER}
  password_file: secrets/{MQTT_SECRET}.password

{history}
{jma}
{market}
audit:                            # tamper-evident audit log (ems/central/audit.py)
  key_file: {AUDIT_KEY}        # HMAC key signing every record; keep it out of backups of {opts.var('ems-central')}
  head_log: {q(opts.var('ems-central', AUDIT_HEAD_LOG))}
                                  # one line per record, only ever appended to; after the first start make it
                                  # append-only for everyone, the service too:  chattr +a <that file>
"""


def write_gateway(folder: Folder, opts: Options, site: str, name: str) -> Path:
    path = folder.gateway(site) / GATEWAY_FILE
    write_text(path, gateway_yaml(opts, site, name))
    return path


def write_central(folder: Folder, opts: Options) -> Path:
    path = folder.central / CENTRAL_FILE
    write_text(path, central_yaml(opts))
    return path
