"""Fleet configuration: sites (halls), their equipment, limits and devices.

Loaded from YAML and validated before anything starts.  Every problem is
reported as ``<file>: <field path>: <message>`` (see
:mod:`devices.configfile`) and the CLI exits with status 2.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from devices.config import DeviceConfig, EchonetLiteTransport, ModbusRtuTransport, ModbusTcpTransport, MqttTransport
from devices.configfile import ConfigError, StrictModel, load_yaml_model
from devices.readings import Nature
from optimizer.reserve import SafetyPolicy

#: Longest name [characters] of a fleet, hall or area: names go into dashboards, logs and alarms.
MAX_NAME = 100
#: Unicode categories a name may not hold: control, format (bidi overrides, zero-width), surrogate,
#: line and paragraph separators.  Private use stays allowed (municipal systems map rare kanji there).
_NOT_IN_NAMES = ("Cc", "Cf", "Cs", "Zl", "Zp")


def _printable_name(value: str) -> str:
    """A name is printable text of at most MAX_NAME characters, not blank (the message never echoes it)."""
    if len(value) > MAX_NAME:
        raise ValueError(f"{len(value)} characters; at most {MAX_NAME}")
    if not value.strip():
        raise ValueError("must not be blank")
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in _NOT_IN_NAMES:
            raise ValueError(f"control character U+{ord(ch):04X} at character {i + 1}; a name is printable text")
    return value


Name = Annotated[str, AfterValidator(_printable_name)]
#: A name that may be left empty (not given); given, it is a :data:`Name`.
OptionalName = Annotated[str, AfterValidator(lambda v: v and _printable_name(v))]

SiteId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
Pct = Annotated[float, Field(ge=0, le=100)]
Efficiency = Annotated[float, Field(gt=0, le=1)]


class BatterySpec(StrictModel):
    """capacity_wh [Wh] usable nameplate; max_charge_w / max_discharge_w [W]; soc limits [%]."""

    capacity_wh: float = Field(gt=0)
    max_charge_w: float = Field(gt=0)
    max_discharge_w: float = Field(gt=0)
    soc_min_pct: Pct = 10.0
    soc_max_pct: Pct = 95.0
    charge_efficiency: Efficiency = 0.95
    discharge_efficiency: Efficiency = 0.95
    initial_soc_pct: Pct = 60.0  # simulator start value

    @model_validator(mode="after")
    def _check(self) -> "BatterySpec":
        if self.soc_min_pct >= self.soc_max_pct:
            raise ValueError("soc_min_pct must be below soc_max_pct")
        return self


class InverterSpec(StrictModel):
    """rated_w [W]: AC rating of the battery inverter."""

    rated_w: float = Field(gt=0)


class PVSpec(StrictModel):
    """capacity_w [W] DC peak; tilt_deg / azimuth_deg (180 = south) [°]."""

    capacity_w: float = Field(ge=0)
    tilt_deg: float = Field(default=20.0, ge=0, le=90)
    azimuth_deg: float = Field(default=180.0, ge=0, lt=360)


class GridSpec(StrictModel):
    """import_limit_w [W] contract limit; export_limit_w [W] (0: no reverse flow allowed)."""

    import_limit_w: float = Field(gt=0)
    export_limit_w: float = Field(default=0.0, ge=0)


class LoadSpec(StrictModel):
    """Hall load: base_w / peak_w [W] of the whole hall; critical_w [W] average critical load."""

    base_w: float = Field(ge=0)
    peak_w: float = Field(gt=0)
    critical_w: float = Field(gt=0)
    profile: Literal["community_hall", "flat"] = "community_hall"

    @model_validator(mode="after")
    def _check(self) -> "LoadSpec":
        if self.peak_w < self.base_w:
            raise ValueError("peak_w must be >= base_w")
        if self.critical_w > self.peak_w:
            raise ValueError("critical_w must be <= peak_w (the critical circuit is part of the hall)")
        return self


class ReserveSpec(StrictModel):
    """Hours [h] of critical load the battery keeps, per mode; pv_pessimism [0..1] share of PV counted.

    h_disaster > 0 and h_vpp <= h_disaster; that the battery can hold them is
    checked with the fleet (:func:`reserve_need_wh`).
    """

    h_vpp: float = Field(default=4.0, ge=0, le=72)
    h_disaster: float = Field(default=12.0, ge=0, le=72)
    pv_pessimism: float = Field(default=0.0, ge=0, le=1)

    @field_validator("h_disaster")
    @classmethod
    def _some_disaster_reserve(cls, v: float) -> float:
        if v == 0:
            raise ValueError("must be > 0 (the hours of critical load a shelter keeps for a disaster)")
        return v


class ControlSpec(StrictModel):
    """cycle_s [s] control period; stale_cycles: cycles without good data before safe mode;
    ramp_w_per_s [W/s] setpoint ramp limit."""

    cycle_s: float = Field(default=1.0, gt=0, le=60)
    stale_cycles: int = Field(default=5, ge=1, le=1000)
    ramp_w_per_s: float = Field(default=2000.0, gt=0)


class SimulatorSpec(StrictModel):
    """The simulated hall: Modbus TCP port on loopback, seed, weather (cloud factor 0..1)."""

    port: int = Field(ge=1024, le=65535)
    seed: int = 0
    cloud_factor: float = Field(default=0.2, ge=0, le=1)


class DeviceBrokerSpec(StrictModel):
    """The hall's own MQTT broker that MQTT devices (e.g. a BMS) publish on; read by the gateway.

    password_file (first line; relative to the fleet file's folder) or
    password_env: never the password itself in the configuration.
    """

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> "DeviceBrokerSpec":
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        return self

    def password(self, config_dir: Path) -> str | None:
        """The password, None when none is configured; ValueError naming the missing file or variable."""
        from telemetry.mqtt_client import read_secret  # paho only where a broker is configured

        if self.password_file is not None:
            p = Path(self.password_file).expanduser()
            return read_secret(file=p if p.is_absolute() else config_dir / p)
        if self.password_env is not None:
            return read_secret(env=self.password_env)
        return None


class SiteConfig(StrictModel):
    """One community hall with its battery, PV, grid connection, loads and devices."""

    id: SiteId
    name: Name
    area_code: str = Field(pattern=r"^\d{6,7}$")  # JMA warning area (municipality) code
    #: JMA 地震情報／細分区域 (3 digits, e.g. 鳥取県東部 560) for 震度速報, which names no cities.
    seismic_area_code: str | None = Field(default=None, pattern=r"^\d{3}$")
    #: JMA 津波予報区 (3 digits, e.g. 鳥取県 540) for coastal halls; None: tsunami reports do not act.
    tsunami_area_code: str | None = Field(default=None, pattern=r"^\d{3}$")
    area_name: OptionalName = ""
    lat: float = Field(ge=20, le=46)  # Japan
    lon: float = Field(ge=122, le=154)
    battery: BatterySpec
    inverter: InverterSpec
    pv: PVSpec
    grid: GridSpec
    loads: LoadSpec
    reserve: ReserveSpec = ReserveSpec()
    control: ControlSpec = ControlSpec()
    simulator: SimulatorSpec | None = None
    devices: list[DeviceConfig] = Field(min_length=1)
    device_broker: DeviceBrokerSpec | None = None  # needed when a device has transport kind mqtt

    @model_validator(mode="after")
    def _check(self) -> "SiteConfig":
        counts = Counter(d.id for d in self.devices)
        dup = sorted(k for k, n in counts.items() if n > 1)
        if dup:
            raise ValueError(f"devices: duplicate device id(s) {', '.join(dup)}")
        natures = Counter(d.nature for d in self.devices)
        for nature in (Nature.BATTERY, Nature.METER):
            if natures[nature] != 1:
                raise ValueError(f"devices: exactly one {nature.value} device is required, found {natures[nature]}")
        if natures[Nature.PV] > 1:
            raise ValueError("devices: at most one pv device is supported")
        mqtt_ids = [d.id for d in self.devices if isinstance(d.transport, MqttTransport)]
        if mqtt_ids and self.device_broker is None:
            raise ValueError(f"device_broker: required for the MQTT device(s) {', '.join(mqtt_ids)}")
        stale_s = self.control.stale_cycles * self.control.cycle_s
        for j, d in enumerate(self.devices):
            # Every nature: a PV reading polled less often than it goes stale is never used either.
            if d.period_s >= stale_s:
                why = "the site would always be safe" if d.nature in (Nature.BATTERY, Nature.METER) \
                    else "its readings would always be stale"
                raise ValueError(
                    f"devices[{j}].period_s: {d.period_s:g} s is not below the stale limit "
                    f"control.stale_cycles × control.cycle_s = {stale_s:g} s; {why}"
                )
        if self.battery.max_charge_w > self.inverter.rated_w * 1.5 or self.battery.max_discharge_w > self.inverter.rated_w * 1.5:
            raise ValueError("battery power limits exceed 1.5 × inverter.rated_w; check the units (W)")
        return self

    def safety_policy(self) -> SafetyPolicy:
        """The one safety object both the guard and the optimizer enforce."""
        b = self.battery
        return SafetyPolicy(
            capacity_wh=b.capacity_wh,
            soc_min_pct=b.soc_min_pct,
            soc_max_pct=b.soc_max_pct,
            max_charge_w=min(b.max_charge_w, self.inverter.rated_w),
            max_discharge_w=min(b.max_discharge_w, self.inverter.rated_w),
            charge_efficiency=b.charge_efficiency,
            discharge_efficiency=b.discharge_efficiency,
            reserve_hours={"vpp": self.reserve.h_vpp, "disaster_reserve": self.reserve.h_disaster,
                           "manual": self.reserve.h_vpp},
            pv_pessimism=self.reserve.pv_pessimism,
            ramp_w_per_s=self.control.ramp_w_per_s,
            grid_import_limit_w=self.grid.import_limit_w,
            grid_export_limit_w=self.grid.export_limit_w,
        )

    def device(self, nature: Nature) -> DeviceConfig | None:
        """The site's device of ``nature`` (None when it has none)."""
        return next((d for d in self.devices if d.nature == nature), None)


def reserve_need_wh(site: SiteConfig, slot_minutes: int, hours: float | None = None) -> float:
    """Energy [Wh] the battery must give from storage to carry the site's critical load for
    ``hours`` [h] (default: h_disaster), as the daemon reckons its reserve floor.

    The daemon (:class:`ems.gateway.reserve_policy.ReservePolicy`) takes the
    configured critical profile (more lighting at night,
    :func:`optimizer.forecast.configured_critical_w`), no PV, and the site's
    safety policy into :func:`optimizer.reserve.reserve_energy_wh` (the
    R of :func:`optimizer.reserve.reserve_floor_wh`, the guard's and the
    optimizer's floor).  The need depends on when the H hours start; this is
    its mean over the start slots of a day.
    """
    from optimizer.forecast import configured_critical_w
    from optimizer.reserve import reserve_energy_wh

    policy = site.safety_policy()
    h = site.reserve.h_disaster if hours is None else hours
    slot = timedelta(minutes=slot_minutes)
    slot_h = slot_minutes / 60.0
    starts = 24 * 60 // slot_minutes
    length = int(math.ceil(h / slot_h)) + 1
    day = datetime(2025, 1, 6, tzinfo=timezone.utc)  # any day: the profile is the same every day
    critical = [float(x) for x in configured_critical_w([day + k * slot for k in range(starts + length)],
                                                        site.loads.critical_w, slot)]
    needs = [reserve_energy_wh(critical[k:k + length], [0.0], slot_h, h, policy.discharge_efficiency,
                               policy.pv_pessimism) for k in range(starts)]
    return sum(needs) / len(needs)


def reserve_problems(site: SiteConfig, slot_minutes: int, where: str) -> list[str]:
    """A reserve the site cannot keep, as ``<where>.<field>: ...`` lines: h_vpp above h_disaster,
    or h_disaster hours of critical load needing more energy than lies between soc_min and soc_max."""
    r, b = site.reserve, site.battery
    if r.h_vpp > r.h_disaster:
        return [f"{where}.h_vpp: {r.h_vpp:g} h is more than h_disaster ({r.h_disaster:g} h)"]
    policy = site.safety_policy()
    usable = policy.max_energy_wh - policy.min_energy_wh
    need = reserve_need_wh(site, slot_minutes)
    if need > usable:
        return [f"{where}.h_disaster: {r.h_disaster:g} h of critical load needs {need / 1000:.1f} kWh, "
                f"the battery holds {usable / 1000:.1f} kWh usable ({b.capacity_wh / 1000:g} kWh between "
                f"{b.soc_min_pct:g} % and {b.soc_max_pct:g} %)"]
    return []


class FleetSpec(StrictModel):
    """Fleet-wide settings: name, display timezone, market slot length [min], state folder, JEPX price area."""

    name: Name
    timezone: str = "Asia/Tokyo"
    slot_minutes: Literal[15, 30] = 30
    state_dir: str = "var/state"  # relative to the config file's folder's parent
    jepx_area: str = Field(default="chugoku", pattern=r"^[a-z]{2,16}$")  # JEPX price area of the fleet's halls


class FleetConfig(StrictModel):
    """The whole fleet file."""

    fleet: FleetSpec
    sites: list[SiteConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "FleetConfig":
        problems: list[str] = []
        seen_ids: dict[str, int] = {}
        sim_ports: dict[int, int] = {}
        endpoints: dict[tuple, str] = {}
        for i, site in enumerate(self.sites):
            problems += reserve_problems(site, self.fleet.slot_minutes, f"sites[{i}].reserve")
            if site.id in seen_ids:
                problems.append(f"sites[{i}].id: duplicate site id {site.id!r} (also sites[{seen_ids[site.id]}])")
            seen_ids.setdefault(site.id, i)
            if site.simulator is not None:
                port = site.simulator.port
                if port in sim_ports:
                    problems.append(
                        f"sites[{i}].simulator.port: port {port} already used by sites[{sim_ports[port]}]"
                    )
                sim_ports.setdefault(port, i)
            for j, dev in enumerate(site.devices):
                t = dev.transport
                if isinstance(t, (ModbusTcpTransport, ModbusRtuTransport)):
                    key = (*t.endpoint, t.unit)
                    where = f"sites[{i}].devices[{j}].transport"
                    if key in endpoints:
                        problems.append(f"{where}: {key[0]}:{key[1]} unit {key[2]} already used by {endpoints[key]}")
                    endpoints.setdefault(key, where)
                elif isinstance(t, EchonetLiteTransport):
                    # One object per class and instance on a node.  Halls are separate LANs (192.168.x.y may
                    # recur), but loopback nodes share this machine: there a node belongs to one site.
                    where = f"sites[{i}].devices[{j}].transport"
                    shared = t.host in ("localhost", "::1") or t.host.startswith("127.")
                    key = ("echonet", t.host, t.port, dev.nature.value, t.instance, None if shared else i)
                    node = endpoints.setdefault(("echonet-node", t.host, t.port, None if shared else i), (i, where))
                    if key in endpoints:
                        problems.append(f"{where}: {t.host}:{t.port} {dev.nature.value} instance {t.instance} "
                                        f"already used by {endpoints[key]}")
                    elif node[0] != i:
                        problems.append(f"{where}: ECHONET Lite node {t.host}:{t.port} already used by {node[1]} "
                                        "of another site")
                    endpoints.setdefault(key, where)
        fleet_problems: list[str] = []
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.fleet.timezone)
        except Exception:
            fleet_problems.append(f"fleet.timezone: unknown timezone {self.fleet.timezone!r}")
        config_path = (info.context or {}).get("path")
        if config_path is not None:  # loaded from a file: its state folder is resolved from it
            problem = state_dir_problem(resolve_state_dir(config_path, self.fleet.state_dir), writable=False)
            if problem:
                fleet_problems.append(f"fleet.state_dir: {problem}")
        problems = fleet_problems + problems
        if problems:
            # Raised as one ValueError per fleet; the loader splits the lines again.
            raise ValueError("\n".join(problems))
        return self

    def site(self, site_id: str) -> SiteConfig:
        """The site with ``site_id``; KeyError names the known ids."""
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(f"unknown site {site_id!r} (known: {', '.join(s.id for s in self.sites)})")


def load_fleet(path: str | Path) -> FleetConfig:
    """Load and validate a fleet file; raises ConfigError with ``file: path: message`` lines.

    Besides the file itself, every device is built as the gateway builds it
    at start-up (its register map loaded and checked, no connection opened),
    so what ``ems run`` would refuse is refused here, by ``ems check-config``
    too: a broken map names the map file and the point.
    """
    path = Path(path)
    maps_dir = path.resolve().parent / "devicemaps"
    try:
        fleet = load_yaml_model(path, FleetConfig, context={"maps_dir": maps_dir})
    except ConfigError as exc:
        # Fleet-level checks report several "field: message" lines in one error; split them.
        lines: list[str] = []
        for line in exc.problems:
            head, _, rest = line.partition(": (top level): ")
            if rest:
                lines.extend(f"{head}: {part}" for part in rest.split("\n"))
            else:
                lines.append(line)
        raise ConfigError(lines) from None
    problems = device_problems(path, fleet)
    if problems:
        raise ConfigError(problems)
    return fleet


def device_problems(path: Path, fleet: FleetConfig) -> list[str]:
    """What building each site's devices would refuse (:func:`devices.factory.check_devices`).

    Maps are read from ``devicemaps`` beside the fleet file, named as the
    fleet file was (``config/devicemaps/x.yaml``); a map's problems are
    reported once however many halls use it.
    """
    from devices.factory import check_devices  # pymodbus only where devices are built

    lines: list[str] = []
    for i, site in enumerate(fleet.sites):
        for problem in check_devices(site.devices, path.parent / "devicemaps"):
            line = problem.message if problem.field is None else f"{path}: sites[{i}].{problem.field}: {problem.message}"
            if line not in lines:
                lines.append(line)
    return lines


def resolve_state_dir(config_path: str | Path, state_dir: str | Path) -> Path:
    """``state_dir`` as written in the fleet file: absolute, or relative to the file's folder's parent."""
    p = Path(state_dir)
    if p.is_absolute():
        return p
    return Path(config_path).resolve().parent.parent / p


def state_dir_problem(folder: Path, *, writable: bool = True) -> str | None:
    """Why a daemon could not keep its mode in ``folder`` (None when it can).

    The folder, or the nearest part of its path that exists, is a file; or
    (``writable``) the folder, or its nearest existing parent where the
    daemon would create it, is not writable by this process.
    """
    if folder.exists() and not folder.is_dir():
        return f"{folder} exists and is not a folder: the daemons would have nowhere to save their mode"
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a broken link: cannot create {folder}"
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != folder and not existing.is_dir():
        return f"{existing} is not a folder: cannot create {folder}"
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        return f"{folder} is not writable" if existing == folder else \
            f"cannot create {folder}: {existing} is not writable"
    return None


def state_dir_for(config_path: str | Path, fleet: FleetConfig) -> Path:
    """Folder where daemons persist mode and outbox for this fleet file.

    Raises ConfigError naming ``fleet.state_dir`` when this process could not
    use it (``ems run --config fleet.yaml --site ...``).  Loading the fleet
    refuses only a state_dir that is a file: deployed gateways and the
    central service read the fleet file from a read-only /etc/ems and keep
    their state where their own files say.
    """
    folder = resolve_state_dir(config_path, fleet.fleet.state_dir)
    problem = state_dir_problem(folder)
    if problem:
        raise ConfigError([f"{config_path}: fleet.state_dir: {problem}"])
    return folder
