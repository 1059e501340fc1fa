"""Record types for parsed JMA reports (one shape for every format the parser reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: What a warning kind is about.  The trigger is configured with these names.
Category = Literal["storm", "heavy_rain", "storm_surge", "heavy_snow", "flood", "landslide", "waves",
                   "typhoon", "other", "none"]
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


@dataclass(frozen=True)
class TyphoonInfo:
    """A typhoon analysis/forecast: number (e.g. "2610"), name, class (台風（ＴＹ）…), positions in time order."""

    number: str
    name: str
    typhoon_class: str
    positions: list[TyphoonPosition]


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
    report_type: Literal["warning", "typhoon"] = "warning"
    format: str = ""
    control_status: str = "通常"
    publishing_office: str = ""
    headline: str = ""
    typhoon: TyphoonInfo | None = None
    extra: dict = field(default_factory=dict)

    @property
    def operational(self) -> bool:
        """True for a real report (Control/Status 通常), False for drills and tests."""
        return self.control_status == "通常"
