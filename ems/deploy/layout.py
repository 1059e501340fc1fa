"""Where a deployment's files are: in the folder ``ems deploy`` writes, and on the machines.

The deployment folder (``--out DIR``)::

    DIR/deploy.yaml                 the options of `ems deploy init` (no secrets); add-hall reuses them
    DIR/README.md                   what goes where, install commands
    DIR/fleet/fleet.yaml            copy of the fleet file, and its devicemaps/
    DIR/broker/                     mosquitto.conf, passwd (0600), acl          → broker machine
    DIR/central/central.yaml        + secrets/*.password (0600)                 → central machine
    DIR/gateways/<site>/gateway.yaml + secrets/*.password (0600)                → that hall's machine
    DIR/systemd/                    ems-broker.service, ems-central.service, ems-gateway@.service

On every machine the folders go under ``/etc/ems`` (``--etc-dir``) with the
same names, so relative paths in the files (``../../fleet/fleet.yaml``,
``secrets/mqtt.password``) hold in both places.  State lives under
``/var/lib`` (systemd's ``StateDirectory=``): ``/var/lib/ems/<site>`` per
gateway, ``/var/lib/ems-central``, ``/var/lib/ems-broker``.  The code is a
virtualenv at ``/opt/ems/.venv`` (``--prefix``).  Gateway and central run
as the system user ``ems``, the broker as Debian's ``mosquitto``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ems.errors import UsageError

OPTIONS_FILE = "deploy.yaml"

#: Service user of the gateway and the central service.
SERVICE_USER = "ems"
#: The central service's broker (and InfluxDB) user.
CENTRAL_USER = "central"

_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_DB_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Options:
    """What ``ems deploy init`` was asked for; saved in ``DIR/deploy.yaml`` for ``add-hall``.

    fleet_source: the fleet file copied into the deployment; broker_host /
    broker_port: where gateways and central reach Mosquitto; broker_bind:
    the address it listens on (None: every interface); central_host: the
    name operators use for the dashboard (behind a TLS proxy);
    influx_url / influx_db: InfluxDB 1.x (None: no InfluxDB, the central
    keeps its own history); influx_auth: give every gateway and the
    central their own InfluxDB user; jma: poll the JMA warning feed;
    jepx_csv: the JEPX spot CSV file or folder the central service watches
    and publishes day-ahead prices from (None: no prices, the gateways plan
    on their tariff);
    prefix: the virtualenv; etc_dir / var_dir: config and state roots on
    the machines; mosquitto: the broker binary; broker_user: the user it
    runs as.
    """

    fleet_source: str
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_bind: str | None = None
    central_host: str | None = None
    influx_url: str | None = None
    influx_db: str = "ems"
    influx_auth: bool = True
    jma: bool = True
    jepx_csv: str | None = None
    prefix: str = "/opt/ems/.venv"
    etc_dir: str = "/etc/ems"
    var_dir: str = "/var/lib"
    mosquitto: str = "/usr/sbin/mosquitto"
    broker_user: str = "mosquitto"

    def checked(self) -> "Options":
        """These options, or UsageError naming the bad one."""
        check_host("--broker-host", self.broker_host)
        check_port("--broker-port", self.broker_port)
        if self.broker_bind is not None:
            check_host("--broker-bind", self.broker_bind)
        if self.central_host is not None:
            check_host("--central-host", self.central_host)
        opts = self
        if self.influx_url is not None:
            opts = replace(self, influx_url=check_url("--influx-url", self.influx_url))
        if not _DB_RE.match(self.influx_db):
            raise UsageError(f"--influx-db: {self.influx_db!r} is not a database name (letters, digits, _ . -)")
        paths = [("--prefix", self.prefix), ("--etc-dir", self.etc_dir), ("--var-dir", self.var_dir),
                 ("--mosquitto", self.mosquitto)]
        if self.jepx_csv is not None:
            paths.append(("--jepx-csv", self.jepx_csv))
        for flag, value in paths:
            if not os.path.isabs(value) or any(c.isspace() for c in value) or "%" in value:
                raise UsageError(f"{flag}: {value!r} must be an absolute path without spaces or '%'")
        if not _USER_RE.match(self.broker_user):
            raise UsageError(f"--broker-user: {self.broker_user!r} is not a user name")
        return opts

    @property
    def dashboard_host(self) -> str:
        return self.central_host or self.broker_host

    @property
    def ems_bin(self) -> str:
        return f"{self.prefix.rstrip('/')}/bin/ems"

    def etc(self, *parts: str) -> str:
        """A path under the config root on the machines."""
        return "/".join([self.etc_dir.rstrip("/"), *parts])

    def var(self, *parts: str) -> str:
        """A path under the state root on the machines."""
        return "/".join([self.var_dir.rstrip("/"), *parts])

    def save(self, out: Path) -> None:
        text = yaml.safe_dump(asdict(self), sort_keys=False, allow_unicode=True)
        write_text(out / OPTIONS_FILE, "# Options of `ems deploy init` (no secrets); `ems deploy add-hall` "
                                       "reuses them.\n" + text)

    @classmethod
    def load(cls, out: Path) -> "Options":
        """The options saved in ``out``; UsageError when ``out`` is not a deployment folder."""
        path = out / OPTIONS_FILE
        if not path.is_file():
            raise UsageError(f"{out}: not a deployment folder (no {OPTIONS_FILE}; run `ems deploy init` first)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise UsageError(f"{path}: unknown option {unknown[0]!r}")
            return cls(**data).checked()
        except (yaml.YAMLError, TypeError) as exc:
            raise UsageError(f"{path}: unreadable: {str(exc).splitlines()[0]}") from None

    def with_changes(self, **changes: Any) -> "Options":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def check_host(flag: str, host: str) -> str:
    """``host`` if it is a host name or IP address, else UsageError."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOST_RE.match(host or ""):
        raise UsageError(f"{flag}: {host!r} is not a host name or IP address")
    return host


def check_port(flag: str, port: int) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise UsageError(f"{flag}: {port!r} is not a TCP port (1-65535)")
    return port


def check_url(flag: str, url: str) -> str:
    """``url`` if it is an http(s) URL with a host and no query, else UsageError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{flag}: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag}: {url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError(f"{flag}: {url!r} must not carry a query, fragment or credentials")
    check_host(flag, parts.hostname)
    if port is not None:
        check_port(flag, port)
    return url.rstrip("/")


# -- the deployment folder ---------------------------------------------------------------

@dataclass(frozen=True)
class Folder:
    """Paths inside the deployment folder ``root``."""

    root: Path

    @property
    def fleet_dir(self) -> Path:
        return self.root / "fleet"

    @property
    def fleet_file(self) -> Path:
        return self.fleet_dir / "fleet.yaml"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def central(self) -> Path:
        return self.root / "central"

    @property
    def systemd(self) -> Path:
        return self.root / "systemd"

    def gateway(self, site: str) -> Path:
        return self.root / "gateways" / site

    def existing_gateways(self) -> list[str]:
        base = self.root / "gateways"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def prepare_out(out: Path, *, must_exist: bool) -> Folder:
    """The deployment folder ``out``, checked: not a file, and not a foreign non-empty folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, not a folder")
    if must_exist:
        if not (out / OPTIONS_FILE).is_file():
            raise UsageError(f"--out: {out} is not a deployment folder (no {OPTIONS_FILE}; run `ems deploy init`)")
    elif out.is_dir() and any(out.iterdir()) and not (out / OPTIONS_FILE).is_file():
        raise UsageError(f"--out: {out} is not empty and not a deployment folder (no {OPTIONS_FILE})")
    out.mkdir(parents=True, exist_ok=True)
    return Folder(out)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file with ``mode`` from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)  # O_CREAT's mode is narrowed by the umask and ignored for an existing file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def secrets_dir(path: Path) -> Path:
    """``path``, created as a folder only its owner can enter (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
