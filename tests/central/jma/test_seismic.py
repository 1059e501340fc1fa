"""Earthquake (VXSE51/VXSE53) and tsunami (VTSE41) triggers, with JMA's samples and delivered telegrams."""

from pathlib import Path

import pytest

from ems.config import load_fleet
from ems.central.jma.parser import parse_report
from ems.central.jma.trigger import SuggestDisaster, SuggestReturn, SwitchToDisaster, WarningTrigger

from .helpers import sample

ROOT = Path(__file__).resolve().parents[3]
SURUGA = "jma_32-35_07_07_240613_VXSE53_trimmed.xml"  # 2009-08-11 05:07 駿河湾 M6.6 (JMA sample, trimmed)
SOKUHO = "jma_32-35_07_04_100915_VXSE51.xml"  # 震度速報 of the same earthquake


@pytest.fixture(scope="module")
def fleet_sites():
    return load_fleet(ROOT / "config" / "fleet.yaml").sites


@pytest.fixture(scope="module")
def halls(fleet_sites):
    base = fleet_sites[0]
    return [base.model_copy(update={"id": "izu", "name": "伊豆", "area_code": "2222200", "seismic_area_code": None,
                                    "lat": 34.97, "lon": 138.95}),
            base.model_copy(update={"id": "fuji", "name": "富士", "area_code": "2221000", "seismic_area_code": None,
                                    "lat": 35.16, "lon": 138.68}),
            base.model_copy(update={"id": "izu-east", "name": "伊豆東部", "area_code": "9999900",
                                    "seismic_area_code": "440", "lat": 34.9, "lon": 139.1}),
            *fleet_sites]


def rep(name, data=None, entry=None):
    return parse_report(data if data is not None else sample(name), entry_id=entry or f"urn:{name}")


def by_kind(actions, cls):
    return {a.site_id for a in actions if isinstance(a, cls)}


def test_intensity_report_is_read():
    r = rep(SURUGA)
    q = r.earthquake
    assert r.kind == "earthquake" and r.format == "vxse53"
    assert (q.magnitude, q.lat, q.lon, q.depth_km, q.max_int) == (6.6, 34.8, 138.5, 20.0, "6-")
    cities = {p.code: p for p in q.places if p.level == "city"}
    assert cities["2222200"].max_int == "6-" and cities["3120400"].max_int == "3"  # 伊豆市, 境港市
    # 富士市: MaxInt 4 from the stations that reported, one ≥5弱 station not yet in: taken as 5弱.
    assert (cities["2221000"].max_int, cities["2221000"].assumed) == ("5-", True)
    real = rep("real_20210219091451_0_VXSE53_010000.xml").earthquake
    assert (real.magnitude, real.max_int, real.hypocenter) == (3.9, "4", "岩手県内陸北部")
    assert {p.code: p.max_int for p in real.places}["0321300"] == "4"  # 二戸市


def test_intensity_at_or_above_5_lower_switches_the_halls_of_those_cities(halls):
    t = WarningTrigger(halls)
    actions = t.evaluate(rep(SURUGA))
    # 伊豆市 6弱, 富士市 5弱 (assumed), and the hall that names its seismic area 静岡県伊豆 (6弱);
    # Tottori halls saw 震度３ at most.
    assert by_kind(actions, SwitchToDisaster) == {"izu", "fuji", "izu-east"}
    izu = next(a for a in actions if a.site_id == "izu")
    assert izu.trigger == "earthquake" and "震度6弱" in izu.reason and "伊豆市 (2222200)" in izu.reason
    assert "2009-08-11 05:07 JST" in izu.reason and "M6.6" in izu.reason
    assert "震度5弱以上（未入電）" in next(a for a in actions if a.site_id == "fuji").reason
    assert t.evaluate(rep(SURUGA, entry="urn:again")) == []  # the same earthquake acts once
    assert t.last_reports()["earthquake"]["did"] == []


def test_threshold_and_suggest_mode(halls):
    assert by_kind(WarningTrigger(halls, quake_min_intensity="6弱").evaluate(rep(SURUGA)), SwitchToDisaster) == {
        "izu", "izu-east"}
    three = by_kind(WarningTrigger(halls, quake_min_intensity="3").evaluate(rep(SURUGA)), SwitchToDisaster)
    # The city decides when listed: 境港市 3 (hall-06) yes, 米子市 2 (hall-03) no although its area 鳥取県西部
    # (563) saw 3; 日南町 is not listed, so its area decides (hall-14); 鳥取県東部 only 2.
    assert {"hall-06", "hall-14"} <= three and not {"hall-03", "hall-04", "hall-13", "hall-01"} & three
    suggest = WarningTrigger(halls, quake_action="suggest").evaluate(rep(SURUGA))
    assert by_kind(suggest, SuggestDisaster) == {"izu", "fuji", "izu-east"} and not by_kind(suggest, SwitchToDisaster)
    assert WarningTrigger(halls, quake_min_intensity=None).evaluate(rep(SURUGA)) == []
    # A delivered 震度４ report switches nothing by default, a hall in 二戸市 at threshold 4.
    ninohe = halls[0].model_copy(update={"id": "ninohe", "area_code": "0321300"})
    real = rep("real_20210219091451_0_VXSE53_010000.xml")
    assert WarningTrigger([ninohe]).evaluate(real) == []
    assert by_kind(WarningTrigger([ninohe], quake_min_intensity="4").evaluate(real), SwitchToDisaster) == {"ninohe"}


def test_split_warning_municipality_matches_the_whole_city(halls):
    # Warnings split 北見市 into 0120801/0120802; intensity reports name 北見市 0120800.
    kitami = halls[0].model_copy(update={"id": "kitami", "area_code": "0120801"})
    data = sample(SURUGA).replace(b"<Code>2222200</Code>", b"<Code>0120800</Code>")
    assert by_kind(WarningTrigger([kitami]).evaluate(rep(SURUGA, data)), SwitchToDisaster) == {"kitami"}


def test_shindo_sokuho_acts_through_the_seismic_area(halls):
    r = rep(SOKUHO)
    assert r.format == "vxse51" and {p.level for p in r.earthquake.places} == {"area"}
    actions = WarningTrigger(halls).evaluate(r)
    # 震度速報 names areas only: the hall that gives its seismic area (静岡県伊豆 440, 震度６弱) is switched;
    # Tottori halls (鳥取県西部 563: 震度３) are not.
    assert by_kind(actions, SwitchToDisaster) == {"izu-east"}
    tottori = WarningTrigger(halls, quake_min_intensity="3").evaluate(r)
    assert {"hall-03", "hall-04", "hall-06", "hall-13", "hall-14"} <= by_kind(tottori, SwitchToDisaster)
    assert "hall-01" not in by_kind(tottori, SwitchToDisaster)  # 鳥取県東部 is not in this report


def test_epicentre_distance_for_a_magnitude(halls):
    t = WarningTrigger(halls, quake_min_intensity="7", quake_radius_km=60, quake_min_magnitude=6.5)
    assert by_kind(t.evaluate(rep(SURUGA)), SwitchToDisaster) == {"izu", "fuji", "izu-east"}  # ≤ 60 km of 34.8N 138.5E
    t = WarningTrigger(halls, quake_min_intensity="7", quake_radius_km=60, quake_min_magnitude=6.7)
    assert t.evaluate(rep(SURUGA)) == []


def test_drill_earthquake_never_switches(halls):
    drill = sample(SURUGA).replace("<Status>通常</Status>".encode(), "<Status>訓練</Status>".encode())
    assert WarningTrigger(halls).evaluate(rep(SURUGA, drill)) == []


def test_tsunami_warning_switches_advisory_suggests(fleet_sites):
    # JMA's samples: 大津波警報 for 岩手県 (210); 鳥取県 (540) has 津波予報, made each grade in turn.
    base = sample("jma_32-39_11_02_250206_VTSE41.xml")
    tottori = sample("jma_32-39_11_13_250206_VTSE41.xml")  # 鳥取県 (540): 津波予報
    r = rep("t", base)
    assert r.kind == "tsunami" and {t.grade for t in r.tsunami} >= {"major_warning", "warning", "advisory"}
    iwate = fleet_sites[0].model_copy(update={"id": "miyako", "tsunami_area_code": "210"})  # 岩手県: 大津波警報
    t = WarningTrigger([iwate, *fleet_sites])
    actions = t.evaluate(r)
    assert by_kind(actions, SwitchToDisaster) == {"miyako"}
    assert "大津波警報" in actions[0].reason
    coast = {"hall-03", "hall-04", "hall-06"}  # 米子市 ×2, 境港市: tsunami area 540 in the fleet file
    advisory = t.evaluate(rep("adv", _tottori(tottori, "津波注意報", "62")))
    assert by_kind(advisory, SuggestDisaster) == coast and not by_kind(advisory, SwitchToDisaster)
    warning = t.evaluate(rep("warn", _tottori(tottori, "津波警報", "51")))
    assert by_kind(warning, SwitchToDisaster) == coast
    lifted = t.evaluate(rep("lift", _tottori(tottori, "津波警報解除", "50")))
    assert by_kind(lifted, SuggestReturn) == coast


def _tottori(xml: bytes, name: str, code: str) -> bytes:
    old = "<Area><Name>鳥取県</Name><Code>540</Code></Area>"  # as JMA writes it in this sample
    text = xml.decode("utf-8")
    i = text.index(old)
    j = text.index("</Kind>", i)
    k = text.index("<Kind>", i)
    return (text[:k] + f"<Kind><Name>{name}</Name><Code>{code}</Code>" + text[j:]).encode("utf-8")


def test_tsunami_drill_and_delivered(fleet_sites):
    drill = rep("jma_32-39_12_13_250206_VTSE41.xml")
    assert drill.control_status == "訓練" and any(i.area_code == "540" for i in drill.tsunami)
    assert WarningTrigger(fleet_sites).evaluate(drill) == []
    real = rep("real_20231009074440_07748424_VTSE41.xml")
    assert {i.area_name for i in real.tsunami if i.grade == "advisory"} >= {"伊豆諸島", "小笠原諸島"}
    assert WarningTrigger(fleet_sites).evaluate(real) == []  # nothing for 鳥取県


def test_tsunami_advisory_then_lifted_jma_sequence(fleet_sites):
    """JMA's sample pair of 2015-11-14 (薩摩半島西方沖): 津波注意報 for 種子島・屋久島地方 (771), then 解除."""
    tanegashima = fleet_sites[0].model_copy(update={"id": "tanegashima", "tsunami_area_code": "771"})
    t = WarningTrigger([tanegashima], tsunami_grades=["advisory", "warning", "major_warning"])
    assert by_kind(t.evaluate(rep("jma_38-39_02_01_250206_VTSE41.xml")), SwitchToDisaster) == {"tanegashima"}
    lifted = t.evaluate(rep("jma_38-39_02_04_250206_VTSE41.xml"))
    assert by_kind(lifted, SuggestReturn) == {"tanegashima"} and "津波注意報解除" in lifted[0].reason
    # With the defaults the advisory only suggests, and the lifting then has nothing to release.
    t = WarningTrigger([tanegashima])
    assert by_kind(t.evaluate(rep("jma_38-39_02_01_250206_VTSE41.xml")), SuggestDisaster) == {"tanegashima"}
    assert t.evaluate(rep("jma_38-39_02_04_250206_VTSE41.xml")) == []


def test_delivered_shindo_sokuho(fleet_sites):
    """震度速報 as JMA delivered it on 2021-02-19: 岩手県内陸北部 (212) 震度４, no cities."""
    r = rep("real_20210219091253_0_VXSE51_010000.xml")
    assert [(p.code, p.level, p.max_int) for p in r.earthquake.places] == [("212", "area", "4")]
    hall = fleet_sites[0].model_copy(update={"id": "iwate", "area_code": "0321300", "seismic_area_code": "212"})
    assert WarningTrigger([hall]).evaluate(r) == []  # 4 < 5弱
    assert by_kind(WarningTrigger([hall], quake_min_intensity="4").evaluate(r), SwitchToDisaster) == {"iwate"}


def test_one_earthquake_acts_once_and_holds_the_hall_for_hold_h(halls):
    """震度速報 then 震源・震度に関する情報 of the same earthquake (one EventID): one switch.  The earthquake then
    keeps the hall from a 'may return' suggestion when a warning there is lifted, for hold_h after the origin."""
    from datetime import timedelta

    izu_east = [h for h in halls if h.id == "izu-east"]
    quake = rep(SURUGA)
    origin = quake.earthquake.origin_time
    t = WarningTrigger(izu_east, quake_hold_h=24, clock=lambda: origin + timedelta(minutes=15))
    assert by_kind(t.evaluate(rep(SOKUHO)), SwitchToDisaster) == {"izu-east"}
    assert t.evaluate(quake) == []  # same EventID: already acted
    assert t.active()["izu-east"] == {f"earthquake:{quake.extra['event_id']}"}
    assert t._active["izu-east"][f"earthquake:{quake.extra['event_id']}"].until == origin + timedelta(hours=24)
    t._expire(origin + timedelta(hours=25))
    assert "izu-east" not in t.active()


@pytest.mark.parametrize("value", ["8", "5", "震度", "", "0"])
def test_a_threshold_that_is_not_a_jma_intensity_is_refused_with_the_list(value):
    with pytest.raises(ValueError, match=r"quake_min_intensity must be a JMA seismic intensity \(1, 2, 3, 4, 5弱"):
        WarningTrigger([], quake_min_intensity=value)
