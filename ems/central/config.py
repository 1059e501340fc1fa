"""Configuration of the central service (``ems central --config central.yaml``).

Loaded from YAML and validated like the fleet file: every problem is one
``<file>: <field path>: <message>`` line (:class:`devices.configfile.ConfigError`).
Secrets (MQTT and InfluxDB passwords) are never in this file: it names a
file or an environment variable that holds them.  Relative paths are taken
from the folder of the config file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from devices.configfile import ConfigError, StrictModel, load_yaml_model
from ems.central.jma.config_spec import EarthquakeTrigger, TsunamiTrigger, TyphoonTrigger
from ems.central.notify import NotifySpec, check_notify_secrets
from optimizer.prices import area_column
from telemetry.market import JEPX_AREA_RE
from telemetry.mqtt_client import MqttSettings, read_secret

#: Warning kinds the JMA trigger understands (see ems.central.jma.trigger).
JMA_KINDS = ("storm", "heavy_rain", "storm_surge", "heavy_snow", "landslide", "flood", "waves", "typhoon")


class ListenSpec(StrictModel):
    """Where the HTTP service listens.  Loopback by default: put a TLS proxy in front for other hosts."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    secure_cookies: bool = False  # true when users reach the service over HTTPS (proxy)
    #: Reverse proxies (addresses or networks) whose X-Forwarded-For names the client; from any other
    #: peer the header is ignored.  The client is the right-most address in it that is not one of these.
    trusted_proxies: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for i, entry in enumerate(value):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"[{i}]: {entry!r} is not an IP address or network "
                                 "(e.g. 127.0.0.1, ::1, 10.0.0.0/8)") from None
        return [entry.strip() for entry in value]


class SecretRef(StrictModel):
    """A secret given as a file (first line) or an environment variable name, never inline."""

    password_file: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "SecretRef":
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        return self

    def secret(self, base: Path) -> str | None:
        """The secret text, None when neither is given; ValueError naming what is missing."""
        if self.password_file is not None:
            return read_secret(file=_resolve(base, self.password_file))
        if self.password_env is not None:
            return read_secret(env=self.password_env)
        return None


class MqttSpec(SecretRef):
    """The fleet broker: host, port, user name, password (file or env), TLS."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = "central"
    tls: bool = False
    ca_file: str | None = None
    client_id: str = Field(default="ems-central", min_length=1, max_length=64)

    def settings(self, base: Path) -> MqttSettings:
        """paho settings with the password read now (ValueError if it cannot be read)."""
        return MqttSettings(host=self.host, port=self.port, username=self.username, password=self.secret(base),
                            tls=self.tls, ca_file=_resolve(base, self.ca_file) if self.ca_file else None)


class HistorySpec(SecretRef):
    """History for charts: ``influx1`` (InfluxDB 1.x ``/query``), ``local`` (SQLite fed from MQTT
    state messages, for the demo) or ``none``."""

    backend: Literal["influx1", "local", "none"] = "local"
    url: str | None = None
    database: str = "ems"
    retention_policy: str | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _url(self) -> "HistorySpec":
        if self.backend == "influx1" and not self.url:
            raise ValueError("url: required when backend is influx1")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        return self


class JmaSpec(StrictModel):
    """JMA warnings: Atom feed URL or a folder of XML files (``extra_sources``: more of them, e.g. JMA's eqvol
    feed for earthquakes and tsunamis), poll period [s], warning kinds that act and how (switch or suggest),
    and the typhoon, earthquake and tsunami triggers (ems.central.jma.config_spec)."""

    enabled: bool = False
    source: str | None = None
    extra_sources: list[str] = Field(default_factory=list, max_length=5)
    poll_s: float = Field(default=60.0, ge=5, le=3600)
    kinds: list[Literal["storm", "heavy_rain", "storm_surge", "heavy_snow", "landslide", "flood", "waves",
                        "typhoon"]] = Field(
        default_factory=lambda: ["storm", "heavy_rain", "storm_surge", "landslide", "typhoon"], min_length=1)
    min_level: int | None = Field(default=None, ge=2, le=5)
    warning_action: Literal["switch", "suggest"] = "switch"
    typhoon: TyphoonTrigger = TyphoonTrigger()
    earthquake: EarthquakeTrigger = EarthquakeTrigger()
    tsunami: TsunamiTrigger = TsunamiTrigger()

    @model_validator(mode="after")
    def _source(self) -> "JmaSpec":
        if self.enabled and not self.source:
            raise ValueError("source: required when enabled (an Atom feed URL or a folder of XML files)")
        return self


class SessionSpec(StrictModel):
    """Login sessions: lifetime and idle timeout [s]; login limits (ems.central.ratelimit).

    An account is locked for ``lockout_s`` [s] after ``max_login_failures``
    failed logins in a row, twice as long after each further failure, at
    most ``max_lockout_s`` [s] (also the quiet time after which its failures
    are forgotten).  An address with ``address_max_failures`` failures
    within ``login_window_s`` [s] has its failed logins answered
    ``throttle_delay_s`` [s] late; an address is never locked (behind the
    proxy it is everyone's).
    """

    ttl_s: float = Field(default=8 * 3600, gt=0, le=7 * 86400)
    idle_s: float = Field(default=1800, gt=0, le=86400)
    max_login_failures: int = Field(default=5, ge=1, le=100)
    lockout_s: float = Field(default=300, ge=1, le=86400)
    max_lockout_s: float = Field(default=3600, ge=1, le=7 * 86400)
    address_max_failures: int = Field(default=20, ge=1, le=10_000)
    login_window_s: float = Field(default=300, ge=1, le=86400)
    throttle_delay_s: float = Field(default=2, ge=0, le=30)

    @model_validator(mode="after")
    def _lockouts(self) -> "SessionSpec":
        if self.max_lockout_s < self.lockout_s:
            raise ValueError("max_lockout_s: must not be shorter than lockout_s")
        return self


class CommandSpec(StrictModel):
    """Command lifetimes [s]: how long a site may still act on a command, and how long we wait for acks."""

    ttl_s: float = Field(default=300, gt=0, le=86400)
    ack_timeout_s: float = Field(default=30, gt=0, le=3600)


class MarketSpec(StrictModel):
    """Day-ahead prices and weather the central service publishes to every gateway (ems.central.market).

    source: ``none`` (no prices), ``jepx_csv`` (``path``: a JEPX spot CSV
    file or a folder of them, read again when a file changes) or
    ``synthetic`` (seeded JEPX-like prices for today and tomorrow: demo and
    drills).  areas: JEPX areas to publish (default: the fleet file's
    ``jepx_area``).  check_s [s]: how often the files are looked at.
    weather_file: optional CSV or YAML of (date, area_code, factor 0..1);
    weather_days_ahead: days after today published per area.
    """

    source: Literal["none", "jepx_csv", "synthetic"] = "none"
    path: str | None = None
    areas: list[str] | None = Field(default=None, min_length=1, max_length=10)
    check_s: float = Field(default=60.0, ge=1, le=3600)
    seed: int = Field(default=0, ge=0)
    weather_file: str | None = None
    weather_days_ahead: int = Field(default=2, ge=0, le=12)

    @model_validator(mode="after")
    def _check(self) -> "MarketSpec":
        if self.source == "jepx_csv" and not self.path:
            raise ValueError("path: required when source is jepx_csv (a JEPX spot CSV file or a folder of them)")
        if self.source != "jepx_csv" and self.path is not None:
            raise ValueError("path: only used when source is jepx_csv")
        for i, area in enumerate(self.areas or []):
            if not JEPX_AREA_RE.match(area):
                raise ValueError(f"areas[{i}]: {area!r} is not a JEPX area name (lower case, e.g. chugoku)")
            try:
                area_column(area)
            except ValueError as exc:
                raise ValueError(f"areas[{i}]: {exc}") from None
        if self.areas is not None and len(set(self.areas)) != len(self.areas):
            raise ValueError("areas: an area is listed twice")
        return self


class AuditSpec(StrictModel):
    """What makes the audit log tamper-evident (ems.central.audit): ``key_file`` holds the HMAC key
    (first line, at least 32 characters; mode 0600, never in the data folder's backups), ``head_log`` is
    the append-only file of chain heads (where the database's holder cannot rewrite it, e.g.
    ``chattr +a``).  Both or neither; without them the log is only hash-chained, and a record edited
    with every later hash computed again, or the newest records cut off, cannot be seen.  A key file
    that is configured but missing stops the service: it is never made up at start."""

    key_file: str | None = None
    head_log: str | None = None

    @model_validator(mode="after")
    def _both(self) -> "AuditSpec":
        if self.key_file is not None and self.head_log is None:
            raise ValueError("head_log: required with key_file (the append-only file that shows cut records)")
        if self.head_log is not None and self.key_file is None:
            raise ValueError("key_file: required with head_log")
        return self


class CentralConfig(StrictModel):
    """The whole central.yaml."""

    fleet: str = "fleet.yaml"
    data_dir: str = "../var/central"
    listen: ListenSpec = ListenSpec()
    mqtt: MqttSpec = MqttSpec()
    history: HistorySpec = HistorySpec()
    jma: JmaSpec = JmaSpec()
    sessions: SessionSpec = SessionSpec()
    commands: CommandSpec = CommandSpec()
    market: MarketSpec = MarketSpec()
    audit: AuditSpec = AuditSpec()
    notify: NotifySpec = NotifySpec()  # critical alarms and offline halls by webhook / e-mail (ems.central.notify)
    public_page: bool = True
    stale_after_s: float = Field(default=60, gt=0, le=86400)  # state older than this shows as stale

    #: Folder of the config file (relative paths are resolved against it); set by the loader.
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def path(self, value: str) -> Path:
        """``value`` resolved against the config file's folder."""
        return _resolve(self._base_dir, value)

    @property
    def fleet_path(self) -> Path:
        return self.path(self.fleet)

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def load_central_config(path: str | Path) -> CentralConfig:
    """Load and validate ``central.yaml``; ConfigError with ``file: field: message`` lines."""
    path = Path(path)
    cfg = load_yaml_model(path, CentralConfig)
    cfg._base_dir = path.resolve().parent
    problems = check_secrets(cfg, str(path)) + check_market_files(cfg, str(path))
    if problems:
        raise ConfigError(problems)
    return cfg


def check_secrets(cfg: CentralConfig, source: str) -> list[str]:
    """Problems reading the configured secrets, as ``file: field: message`` lines (empty if fine)."""
    problems = []
    base = cfg.base_dir
    for name, spec in (("mqtt", cfg.mqtt), ("history", cfg.history)):
        if name == "history" and cfg.history.backend != "influx1":
            continue
        try:
            spec.secret(base)
        except ValueError as exc:
            problems.append(f"{source}: {name}.{'password_file' if spec.password_file else 'password_env'}: {exc}")
    return problems + check_notify_secrets(cfg.notify, base, source)


def check_market_files(cfg: CentralConfig, source: str) -> list[str]:
    """Market files named in the config that do not exist, as ``file: field: message`` lines."""
    problems = []
    m = cfg.market
    if m.source == "jepx_csv" and m.path and not cfg.path(m.path).exists():
        problems.append(f"{source}: market.path: no such file or folder {cfg.path(m.path)}")
    if m.weather_file:
        p = cfg.path(m.weather_file)
        if not p.is_file():
            problems.append(f"{source}: market.weather_file: no such file {p}")
        elif p.suffix.lower() not in (".csv", ".yaml", ".yml"):
            problems.append(f"{source}: market.weather_file: must be a .csv, .yaml or .yml file")
    return problems
