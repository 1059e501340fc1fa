"""Parse JMA disaster-information XML into :class:`~ems.central.jma.models.WarningReport`.

Reads:

* 気象特別警報・警報・注意報 (VPWW53) and 気象警報・注意報（Ｈ２７） (VPWW54):
  ``Body/Warning[@type="気象警報・注意報（市町村等）"]/Item`` with ``Kind/Name``,
  ``Kind/Code``, ``Kind/Status`` and ``Area/Code`` (plus the 府県予報区等 items);
* the 2026 level-based format: the same structure where each ``Kind`` carries a
  level 2–5 (a ``Level`` element, or "レベル4" in the kind name: レベル5…特別警報,
  レベル4…危険警報, レベル3…警報, レベル2…注意報);
* 台風解析・予報情報 (VPTW6x): centre positions, forecast circles and storm areas.

Elements are found by local name so that a new namespace version of the body
does not break reading; unknown elements are ignored.  XML with a DOCTYPE or
entity declaration is refused (JMA never sends one; it is the vector for
entity-expansion attacks), as is anything that is not UTF-8 or larger than
``MAX_BYTES``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import Iterator

from ems.central.jma.geo import circle_from_axes
from ems.central.jma.models import (
    AreaWarning,
    JmaParseError,
    TyphoonInfo,
    TyphoonPosition,
    UnsupportedReportError,
    WarningKind,
    WarningReport,
)

NS_REPORT = "http://xml.kishou.go.jp/jmaxml1/"
NS_HEAD = "http://xml.kishou.go.jp/jmaxml1/informationBasis1/"
NS_BODY = "http://xml.kishou.go.jp/jmaxml1/body/meteorology1/"
NS_ELEMENT = "http://xml.kishou.go.jp/jmaxml1/elementBasis1/"

MAX_BYTES = 10 * 1024 * 1024

#: Control/Title of warning reports that carry the whole state of each area (all hazards in one report).
WARNING_TITLES = frozenset({
    "気象特別警報・警報・注意報",        # VPWW53
    "気象警報・注意報（Ｈ２７）",        # VPWW54
    "気象警報・注意報",                  # older/other offices
})
#: The 2026 format (in service since 2026-05-29): one telegram per hazard, VPWW55-61, titled
#: 気象警報・注意報（Ｒ０６）（<hazard>）.  Each speaks only for its own categories.  JMA's sample
#: package spells the landslide one both （土砂） and （土砂災害）.
R06_PREFIX = "気象警報・注意報（Ｒ０６）（"
R06_SCOPES: dict[str, frozenset[str]] = {
    "大雨": frozenset({"heavy_rain"}), "土砂": frozenset({"landslide"}), "土砂災害": frozenset({"landslide"}),
    "高潮": frozenset({"storm_surge"}), "暴風": frozenset({"storm"}), "波浪": frozenset({"waves"}),
    "大雪": frozenset({"heavy_snow"}), "その他注意報": frozenset({"other"}),
}
R06_TITLES = frozenset(f"{R06_PREFIX}{hazard}）" for hazard in R06_SCOPES)
#: Control/Title prefix of typhoon analysis and forecast reports.
TYPHOON_TITLE_PREFIX = "台風解析・予報情報"
#: Seismic intensity reports: 震度速報 (VXSE51) and 震源・震度に関する情報 (VXSE53).
EARTHQUAKE_TITLES = frozenset({"震度速報", "震源・震度に関する情報"})
#: 津波警報・注意報・予報 (VTSE41); JMA's title carries a trailing "a".
TSUNAMI_TITLE_PREFIX = "津波警報・注意報・予報"


def is_read_title(title: str) -> bool:
    """True for the report titles this parser reads (feed entries with other titles are not fetched)."""
    title = title.strip()
    return (title in WARNING_TITLES or title in R06_TITLES or title in EARTHQUAKE_TITLES
            or title.startswith((TYPHOON_TITLE_PREFIX, TSUNAMI_TITLE_PREFIX)))


_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_LEVEL_IN_NAME = re.compile(r"レベル\s*([2-5])")
_COORD = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")

# Order matters: 暴風雪 before 暴風 and 大雪 ("風雪" contains 雪 but is about wind).
_CATEGORY_WORDS: list[tuple[str, str]] = [
    ("暴風雪", "storm"), ("暴風", "storm"), ("強風", "storm"), ("風雪", "storm"),
    ("大雨", "heavy_rain"), ("高潮", "storm_surge"), ("大雪", "heavy_snow"),
    ("洪水", "flood"), ("氾濫", "flood"), ("土砂", "landslide"), ("波浪", "waves"),
]
# JMA kind codes (個別コード表) for names we might not see, e.g. a Kind with only a Code.
_CODE_NAMES = {
    "02": "暴風雪警報", "03": "大雨警報", "04": "洪水警報", "05": "暴風警報", "06": "大雪警報",
    "07": "波浪警報", "08": "高潮警報", "10": "大雨注意報", "12": "大雪注意報", "13": "風雪注意報",
    "14": "雷注意報", "15": "強風注意報", "16": "波浪注意報", "17": "融雪注意報", "18": "洪水注意報",
    "19": "高潮注意報", "20": "濃霧注意報", "21": "乾燥注意報", "22": "なだれ注意報", "23": "低温注意報",
    "24": "霜注意報", "25": "着氷注意報", "26": "着雪注意報", "32": "暴風雪特別警報", "33": "大雨特別警報",
    "35": "暴風特別警報", "36": "大雪特別警報", "37": "波浪特別警報", "38": "高潮特別警報",
}
_LEVEL_SEVERITY = {2: "advisory", 3: "warning", 4: "danger", 5: "emergency"}


# -- small helpers --------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el: ET.Element, name: str) -> Iterator[ET.Element]:
    return (c for c in el if _local(c.tag) == name)


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    return next(_children(el, name), None)


def _text(el: ET.Element | None, name: str | None = None) -> str:
    node = _child(el, name) if name else el
    return (node.text or "").strip() if node is not None else ""


def _path(*parts: str) -> str:
    return "/".join(parts)


def category_of(name: str) -> str:
    """Our category for a JMA kind name (暴風警報 → storm, レベル4大雨危険警報 → heavy_rain, …)."""
    for word, category in _CATEGORY_WORDS:
        if word in name:
            return category
    return "other" if name else "none"


def severity_of(name: str, level: int | None) -> str:
    """advisory / warning / danger / emergency from the kind name (level decides when the name is unclear)."""
    if "特別警報" in name:
        return "emergency"
    if "危険警報" in name:
        return "danger"
    if "警報" in name:
        return "warning"
    if "注意報" in name:
        return "advisory"
    if level in _LEVEL_SEVERITY:
        return _LEVEL_SEVERITY[level]
    return "none"


def _decode(xml: bytes, where: str) -> bytes:
    if not isinstance(xml, (bytes, bytearray)):
        raise JmaParseError(f"{where}: expected bytes, got {type(xml).__name__}")
    if len(xml) > MAX_BYTES:
        raise JmaParseError(f"{where}: document larger than {MAX_BYTES} bytes")
    if not xml.strip():
        raise JmaParseError(f"{where}: empty document")
    try:
        text = bytes(xml).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JmaParseError(f"{where}: not UTF-8 (byte {exc.start})") from None
    head = text.upper()
    if "<!DOCTYPE" in head or "<!ENTITY" in head:
        raise JmaParseError(f"{where}: DOCTYPE/ENTITY declarations are not allowed in JMA XML")
    return text.encode("utf-8")


def parse_xml(xml: bytes, where: str) -> ET.Element:
    """The root element of a JMA or Atom document; JmaParseError naming ``where`` when unreadable."""
    data = _decode(xml, where)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise JmaParseError(f"{where}: not well-formed XML ({exc})") from None


def _parse_time(text: str, where: str, element: str) -> datetime:
    if not text:
        raise JmaParseError(f"{where}: {element}: missing")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise JmaParseError(f"{where}: {element}: not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:  # JMA always gives an offset; a bare time is Japan time
        t = t.replace(tzinfo=timezone(timedelta(hours=9)))
    return t.astimezone(timezone.utc)


# -- entry point ----------------------------------------------------------------
def parse_report(xml: bytes, entry_id: str = "", source: str = "") -> WarningReport:
    """Parse one JMA report.

    ``entry_id`` is the feed entry id (default: ``sha256:`` of the bytes); ``source`` names the
    file or URL in error messages.  Raises :class:`JmaParseError` (malformed, missing elements) or
    :class:`UnsupportedReportError` (a report type we do not read).
    """
    where = source or entry_id or "JMA report"
    root = parse_xml(xml, where)
    if _local(root.tag) != "Report":
        raise JmaParseError(f"{where}: root element is <{_local(root.tag)}>, expected <Report>")
    if not entry_id:
        entry_id = "sha256:" + hashlib.sha256(bytes(xml)).hexdigest()
    control = _child(root, "Control")
    head = _child(root, "Head")
    if control is None:
        raise JmaParseError(f"{where}: Report/Control: missing")
    if head is None:
        raise JmaParseError(f"{where}: Report/Head: missing")
    title = _text(control, "Title")
    if not title:
        raise JmaParseError(f"{where}: Report/Control/Title: missing")
    info_type = _text(head, "InfoType")
    if not info_type:
        raise JmaParseError(f"{where}: Report/Head/InfoType: missing")
    report_time = _parse_time(_text(head, "ReportDateTime"), where, "Report/Head/ReportDateTime")
    common = dict(
        entry_id=entry_id, title=title, report_time=report_time, info_type=info_type,
        control_status=_text(control, "Status") or "通常",
        publishing_office=_text(control, "PublishingOffice"),
        headline=_text(_child(head, "Headline"), "Text"),
        extra={"event_id": _text(head, "EventID")},
    )
    body = _child(root, "Body")
    if title.startswith(TYPHOON_TITLE_PREFIX):
        typhoon = _parse_typhoon(body, where) if body is not None and info_type != "取消" else None
        return WarningReport(items=[], report_type="typhoon", format="typhoon", typhoon=typhoon, **common)
    if title in EARTHQUAKE_TITLES:
        from ems.central.jma.seismic import parse_earthquake

        quake = parse_earthquake(head, body, where) if info_type != "取消" else None
        return WarningReport(items=[], report_type="earthquake", format="vxse53" if "震源" in title else "vxse51",
                             earthquake=quake, **common)
    if title.startswith(TSUNAMI_TITLE_PREFIX):
        from ems.central.jma.seismic import parse_tsunami

        tsunami = parse_tsunami(body, where) if body is not None and info_type != "取消" else []
        return WarningReport(items=[], report_type="tsunami", format="vtse41", tsunami=tsunami, **common)
    if title in WARNING_TITLES or title in R06_TITLES:
        skipped: list[str] = []
        items, levelled = _parse_warnings(body, where, skipped) if body is not None else ([], False)
        if title in R06_TITLES:
            fmt, scope = "r06", R06_SCOPES[title[len(R06_PREFIX):-1]]
        else:
            fmt, scope = ("level2026" if levelled else "vpww54" if "Ｈ２７" in title else "vpww53"), None
            items = _levels_from_notice(items, _text(body, "Notice") if body is not None else "")
        return WarningReport(items=items, report_type="warning", format=fmt, scope=scope, skipped=skipped,
                             **common)
    # 地方海上警報, 土砂災害警戒情報, 気象特別警報報知, the R06 集約通報 and 時系列 telegrams, …: not ours.
    raise UnsupportedReportError(f"{where}: report type {title!r} is not read (not a weather-warning, typhoon, "
                                 f"seismic-intensity or tsunami report)")


# -- warnings -------------------------------------------------------------------
def _area_type(warning_type: str) -> str:
    t = warning_type.replace("(", "（").replace(")", "）")
    if t.endswith("（市町村等）"):
        return "municipality"
    if t.endswith("（府県予報区等）"):
        return "prefecture"
    return "region"


def _parse_kind(kind: ET.Element, where: str, at: str) -> WarningKind:
    name = _text(kind, "Name")
    code = _text(kind, "Code")
    status = _text(kind, "Status")
    if not name and code:
        name = _CODE_NAMES.get(code, "")
    if not status and (name or code):
        raise JmaParseError(f"{where}: {at}/Status: missing for kind {name or code!r}")
    level = None
    level_el = next((e for e in kind.iter() if _local(e.tag) == "Level"), None)
    if level_el is not None and (level_el.text or "").strip():
        raw = level_el.text.strip().translate(_FULLWIDTH_DIGITS)
        m = re.search(r"[2-5]", raw)
        if m is None:
            raise JmaParseError(f"{where}: {at}/Level: expected a level 2-5, got {level_el.text.strip()!r}")
        level = int(m.group(0))
    else:
        m = _LEVEL_IN_NAME.search(name.translate(_FULLWIDTH_DIGITS))
        if m:
            level = int(m.group(1))
    return WarningKind(code=code, name=name, status=status, level=level, category=category_of(name),
                       severity=severity_of(name, level))


def _parse_warnings(body: ET.Element, where: str, skipped: list[str]) -> tuple[list[AreaWarning], bool]:
    """Items of every Warning block; an item whose area code is missing or not a number is left out (and
    named in ``skipped``): JMA's own samples carry placeholders such as 26xxxx, and one bad item must not
    hide the warnings of every other area.  Returns the items and whether any kind carried a level."""
    items: list[AreaWarning] = []
    levelled = False
    for w_index, warning in enumerate(_children(body, "Warning"), start=1):
        wtype = warning.get("type", "")
        area_type = _area_type(wtype)
        w_at = f"Body/Warning[{w_index}]" + (f"[@type={wtype!r}]" if wtype else "")
        for i_index, item in enumerate(_children(warning, "Item"), start=1):
            at = f"{w_at}/Item[{i_index}]"
            kinds = [_parse_kind(k, where, f"{at}/Kind[{k_index}]")
                     for k_index, k in enumerate(_children(item, "Kind"), start=1)]
            levelled = levelled or any(k.level is not None for k in kinds)
            areas = list(_children(item, "Area"))
            for holder in _children(item, "Areas"):
                areas.extend(_children(holder, "Area"))
            if not areas:
                skipped.append(f"{at}/Area: missing")
                continue
            for area in areas:
                code = _text(area, "Code")
                if not code or not code.isdigit():
                    skipped.append(f"{at}/Area/Code: " + (f"not a numeric area code: {code!r}" if code else "missing"))
                    continue
                items.append(AreaWarning(area_code=code, area_name=_text(area, "Name"), kinds=kinds,
                                         area_type=area_type))  # type: ignore[arg-type]
    if skipped:
        import logging

        logging.getLogger(__name__).warning("JMA %s: %d item(s) skipped: %s", where, len(skipped), "; ".join(skipped[:3]))
    return items, levelled


_NOTICE_LINE = re.compile(r"〈(レベル[2-5２-５][^〉]*)〉([^〈\n]*)")


def _levels_from_notice(items: list[AreaWarning], notice: str) -> list[AreaWarning]:
    """The present-format telegrams (VPWW53/54) name kinds without a level since 2026, but list the
    危険警報 in Body/Notice: "〈レベル４大雨危険警報〉姫路市　たつの市　多可町＊" (＊: part of the municipality).
    The matching kind of those municipalities gets that name and level, so ``min_level`` sees it."""
    if not notice:
        return items
    levelled: dict[str, tuple[str, int]] = {}  # "area name|category" -> (kind name, level)
    for name, places in _NOTICE_LINE.findall(notice):
        level = int(_LEVEL_IN_NAME.search(name.translate(_FULLWIDTH_DIGITS)).group(1))  # type: ignore[union-attr]
        category = category_of(name)
        for place in places.replace("\u3000", " ").split():
            place = place.rstrip("＊*")
            levelled[f"{place}|{category}"] = (name, level)
            if category == "landslide":
                # The present format has no landslide kind: it is 大雨警報（土砂災害）, so the heavy-rain kind
                # carries the higher of the two levels.
                key = f"{place}|heavy_rain"
                if key not in levelled or levelled[key][1] < level:
                    levelled[key] = (name, level)
    if not levelled:
        return items
    out = []
    for item in items:
        kinds = item.kinds
        if item.area_type == "municipality":
            kinds = []
            for k in item.kinds:
                hit = levelled.get(f"{item.area_name}|{k.category}")
                if hit is not None and k.severity == "warning" and k.in_force:
                    k = replace(k, name=hit[0], level=hit[1], severity=severity_of(hit[0], hit[1]))  # type: ignore[arg-type]
                kinds.append(k)
        out.append(replace(item, kinds=kinds))
    return out


# -- typhoon --------------------------------------------------------------------
def _coord(text: str, where: str, at: str) -> tuple[float, float]:
    m = _COORD.match(text.strip())
    if m is None:
        raise JmaParseError(f"{where}: {at}: not a coordinate like '+35.5+134.2/': {text!r}")
    return float(m.group(1)), float(m.group(2))


def _radius_km(axis: ET.Element) -> float | None:
    """The radius [km] of one Axis: the km value when given, else the nautical-mile one converted."""
    km = nm = None
    for r in axis:
        if _local(r.tag) != "Radius" or not (r.text or "").strip():
            continue
        try:
            value = float(r.text.strip())
        except ValueError:
            continue
        if r.get("unit") == "海里":
            nm = value * 1.852
        else:
            km = value
    return km if km is not None else nm


def _axes(el: ET.Element | None) -> list[tuple[str, float]]:
    """(direction name, "" for 全域; radius [km]) for every Axis under ``el``."""
    if el is None:
        return []
    out = []
    for axis in (a for a in el.iter() if _local(a.tag) == "Axis"):
        radius = _radius_km(axis)
        if radius is None:
            continue
        direction = next((d for d in axis if _local(d.tag) == "Direction"), None)
        name = "" if direction is None or direction.get("condition") == "全域" else (direction.text or "").strip()
        out.append((name, radius))
    return out


def _max_radius(el: ET.Element | None) -> float | None:
    """Largest radius [km] under ``el`` (JMA gives one per direction, or one for 全域)."""
    radii = [r for _, r in _axes(el)]
    return max(radii) if radii else None


def _parse_typhoon(body: ET.Element, where: str) -> TyphoonInfo:
    infos = next((m for m in _children(body, "MeteorologicalInfos") if m.get("type", "") == "台風情報"), None)
    if infos is None:
        raise JmaParseError(f"{where}: Body/MeteorologicalInfos[@type='台風情報']: missing")
    number = name = tclass = ""
    positions: list[TyphoonPosition] = []
    for index, info in enumerate(_children(infos, "MeteorologicalInfo"), start=1):
        at = f"Body/MeteorologicalInfos/MeteorologicalInfo[{index}]"
        dt_el = _child(info, "DateTime")
        valid = _parse_time(_text(dt_el), where, f"{at}/DateTime")
        kind_label = (dt_el.get("type", "") if dt_el is not None else "") or "実況"
        center = None
        circle = None
        storm_axes: list[tuple[str, float]] = []
        for el in info.iter():
            local = _local(el.tag)
            if local == "TyphoonNamePart":
                name = name or _text(el, "Name") or _text(el, "NameKana")
                number = number or _text(el, "Number")
            elif local == "TyphoonClass":
                tclass = tclass or (el.text or "").strip()
            elif local == "CenterPart":
                for c in el.iter():
                    if _local(c.tag) in ("Coordinate", "BasePoint") and "度" in c.get("type", "") and (c.text or "").strip():
                        center = _coord(c.text, where, f"{at}/CenterPart/{_local(c.tag)}")
                        break
                circle = _max_radius(next((c for c in el.iter() if _local(c.tag) == "ProbabilityCircle"), None))
            elif local == "WarningAreaPart" and el.get("type") in ("暴風域", "暴風警戒域"):
                storm_axes.extend(_axes(el))
        if center is None:
            raise JmaParseError(f"{where}: {at}/…/CenterPart: no centre position")
        storm = max((r for _, r in storm_axes), default=None)
        positions.append(TyphoonPosition(valid_time=valid, kind=kind_label, lat=center[0], lon=center[1],
                                         circle_radius_km=circle, storm_radius_km=storm,
                                         storm_circle=circle_from_axes(center[0], center[1], storm_axes)))
    if not positions:
        raise JmaParseError(f"{where}: Body/MeteorologicalInfos/MeteorologicalInfo: none found")
    positions.sort(key=lambda p: p.valid_time)
    return TyphoonInfo(number=number, name=name, typhoon_class=tclass, positions=positions)
