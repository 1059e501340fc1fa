"""Parse JMA seismic-intensity (VXSE51 震度速報, VXSE53 震源・震度に関する情報) and tsunami (VTSE41) bodies.

Place codes, as JMA's telegrams carry them (checked against delivered telegrams, see
tests/central/jma/samples/README.md):

* ``Pref/Area/Code``: 地震情報／細分区域, 3 digits (鳥取県東部 560, 中部 562, 西部 563).  VXSE51 stops here.
* ``Pref/Area/City/Code``: 気象・地震・火山情報／市町村等, 7 digits = the 5-digit municipality code + "00"
  (鳥取市 3120100, 境港市 3120400) — the same codes as a weather warning's 市町村等, except that warnings
  split a few municipalities into parts with the last two digits (北見市北見 0120801, 北見市常呂 0120802)
  while intensity reports name the whole city (0120800).  A hall's ``area_code`` therefore matches the
  city whose code equals its first five digits + "00".
* Tsunami ``Item/Area/Code``: 津波予報区, 3 digits (鳥取県 540), unrelated to either.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from ems.central.jma.models import INTENSITIES, INTENSITY_NAMES, EarthquakeInfo, IntensityArea, JmaParseError, TsunamiItem
# The parser's element helpers (found by local name, whatever the namespace version); the parser imports this
# module only inside its functions, so there is no import cycle at load time.
from ems.central.jma.parser import _FULLWIDTH_DIGITS as _FULLWIDTH
from ems.central.jma.parser import _child as _kid
from ems.central.jma.parser import _children, _local
from ems.central.jma.parser import _text as _txt

_COORD3 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)(?:([+-]\d+(?:\.\d+)?))?/")


def _kids(el: ET.Element | None, name: str) -> list[ET.Element]:
    return list(_children(el, name)) if el is not None else []


def _time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone(timedelta(hours=9)))
    return t.astimezone(timezone.utc)


def intensity_code(text: str) -> str | None:
    """JMA intensity ("5-", "5弱", "震度５弱", "６強", "7") → one of INTENSITIES; None when not one."""
    t = text.strip().translate(_FULLWIDTH).replace("震度", "").replace("弱", "-").replace("強", "+")
    return t if t in INTENSITIES else None


def checked_intensity(value: object) -> str:
    """:func:`intensity_code` of a configured value; ValueError listing the intensities JMA uses when it
    is not one (the config, the trigger and drill scenarios all check theirs here)."""
    code = intensity_code(str(value))
    if code is None:
        raise ValueError(f"must be a JMA seismic intensity ({', '.join(INTENSITY_NAMES.values())}), got {value!r}")
    return code


def _place(el: ET.Element, level: str, where: str, at: str) -> IntensityArea | None:
    code = _txt(el, "Code")
    if not code.isdigit():
        return None  # a placeholder or missing code: this place cannot be matched to a hall
    raw = _txt(el, "MaxInt")
    condition = _txt(el, "Condition")
    unreported = "５弱以上未入電" in condition or "5弱以上未入電" in condition
    max_int = intensity_code(raw) if raw else None
    if raw and max_int is None:
        raise JmaParseError(f"{where}: {at}/MaxInt: not a seismic intensity: {raw!r}")
    if unreported and (max_int is None or INTENSITIES.index(max_int) < INTENSITIES.index("5-")):
        # A station there has not reported and JMA estimates 5弱 or more (富士市 in JMA's sample: MaxInt 4
        # from the stations that did report): taken as 5弱, on the safe side.
        return IntensityArea(code, _txt(el, "Name"), level, "5-", assumed=True)  # type: ignore[arg-type]
    if max_int is None:
        return None
    return IntensityArea(code, _txt(el, "Name"), level, max_int)  # type: ignore[arg-type]


def parse_earthquake(head: ET.Element, body: ET.Element | None, where: str) -> EarthquakeInfo:
    """The earthquake of a VXSE51/VXSE53 report; JmaParseError naming the element when unreadable."""
    if body is None:
        raise JmaParseError(f"{where}: Report/Body: missing")
    quake = _kid(body, "Earthquake")
    origin = _time(_txt(quake, "OriginTime")) or _time(_txt(head, "TargetDateTime"))
    hypo_area = _kid(_kid(quake, "Hypocenter"), "Area")
    lat = lon = depth = None
    coord = next((c for c in (hypo_area if hypo_area is not None else []) if _local(c.tag) == "Coordinate"), None)
    if coord is not None and (coord.text or "").strip():
        m = _COORD3.match(coord.text.strip())
        if m:
            lat, lon = float(m.group(1)), float(m.group(2))
            depth = abs(float(m.group(3))) / 1000.0 if m.group(3) else None
    magnitude = None
    mag_el = next((c for c in (quake if quake is not None else []) if _local(c.tag) == "Magnitude"), None)
    if mag_el is not None:
        try:
            value = float((mag_el.text or "").strip())
            magnitude = None if value != value else value  # NaN: M不明 / M8を超える巨大地震
        except ValueError:
            magnitude = None
    observation = _kid(_kid(body, "Intensity"), "Observation")
    places: list[IntensityArea] = []
    for p_i, pref in enumerate(_kids(observation, "Pref"), start=1):
        for a_i, area in enumerate(_kids(pref, "Area"), start=1):
            at = f"Body/Intensity/Observation/Pref[{p_i}]/Area[{a_i}]"
            place = _place(area, "area", where, at)
            if place is not None:
                places.append(place)
            for c_i, city in enumerate(_kids(area, "City"), start=1):
                place = _place(city, "city", where, f"{at}/City[{c_i}]")
                if place is not None:
                    places.append(place)
    max_int = intensity_code(_txt(observation, "MaxInt")) or ""
    return EarthquakeInfo(origin_time=origin, hypocenter=_txt(hypo_area, "Name"), lat=lat, lon=lon, depth_km=depth,
                          magnitude=magnitude, max_int=max_int, places=places)


#: VTSE41 Kind codes (警報等情報要素／津波警報・注意報・予報) → grade.
_TSUNAMI_CODES = {
    "52": "major_warning", "53": "major_warning", "51": "warning", "62": "advisory",
    "71": "forecast", "72": "forecast", "73": "forecast", "00": "none", "50": "none", "60": "none",
}


def tsunami_grade(code: str, name: str) -> str:
    """Our grade for a VTSE41 kind: by code, else by name (大津波警報 before 津波警報; 解除 is none)."""
    if code in _TSUNAMI_CODES:
        return _TSUNAMI_CODES[code]
    if "解除" in name or "なし" in name:
        return "none"
    if "大津波警報" in name:
        return "major_warning"
    if "津波警報" in name:
        return "warning"
    if "津波注意報" in name:
        return "advisory"
    return "forecast" if "津波予報" in name else "none"


def parse_tsunami(body: ET.Element, where: str) -> list[TsunamiItem]:
    """Forecast items of a VTSE41 report (Body/Tsunami/Forecast/Item); items without a numeric area code
    are left out."""
    forecast = _kid(_kid(body, "Tsunami"), "Forecast")
    if forecast is None:
        return []  # e.g. 津波予報 with nothing in force: no items
    items = []
    for index, item in enumerate(_kids(forecast, "Item"), start=1):
        area = _kid(item, "Area")
        kind = _kid(_kid(item, "Category"), "Kind")
        code, name = _txt(kind, "Code"), _txt(kind, "Name")
        area_code = _txt(area, "Code")
        if kind is None or not (code or name):
            raise JmaParseError(f"{where}: Body/Tsunami/Forecast/Item[{index}]/Category/Kind: missing")
        if not area_code.isdigit():
            continue
        items.append(TsunamiItem(area_code, _txt(area, "Name"), code, name, tsunami_grade(code, name)))  # type: ignore[arg-type]
    return items
