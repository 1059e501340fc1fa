"""Drill scenarios as data: a YAML file with a start, a speed, promises and timed events.

Validated like the fleet file: every problem is a ``<file>: <field path>:
<message>`` line in a :class:`devices.configfile.ConfigError`.  Checks that
need the fleet (hall ids, area codes with halls) run in
:func:`check_against_fleet` and name the event's field the same way.

Times: ``start`` is an ISO 8601 time with a zone (e.g. ``2025-09-15T00:00:00+09:00``);
every event's ``at_h`` is hours [h] after the start in simulated time.

Event types (``type:``): jma_warning, jma_earthquake, jma_typhoon, staff_switch, staff_return_to_vpp,
outage, grid_return, battery_failure, broker_down, broker_up,
central_restart, weather.  Halls are chosen by ``halls`` (ids, or ``all``)
and/or ``areas`` (JMA area codes of the fleet).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from devices.configfile import ConfigError, StrictModel, load_yaml_model
from ems.config import FleetConfig

Hours = Annotated[float, Field(ge=0)]
AreaCode = Annotated[str, Field(pattern=r"^\d{6,7}$")]
WarningKindName = Literal["storm", "heavy_rain", "storm_surge", "heavy_snow"]


class _Event(StrictModel):
    """at_h [h]: when, after the scenario start; note: free text for the report."""

    at_h: Hours
    note: str = ""


class _HallChoice(_Event):
    """halls: ids or ["all"]; areas: JMA area codes (their halls are added)."""

    halls: list[str] = Field(default_factory=list)
    areas: list[AreaCode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> "_HallChoice":
        if not self.halls and not self.areas:
            raise ValueError("choose halls (ids or 'all') or areas (area codes)")
        return self

    def resolve(self, fleet: FleetConfig) -> list[str]:
        """Site ids chosen, in fleet order."""
        if "all" in self.halls:
            return [s.id for s in fleet.sites]
        chosen = set(self.halls) | {s.id for s in fleet.sites if s.area_code in self.areas}
        return [s.id for s in fleet.sites if s.id in chosen]


class JmaWarning(_Event):
    """A JMA warning report for ``areas`` with ``kinds``, in the present or the 2026 level format."""

    type: Literal["jma_warning"]
    areas: list[AreaCode] = Field(min_length=1)
    kinds: list[WarningKindName] = Field(default_factory=lambda: ["storm", "heavy_rain"], min_length=1)
    format: Literal["current", "level2026"] = "current"


class QuakeCity(StrictModel):
    """One place of an intensity report: the hall area (municipality code) and the intensity observed there."""

    area: AreaCode
    intensity: str

    @model_validator(mode="after")
    def _intensity(self) -> "QuakeCity":
        from ems.central.jma.seismic import checked_intensity

        try:
            checked_intensity(self.intensity)
        except ValueError as exc:
            raise ValueError(f"intensity: {exc}") from None
        return self


class JmaEarthquake(_Event):
    """A 震源・震度に関する情報 (VXSE53) telegram: intensities per hall area, epicentre [°, km], magnitude.
    The central service's earthquake trigger decides which halls switch (no scripted switch)."""

    type: Literal["jma_earthquake"]
    cities: list[QuakeCity] = Field(min_length=1)
    magnitude: float = Field(ge=0, le=10)
    epicentre: str = Field(default="鳥取県西部", min_length=1, max_length=40)
    lat: float = Field(ge=20, le=50)
    lon: float = Field(ge=120, le=160)
    depth_km: float = Field(default=10.0, ge=0, le=700)


class TyphoonPoint(StrictModel):
    """The typhoon at ``after_h`` [h] after the report: centre [°] and storm(-warning) radius [km]."""

    after_h: float = Field(ge=0, le=120)
    lat: float = Field(ge=0, le=60)
    lon: float = Field(ge=100, le=180)
    radius_km: float = Field(gt=0, le=1500)


class JmaTyphoon(_Event):
    """A 台風解析・予報情報 (VPTW60) telegram: the analysis (after_h 0) and forecasts.  The central service's
    typhoon trigger switches the halls its storm-warning areas reach within the lead time."""

    type: Literal["jma_typhoon"]
    number: str = Field(pattern=r"^\d{4}$")
    name: str = Field(default="DRILL", min_length=1, max_length=40)
    points: list[TyphoonPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _points(self) -> "JmaTyphoon":
        times = [p.after_h for p in self.points]
        if times[0] != 0 or times != sorted(set(times)):
            raise ValueError("points: the first at after_h 0 (the analysis), then increasing after_h")
        return self


class StaffScope(_Event):
    """Which halls staff act on through the central API: scope all | area (area_code) | halls (halls)."""

    scope: Literal["all", "area", "halls"]
    area_code: AreaCode | None = None
    halls: list[str] = Field(default_factory=list)
    reason: str = Field(min_length=3, max_length=500)

    @model_validator(mode="after")
    def _scope(self) -> "StaffScope":
        if self.scope == "area" and not self.area_code:
            raise ValueError("area_code: required when scope is area")
        if self.scope == "halls" and not self.halls:
            raise ValueError("halls: required when scope is halls")
        return self


class StaffSwitch(StaffScope):
    type: Literal["staff_switch"]


class StaffReturn(StaffScope):
    type: Literal["staff_return_to_vpp"]


class Outage(_HallChoice):
    """Grid lost at the chosen halls; back after ``length_h`` [h] (or at a later grid_return event)."""

    type: Literal["outage"]
    length_h: float | None = Field(default=None, gt=0, le=24 * 14)


class GridReturn(_HallChoice):
    type: Literal["grid_return"]


class BatteryFailure(_Event):
    """The battery inverter of ``hall`` faults (no power until the end of the drill)."""

    type: Literal["battery_failure"]
    hall: str
    code: int = Field(default=0x0101, ge=1, le=0xFFFF)


class BrokerDown(_Event):
    type: Literal["broker_down"]


class BrokerUp(_Event):
    type: Literal["broker_up"]


class CentralRestart(_Event):
    type: Literal["central_restart"]


class Weather(_HallChoice):
    """cloud_factor [0..1]: share of clear-sky sun lost to clouds from now on (0.95: storm, little PV)."""

    type: Literal["weather"]
    cloud_factor: float = Field(ge=0, le=1)


Event = Annotated[JmaWarning | JmaEarthquake | JmaTyphoon | StaffSwitch | StaffReturn | Outage | GridReturn | BatteryFailure | BrokerDown
                  | BrokerUp | CentralRestart | Weather, Field(discriminator="type")]


class Promises(StrictModel):
    """What the drill checks (exit status 1 when one is broken).

    ack_within_s [s, wall]: every switch command acked within this;
    reserve_deadline_h [h]: a hall switched to disaster_reserve reaches its
    H_disaster hours within this (unless an outage starts first), and an
    outage starting at least this long after its switch is owed H_disaster
    hours, else H_vpp; max_lost_points: telemetry points allowed to go missing.
    """

    ack_within_s: float = Field(default=30.0, gt=0)
    reserve_deadline_h: float = Field(default=6.0, gt=0)
    max_lost_points: int = Field(default=0, ge=0)


class Timing(StrictModel):
    """cycle_s / poll_s [s, wall]: control period and battery/meter poll period; sample_s [s, wall]: report sampling."""

    cycle_s: float = Field(default=0.25, gt=0, le=10)
    poll_s: float = Field(default=0.2, gt=0, le=10)
    sample_s: float = Field(default=0.05, gt=0, le=10)


class Scenario(StrictModel):
    """A whole drill file."""

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    seed: int = 0
    start: AwareDatetime
    speed: float = Field(default=3600.0, gt=0, le=20000)
    duration_h: float = Field(gt=0, le=24 * 14)
    timing: Timing = Timing()
    promises: Promises = Promises()
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _times(self) -> "Scenario":
        problems = [f"events[{i}].at_h: {e.at_h:g} h is after the end of the drill (duration_h {self.duration_h:g})"
                    for i, e in enumerate(self.events) if e.at_h > self.duration_h]
        down = False
        for idx, ev in self.sorted_events():
            if ev.type == "broker_down":
                if down:
                    problems.append(f"events[{idx}]: broker_down while the broker is already down")
                down = True
            elif ev.type == "broker_up":
                if not down:
                    problems.append(f"events[{idx}]: broker_up without a broker_down before it")
                down = False
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def time_of(self, at_h: float) -> datetime:
        """Simulated time of ``at_h`` [h] after the start."""
        return self.start + timedelta(hours=at_h)

    @property
    def end(self) -> datetime:
        return self.time_of(self.duration_h)

    def sorted_events(self) -> list[tuple[int, Event]]:
        """(index in the file, event) by time; the file order breaks ties."""
        return sorted(enumerate(self.events), key=lambda p: (p[1].at_h, p[0]))


def load_scenario(path: str | Path, fleet: FleetConfig | None = None) -> Scenario:
    """Load and validate a scenario file (and check it against ``fleet``); ConfigError naming file and field."""
    path = Path(path)
    try:
        scenario = load_yaml_model(path, Scenario)
    except ConfigError as exc:
        # The scenario-level checks report several lines in one error; split them.
        lines: list[str] = []
        for line in exc.problems:
            head, _, rest = line.partition(": (top level): ")
            lines.extend(f"{head}: {part}" for part in rest.split("\n")) if rest else lines.append(line)
        raise ConfigError(lines) from None
    if fleet is not None:
        problems = check_against_fleet(scenario, fleet, str(path))
        if problems:
            raise ConfigError(problems)
    return scenario


def check_against_fleet(scenario: Scenario, fleet: FleetConfig, source: str) -> list[str]:
    """Problems with hall ids and area codes the fleet does not have, as ``file: field: message`` lines."""
    ids = {s.id for s in fleet.sites}
    areas = {s.area_code for s in fleet.sites}
    known = ", ".join(sorted(ids))
    out: list[str] = []
    for i, e in enumerate(scenario.events):
        where = f"{source}: events[{i}]"
        halls = getattr(e, "halls", []) or []
        for j, h in enumerate(halls):
            if h != "all" and h not in ids:
                out.append(f"{where}.halls[{j}]: unknown hall {h!r} (known: {known})")
        for j, c in enumerate(getattr(e, "cities", []) or []):
            if c.area not in areas:
                out.append(f"{where}.cities[{j}].area: no hall of the fleet is in area {c.area}")
        for j, a in enumerate(getattr(e, "areas", []) or []):
            if a not in areas:
                out.append(f"{where}.areas[{j}]: no hall of the fleet is in area {a}")
        if isinstance(e, StaffScope) and e.scope == "area" and e.area_code not in areas:
            out.append(f"{where}.area_code: no hall of the fleet is in area {e.area_code}")
        if isinstance(e, BatteryFailure) and e.hall not in ids:
            out.append(f"{where}.hall: unknown hall {e.hall!r} (known: {known})")
    return out
