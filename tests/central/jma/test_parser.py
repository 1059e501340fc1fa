"""parse_report: present formats, the 2026 level format, typhoon reports, and every kind of bad input."""

from datetime import datetime, timezone

import pytest

from ems.central.jma.models import JmaParseError, UnsupportedReportError
from ems.central.jma.parser import category_of, parse_report, severity_of

from .helpers import sample


def kinds_of(report, code):
    [item] = [i for i in report.items if i.area_code == code]
    return {k.name: k for k in item.kinds}


def test_vpww53_issued():
    r = parse_report(sample("vpww53_tottori_issued.xml"), entry_id="urn:e1")
    assert (r.entry_id, r.title, r.info_type, r.format, r.report_type) == (
        "urn:e1", "気象特別警報・警報・注意報", "発表", "vpww53", "warning")
    assert r.report_time == datetime(2026, 9, 14, 20, 39, tzinfo=timezone.utc)
    assert r.operational and r.publishing_office == "鳥取地方気象台" and "土砂災害" in r.headline
    municipal = [i for i in r.items if i.area_type == "municipality"]
    assert [i.area_code for i in municipal] == ["3120100", "3130200", "3120200", "3120400"]
    tottori = kinds_of(r, "3120100")
    rain = tottori["大雨警報"]
    assert (rain.code, rain.status, rain.level, rain.category, rain.severity) == ("03", "発表", None, "heavy_rain", "warning")
    assert rain.in_force and not rain.cancelled
    assert tottori["雷注意報"].category == "other" and tottori["雷注意報"].severity == "advisory"
    assert kinds_of(r, "3130200")["暴風警報"].category == "storm"
    [nothing] = [i for i in r.items if i.area_code == "3120400"][0].kinds
    assert nothing.status == "発表警報・注意報はなし" and not nothing.in_force and nothing.category == "none"
    [pref] = [i for i in r.items if i.area_type == "prefecture"]
    assert pref.area_code == "310000" and pref.area_name == "鳥取県"
    assert {i.area_type for i in r.items} == {"municipality", "prefecture", "region"}


def test_entry_id_defaults_to_content_hash():
    a = parse_report(sample("vpww53_tottori_issued.xml"))
    assert a.entry_id.startswith("sha256:") and a.entry_id == parse_report(sample("vpww53_tottori_issued.xml")).entry_id
    assert a.entry_id != parse_report(sample("vpww53_tottori_continuing.xml")).entry_id


def test_vpww53_lifted():
    r = parse_report(sample("vpww53_tottori_lifted.xml"))
    iwami = kinds_of(r, "3130200")
    assert iwami["暴風警報"].cancelled and not iwami["暴風警報"].in_force
    down = kinds_of(r, "3120100")["大雨注意報"]
    assert down.status == "警報から注意報" and down.in_force and down.severity == "advisory"


def test_vpww54_storm_surge_ignores_time_series():
    r = parse_report(sample("vpww54_sakaiminato_storm_surge.xml"))
    assert r.format == "vpww54" and r.title == "気象警報・注意報（Ｈ２７）"
    assert [i.area_code for i in r.items] == ["3120400", "3120200"]
    surge = kinds_of(r, "3120400")["高潮警報"]
    assert (surge.category, surge.severity, surge.status) == ("storm_surge", "warning", "発表")
    assert kinds_of(r, "3120400")["強風注意報"].category == "storm"


def test_prefecture_only_report():
    r = parse_report(sample("prefecture_wide_snow.xml"))
    assert [(i.area_type, i.area_code) for i in r.items] == [("prefecture", "310000")]
    assert {k.category for k in r.items[0].kinds} == {"storm", "heavy_snow"}


def test_withdrawn_and_drill():
    w = parse_report(sample("vpww53_tottori_withdrawn.xml"))
    assert w.info_type == "取消" and w.items == []
    d = parse_report(sample("vpww53_tottori_drill.xml"))
    assert d.control_status == "訓練" and not d.operational


def test_typhoon():
    r = parse_report(sample("typhoon_approach.xml"))
    assert r.report_type == "typhoon" and r.items == [] and r.typhoon is not None
    t = r.typhoon
    assert (t.number, t.name, t.typhoon_class) == ("2614", "NANMADOL", "台風（ＴＹ）")
    assert [p.kind for p in t.positions] == ["実況", "予報 12時間", "予報 24時間"]
    now, f12, _ = t.positions
    assert (now.lat, now.lon, now.storm_radius_km, now.circle_radius_km) == (31.0, 133.0, 170.0, None)
    assert (f12.lat, f12.lon, f12.circle_radius_km, f12.storm_radius_km) == (34.0, 133.6, 60.0, 230.0)
    assert f12.valid_time == datetime(2026, 9, 15, 9, 0, tzinfo=timezone.utc)
    gone = parse_report(sample("typhoon_gone.xml")).typhoon
    assert gone.positions[-1].storm_radius_km is None


@pytest.mark.parametrize("name, words", [
    ("bad_truncated.xml", "not well-formed"),
    ("bad_entity.xml", "DOCTYPE"),
])
def test_bad_files_name_file_and_element(name, words):
    with pytest.raises(JmaParseError) as info:
        parse_report(sample(name), source=f"samples/{name}")
    assert str(info.value).startswith(f"samples/{name}: ") and words in str(info.value)


def test_unsupported_report_type():
    # 地方海上警報 (JMA's sample VPCU51) has 警報 in its title but is no weather warning for a hall.
    with pytest.raises(UnsupportedReportError, match="地方海上警報"):
        parse_report(sample("jma_13_09_01_200630_VPCU51.xml"), entry_id="urn:marine")


def test_an_item_without_a_usable_area_code_is_skipped_not_the_report():
    r = parse_report(sample("bad_missing_area_code.xml"), source="samples/bad_missing_area_code.xml")
    assert r.skipped == ["Body/Warning[4][@type='気象警報・注意報（市町村等）']/Item[2]/Area/Code: missing"]
    assert "3120100" in {i.area_code for i in r.items}


def _doc(control="<Title>気象特別警報・警報・注意報</Title><Status>通常</Status>",
         head="<ReportDateTime>2026-09-15T05:39:00+09:00</ReportDateTime><InfoType>発表</InfoType>",
         body="<Body xmlns='http://xml.kishou.go.jp/jmaxml1/body/meteorology1/'/>", root="Report"):
    return (f"<{root} xmlns='http://xml.kishou.go.jp/jmaxml1/'><Control>{control}</Control>"
            f"<Head xmlns='http://xml.kishou.go.jp/jmaxml1/informationBasis1/'>{head}</Head>{body}</{root}>").encode()


@pytest.mark.parametrize("xml, words", [
    (b"", "empty"),
    (b"   \n", "empty"),
    ("<Report>".encode("utf-16"), "not UTF-8"),
    (b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "expected <Report>"),
    (_doc(control="<Status>通常</Status>"), "Report/Control/Title: missing"),
    (_doc(head="<ReportDateTime>2026-09-15T05:39:00+09:00</ReportDateTime>"), "Report/Head/InfoType: missing"),
    (_doc(head="<InfoType>発表</InfoType>"), "Report/Head/ReportDateTime: missing"),
    (_doc(head="<ReportDateTime>yesterday</ReportDateTime><InfoType>発表</InfoType>"), "not an ISO 8601 time"),
    (b"<Report xmlns='http://xml.kishou.go.jp/jmaxml1/'><Head/></Report>", "Report/Control: missing"),
    (_doc(body="<Body><Warning type='気象警報・注意報（市町村等）'><Item><Kind><Name>大雨警報</Name></Kind>"
               "<Area><Code>3120100</Code></Area></Item></Warning></Body>"), "Kind[1]/Status: missing"),
    (_doc(body="<Body><Warning type='気象警報・注意報（市町村等）'><Item><Kind><Name>大雨警報</Name>"
               "<Status>発表</Status><Level>high</Level></Kind><Area><Code>3120100</Code></Area></Item></Warning>"
               "</Body>"), "Level: expected a level 2-5"),
    (_doc(control="<Title>台風解析・予報情報（５日予報）（Ｈ３０）</Title>", body="<Body/>"), "台風情報']: missing"),
])
def test_malformed_documents(xml, words):
    with pytest.raises(JmaParseError, match=None) as info:
        parse_report(xml, entry_id="urn:test:1")
    assert words in str(info.value) and str(info.value).startswith("urn:test:1: ")


def test_oversized_document_is_refused(monkeypatch):
    from ems.central.jma import parser

    monkeypatch.setattr(parser, "MAX_BYTES", 1000)
    with pytest.raises(JmaParseError, match="larger than"):
        parse_report(sample("vpww53_tottori_issued.xml"))


def test_non_bytes_input():
    with pytest.raises(JmaParseError, match="expected bytes"):
        parse_report("<Report/>")  # type: ignore[arg-type]


def test_unknown_elements_and_other_namespace_versions_are_tolerated():
    xml = sample("vpww53_tottori_issued.xml").replace(
        b"body/meteorology1/", b"body/meteorology2/").replace(
        b"<EditingMark>0</EditingMark>", b"<EditingMark>0</EditingMark><NewThing a='1'><X/></NewThing>")
    r = parse_report(xml)
    assert kinds_of(r, "3120100")["大雨警報"].in_force


def test_kind_with_only_a_code_gets_its_name():
    xml = _doc(body="<Body><Warning type='気象警報・注意報（市町村等）'><Item><Kind><Code>05</Code>"
                    "<Status>発表</Status></Kind><Area><Code>3120100</Code></Area></Item></Warning></Body>")
    [item] = parse_report(xml).items
    assert item.kinds[0].name == "暴風警報" and item.kinds[0].category == "storm"


@pytest.mark.parametrize("name, category, severity", [
    ("暴風雪警報", "storm", "warning"), ("暴風特別警報", "storm", "emergency"), ("強風注意報", "storm", "advisory"),
    ("風雪注意報", "storm", "advisory"), ("大雨警報", "heavy_rain", "warning"), ("高潮特別警報", "storm_surge", "emergency"),
    ("大雪注意報", "heavy_snow", "advisory"), ("洪水警報", "flood", "warning"), ("レベル４氾濫危険警報", "flood", "danger"),
    ("レベル４土砂災害危険警報", "landslide", "danger"), ("波浪警報", "waves", "warning"), ("雷注意報", "other", "advisory"),
    ("", "none", "none"),
])
def test_category_and_severity(name, category, severity):
    assert category_of(name) == category and severity_of(name, None) == severity


def test_severity_from_level_when_name_is_unclear():
    assert severity_of("大雨", 4) == "danger" and severity_of("大雨", None) == "none"
