"""WarningTrigger against the shipped 14-hall Tottori fleet and the sample reports."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ems.config import load_fleet
from ems.central.jma.parser import parse_report
from ems.central.jma.trigger import SuggestReturn, SwitchToDisaster, WarningTrigger, distance_km

from .helpers import sample

ROOT = Path(__file__).resolve().parents[3]
# hall-01, hall-02: 鳥取市 3120100; hall-03/04: 米子市; hall-05: 倉吉市; hall-06: 境港市; hall-07: 岩美町;
# hall-10: 八頭町; all in Tottori prefecture (31…).


@pytest.fixture(scope="module")
def sites():
    return load_fleet(ROOT / "config" / "fleet.yaml").sites


def report(name, entry=None):
    return parse_report(sample(name), entry_id=entry or f"urn:{name}")


def switched(actions):
    return {a.site_id for a in actions if isinstance(a, SwitchToDisaster)}


def suggested(actions):
    return {a.site_id for a in actions if isinstance(a, SuggestReturn)}


def test_issued_warnings_switch_exactly_the_municipalities(sites):
    t = WarningTrigger(sites)
    actions = t.evaluate(report("vpww53_tottori_issued.xml", "urn:jma:1"))
    assert switched(actions) == {"hall-01", "hall-02", "hall-07"}  # not 米子市 (advisory) nor the rest
    assert not suggested(actions)
    a = next(a for a in actions if a.site_id == "hall-01")
    assert a.source_entry == "urn:jma:1" and a.kinds == ("heavy_rain",)
    assert "大雨警報" in a.reason and "鳥取市 (3120100)" in a.reason and "鳥取地方気象台" in a.reason
    assert "2026-09-15 05:39 JST" in a.reason
    assert next(a for a in actions if a.site_id == "hall-07").kinds == ("storm",)
    assert t.active() == {"hall-01": {"heavy_rain"}, "hall-02": {"heavy_rain"}, "hall-07": {"storm"}}


def test_only_configured_kinds(sites):
    assert switched(WarningTrigger(sites, kinds={"storm"}).evaluate(report("vpww53_tottori_issued.xml"))) == {"hall-07"}
    assert switched(WarningTrigger(sites, kinds={"storm_surge"}).evaluate(report("vpww53_tottori_issued.xml"))) == set()


def test_continuing_warning_does_not_switch_again(sites):
    t = WarningTrigger(sites)
    t.evaluate(report("vpww53_tottori_issued.xml"))
    assert t.evaluate(report("vpww53_tottori_continuing.xml")) == []
    # A fresh process (restart) sees the warning in force and switches once.
    assert switched(WarningTrigger(sites).evaluate(report("vpww53_tottori_continuing.xml"))) == {
        "hall-01", "hall-02", "hall-07"}


def test_a_new_kind_switches_again(sites):
    t = WarningTrigger(sites)
    t.evaluate(report("vpww53_tottori_issued.xml"))
    more = sample("vpww53_tottori_continuing.xml").replace(
        "<Kind><Name>雷注意報</Name><Code>14</Code><Status>継続</Status></Kind>".encode(),
        "<Kind><Name>暴風警報</Name><Code>05</Code><Status>発表</Status></Kind>".encode())
    actions = t.evaluate(parse_report(more, entry_id="urn:more"))
    assert switched(actions) == {"hall-01", "hall-02"} and actions[0].kinds == ("storm",)


def test_lifted_warnings_only_suggest_return(sites):
    t = WarningTrigger(sites)
    t.evaluate(report("vpww53_tottori_issued.xml"))
    actions = t.evaluate(report("vpww53_tottori_lifted.xml", "urn:lifted"))
    assert not switched(actions)
    assert suggested(actions) == {"hall-01", "hall-02", "hall-07"}
    a = next(a for a in actions if a.site_id == "hall-07")
    assert "暴風警報（解除）" in a.reason and a.source_entry == "urn:lifted"
    assert "警報から注意報" in next(a for a in actions if a.site_id == "hall-01").reason
    assert t.active() == {}


def test_lifted_after_a_restart_still_suggests(sites):
    assert suggested(WarningTrigger(sites).evaluate(report("vpww53_tottori_lifted.xml"))) == {
        "hall-01", "hall-02", "hall-07"}


def test_no_suggestion_while_another_kind_holds_the_hall(sites):
    t = WarningTrigger(sites)
    t.evaluate(report("vpww53_tottori_issued.xml"))
    lifted_but_storm = sample("vpww53_tottori_lifted.xml").replace(
        "<Kind><Name>雷注意報</Name><Code>14</Code><Status>継続</Status></Kind>".encode(),
        "<Kind><Name>暴風警報</Name><Code>05</Code><Status>発表</Status></Kind>".encode())
    actions = t.evaluate(parse_report(lifted_but_storm, entry_id="urn:x"))
    # 鳥取市: heavy rain lifted but a storm warning is new -> switched for storm, no suggestion.
    assert {a.site_id for a in actions if isinstance(a, SwitchToDisaster)} == {"hall-01", "hall-02"}
    assert suggested(actions) == {"hall-07"}


def test_withdrawn_report_suggests_return_for_what_it_switched(sites):
    t = WarningTrigger(sites)
    t.evaluate(report("vpww53_tottori_issued.xml"))
    actions = t.evaluate(report("vpww53_tottori_withdrawn.xml"))
    assert suggested(actions) == {"hall-01", "hall-02", "hall-07"} and not switched(actions)
    assert "取消" in actions[0].reason
    assert WarningTrigger(sites).evaluate(report("vpww53_tottori_withdrawn.xml")) == []


def test_drills_never_switch(sites):
    assert WarningTrigger(sites).evaluate(report("vpww53_tottori_drill.xml")) == []


def test_vpww54_storm_surge(sites):
    assert switched(WarningTrigger(sites).evaluate(report("vpww54_sakaiminato_storm_surge.xml"))) == {"hall-06"}


def test_present_format_min_level(sites):
    # Present-format kinds: 大雨警報 stands for level 3, 暴風警報 has no level (judged by strength alone).
    assert switched(WarningTrigger(sites, min_level=4).evaluate(report("vpww53_tottori_issued.xml"))) == {"hall-07"}
    assert switched(WarningTrigger(sites, min_level=3).evaluate(report("vpww53_tottori_issued.xml"))) == {
        "hall-01", "hall-02", "hall-07"}


def test_prefecture_wide_report_reaches_every_hall(sites):
    actions = WarningTrigger(sites, kinds={"storm"}).evaluate(report("prefecture_wide_snow.xml"))
    assert switched(actions) == {s.id for s in sites}
    assert "鳥取県 (310000)" in actions[0].reason
    assert switched(WarningTrigger(sites, kinds={"heavy_rain"}).evaluate(report("prefecture_wide_snow.xml"))) == set()
    assert len(switched(WarningTrigger(sites, kinds={"heavy_snow"}).evaluate(report("prefecture_wide_snow.xml")))) == 14


def test_other_prefecture_does_not_match(sites):
    other = sample("prefecture_wide_snow.xml").replace(b"<Code>310000</Code>", b"<Code>320000</Code>")
    assert WarningTrigger(sites).evaluate(parse_report(other)) == []


def test_municipality_code_must_match_exactly(sites):
    near = sample("vpww53_tottori_issued.xml").replace(b"<Code>3120100</Code>", b"<Code>3120101</Code>")
    assert switched(WarningTrigger(sites).evaluate(parse_report(near))) == {"hall-07"}


def test_typhoon_approach_and_departure(sites):
    t = WarningTrigger(sites)
    actions = t.evaluate(report("typhoon_approach.xml", "urn:ty1"))
    hit = switched(actions)
    # The +12 h storm-warning area (230 km around 34.0N 133.6E) covers the halls.
    expected = {s.id for s in sites if distance_km(s.lat, s.lon, 34.0, 133.6) <= 230}
    assert hit == expected and len(hit) == 14
    a = actions[0]
    assert a.kinds == ("typhoon",) and "台風第14号" in a.reason and "暴風警戒域" in a.reason
    assert t.evaluate(report("typhoon_approach.xml", "urn:ty1-again")) == []  # already switched
    gone = t.evaluate(report("typhoon_gone.xml", "urn:ty2"))
    assert suggested(gone) == expected and not switched(gone)


def test_typhoon_horizon_and_kind_switch(sites):
    assert WarningTrigger(sites, typhoon_lead_h=6).evaluate(report("typhoon_approach.xml")) == []
    assert WarningTrigger(sites, kinds={"storm", "heavy_rain"}).evaluate(report("typhoon_approach.xml")) == []


def test_typhoon_does_not_release_a_warning(sites):
    t = WarningTrigger(sites)
    t.evaluate(report("vpww53_tottori_issued.xml"))
    t.evaluate(report("typhoon_approach.xml"))
    actions = t.evaluate(report("typhoon_gone.xml"))
    # 鳥取市 and 岩美町 halls are still under warnings: no suggestion for them.
    assert suggested(actions) == {s.id for s in sites} - {"hall-01", "hall-02", "hall-07"}


def test_max_report_age(sites):
    t = WarningTrigger(sites, max_report_age_s=6 * 3600)
    r = report("vpww53_tottori_issued.xml")
    assert t.evaluate(r, now=r.report_time + timedelta(hours=7)) == []
    assert len(t.evaluate(r, now=r.report_time + timedelta(hours=1))) == 3


@pytest.mark.parametrize("kw", [{"kinds": {"tsunami"}}, {"min_level": 1}, {"min_level": 6}])
def test_bad_settings(sites, kw):
    with pytest.raises(ValueError):
        WarningTrigger(sites, **kw)


def test_distance():
    assert distance_km(35.681, 139.767, 34.702, 135.496) == pytest.approx(403, abs=5)  # Tokyo - Osaka stations
    assert distance_km(35.5, 134.2, 35.5, 134.2) == 0


