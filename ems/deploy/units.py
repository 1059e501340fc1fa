"""systemd units of a deployment: the broker, the central service, a gateway per hall (a template).

Every unit runs as its own unprivileged user with a read-only system
(``ProtectSystem=strict``: only its ``StateDirectory=`` under /var/lib is
writable), no home, a private /tmp, no new privileges and no capabilities.
Gateway and central are ``Type=notify`` with a watchdog: the process says
``READY=1`` when it runs and ``WATCHDOG=1`` at half of ``WatchdogSec=``
(:mod:`ems.sdnotify`); a hung process is killed and restarted.

Paths use systemd specifiers where they can: ``%i`` the hall (instance),
``%S`` the state root (/var/lib).  The config paths and the binaries come
from the deployment options, so a test can point them at its own tree and
``systemd-analyze verify`` finds every binary.
"""

from __future__ import annotations

from pathlib import Path

from ems.deploy.configs import CENTRAL_FILE, GATEWAY_FILE
from ems.deploy.layout import SERVICE_USER, Folder, Options, write_text

GATEWAY_UNIT = "ems-gateway@.service"
CENTRAL_UNIT = "ems-central.service"
BROKER_UNIT = "ems-broker.service"

#: Watchdog periods [s]: the gateway cycles every second, the central service serves HTTP.
GATEWAY_WATCHDOG_S = 30
CENTRAL_WATCHDOG_S = 60
RESTART_S = 5

_HARDENING = """\
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
UMask=0027
"""


def gateway_unit(opts: Options) -> str:
    """``ems-gateway@.service``: one instance per hall, ``ems-gateway@<site>``."""
    return f"""\
# The gateway of one hall: `systemctl enable --now ems-gateway@<site>`.  Written by `ems deploy init`.
[Unit]
Description=Shelter EMS gateway of hall %i
After=network-online.target time-sync.target
Wants=network-online.target
# An unattended hall keeps trying: never give up restarting.
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart={opts.ems_bin} run --config {opts.etc('gateways', '%i', GATEWAY_FILE)} --state-dir %S/ems/%i
WatchdogSec={GATEWAY_WATCHDOG_S}s
TimeoutStartSec=120s
TimeoutStopSec=30s
Restart=on-failure
RestartSec={RESTART_S}s
User={SERVICE_USER}
Group={SERVICE_USER}
# Modbus RTU adapters (/dev/ttyUSB*) belong to dialout.
SupplementaryGroups=dialout
StateDirectory=ems/%i
StateDirectoryMode=0750
CapabilityBoundingSet=
Environment=PYTHONUNBUFFERED=1
{_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def central_unit(opts: Options) -> str:
    """``ems-central.service``."""
    return f"""\
# The central service: dashboard, API, fleet MQTT, JMA warnings.  Written by `ems deploy init`.
[Unit]
Description=Shelter EMS central service
After=network-online.target time-sync.target {BROKER_UNIT}
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={opts.ems_bin} central --config {opts.etc('central', CENTRAL_FILE)}
WatchdogSec={CENTRAL_WATCHDOG_S}s
TimeoutStartSec=120s
TimeoutStopSec=30s
Restart=on-failure
RestartSec={RESTART_S}s
User={SERVICE_USER}
Group={SERVICE_USER}
StateDirectory=ems-central
StateDirectoryMode=0750
CapabilityBoundingSet=
Environment=PYTHONUNBUFFERED=1
{_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def broker_unit(opts: Options) -> str:
    """``ems-broker.service``: Debian's Mosquitto with the deployment's conf, instead of mosquitto.service."""
    low_port = opts.broker_port < 1024
    caps = ("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"
            if low_port else "CapabilityBoundingSet=\n")
    return f"""\
# The fleet's MQTT broker (Debian's mosquitto with {opts.etc('broker', 'mosquitto.conf')}).
# Written by `ems deploy init`.  Replaces Debian's mosquitto.service, which would take the same port.
[Unit]
Description=Shelter EMS fleet broker (Mosquitto)
After=network-online.target
Wants=network-online.target
Conflicts=mosquitto.service

[Service]
# Debian's Mosquitto is built with systemd support and says READY=1 itself.
Type=notify
NotifyAccess=main
ExecStart={opts.mosquitto} -c {opts.etc('broker', 'mosquitto.conf')}
# SIGHUP re-reads the password and ACL files (after `ems deploy add-hall`).
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec={RESTART_S}s
User={opts.broker_user}
Group={opts.broker_user}
StateDirectory=ems-broker
StateDirectoryMode=0700
LimitNOFILE=65536
MemoryDenyWriteExecute=yes
{caps}{_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def write_units(folder: Folder, opts: Options) -> list[Path]:
    """Write the three units into ``systemd/``; returns their paths."""
    out = []
    for name, text in ((GATEWAY_UNIT, gateway_unit(opts)), (CENTRAL_UNIT, central_unit(opts)),
                       (BROKER_UNIT, broker_unit(opts))):
        path = folder.systemd / name
        write_text(path, text)
        out.append(path)
    return out
