"""Telemetry settings (YAML): which Influx API, where the outbox lives, which broker.

Example (``telemetry.yaml``; secrets only by file or environment variable)::

    influx:
      api: v1                      # v1: InfluxDB 1.x /write;  v2: InfluxDB 2.x/3.x, 1.8+ compat, VictoriaMetrics
      url: http://influx.example:8086
      database: ems
      retention_policy: autogen
      username: edge-hall-01
      password_file: /etc/ems/secrets/influx.password
    outbox:
      max_mb: 512
    mqtt:
      host: mqtt.example
      port: 8883
      tls: true
      ca_file: /etc/ems/ca.pem
      username: edge-hall-01
      password_env: EMS_MQTT_PASSWORD

``load_telemetry_config(path)`` validates it (errors name file and field);
``build_writer``, ``build_outbox`` and ``mqtt_settings`` turn it into objects,
reading the secrets at that moment (ValueError naming the file or variable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from devices.configfile import StrictModel, load_yaml_model
from telemetry.influx_writers import InfluxV1Writer, InfluxV2Writer, LineWriter
from telemetry.mqtt_client import MqttSettings, read_secret
from telemetry.outbox import Outbox


class _SecretRefs(StrictModel):
    """At most one of ``<name>_file`` / ``<name>_env`` per secret; the value itself is never in the file."""

    def _secret(self, name: str, base_dir: Path | None = None) -> str | None:
        file, env = getattr(self, f"{name}_file"), getattr(self, f"{name}_env")
        if file is None and env is None:
            return None
        return read_secret(file=resolve_path(file, base_dir) if file is not None else None, env=env)

    def _check_refs(self, *names: str) -> None:
        for name in names:
            if getattr(self, f"{name}_file") is not None and getattr(self, f"{name}_env") is not None:
                raise ValueError(f"give {name}_file or {name}_env, not both")


def resolve_path(path: Path | None, base_dir: Path | None) -> Path | None:
    """``path`` taken relative to ``base_dir`` (the folder of the file that named it) when not absolute."""
    if path is None or base_dir is None:
        return path
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


class InfluxV1Config(_SecretRefs):
    """InfluxDB 1.x ``/write``: database, retention policy, optional basic auth; timeout_s [s]."""

    api: Literal["v1"]
    url: str = Field(pattern=r"^https?://")
    database: str = Field(min_length=1)
    retention_policy: str | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    gzip: bool = False
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> "InfluxV1Config":
        self._check_refs("password")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        return self


class InfluxV2Config(_SecretRefs):
    """InfluxDB v2 API: bucket (1.8 compat: ``db/rp``), org, token (1.8 compat: ``user:password``)."""

    api: Literal["v2"]
    url: str = Field(pattern=r"^https?://")
    bucket: str = Field(min_length=1)
    org: str = "-"
    token_file: Path | None = None
    token_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    gzip: bool = False
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> "InfluxV2Config":
        self._check_refs("token")
        return self


class OutboxConfig(StrictModel):
    """path: SQLite file (relative: in the daemon's state folder); max_mb [MiB] disk limit;
    fsync: survive power cuts too; batch_points: points per request."""

    path: Path = Path("outbox.sqlite")
    max_mb: float = Field(default=256, ge=1, le=1024 * 1024)
    fsync: bool = False
    batch_points: int = Field(default=5000, ge=1, le=100_000)


class MqttConfig(_SecretRefs):
    """Broker address, TLS (ca_file: PEM to trust; cert_file/key_file: a client certificate when the
    broker asks for one), user and password reference; keepalive_s [s]."""

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)

    @model_validator(mode="after")
    def _check(self) -> "MqttConfig":
        self._check_refs("password")
        if (self.ca_file or self.cert_file or self.key_file) and not self.tls:
            raise ValueError("ca_file, cert_file and key_file are only used with tls: true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self


class TelemetryConfig(StrictModel):
    """The whole telemetry file: influx (optional), outbox, mqtt (optional)."""

    influx: Annotated[InfluxV1Config | InfluxV2Config, Field(discriminator="api")] | None = None
    outbox: OutboxConfig = OutboxConfig()
    mqtt: MqttConfig | None = None


def load_telemetry_config(path: str | Path) -> TelemetryConfig:
    """Load and validate; raises devices.configfile.ConfigError with ``file: field: message`` lines."""
    return load_yaml_model(Path(path), TelemetryConfig)


def _path_str(path: Path | None, base_dir: Path | None) -> str | None:
    resolved = resolve_path(path, base_dir)
    return str(resolved) if resolved is not None else None


def build_writer(cfg: InfluxV1Config | InfluxV2Config, base_dir: Path | None = None) -> LineWriter:
    """The writer for ``cfg`` with its secret read now (ValueError names a missing file/variable).

    base_dir: folder that relative file names are taken from (the config file's)."""
    ca = _path_str(cfg.ca_file, base_dir)
    if isinstance(cfg, InfluxV1Config):
        return InfluxV1Writer(cfg.url, cfg.database, cfg.retention_policy, cfg.username,
                              cfg._secret("password", base_dir), cfg.timeout_s, cfg.gzip, ca)
    return InfluxV2Writer(cfg.url, cfg.bucket, cfg.org, cfg._secret("token", base_dir), cfg.timeout_s, cfg.gzip, ca)


def build_outbox(cfg: OutboxConfig, state_dir: str | Path, on_drop=None) -> Outbox:
    """The outbox file (relative paths under ``state_dir``) with its disk limit."""
    path = cfg.path if cfg.path.is_absolute() else Path(state_dir) / cfg.path
    return Outbox(path, max_bytes=int(cfg.max_mb * 1024 * 1024), fsync=cfg.fsync, on_drop=on_drop)


def mqtt_settings(cfg: MqttConfig, base_dir: Path | None = None) -> MqttSettings:
    """Broker settings with the password read now (relative file names taken from ``base_dir``)."""
    return MqttSettings(cfg.host, cfg.port, cfg.username, cfg._secret("password", base_dir), tls=cfg.tls,
                        ca_file=_path_str(cfg.ca_file, base_dir), certfile=_path_str(cfg.cert_file, base_dir),
                        keyfile=_path_str(cfg.key_file, base_dir), keepalive_s=cfg.keepalive_s)
