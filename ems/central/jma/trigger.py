"""Decide which halls go to disaster_reserve because of a JMA report.

Rules:

* A hall is switched when a configured kind (storm, heavy_rain, storm_surge,
  heavy_snow) is issued or in force for its municipality (``area_code``, exact
  match) at warning strength or above.  With ``min_level`` set, kinds that carry
  a level (2026 format) must also reach it; kinds without one (暴風警報, the
  present format) are judged by strength alone.
* Prefecture-level items (code = first 2 digits + "0000") count only when the
  report has no municipality items at all, i.e. it is prefecture-wide: in the
  usual report the prefecture item merely sums up its municipalities.
* ``typhoon``: a hall inside the analysed storm area (暴風域) or a forecast
  storm-warning area (暴風警戒域) within ``typhoon_horizon_h`` hours is switched.
* Switching back is never automatic: when the last qualifying warning for a
  hall is lifted (解除, downgraded, no longer listed for its area, report
  withdrawn with 取消, typhoon moved away) the trigger returns a
  :class:`SuggestReturn` for staff to decide.
* Drills and tests (Control/Status 訓練/試験) never switch anything.

The trigger remembers which kinds already switched a hall, so a warning that
merely continues (継続) does not switch a hall again after staff returned it
to VPP; a new kind does.  This memory is in-process: after a restart the first
report in force switches once more, which errs on the safe side.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from ems.config import SiteConfig
from ems.central.jma.models import SEVERITY_RANK, AreaWarning, WarningKind, WarningReport

log = logging.getLogger(__name__)

DEFAULT_KINDS = frozenset({"storm", "heavy_rain", "storm_surge", "typhoon"})
#: flood and landslide come with the 2026 format (氾濫/土砂災害 危険警報); accepted but not switched by default.
KNOWN_KINDS = frozenset({"storm", "heavy_rain", "storm_surge", "heavy_snow", "typhoon", "flood", "landslide"})
_JST = ZoneInfo("Asia/Tokyo")
_EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class SwitchToDisaster:
    """Put ``site_id`` into disaster_reserve; ``reason`` for people and the audit log; ``source_entry`` the feed entry."""

    site_id: str
    reason: str
    source_entry: str
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class SuggestReturn:
    """Tell staff that ``site_id`` may return to VPP (never done automatically)."""

    site_id: str
    reason: str
    source_entry: str = ""


Action = SwitchToDisaster | SuggestReturn


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance [km] between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _jst(t: datetime) -> str:
    return t.astimezone(_JST).strftime("%Y-%m-%d %H:%M JST")


class WarningTrigger:
    """Maps reports to actions for ``sites``.  ``kinds`` ⊆ storm, heavy_rain, storm_surge, heavy_snow, typhoon;
    ``min_level`` 2–5 or None; ``typhoon_horizon_h`` [h]; ``max_report_age_s`` [s] None: no age limit."""

    def __init__(self, sites: Sequence[SiteConfig], kinds: Iterable[str] = DEFAULT_KINDS,
                 min_level: int | None = None, typhoon_horizon_h: float = 48.0,
                 max_report_age_s: float | None = None) -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - KNOWN_KINDS
        if unknown:
            raise ValueError(f"unknown warning kind(s) {sorted(unknown)} (known: {sorted(KNOWN_KINDS)})")
        if min_level is not None and not 2 <= min_level <= 5:
            raise ValueError(f"min_level must be 2-5, got {min_level}")
        self.sites = list(sites)
        self.min_level = min_level
        self.typhoon_horizon = timedelta(hours=typhoon_horizon_h)
        self.max_report_age = timedelta(seconds=max_report_age_s) if max_report_age_s is not None else None
        # site id -> {cause -> issuer}: cause is a category or "typhoon:<number>", issuer the office.
        self._active: dict[str, dict[str, str]] = {}

    # -- public -------------------------------------------------------------
    def active(self) -> dict[str, set[str]]:
        """Causes currently holding each switched site (e.g. {"hall-01": {"heavy_rain"}})."""
        return {site: set(causes) for site, causes in self._active.items() if causes}

    def reset(self) -> None:
        """Forget which sites were switched (the next report in force switches them again)."""
        self._active.clear()

    def qualifies(self, kind: WarningKind) -> bool:
        """True when ``kind`` is of a configured category, in force, and strong enough."""
        if kind.category not in self.kinds or not kind.in_force:
            return False
        if SEVERITY_RANK.get(kind.severity, 0) < SEVERITY_RANK["warning"]:
            return False
        return self.min_level is None or kind.level is None or kind.level >= self.min_level

    def evaluate(self, report: WarningReport, now: datetime | None = None) -> list[Action]:
        """Actions for one report, at most one per site, in site order."""
        if not report.operational:
            log.info("JMA %s %s is a %s message: no action", report.title, report.entry_id, report.control_status)
            return []
        if self.max_report_age is not None:
            now = now or datetime.now(timezone.utc)
            if now - report.report_time > self.max_report_age:
                log.info("JMA %s %s from %s is too old: no action", report.title, report.entry_id,
                         _jst(report.report_time))
                return []
        if report.info_type == "取消":
            return self._withdrawn(report)
        if report.report_type == "typhoon":
            return self._typhoon(report) if "typhoon" in self.kinds else []
        return self._warnings(report)

    # -- warnings -------------------------------------------------------------
    def _matching_items(self, report: WarningReport, site: SiteConfig) -> list[AreaWarning]:
        municipal = [i for i in report.items if i.area_type == "municipality"]
        if municipal:
            return [i for i in municipal if i.area_code == site.area_code]
        pref_code = site.area_code[:2] + "0000"
        return [i for i in report.items if i.area_type == "prefecture" and i.area_code == pref_code]

    def _warnings(self, report: WarningReport) -> list[Action]:
        actions: list[Action] = []
        office = report.publishing_office
        for site in self.sites:
            items = self._matching_items(report, site)
            if not items:
                continue  # the report says nothing about this hall's area: no change
            active = self._active.setdefault(site.id, {})
            kinds = [k for item in items for k in item.kinds]
            good = [k for k in kinds if self.qualifies(k)]
            now_causes = {k.category for k in good}
            where = f"{items[0].area_name or site.area_name} ({items[0].area_code})"
            new = sorted(now_causes - set(active))
            # Categories that were holding the site and are no longer in force for its area.
            lifted = sorted(c for c in active if not c.startswith("typhoon:") and c not in now_causes)
            for c in lifted:
                del active[c]
            for c in now_causes:
                active[c] = office
            if new:
                names = "、".join(dict.fromkeys(f"{k.name}（{k.status}）" for k in good if k.category in new))
                actions.append(SwitchToDisaster(
                    site_id=site.id, source_entry=report.entry_id, kinds=tuple(new),
                    reason=f"JMA {names} for {where}, {office or 'JMA'}, {_jst(report.report_time)}"))
            else:
                # Explicitly lifted or downgraded kinds count even when this process did not
                # switch the hall (e.g. it restarted during the warning).
                explicit = {k.category for k in kinds if k.category in self.kinds and not self.qualifies(k)
                            and (k.cancelled or "から" in k.status)} - now_causes
                lifted = sorted(set(lifted) | explicit)
                if not lifted or active:
                    continue
                gone = [k for k in kinds if k.category in lifted]
                names = "、".join(dict.fromkeys(f"{k.name}（{k.status}）" for k in gone)) or "、".join(lifted)
                actions.append(SuggestReturn(
                    site_id=site.id, source_entry=report.entry_id,
                    reason=f"JMA warnings lifted for {where}: {names} ({office or 'JMA'}, "
                           f"{_jst(report.report_time)}); return to VPP when staff agree"))
        return actions

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
            else:
                causes = [c for c, issuer in active.items() if not c.startswith("typhoon:")
                          and issuer == report.publishing_office]
            if not causes:
                continue
            for c in causes:
                del active[c]
            if not active:
                actions.append(SuggestReturn(
                    site_id=site.id, source_entry=report.entry_id,
                    reason=f"JMA withdrew its report (取消, {report.publishing_office or 'JMA'}, "
                           f"{_jst(report.report_time)}); return to VPP when staff agree"))
        return actions

    # -- typhoon ----------------------------------------------------------------
    def _typhoon(self, report: WarningReport) -> list[Action]:
        info = report.typhoon
        if info is None:
            return []
        cause = f"typhoon:{info.number or 'unknown'}"
        label = f"台風第{info.number[-2:]}号" if len(info.number) >= 2 else "typhoon"
        horizon_end = report.report_time + self.typhoon_horizon
        actions: list[Action] = []
        for site in self.sites:
            hit = None
            for pos in info.positions:
                if pos.valid_time > horizon_end or pos.storm_radius_km is None:
                    continue
                d = distance_km(site.lat, site.lon, pos.lat, pos.lon)
                if d <= pos.storm_radius_km:
                    hit = (pos, d)
                    break
            active = self._active.setdefault(site.id, {})
            if hit is not None:
                if cause not in active:
                    active[cause] = report.publishing_office
                    pos, d = hit
                    area = "storm area (暴風域)" if pos.kind == "実況" else "storm-warning area (暴風警戒域)"
                    actions.append(SwitchToDisaster(
                        site_id=site.id, source_entry=report.entry_id, kinds=("typhoon",),
                        reason=f"JMA {label} {info.name}: {site.name} inside the {area} "
                               f"({d:.0f} km from the centre, {pos.kind} {_jst(pos.valid_time)})"))
            elif cause in active:
                del active[cause]
                if not active:
                    actions.append(SuggestReturn(
                        site_id=site.id, source_entry=report.entry_id,
                        reason=f"JMA {label} {info.name} no longer threatens {site.name} within "
                               f"{self.typhoon_horizon.total_seconds() / 3600:g} h "
                               f"({_jst(report.report_time)}); return to VPP when staff agree"))
        return actions
