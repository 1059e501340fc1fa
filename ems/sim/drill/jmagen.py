"""Write JMA warning reports for a drill: the present format (VPWW53) and the 2026 format (VPWW55-61).

The files follow the structure of JMA's telegrams (samples and delivered
telegrams in ``tests/central/jma/samples``, origins in their README).  The 2026
format ("level2026" here) sends one telegram per hazard, titled
気象警報・注意報（Ｒ０６）（大雨） etc., with the level in the kind name.  They are written into the folder the
central service's JMA poller reads, as JMA's feed would deliver them: the
poller, the trigger and the disaster switch then run exactly as for a real
warning.  ``Control/Status`` is 訓練 (drill): a real central service ignores such a
telegram, so a drill file that strays into a real feed folder switches no real
hall; the drill's own central service is built to act on them
(:mod:`ems.sim.central_server`).  Earthquake (VXSE53) and typhoon (VPTW60)
telegrams are written the same way (:func:`earthquake_report_xml`,
:func:`typhoon_report_xml`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

from ems.atomicfile import replace_atomically

JST = timezone(timedelta(hours=9), "JST")
#: Control/Status of every telegram a drill writes.
DRILL_STATUS = "訓練"


def _report_start(title: str, utc: str, editorial: str = "気象庁本庁", publishing: str = "気象庁") -> str:
    """The ``<Report>`` start tag and its ``<Control>`` block, always marked as a drill (``DRILL_STATUS``):
    a generated telegram must never switch a real hall.  ``utc``: Control/DateTime text."""
    return f"""<Report xmlns="http://xml.kishou.go.jp/jmaxml1/" xmlns:jmx="http://xml.kishou.go.jp/jmaxml1/">
<Control>
<Title>{escape(title)}</Title>
<DateTime>{utc}</DateTime>
<Status>{DRILL_STATUS}</Status>
<EditorialOffice>{escape(editorial)}</EditorialOffice>
<PublishingOffice>{escape(publishing)}</PublishingOffice>
</Control>"""


#: kind → (name, code) in the present format.
PRESENT_KINDS = {"storm": ("暴風警報", "05"), "heavy_rain": ("大雨警報", "03"),
                 "storm_surge": ("高潮警報", "08"), "heavy_snow": ("大雪警報", "06")}
#: kind → (name, code, level) in the 2026 level-based format (storm keeps its present name: no level).
LEVEL_KINDS = {"storm": ("暴風警報", "05", None), "heavy_rain": ("レベル４大雨危険警報", "43", 4),
               "storm_surge": ("レベル４高潮危険警報", "48", 4), "heavy_snow": ("大雪警報", "06", None)}
FORMATS = ("current", "level2026")
TITLES = {"current": "気象特別警報・警報・注意報"}
#: kind → hazard of its 2026-format telegram (気象警報・注意報（Ｒ０６）（<hazard>）).
R06_HAZARD = {"storm": "暴風", "heavy_rain": "大雨", "storm_surge": "高潮", "heavy_snow": "大雪"}


def _kind_xml(name: str, code: str, level: int | None) -> str:
    # The level is in the name (レベル４大雨危険警報), as JMA sends it: there is no Level element.
    return f"<Kind><Name>{escape(name)}</Name><Code>{code}</Code><Status>発表</Status></Kind>"


def warning_report_xml(issued_at: datetime, areas: Sequence[tuple[str, str]], kinds: Iterable[str],
                       fmt: str = "current", office: str = "鳥取地方気象台", prefecture: str = "鳥取県") -> str:
    """One warning report: ``kinds`` (storm, heavy_rain, storm_surge, heavy_snow) issued for each
    (area code, area name) in ``areas`` at ``issued_at`` (tz-aware); ``fmt`` current | level2026."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be timezone-aware")
    table = {k: (*PRESENT_KINDS[k], None) for k in PRESENT_KINDS} if fmt == "current" else LEVEL_KINDS
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in table]
    if unknown or not kinds:
        raise ValueError(f"kinds must be among {', '.join(table)}, got {kinds}")
    if fmt == "level2026" and len(kinds) != 1:
        raise ValueError(f"the 2026 format sends one hazard per telegram, got {kinds}: use warning_reports_xml")
    title = TITLES["current"] if fmt == "current" else f"気象警報・注意報（Ｒ０６）（{R06_HAZARD[kinds[0]]}）"
    kinds_xml = "".join(_kind_xml(*table[k]) for k in kinds)
    utc = issued_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    local = issued_at.astimezone(JST).strftime("%Y-%m-%dT%H:%M:00+09:00")
    items = "\n".join(
        f"<Item>{kinds_xml}<Area><Name>{escape(name)}</Name><Code>{code}</Code></Area>"
        "<ChangeStatus>警報・注意報種別に変化有</ChangeStatus><FullStatus>一部</FullStatus>"
        "<EditingMark>0</EditingMark></Item>"
        for code, name in areas)
    version = "1.1_1" if fmt == "current" else "2.0_0"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
{_report_start(title, utc, office, office)}
<Head xmlns="http://xml.kishou.go.jp/jmaxml1/informationBasis1/">
<Title>{escape(prefecture)}気象警報・注意報</Title>
<ReportDateTime>{local}</ReportDateTime>
<TargetDateTime>{local}</TargetDateTime>
<EventID/>
<InfoType>発表</InfoType>
<Serial/>
<InfoKind>気象警報・注意報</InfoKind>
<InfoKindVersion>{version}</InfoKindVersion>
<Headline><Text>暴風や大雨に警戒してください。（訓練シナリオで生成）</Text></Headline>
</Head>
<Body xmlns="http://xml.kishou.go.jp/jmaxml1/body/meteorology1/">
<Warning type="気象警報・注意報（市町村等）">
{items}
</Warning>
</Body>
</Report>
"""


def warning_reports_xml(issued_at: datetime, areas: Sequence[tuple[str, str]], kinds: Iterable[str],
                        fmt: str = "current", **kw: str) -> list[str]:
    """The telegrams JMA would send for ``kinds``: one in the present format, one per hazard in the 2026 format."""
    kinds = list(dict.fromkeys(kinds))
    if fmt == "level2026":
        return [warning_report_xml(issued_at, areas, [k], fmt, **kw) for k in kinds]
    return [warning_report_xml(issued_at, areas, kinds, fmt, **kw)]


def _times(t: datetime) -> tuple[str, str]:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return (t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            t.astimezone(JST).strftime("%Y-%m-%dT%H:%M:00+09:00"))


#: 地震情報／細分区域 names of the codes the example fleet uses (others are written as their code).
SEISMIC_AREA_NAMES = {"560": "鳥取県東部", "562": "鳥取県中部", "563": "鳥取県西部"}


def earthquake_report_xml(origin: datetime, cities: Sequence[tuple[str, str, str, str | None]], magnitude: float,
                          epicentre: str, lat: float, lon: float, depth_km: float,
                          issued_after_s: float = 120.0) -> str:
    """A 震源・震度に関する情報 (VXSE53) as JMA sends it: ``cities`` = (7-digit municipality code of the
    warning area, city name, JMA intensity "1"…"7" / "5弱" …, seismic area code or None) — the city code
    written is the municipality's first five digits + "00", as in JMA's telegrams; origin time (aware),
    magnitude, epicentre name and position [°, km]; issued ``issued_after_s`` [s] after the origin."""
    from ems.central.jma.models import INTENSITIES
    from ems.central.jma.seismic import intensity_code

    if not cities:
        raise ValueError("an intensity report needs at least one city")
    rows = []
    for code, name, raw, area in cities:
        level = intensity_code(str(raw))
        if level is None:
            raise ValueError(f"intensity must be a JMA seismic intensity (1-7, 5弱…6強), got {raw!r}")
        if not (len(code) == 7 and code.isdigit()):
            raise ValueError(f"city code must be 7 digits, got {code!r}")
        rows.append((code[:5] + "00", name, level, area or "999"))
    utc, local = _times(origin + timedelta(seconds=issued_after_s))
    origin_local = _times(origin)[1]
    top = max((r[2] for r in rows), key=INTENSITIES.index)
    prefs: dict[str, dict[str, list]] = {}
    for city, name, level, area in rows:
        prefs.setdefault(city[:2], {}).setdefault(area, []).append((city, name, level))

    def mx(levels):
        return max(levels, key=INTENSITIES.index)

    body = []
    for pref, areas in prefs.items():
        pref_max = mx([lv for cs in areas.values() for _, _, lv in cs])
        parts = [f"<Pref><Name>都道府県{pref}</Name><Code>{pref}</Code><MaxInt>{pref_max}</MaxInt>"]
        for area, cs in areas.items():
            parts.append(f"<Area><Name>{escape(SEISMIC_AREA_NAMES.get(area, '細分区域' + area))}</Name>"
                         f"<Code>{area}</Code><MaxInt>{mx([lv for _, _, lv in cs])}</MaxInt>")
            parts += [f"<City><Name>{escape(n)}</Name><Code>{c}</Code><MaxInt>{lv}</MaxInt></City>" for c, n, lv in cs]
            parts.append("</Area>")
        parts.append("</Pref>")
        body.append("".join(parts))
    event_id = origin.astimezone(JST).strftime("%Y%m%d%H%M%S")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
{_report_start("震源・震度に関する情報", utc)}
<Head xmlns="http://xml.kishou.go.jp/jmaxml1/informationBasis1/">
<Title>震源・震度情報</Title>
<ReportDateTime>{local}</ReportDateTime>
<TargetDateTime>{origin_local}</TargetDateTime>
<EventID>{event_id}</EventID>
<InfoType>発表</InfoType>
<Serial>1</Serial>
<InfoKind>地震情報</InfoKind>
<InfoKindVersion>1.0_1</InfoKindVersion>
<Headline><Text>地震がありました。（訓練シナリオで生成）</Text></Headline>
</Head>
<Body xmlns="http://xml.kishou.go.jp/jmaxml1/body/seismology1/" xmlns:jmx_eb="http://xml.kishou.go.jp/jmaxml1/elementBasis1/">
<Earthquake>
<OriginTime>{origin_local}</OriginTime>
<ArrivalTime>{origin_local}</ArrivalTime>
<Hypocenter><Area><Name>{escape(epicentre)}</Name><Code type="震央地名">999</Code>
<jmx_eb:Coordinate description="drill">{lat:+.1f}{lon:+.1f}-{int(round(depth_km * 1000))}/</jmx_eb:Coordinate>
</Area></Hypocenter>
<jmx_eb:Magnitude type="Mj" description="M{magnitude:.1f}">{magnitude:.1f}</jmx_eb:Magnitude>
</Earthquake>
<Intensity><Observation>
<MaxInt>{top}</MaxInt>
{"".join(body)}
</Observation></Intensity>
</Body>
</Report>
"""


def typhoon_report_xml(issued_at: datetime, number: str, name: str,
                       positions: Sequence[tuple[float, float, float, float]]) -> str:
    """A 台風解析・予報情報（５日予報）（Ｈ３０） (VPTW60) as JMA sends it: ``positions`` = (hours after
    ``issued_at``'s hour, lat [°], lon [°], radius [km]); the first (0 h) is the analysis with its storm area
    (暴風域), the others forecasts with their storm-warning areas (暴風警戒域)."""
    if not positions or positions[0][0] != 0:
        raise ValueError("positions must start with the analysis at 0 h")
    if not (len(number) == 4 and number.isdigit()):
        raise ValueError(f"typhoon number must be 4 digits (year + number, e.g. 2614), got {number!r}")
    utc, local = _times(issued_at)
    base = issued_at.replace(minute=0, second=0, microsecond=0)
    infos = []
    for after_h, lat, lon, radius in positions:
        if radius <= 0:
            raise ValueError(f"radius must be > 0 km, got {radius}")
        t = _times(base + timedelta(hours=after_h))[1]
        label = "実況" if after_h == 0 else f"予報　{int(after_h)}時間後"
        center = (f'<jmx_eb:Coordinate type="中心位置（度）">{lat:+.1f}{lon:+.1f}/</jmx_eb:Coordinate>' if after_h == 0
                  else f'<ProbabilityCircle type="予報円"><jmx_eb:BasePoint type="中心位置（度）">{lat:+.1f}{lon:+.1f}/'
                       f'</jmx_eb:BasePoint></ProbabilityCircle>')
        area = "暴風域" if after_h == 0 else "暴風警戒域"
        infos.append(f"""<MeteorologicalInfo>
<DateTime type="{label}">{t}</DateTime>
<Item>
<Kind><Property><Type>呼称</Type><TyphoonNamePart><Name>{escape(name)}</Name><Number>{number}</Number></TyphoonNamePart></Property></Kind>
<Kind><Property><Type>階級</Type><ClassPart><jmx_eb:TyphoonClass type="熱帯擾乱種類">台風(TY)</jmx_eb:TyphoonClass></ClassPart></Property></Kind>
<Kind><Property><Type>中心</Type><CenterPart>{center}</CenterPart></Property></Kind>
<Kind><Property><Type>風</Type><WarningAreaPart type="{area}"><jmx_eb:Circle><jmx_eb:Axes><jmx_eb:Axis>
<jmx_eb:Direction description="全域" condition="全域" unit="８方位漢字" type="方向"/>
<jmx_eb:Radius unit="km" type="半径">{radius:g}</jmx_eb:Radius>
</jmx_eb:Axis></jmx_eb:Axes></jmx_eb:Circle></WarningAreaPart></Property></Kind>
</Item>
</MeteorologicalInfo>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
{_report_start("台風解析・予報情報（５日予報）（Ｈ３０）", utc)}
<Head xmlns="http://xml.kishou.go.jp/jmaxml1/informationBasis1/">
<Title>台風解析・予報情報</Title>
<ReportDateTime>{local}</ReportDateTime>
<TargetDateTime>{_times(base)[1]}</TargetDateTime>
<EventID>TC{number}</EventID>
<InfoType>発表</InfoType>
<Serial>1</Serial>
<InfoKind>台風解析・予報情報（５日予報）</InfoKind>
<InfoKindVersion>1.0_2</InfoKindVersion>
<Headline><Text/></Headline>
</Head>
<Body xmlns="http://xml.kishou.go.jp/jmaxml1/body/meteorology1/" xmlns:jmx_eb="http://xml.kishou.go.jp/jmaxml1/elementBasis1/">
<MeteorologicalInfos type="台風情報">
{"".join(infos)}
</MeteorologicalInfos>
</Body>
</Report>
"""


def write_report(folder: Path, name: str, xml: str) -> Path:
    """Write ``xml`` to ``folder/name`` atomically (the poller never sees half a file: the temp file is
    ``.<name>.*.tmp``, which its ``*.xml`` glob skips).  Not fsynced: a drill report need not survive a power cut."""
    path = folder / name
    replace_atomically(path, xml.encode("utf-8"), durable=False)
    return path
