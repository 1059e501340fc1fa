"""The gateway file (``ems run --config gateway.yaml``): what one hall's gateway connects to.

Validated like the fleet file: unknown keys, wrong types and ranges are
refused, each error names the file and the field (exit 2).  Secrets are
never in the file: it names a file (``*_file``) or an environment variable
(``*_env``).  Relative paths are taken from the folder of the gateway file.

Example (``ems deploy init`` writes one per hall)::

    fleet: ../../fleet.yaml          # the fleet file; the hall's equipment and devices are there
    site: hall-01
    state_dir: /var/lib/ems/hall-01  # mode, outbox, command replay, learnt history (default: ./state)
    uplink:                          # the fleet broker (optional: without it the hall runs on its own)
      host: broker.example.jp
      port: 8883
      tls: true
      ca_file: ca.pem
      username: gw-hall-01
      password_file: secrets/mqtt.password
    telemetry:                       # optional: without influx, points wait in the outbox
      influx: {api: v1, url: "http://influx.example.jp:8086", database: ems,
               username: gw-hall-01, password_file: secrets/influx.password}
      outbox: {max_mb: 256}
    prices:
      source: central                # central | jepx_csv | tariff
      tariff: {kind: flat, jpy_per_kwh: 30}   # when no price is known (and the source for 'tariff')
    weather:
      source: central                # central | typical (the site's configured cloudiness)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, model_validator

from devices.configfile import ConfigError, StrictModel, load_yaml_model
from telemetry.config import InfluxV1Config, InfluxV2Config, MqttConfig, OutboxConfig, resolve_path
from telemetry.market import JEPX_AREA_RE


class TelemetrySection(StrictModel):
    """Where telemetry goes: an InfluxDB (v1 ``/write`` or the v2 API) and the outbox in front of it."""

    influx: Annotated[InfluxV1Config | InfluxV2Config, Field(discriminator="api")] | None = None
    outbox: OutboxConfig = OutboxConfig()


class FlatTariffSpec(StrictModel):
    """One buy price for every slot [JPY/kWh]; sell price = sell_jpy_per_kwh."""

    kind: Literal["flat"]
    jpy_per_kwh: float = Field(ge=0, le=1000)
    sell_jpy_per_kwh: float = Field(default=0.0, ge=0, le=1000)


class TouPeriod(StrictModel):
    """From local (JST) hour ``from_hour`` on, the buy price [JPY/kWh]."""

    from_hour: float = Field(ge=0, lt=24)
    jpy_per_kwh: float = Field(ge=0, le=1000)


class TouTariffSpec(StrictModel):
    """Time-of-use buy price by local hour (periods from hour 0, increasing); sell price flat [JPY/kWh]."""

    kind: Literal["tou"]
    periods: list[TouPeriod] = Field(min_length=1, max_length=48)
    sell_jpy_per_kwh: float = Field(default=0.0, ge=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> "TouTariffSpec":
        hours = [p.from_hour for p in self.periods]
        if hours[0] != 0:
            raise ValueError("periods[0].from_hour: the first period must start at hour 0")
        for i in range(1, len(hours)):
            if hours[i] <= hours[i - 1]:
                raise ValueError(f"periods[{i}].from_hour: must be later than periods[{i - 1}]")
        return self


TariffSpec = Annotated[FlatTariffSpec | TouTariffSpec, Field(discriminator="kind")]


class PricesSection(StrictModel):
    """Which prices the plan uses.

    source: ``central`` (day-ahead spot prices the central service publishes
    over MQTT, the default), ``jepx_csv`` (a JEPX spot CSV file, or a folder
    of them, read at each plan), ``tariff``, or ``synthetic`` (seeded
    JEPX-like prices: for simulated halls only).  When the source has no price
    for a slot: the last known prices (kept in the state folder), then the
    tariff.  Spot prices become buy = spot + buy_adder_jpy_per_kwh and
    sell = spot × sell_factor.  jepx_area: default the fleet file's.
    """

    source: Literal["central", "jepx_csv", "tariff", "synthetic"] = "central"
    jepx_csv: Path | None = None
    jepx_area: str | None = Field(default=None, pattern=JEPX_AREA_RE.pattern)
    buy_adder_jpy_per_kwh: float = Field(default=12.0, ge=-100, le=1000)
    sell_factor: float = Field(default=1.0, ge=0, le=2)
    tariff: TariffSpec = FlatTariffSpec(kind="flat", jpy_per_kwh=30.0)

    @model_validator(mode="after")
    def _csv(self) -> "PricesSection":
        if self.source == "jepx_csv" and self.jepx_csv is None:
            raise ValueError("jepx_csv: required when source is jepx_csv (a file or a folder of JEPX CSV files)")
        if self.source != "jepx_csv" and self.jepx_csv is not None:
            raise ValueError("jepx_csv: only used when source is jepx_csv")
        return self


class WeatherSection(StrictModel):
    """The day's PV weather factor: ``central`` (published per area over MQTT, else the typical value)
    or ``typical`` (1 - the site's configured cloud factor)."""

    source: Literal["central", "typical"] = "central"


class PlannerSection(StrictModel):
    """optimizer: plan with Pyomo + HiGHS (false: the rule plan alone); horizon_slots: slots planned ahead;
    worker: where plans are made, ``process`` (a child process: its own GIL and garbage collector, so a
    plan that builds its model never delays a control cycle; ~200 MB) or ``thread`` (lighter; a cold plan
    can hold the cycle up to ~180 ms: for simulations of many halls in one process)."""

    optimizer: bool = True
    horizon_slots: int = Field(default=48, ge=4, le=7 * 96)
    worker: Literal["process", "thread"] = "process"


class GatewayConfig(StrictModel):
    """The whole gateway file."""

    fleet: Path
    site: str = Field(min_length=1)
    state_dir: Path = Path("state")
    maps_dir: Path | None = None
    uplink: MqttConfig | None = None
    telemetry: TelemetrySection = TelemetrySection()
    prices: PricesSection = PricesSection()
    weather: WeatherSection = WeatherSection()
    planner: PlannerSection = PlannerSection()

    #: Folder of the gateway file; relative paths are taken from it (set by the loader).
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def path(self, value: Path) -> Path:
        """``value`` taken relative to the gateway file's folder."""
        resolved = resolve_path(value, self._base_dir)
        assert resolved is not None
        return resolved

    @property
    def fleet_path(self) -> Path:
        return self.path(self.fleet)

    @property
    def state_path(self) -> Path:
        return self.path(self.state_dir)

    @property
    def maps_path(self) -> Path:
        """Register maps: ``maps_dir`` or the ``devicemaps`` folder beside the fleet file."""
        return self.path(self.maps_dir) if self.maps_dir is not None else self.fleet_path.parent / "devicemaps"


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Load and validate a gateway file; ConfigError with ``file: field: message`` lines.

    Secrets are read once here, so a missing password file is a start-up
    error naming the field, not a failure later.
    """
    path = Path(path)
    cfg = load_yaml_model(path, GatewayConfig)
    cfg._base_dir = path.resolve().parent
    problems = _check_references(cfg, str(path))
    if problems:
        raise ConfigError(problems)
    return cfg


def _check_references(cfg: GatewayConfig, source: str) -> list[str]:
    """Files and secrets the gateway file names that cannot be read, as ``file: field: message`` lines."""
    from ems.config import state_dir_problem

    problems: list[str] = []
    if not cfg.fleet_path.is_file():
        problems.append(f"{source}: fleet: no such file {cfg.fleet_path}")
    state_problem = state_dir_problem(cfg.state_path)
    if state_problem:
        problems.append(f"{source}: state_dir: {state_problem}")
    checks: list[tuple[str, object, str]] = []
    if cfg.uplink is not None:
        checks.append(("uplink", cfg.uplink, "password"))
    if cfg.telemetry.influx is not None:
        checks.append(("telemetry.influx", cfg.telemetry.influx,
                       "password" if isinstance(cfg.telemetry.influx, InfluxV1Config) else "token"))
    for where, section, secret in checks:
        try:
            section._secret(secret, cfg.base_dir)  # type: ignore[attr-defined]
        except ValueError as exc:
            field = f"{secret}_file" if getattr(section, f"{secret}_file") is not None else f"{secret}_env"
            problems.append(f"{source}: {where}.{field}: {exc}")
    if cfg.uplink is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(cfg.uplink, name)
            if value is not None and not cfg.path(value).is_file():
                problems.append(f"{source}: uplink.{name}: no such file {cfg.path(value)}")
    if cfg.prices.jepx_csv is not None and not cfg.path(cfg.prices.jepx_csv).exists():
        problems.append(f"{source}: prices.jepx_csv: no such file or folder {cfg.path(cfg.prices.jepx_csv)}")
    return problems
