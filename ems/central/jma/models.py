"""Record types for parsed JMA reports (one shape for every format the parser reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: What a warning kind is about.  The trigger is configured with these names.
Category = Literal["storm", "heavy_rain", "storm_surge", "heavy_snow", "flood", "landslide", "waves",
                   "typhoon", "other", "none"]
#: Every warning category a weather telegram can carry.
ALL_CATEGORIES = frozenset({"storm", "heavy_rain", "storm_surge", "heavy_snow", "flood", "landslide", "waves",
                            "other"})
#: How strong: advisory (注意報, level 2), warning (警報, level 3), danger (危険警報, level 4),
#: emergency (特別警報, level 5); "none" for "no warnings in force".
Severity = Literal["none", "advisory", "warning", "danger", "emergency"]
SEVERITY_RANK: dict[str, int] = {"none": 0, "advisory": 2, "warning": 3, "danger": 4, "emergency": 5}

#: Kind statuses that mean "no longer in force" (解除) or "nothing in force" (…なし).
CANCELLED_STATUSES = frozenset({"解除"})
NONE_STATUSES = frozenset({"発表警報・注意報はなし", "なし", ""})


class JmaParseError(ValueError):
    """A report that cannot be read; the message names the file or entry and the element."""


class UnsupportedReportError(JmaParseError):
    """A well-formed JMA report of a type we do not read (e.g. an earthquake report)."""


@dataclass(frozen=True)
class WarningKind:
    """One warning/advisory in one area: JMA code and name, status (発表/継続/解除/…), level 2–5 when the
    format carries one (2026 level-based format), and our category and severity."""

    code: str
    name: str
    status: str
    level: int | None
    category: Category
    severity: Severity = "warning"

    @property
    def cancelled(self) -> bool:
        """True when this kind is lifted (解除)."""
        return self.status in CANCELLED_STATUSES

    @property
    def in_force(self) -> bool:
        """True when the kind is issued, continued, or changed to this kind (発表/継続/…から…)."""
        return self.status not in CANCELLED_STATUSES and self.status not in NONE_STATUSES and self.severity != "none"


@dataclass(frozen=True)
class AreaWarning:
    """The kinds in force (or lifted) for one area.  ``area_type``: municipality (7-digit code),
    prefecture (府県予報区, 6 digits) or region (groupings the trigger does not use)."""

    area_code: str
    area_name: str
    kinds: list[WarningKind]
    area_type: Literal["municipality", "prefecture", "region"] = "municipality"


@dataclass(frozen=True)
class TyphoonPosition:
    """Typhoon centre at ``valid_time`` (UTC): ``kind`` 実況/推定/予報; lat/lon [°];
    circle_radius_km [km] of the forecast circle (70 %); storm_radius_km [km] of the storm area
    (暴風域, wind ≥ 25 m/s) for analyses or the storm-warning area (暴風警戒域) for forecasts."""

    valid_time: datetime
    kind: str
    lat: float
    lon: float
    circle_radius_km: float | None
    storm_radius_km: float | None
    storm_circle: "Circle | None" = None


@dataclass(frozen=True)
class Circle:
    """A circle on the earth: centre lat/lon [°], radius [km].  JMA gives asymmetric areas as a radius per
    direction ("北東 500 km, 南西 330 km"); that is one circle whose centre is moved toward the longer side
    (here by (500 - 330) / 2 km to the north-east, radius (500 + 330) / 2 km), which is how JMA draws them."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class TyphoonInfo:
    """A typhoon analysis/forecast: number (e.g. "2610"), name, class (台風（ＴＹ）…), positions in time order."""

    number: str
    name: str
    typhoon_class: str
    positions: list[TyphoonPosition]


#: Seismic intensities in order (JMA codes: 5- is 5弱, 5+ is 5強, …).
INTENSITIES = ("1", "2", "3", "4", "5-", "5+", "6-", "6+", "7")
INTENSITY_NAMES = {"1": "1", "2": "2", "3": "3", "4": "4", "5-": "5弱", "5+": "5強", "6-": "6弱", "6+": "6強",
                   "7": "7"}


@dataclass(frozen=True)
class IntensityArea:
    """Observed intensity in one place: ``level`` "city" (7-digit municipality code, VXSE53) or "area"
    (3-digit 地震情報／細分区域 code, VXSE51/53); ``max_int`` one of :data:`INTENSITIES`.
    ``assumed`` when JMA only says 震度５弱以上未入電 (≥ 5弱 expected, the station did not report)."""

    code: str
    name: str
    level: Literal["area", "city"]
    max_int: str
    assumed: bool = False


@dataclass(frozen=True)
class EarthquakeInfo:
    """A seismic-intensity report: origin time (UTC, None if not given), hypocentre name and position
    [°, km depth], magnitude (None: not given or not yet determined), and the areas/cities with intensities."""

    origin_time: datetime | None
    hypocenter: str
    lat: float | None
    lon: float | None
    depth_km: float | None
    magnitude: float | None
    max_int: str
    places: list[IntensityArea]


#: Tsunami kinds by strength: major_warning (大津波警報), warning (津波警報), advisory (津波注意報),
#: forecast (津波予報), none (津波なし / 解除).
TSUNAMI_RANK = {"none": 0, "forecast": 1, "advisory": 2, "warning": 3, "major_warning": 4}


@dataclass(frozen=True)
class TsunamiItem:
    """One tsunami forecast area (津波予報区, 3-digit code) and its kind: JMA code/name and our grade."""

    area_code: str
    area_name: str
    kind_code: str
    kind_name: str
    grade: Literal["none", "forecast", "advisory", "warning", "major_warning"]


@dataclass(frozen=True)
class WarningReport:
    """One parsed report.

    ``report_time`` is tz-aware UTC; ``info_type`` 発表/訂正/取消; ``control_status`` 通常 (operational),
    訓練 (drill) or 試験 (test) — only 通常 may switch halls.  ``report_type`` is "warning" or "typhoon";
    ``format`` tells which message format was read.
    """

    entry_id: str
    title: str
    report_time: datetime
    info_type: str
    items: list[AreaWarning]
    report_type: Literal["warning", "typhoon", "earthquake", "tsunami"] = "warning"
    format: str = ""
    control_status: str = "通常"
    publishing_office: str = ""
    headline: str = ""
    typhoon: TyphoonInfo | None = None
    earthquake: EarthquakeInfo | None = None
    tsunami: list[TsunamiItem] = field(default_factory=list)
    #: Warning categories this report speaks for.  None: all of them (VPWW53/54 carry the whole state of
    #: an area); the 2026 format sends one hazard per telegram (（Ｒ０６）（大雨） → {"heavy_rain"}), and a
    #: category outside the scope is neither issued nor lifted by it.
    scope: frozenset[str] | None = None
    #: Items left out, each "where: why" (e.g. a placeholder area code in a JMA sample).
    skipped: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Short name of the telegram kind for status views: warning-r06, warning, typhoon, earthquake, tsunami."""
        if self.report_type == "warning":
            return "warning-r06" if self.format == "r06" else "warning"
        return self.report_type

    @property
    def operational(self) -> bool:
        """True for a real report (Control/Status 通常), False for drills and tests."""
        return self.control_status == "通常"
