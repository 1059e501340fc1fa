"""Write JMA warning reports for a drill: the present format (VPWW53) and the 2026 format (VPWW55-61).

The files follow the structure of JMA's telegrams (samples and delivered
telegrams in ``tests/central/jma/samples``, origins in their README).  The 2026
format ("level2026" here) sends one telegram per hazard, titled
気象警報・注意報（Ｒ０６）（大雨） etc., with the level in the kind name.  They are written into the folder the
central service's JMA poller reads, as JMA's feed would deliver them: the
poller, the trigger and the disaster switch then run exactly as for a real
warning.  ``Control/Status`` is 通常 (normal): a 訓練 (drill) report would,
correctly, switch nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

from ems.atomicfile import replace_atomically

JST = timezone(timedelta(hours=9), "JST")

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
<Report xmlns="http://xml.kishou.go.jp/jmaxml1/" xmlns:jmx="http://xml.kishou.go.jp/jmaxml1/">
<Control>
<Title>{title}</Title>
<DateTime>{utc}</DateTime>
<Status>通常</Status>
<EditorialOffice>{escape(office)}</EditorialOffice>
<PublishingOffice>{escape(office)}</PublishingOffice>
</Control>
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


def write_report(folder: Path, name: str, xml: str) -> Path:
    """Write ``xml`` to ``folder/name`` atomically (the poller never sees half a file: the temp file is
    ``.<name>.*.tmp``, which its ``*.xml`` glob skips).  Not fsynced: a drill report need not survive a power cut."""
    path = folder / name
    replace_atomically(path, xml.encode("utf-8"), durable=False)
    return path
