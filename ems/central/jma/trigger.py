"""Decide which halls go to disaster_reserve because of a JMA report.

Weather warnings (VPWW53/54 and the 2026 per-hazard format VPWW55-61):

* State is kept per hall, per hazard category and per telegram family: the
  2026 format sends one hazard per telegram (（Ｒ０６）（大雨）, （暴風）, …), so a storm
  telegram says nothing about heavy rain and an "other advisories" telegram
  nothing about either; a category is only issued or lifted by a telegram whose
  scope covers it.  The present format (VPWW53/54) carries the whole state of
  an area and keeps its own entries: JMA sends both side by side until 2028,
  and a hazard holds a hall until every family that reported it lifts it.
* A hall is switched when a configured category is in force for its
  municipality (``area_code``, exact match) at warning strength or above.
  ``min_level``: kinds with a level (2026 format: レベル４大雨危険警報) must
  reach it; the present format's 大雨/土砂/高潮/洪水 警報 count as level 3
  (特別警報 5), its other kinds (暴風, 大雪, …) have no level and are judged
  by strength alone.
* Prefecture-wide items (府県予報区等) count only when a report has no
  municipality items.  A forecast region is not always "prefecture + 0000":
  Hokkaido has seven (宗谷 011000, 網走・北見・紋別 013000, …), Kagoshima two
  (460100, 奄美 460040), Okinawa four (471000-474000).  The trigger learns which
  region a municipality is in from the telegrams themselves (a region's
  telegram lists all its municipalities) and otherwise uses PP0000 only for
  the prefectures that are one region.

Earthquakes (VXSE51 震度速報, VXSE53 震源・震度に関する情報): an intensity at or
above ``quake_min_intensity`` in the hall's city (VXSE53 City code = first five
digits of ``area_code`` + "00") or, when the report does not list that city, in
its seismic area (``seismic_area_code``, VXSE51/53 Area) switches it at once; optionally every hall within
``quake_radius_km`` of the epicentre when the magnitude reaches
``quake_min_magnitude``.  No telegram lifts an earthquake: the hall stays until
staff return it.

Tsunami (VTSE41): a grade in ``tsunami_grades`` (default 津波警報, 大津波警報)
for the hall's ``tsunami_area_code`` switches it; a lower grade (津波注意報) is
``tsunami_lower_action`` (default: suggest).  When the area's grade falls
below, the hall may return (suggested).

Typhoons (VPTW6x): the storm area (暴風域) now and the storm-warning areas
(暴風警戒域) per forecast time — circles that may be asymmetric — are sampled
in between; when a hall is covered within ``typhoon_lead_h`` hours of the
report, it is switched before any warning, and its forecast arrival time is
kept in :meth:`WarningTrigger.typhoon_arrivals`.

Every trigger may be set to "switch" or "suggest" (staff decide).  Switching
back is never automatic: when the last cause holding a hall ends, the trigger
returns a :class:`SuggestReturn`.  Drills and tests (Control/Status 訓練/試験)
never act, unless the trigger was built for a drill (``accept_drills``) —
the real service never is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Literal, Sequence
from zoneinfo import ZoneInfo

from ems.central.jma.geo import distance_km, inside, interpolate
from ems.central.jma.models import (
    ALL_CATEGORIES,
    INTENSITIES,
    INTENSITY_NAMES,
    SEVERITY_RANK,
    TSUNAMI_RANK,
    AreaWarning,
    WarningKind,
    WarningReport,
)
from ems.config import SiteConfig

log = logging.getLogger(__name__)

__all__ = ["WarningTrigger", "SwitchToDisaster", "SuggestDisaster", "SuggestReturn", "Action", "distance_km",
           "DEFAULT_KINDS", "KNOWN_KINDS"]

DEFAULT_KINDS = frozenset({"storm", "heavy_rain", "storm_surge", "landslide", "typhoon"})
KNOWN_KINDS = frozenset(ALL_CATEGORIES - {"other"}) | {"typhoon"}
#: Categories whose present-format warnings stand for a level (警報 = 3, 特別警報 = 5).
LEVELLED = frozenset({"heavy_rain", "landslide", "storm_surge", "flood"})
_IMPLIED_LEVEL = {"advisory": 2, "warning": 3, "danger": 4, "emergency": 5}
#: Prefectures (first two digits) whose forecast regions are not "PP0000".
_SPLIT_PREFECTURES = frozenset({"01", "46", "47"})
_JST = ZoneInfo("Asia/Tokyo")
ActionMode = Literal["switch", "suggest"]


@dataclass(frozen=True)
class SwitchToDisaster:
    """Put ``site_id`` into disaster_reserve; ``reason`` for people and the audit log; ``source_entry`` the feed entry;
    ``trigger`` warning / typhoon / earthquake / tsunami."""

    site_id: str
    reason: str
    source_entry: str
    kinds: tuple[str, ...] = ()
    trigger: str = "warning"


@dataclass(frozen=True)
class SuggestDisaster:
    """Tell staff that ``site_id`` should perhaps go to disaster_reserve (a trigger set to "suggest", or a
    津波注意報): nothing is switched."""

    site_id: str
    reason: str
    source_entry: str = ""
    trigger: str = "warning"


@dataclass(frozen=True)
class SuggestReturn:
    """Tell staff that ``site_id`` may return to VPP (never done automatically)."""

    site_id: str
    reason: str
    source_entry: str = ""


Action = SwitchToDisaster | SuggestDisaster | SuggestReturn


@dataclass
class _Cause:
    """What holds a hall: ``issuer`` office, ``until`` (UTC) for causes no telegram lifts (earthquakes)."""

    issuer: str
    until: datetime | None = None


@dataclass
class TyphoonArrival:
    """When typhoon ``number`` may bring storm-force wind to a hall: ``arrival`` (UTC) — the report time when
    the hall is inside the storm area already — from the report of ``report_time``."""

    number: str
    name: str
    arrival: datetime
    report_time: datetime
    area: str  # 暴風域 (now) or 暴風警戒域 (forecast)

    def to_dict(self) -> dict:
        return {"typhoon": self.number, "name": self.name, "arrival": self.arrival.isoformat(),
                "report_time": self.report_time.isoformat(), "area": self.area}


def _suggest_return(site: SiteConfig, report: WarningReport, why: str) -> SuggestReturn:
    """Tell staff that ``site`` may return to VPP because ``why`` (never done automatically)."""
    return SuggestReturn(site_id=site.id, source_entry=report.entry_id,
                         reason=f"{why}; return to VPP when staff agree")


def _jst(t: datetime) -> str:
    return t.astimezone(_JST).strftime("%Y-%m-%d %H:%M JST")


def _level_of(kind: WarningKind) -> int | None:
    if kind.level is not None:
        return kind.level
    if kind.category in LEVELLED:
        return _IMPLIED_LEVEL.get(kind.severity)
    return None


@dataclass
class _LastReport:
    entry_id: str
    title: str
    report_time: datetime
    control_status: str
    #: What it did: {"action": switch | suggest_disaster | suggest_return, "site": id}, in order.
    did: list[dict] = field(default_factory=list)
    #: Why it did nothing or less: {"code": drill | too_old | skipped, "detail": English text}, or None.
    note: dict | None = None

    def to_dict(self) -> dict:
        return {"entry_id": self.entry_id, "title": self.title, "report_time": self.report_time.isoformat(),
                "control_status": self.control_status, "did": [dict(d) for d in self.did],
                "note": dict(self.note) if self.note else None}


class WarningTrigger:
    """Maps reports to actions for ``sites``.

    ``kinds`` ⊆ :data:`KNOWN_KINDS` (warning categories and "typhoon"); ``min_level`` 2–5 or None;
    ``warning_action`` / ``typhoon_action`` / ``quake_action`` / ``tsunami_action`` "switch" or "suggest";
    ``typhoon_lead_h`` [h]; ``quake_min_intensity`` a JMA intensity ("5-" or "5弱"), None: earthquakes do
    nothing; ``quake_radius_km`` [km] with ``quake_min_magnitude``; ``quake_hold_h`` [h] how long an
    earthquake keeps a hall from a "return" suggestion; ``tsunami_grades`` ⊆ advisory, warning,
    major_warning; ``tsunami_lower_action`` for grades below them ("suggest" or "none");
    ``max_report_age_s`` [s] None: no age limit; ``accept_drills`` act on 訓練/試験 telegrams (drills only);
    ``clock`` () -> aware UTC time for report ages and earthquake holds (default: the wall clock; a drill
    passes its simulated clock).
    """

    def __init__(self, sites: Sequence[SiteConfig], kinds: Iterable[str] = DEFAULT_KINDS,
                 min_level: int | None = None, typhoon_lead_h: float = 24.0,
                 max_report_age_s: float | None = None, *, warning_action: ActionMode = "switch",
                 typhoon_action: ActionMode = "switch", quake_min_intensity: str | None = "5-",
                 quake_action: ActionMode = "switch", quake_radius_km: float | None = None,
                 quake_min_magnitude: float | None = None, quake_hold_h: float = 24.0,
                 tsunami_grades: Iterable[str] = ("warning", "major_warning"), tsunami_action: ActionMode = "switch",
                 tsunami_lower_action: Literal["suggest", "none"] = "suggest", accept_drills: bool = False,
                 clock: Callable[[], datetime] | None = None) -> None:
        from ems.central.jma.seismic import checked_intensity

        self.kinds = frozenset(kinds)
        unknown = self.kinds - KNOWN_KINDS
        if unknown:
            raise ValueError(f"unknown warning kind(s) {sorted(unknown)} (known: {sorted(KNOWN_KINDS)})")
        if min_level is not None and not 2 <= min_level <= 5:
            raise ValueError(f"min_level must be 2-5, got {min_level}")
        for name, value in (("warning_action", warning_action), ("typhoon_action", typhoon_action),
                            ("quake_action", quake_action), ("tsunami_action", tsunami_action)):
            if value not in ("switch", "suggest"):
                raise ValueError(f"{name} must be 'switch' or 'suggest', got {value!r}")
        if tsunami_lower_action not in ("suggest", "none"):
            raise ValueError(f"tsunami_lower_action must be 'suggest' or 'none', got {tsunami_lower_action!r}")
        if not typhoon_lead_h > 0:
            raise ValueError(f"typhoon_lead_h must be > 0 h, got {typhoon_lead_h}")
        self.quake_min_intensity = None
        if quake_min_intensity is not None:
            try:
                self.quake_min_intensity = checked_intensity(quake_min_intensity)
            except ValueError as exc:
                raise ValueError(f"quake_min_intensity {exc}") from None
        if (quake_radius_km is None) != (quake_min_magnitude is None):
            raise ValueError("quake_radius_km and quake_min_magnitude go together (both or neither)")
        grades = frozenset(tsunami_grades)
        if not grades <= {"advisory", "warning", "major_warning"} or not grades:
            raise ValueError(f"tsunami_grades must be among advisory, warning, major_warning, got {sorted(grades)}")
        self.sites = list(sites)
        self.min_level = min_level
        self.warning_action, self.typhoon_action = warning_action, typhoon_action
        self.quake_action, self.tsunami_action = quake_action, tsunami_action
        self.typhoon_lead = timedelta(hours=typhoon_lead_h)
        self.quake_radius_km, self.quake_min_magnitude = quake_radius_km, quake_min_magnitude
        self.quake_hold = timedelta(hours=quake_hold_h)
        self.tsunami_min_rank = min(TSUNAMI_RANK[g] for g in grades)
        self.tsunami_lower_action = tsunami_lower_action
        self.max_report_age = timedelta(seconds=max_report_age_s) if max_report_age_s is not None else None
        self.accept_drills = accept_drills
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        # site id -> {cause -> _Cause}: a cause is "warning:<family>:<category>", "typhoon:<number>",
        # "earthquake:<event>" or "tsunami:<area code>".
        self._active: dict[str, dict[str, _Cause]] = {}
        self._quakes_done: dict[str, set[str]] = {}  # site -> earthquake events that already acted
        self._region_of: dict[str, str] = {}  # municipality code -> forecast region code, learned
        self._arrivals: dict[str, TyphoonArrival] = {}
        self._last: dict[str, _LastReport] = {}

    # -- public -------------------------------------------------------------
    def active(self) -> dict[str, set[str]]:
        """Causes holding each switched site, by category (e.g. {"hall-01": {"heavy_rain"}}); typhoons,
        earthquakes and tsunamis as "typhoon:2610", "earthquake:<event id>", "tsunami:540"."""
        out: dict[str, set[str]] = {}
        for site, causes in self._active.items():
            names = {c.split(":", 2)[2] if c.startswith("warning:") else c for c in causes}
            if names:
                out[site] = names
        return out

    def typhoon_arrivals(self) -> dict[str, dict]:
        """Forecast arrival of storm-force wind per site (only sites a typhoon reaches within the lead time)."""
        return {site: a.to_dict() for site, a in self._arrivals.items()}

    def arrival_times(self) -> dict[str, datetime]:
        """The same forecast as times (UTC) per site."""
        return {site: a.arrival for site, a in self._arrivals.items()}

    def last_reports(self) -> dict[str, dict]:
        """The last telegram of each kind (warning, warning-r06, typhoon, earthquake, tsunami) and what it did."""
        return {kind: r.to_dict() for kind, r in self._last.items()}

    def reset(self) -> None:
        """Forget which sites were switched (the next report in force switches them again)."""
        self._active.clear()
        self._quakes_done.clear()
        self._arrivals.clear()

    def qualifies(self, kind: WarningKind) -> bool:
        """True when ``kind`` is of a configured category, in force, and strong enough."""
        if kind.category not in self.kinds or not kind.in_force:
            return False
        if SEVERITY_RANK.get(kind.severity, 0) < SEVERITY_RANK["warning"]:
            return False
        level = _level_of(kind)
        return self.min_level is None or level is None or level >= self.min_level

    def evaluate(self, report: WarningReport, now: datetime | None = None) -> list[Action]:
        """Actions for one report, at most one per site and kind of action, in site order."""
        last = _LastReport(report.entry_id, report.title, report.report_time, report.control_status)
        self._last[report.kind] = last
        actions = self._evaluate(report, now, last)
        for a in actions:
            action = "switch" if isinstance(a, SwitchToDisaster) else \
                "suggest_disaster" if isinstance(a, SuggestDisaster) else "suggest_return"
            last.did.append({"action": action, "site": a.site_id})
        return actions

    def _evaluate(self, report: WarningReport, now: datetime | None, last: _LastReport) -> list[Action]:
        if not report.operational and not self.accept_drills:
            log.info("JMA %s %s is a %s message: no action", report.title, report.entry_id, report.control_status)
            last.note = {"code": "drill",
                         "detail": f"Control/Status {report.control_status}: a drill/test telegram switches nothing"}
            return []
        now = now or self.clock()
        self._expire(now)
        if self.max_report_age is not None and now - report.report_time > self.max_report_age:
            log.info("JMA %s %s from %s is too old: no action", report.title, report.entry_id,
                     _jst(report.report_time))
            last.note = {"code": "too_old", "detail": f"report of {_jst(report.report_time)} is too old"}
            return []
        if report.info_type == "取消":
            return self._withdrawn(report)
        if report.report_type == "typhoon":
            return self._typhoon(report) if "typhoon" in self.kinds else []
        if report.report_type == "earthquake":
            return self._earthquake(report)
        if report.report_type == "tsunami":
            return self._tsunami(report)
        if report.skipped:
            last.note = {"code": "skipped",
                         "detail": f"{len(report.skipped)} item(s) skipped, e.g. {report.skipped[0]}"}
        return self._warnings(report)

    # -- common ---------------------------------------------------------------
    def _expire(self, now: datetime) -> None:
        for causes in self._active.values():
            for c in [c for c, v in causes.items() if v.until is not None and v.until <= now]:
                del causes[c]

    def _act(self, mode: ActionMode, site: SiteConfig, reason: str, entry: str, kinds: tuple[str, ...],
             trigger: str) -> Action:
        if mode == "switch":
            return SwitchToDisaster(site_id=site.id, reason=reason, source_entry=entry, kinds=kinds, trigger=trigger)
        return SuggestDisaster(site_id=site.id, reason=reason + "; switch to disaster mode when staff agree",
                               source_entry=entry, trigger=trigger)

    # -- warnings -------------------------------------------------------------
    def _region(self, site: SiteConfig) -> str | None:
        code = site.area_code
        if code in self._region_of:
            return self._region_of[code]
        if code[:2] in _SPLIT_PREFECTURES:
            return None
        return code[:2] + "0000"

    def _learn_regions(self, report: WarningReport) -> None:
        prefs = {i.area_code for i in report.items if i.area_type == "prefecture"}
        if len(prefs) == 1:
            region = next(iter(prefs))
            for i in report.items:
                if i.area_type == "municipality":
                    self._region_of[i.area_code] = region

    def _matching_items(self, report: WarningReport, site: SiteConfig) -> list[AreaWarning]:
        municipal = [i for i in report.items if i.area_type == "municipality"]
        if municipal:
            return [i for i in municipal if i.area_code == site.area_code]
        region = self._region(site)
        if region is None:
            return []
        return [i for i in report.items if i.area_type == "prefecture" and i.area_code == region]

    def _warnings(self, report: WarningReport) -> list[Action]:
        self._learn_regions(report)
        actions: list[Action] = []
        office = report.publishing_office
        family = "r06" if report.scope is not None else "legacy"
        scope = report.scope if report.scope is not None else ALL_CATEGORIES
        for site in self.sites:
            items = self._matching_items(report, site)
            if not items:
                continue  # the report says nothing about this hall's area: no change
            active = self._active.setdefault(site.id, {})
            held_before = self._held_categories(active)
            kinds = [k for item in items for k in item.kinds if k.category in scope or k.category == "none"]
            good = [k for k in kinds if self.qualifies(k)]
            now_causes = {k.category for k in good}
            where = f"{items[0].area_name or site.area_name} ({items[0].area_code})"
            # This family's entries for the categories the telegram speaks for: set anew.
            mine = {c for c in active if c.startswith(f"warning:{family}:") and c.split(":", 2)[2] in scope}
            lifted = {c.split(":", 2)[2] for c in mine} - now_causes
            for c in mine:
                del active[c]
            for cat in now_causes:
                active[f"warning:{family}:{cat}"] = _Cause(office)
            held_after = self._held_categories(active)
            new = sorted(held_after - held_before)
            if new:
                names = "、".join(dict.fromkeys(f"{k.name}（{k.status}）" for k in good if k.category in new))
                reason = f"JMA {names} for {where}, {office or 'JMA'}, {_jst(report.report_time)}"
                actions.append(self._act(self.warning_action, site, reason, report.entry_id, tuple(new), "warning"))
                continue
            # Explicitly lifted or downgraded kinds count even when this process did not switch the hall
            # (e.g. it restarted during the warning).
            explicit = {k.category for k in kinds if k.category in self.kinds and not self.qualifies(k)
                        and (k.cancelled or "から" in k.status)} - now_causes
            gone = (lifted | explicit) - held_after
            if not gone or active:
                continue
            names = "、".join(dict.fromkeys(f"{k.name}（{k.status}）" for k in kinds if k.category in gone)) \
                or "、".join(sorted(gone))
            actions.append(_suggest_return(site, report, f"JMA warnings lifted for {where}: {names} "
                                                         f"({office or 'JMA'}, {_jst(report.report_time)})"))
        return actions

    @staticmethod
    def _held_categories(active: dict[str, _Cause]) -> set[str]:
        return {c.split(":", 2)[2] for c in active if c.startswith("warning:")}

    def _withdrawn(self, report: WarningReport) -> list[Action]:
        """A 取消 report voids the office's previous report: release what that office switched."""
        actions: list[Action] = []
        number = report.typhoon.number if report.typhoon else ""
        for site in self.sites:
            active = self._active.get(site.id)
            if not active:
                continue
            if report.report_type == "typhoon":
                causes = [c for c in active if c.startswith("typhoon:") and (not number or c == f"typhoon:{number}")]
            elif report.report_type == "warning":
                family = "r06" if report.scope is not None else "legacy"
                scope = report.scope if report.scope is not None else ALL_CATEGORIES
                causes = [c for c, v in active.items() if c.startswith(f"warning:{family}:")
                          and c.split(":", 2)[2] in scope and v.issuer == report.publishing_office]
            else:
                causes = []  # a withdrawn seismic report: the hall stays in disaster mode until staff decide
            if not causes:
                continue
            for c in causes:
                del active[c]
            if not active:
                actions.append(_suggest_return(site, report, f"JMA withdrew its report (取消, "
                                               f"{report.publishing_office or 'JMA'}, {_jst(report.report_time)})"))
        return actions

    # -- earthquake ------------------------------------------------------------
    def _earthquake(self, report: WarningReport) -> list[Action]:
        quake = report.earthquake
        if quake is None or self.quake_min_intensity is None:
            return []
        threshold = INTENSITIES.index(self.quake_min_intensity)
        event = report.extra.get("event_id") or (quake.origin_time.isoformat() if quake.origin_time else report.entry_id)
        origin = _jst(quake.origin_time) if quake.origin_time else "origin time unknown"
        epicentre = quake.hypocenter or "epicentre not yet known"
        if quake.magnitude is not None:
            epicentre += f" M{quake.magnitude:g}"
        cities = {p.code: p for p in quake.places if p.level == "city"}
        areas = {p.code: p for p in quake.places if p.level == "area"}
        actions: list[Action] = []
        for site in self.sites:
            why = None
            # The hall's own city when the report lists it (VXSE53); its seismic area otherwise (震度速報, or a
            # city without a reported station): the area's maximum may have been measured anywhere in it.
            city = cities.get(site.area_code[:5] + "00") if len(site.area_code) == 7 else None
            place = city if city is not None else areas.get(site.seismic_area_code or "")
            if place is not None and INTENSITIES.index(place.max_int) >= threshold:
                shown = INTENSITY_NAMES[place.max_int] + ("以上（未入電）" if place.assumed else "")
                why = f"震度{shown} in {place.name} ({place.code})"
            if (why is None and self.quake_radius_km is not None and quake.magnitude is not None
                    and quake.lat is not None and quake.lon is not None
                    and quake.magnitude >= (self.quake_min_magnitude or 0)):
                d = distance_km(site.lat, site.lon, quake.lat, quake.lon)
                if d <= self.quake_radius_km:
                    why = f"M{quake.magnitude:g} epicentre {d:.0f} km away (≤ {self.quake_radius_km:g} km)"
            if why is None:
                continue
            done = self._quakes_done.setdefault(site.id, set())
            if event in done:
                continue  # the VXSE53 after the VXSE51 of the same earthquake: acted already
            done.add(event)
            if self.quake_action == "switch":
                until = (quake.origin_time or report.report_time) + self.quake_hold
                self._active.setdefault(site.id, {})[f"earthquake:{event}"] = _Cause(report.publishing_office, until)
            reason = (f"JMA {report.title}: {why} — earthquake {epicentre}, {origin} "
                      f"({report.publishing_office or 'JMA'}, {_jst(report.report_time)})")
            actions.append(self._act(self.quake_action, site, reason, report.entry_id, ("earthquake",), "earthquake"))
        return actions

    # -- tsunami ----------------------------------------------------------------
    def _tsunami(self, report: WarningReport) -> list[Action]:
        by_area = {t.area_code: t for t in report.tsunami}
        actions: list[Action] = []
        for site in self.sites:
            code = site.tsunami_area_code
            item = by_area.get(code or "")
            if item is None:
                continue
            active = self._active.setdefault(site.id, {})
            cause = f"tsunami:{code}"
            rank = TSUNAMI_RANK[item.grade]
            where = f"{item.area_name} ({item.area_code})"
            if rank >= self.tsunami_min_rank:
                if cause in active:
                    continue
                if self.tsunami_action == "switch":
                    active[cause] = _Cause(report.publishing_office)
                reason = f"JMA {item.kind_name} for {where}, {_jst(report.report_time)}"
                actions.append(self._act(self.tsunami_action, site, reason, report.entry_id, ("tsunami",), "tsunami"))
            elif cause in active:
                del active[cause]
                if not active:
                    actions.append(_suggest_return(site, report, f"JMA {item.kind_name} for {where} "
                                                                 f"({_jst(report.report_time)})"))
            elif rank >= TSUNAMI_RANK["advisory"] and self.tsunami_lower_action == "suggest":
                actions.append(SuggestDisaster(
                    site_id=site.id, source_entry=report.entry_id, trigger="tsunami",
                    reason=f"JMA {item.kind_name} for {where}, {_jst(report.report_time)}; "
                           f"switch to disaster mode when staff agree"))
        return actions

    # -- typhoon ----------------------------------------------------------------
    def _arrival(self, report: WarningReport, site: SiteConfig, step: timedelta = timedelta(minutes=30)
                 ) -> tuple[datetime, str] | None:
        """First time (UTC) the storm area / storm-warning area covers ``site``, sampling between forecast
        times every ``step``; None when it never does in this report."""
        info = report.typhoon
        assert info is not None
        positions = [p for p in info.positions if p.storm_circle is not None]
        for i, pos in enumerate(positions):
            area = "暴風域" if pos.kind == "実況" or pos.kind.startswith("推定") else "暴風警戒域"
            if inside(pos.storm_circle, site.lat, site.lon):  # type: ignore[arg-type]
                return max(pos.valid_time, report.report_time), area
            if i + 1 < len(positions):
                nxt = positions[i + 1]
                span = nxt.valid_time - pos.valid_time
                t = step
                while t < span:
                    circle = interpolate(pos.storm_circle, nxt.storm_circle, t / span)  # type: ignore[arg-type]
                    if inside(circle, site.lat, site.lon):
                        return max(pos.valid_time + t, report.report_time), "暴風警戒域"
                    t += step
        return None

    def _typhoon(self, report: WarningReport) -> list[Action]:
        info = report.typhoon
        if info is None:
            return []
        cause = f"typhoon:{info.number or 'unknown'}"
        label = f"台風第{int(info.number[-2:])}号" if len(info.number) >= 2 and info.number[-2:].isdigit() else "typhoon"
        horizon_end = report.report_time + self.typhoon_lead
        actions: list[Action] = []
        for site in self.sites:
            hit = self._arrival(report, site)
            active = self._active.setdefault(site.id, {})
            previous = self._arrivals.get(site.id)
            if hit is not None and hit[0] <= horizon_end:
                arrival, area = hit
                self._arrivals[site.id] = TyphoonArrival(info.number, info.name, arrival, report.report_time, area)
                if cause in active or (previous is not None and previous.number == info.number
                                       and self.typhoon_action == "suggest"):
                    continue
                if self.typhoon_action == "switch":
                    active[cause] = _Cause(report.publishing_office)
                lead = (arrival - report.report_time).total_seconds() / 3600
                when = "now" if lead <= 0 else f"from {_jst(arrival)} (in {lead:.0f} h)"
                reason = (f"JMA {label} {info.name}: {site.name} inside the {area} {when}; "
                          f"report {_jst(report.report_time)}")
                actions.append(self._act(self.typhoon_action, site, reason, report.entry_id, ("typhoon",), "typhoon"))
            else:
                if previous is not None and previous.number == info.number:
                    del self._arrivals[site.id]
                if cause in active:
                    del active[cause]
                    if not active:
                        actions.append(_suggest_return(
                            site, report, f"JMA {label} {info.name} no longer threatens {site.name} within "
                                          f"{self.typhoon_lead.total_seconds() / 3600:g} h ({_jst(report.report_time)})"))
        return actions
