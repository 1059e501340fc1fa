"""The 2026 per-hazard warning telegrams (VPWW55-61), with JMA's published samples and delivered telegrams.

JMA's sample set (稚内地方気象台, 2020-06-22 23:00): 大雨 (稚内市 レベル４大雨危険警報, 猿払村 レベル３大雨警報),
暴風 (稚内市 暴風警報), その他注意報 (稚内市 雷注意報), 土砂 (稚内市 レベル４土砂災害危険警報).
Origins: samples/README.md.
"""

from pathlib import Path

import pytest

from ems.config import load_fleet
from ems.central.jma.parser import parse_report
from ems.central.jma.trigger import SuggestReturn, SwitchToDisaster, WarningTrigger

from .helpers import sample

ROOT = Path(__file__).resolve().parents[3]
RAIN, STORM, OTHER = "jma_15_16_03_241226_VPWW55.xml", "jma_15_16_04_250630_VPWW58.xml", "jma_15_16_07_250630_VPWW61.xml"
LANDSLIDE = "jma_15_16_01_241031_VPWW56.xml"


@pytest.fixture(scope="module")
def halls():
    base = load_fleet(ROOT / "config" / "fleet.yaml").sites[0]
    return [base.model_copy(update={"id": "wakkanai", "name": "稚内", "area_code": "0121400", "lat": 45.415,
                                    "lon": 141.673}),
            base.model_copy(update={"id": "sarufutsu", "name": "猿払", "area_code": "0151100", "lat": 45.33,
                                    "lon": 142.11}),
            base.model_copy(update={"id": "bihoro", "name": "美幌", "area_code": "0154300", "lat": 43.83,
                                    "lon": 144.1})]


def rep(name, data=None, entry=None):
    return parse_report(data if data is not None else sample(name), entry_id=entry or f"urn:{name}")


def switched(actions):
    return {a.site_id for a in actions if isinstance(a, SwitchToDisaster)}


def suggested(actions):
    return {a.site_id for a in actions if isinstance(a, SuggestReturn)}


def test_each_hazard_telegram_is_read_with_its_scope_and_levels():
    r = rep(RAIN)
    assert (r.format, r.scope, r.kind) == ("r06", frozenset({"heavy_rain"}), "warning-r06")
    k = {i.area_code: i.kinds for i in r.items if i.area_type == "municipality"}
    assert [(x.name, x.level, x.severity) for x in k["0121400"]] == [("レベル４大雨危険警報", 4, "danger")]
    assert [(x.level, x.severity) for x in k["0151100"]] == [(3, "warning")]
    assert rep(STORM).scope == {"storm"} and rep(OTHER).scope == {"other"} and rep(LANDSLIDE).scope == {"landslide"}
    assert [x.category for x in {i.area_code: i.kinds for i in rep(LANDSLIDE).items}["0121400"]] == ["landslide"]


def test_storm_does_not_forget_rain_and_other_advisories_do_not_suggest_return(halls):
    t = WarningTrigger(halls)
    a = t.evaluate(rep(RAIN))
    assert switched(a) == {"wakkanai", "sarufutsu"}
    assert "レベル４大雨危険警報" in next(x for x in a if x.site_id == "wakkanai").reason
    a = t.evaluate(rep(STORM))
    assert [x.kinds for x in a if x.site_id == "wakkanai"] == [("storm",)]  # a new hazard switches again
    assert t.active()["wakkanai"] == {"heavy_rain", "storm"}
    assert t.evaluate(rep(OTHER)) == []  # 雷注意報 etc.: nothing issued, nothing lifted
    assert t.active()["wakkanai"] == {"heavy_rain", "storm"}
    # Heavy rain downgraded by its own telegram: the storm still holds the hall, no suggestion.
    lifted_rain = sample(RAIN).replace("<Name>レベル４大雨危険警報</Name>\n<Code>43</Code>\n<Status>発表</Status>".encode(),
                                       "<Name>レベル２大雨注意報</Name>\n<Code>10</Code>\n<Status>警報から注意報</Status>".encode())
    assert lifted_rain != sample(RAIN)
    assert [x for x in t.evaluate(rep(RAIN, lifted_rain, "urn:rain-down")) if x.site_id == "wakkanai"] == []
    assert t.active()["wakkanai"] == {"storm"}
    # The storm lifted by the storm telegram: now staff are told the hall may return.
    lifted_storm = sample(STORM).replace("<Name>暴風警報</Name>\n<Code>05</Code>\n<Status>発表</Status>".encode(),
                                         "<Name>強風注意報</Name>\n<Code>15</Code>\n<Status>警報から注意報</Status>".encode())
    assert lifted_storm != sample(STORM)
    a = t.evaluate(rep(STORM, lifted_storm, "urn:storm-down"))
    assert "wakkanai" in suggested(a) and not switched(a)
    assert "wakkanai" not in t.active()


def test_min_level_uses_the_levels_of_the_new_format(halls):
    assert switched(WarningTrigger(halls, min_level=4).evaluate(rep(RAIN))) == {"wakkanai"}
    assert switched(WarningTrigger(halls, min_level=5).evaluate(rep(RAIN))) == set()
    # 暴風警報 has no level: judged by strength alone.
    assert switched(WarningTrigger(halls, min_level=5).evaluate(rep(STORM))) == {"wakkanai", "sarufutsu"}


def test_landslide_is_a_hazard_of_its_own(halls):
    assert switched(WarningTrigger(halls).evaluate(rep(LANDSLIDE))) == {"wakkanai", "sarufutsu"}
    assert switched(WarningTrigger(halls, kinds={"heavy_rain"}).evaluate(rep(LANDSLIDE))) == set()


def test_present_and_new_format_side_by_side(halls):
    """JMA sends the old companion telegram too: a hazard holds until every family that reported it lifts it."""
    t = WarningTrigger(halls)
    legacy = sample("vpww53_tottori_issued.xml").replace(b"<Code>3120100</Code>", b"<Code>0121400</Code>")
    assert "wakkanai" in switched(t.evaluate(rep("legacy", legacy, "urn:legacy")))  # 大雨警報 in the old format
    t.evaluate(rep(RAIN))
    lifted_rain = sample(RAIN).replace("<Name>レベル４大雨危険警報</Name>\n<Code>43</Code>\n<Status>発表</Status>".encode(),
                                       "<Name>レベル２大雨注意報</Name>\n<Code>10</Code>\n<Status>警報から注意報</Status>".encode())
    assert [x for x in t.evaluate(rep(RAIN, lifted_rain, "urn:r")) if x.site_id == "wakkanai"] == []
    assert t.active()["wakkanai"] == {"heavy_rain"}  # the old-format 大雨警報 is still in force


def test_drill_and_test_telegrams_never_switch(halls):
    for status in ("訓練", "試験"):
        drill = sample(RAIN).replace("<Status>通常</Status>".encode(), f"<Status>{status}</Status>".encode())
        t = WarningTrigger(halls)
        assert t.evaluate(rep(RAIN, drill, f"urn:{status}")) == []
        last = t.last_reports()["warning-r06"]
        assert last["did"] == [] and last["note"]["code"] == "drill" and status in last["note"]["detail"]
    # Only a trigger built for a drill acts on them.
    assert switched(WarningTrigger(halls, accept_drills=True).evaluate(rep(RAIN, drill, "urn:d"))) == {
        "wakkanai", "sarufutsu"}


def test_placeholder_area_code_skips_that_item_only(halls):
    bad = sample(RAIN).replace(b"<Code>0151100</Code>", b"<Code>01xxxxx</Code>")
    r = rep(RAIN, bad, "urn:placeholder")
    assert any("'01xxxxx'" in s for s in r.skipped)
    assert switched(WarningTrigger(halls).evaluate(r)) == {"wakkanai"}


def test_prefecture_fallback_uses_real_forecast_region_codes(halls):
    # 稚内 is in 宗谷地方 (011000), 美幌 in 網走・北見・紋別地方 (013000): not "010000".
    wide = sample("prefecture_wide_snow.xml").replace(b"<Code>310000</Code>", b"<Code>011000</Code>")
    t = WarningTrigger(halls, kinds={"storm"})
    assert t.evaluate(rep("wide", wide, "urn:w1")) == []  # Hokkaido: region unknown until a telegram tells
    t.evaluate(rep(OTHER))  # 稚内地方気象台's telegram lists its municipalities under 011000
    assert switched(t.evaluate(rep("wide", wide, "urn:w2"))) == {"wakkanai", "sarufutsu"}
    tottori = load_fleet(ROOT / "config" / "fleet.yaml").sites
    assert len(switched(WarningTrigger(tottori, kinds={"storm"}).evaluate(rep("prefecture_wide_snow.xml")))) == 14


def test_delivered_telegrams(halls):
    """Telegrams JMA delivered on 2026-05-29/30 (VPWW55 網走, VPWW56 新潟, VPWW58 旭川): advisories only."""
    rain = rep("real_vpww55_heavy-rain_lv2.xml")
    assert rain.scope == {"heavy_rain"} and rain.publishing_office == "網走地方気象台"
    bihoro = next(i for i in rain.items if i.area_code == "0154300")
    assert [(k.name, k.level, k.severity) for k in bihoro.kinds] == [("レベル２大雨注意報", 2, "advisory")]
    assert WarningTrigger(halls).evaluate(rain) == []  # an advisory switches nothing
    landslide = rep("real_vpww56_landslide_lv2.xml")
    assert landslide.scope == {"landslide"} and {k.category for i in landslide.items for k in i.kinds} >= {"landslide"}
    wind = rep("real_vpww58_wind_cancellation.xml")
    rumoi = next(i for i in wind.items if i.area_code == "0121200")
    assert [(k.name, k.status, k.cancelled) for k in rumoi.kinds] == [("強風注意報", "解除", True)]


def test_storm_surge_telegram_with_its_coast_tier(halls):
    """JMA's VPWW57 sample (京都地方気象台): 舞鶴市 レベル４高潮危険警報; a 高潮予報区間 tier and a placeholder
    code (26xxxx) in Head that must not cost the telegram."""
    r = rep("jma_15_16_02_250630_VPWW57.xml")
    assert r.scope == {"storm_surge"} and r.skipped == []
    maizuru = halls[0].model_copy(update={"id": "maizuru", "area_code": "2620200"})
    kyoto = halls[0].model_copy(update={"id": "kyoto", "area_code": "2610000"})
    actions = WarningTrigger([maizuru, kyoto]).evaluate(r)
    assert switched(actions) == {"maizuru"} and "レベル４高潮危険警報" in actions[0].reason
    assert switched(WarningTrigger([maizuru], min_level=5).evaluate(r)) == set()


def test_present_format_levels_from_the_body_notice(halls):
    """A VPWW53 JMA delivered on 2026-09-14 (兵庫県, trimmed to three municipalities by the repository it comes
    from): kinds say only 大雨警報, Body/Notice says 〈レベル４大雨危険警報〉姫路市 …; 相生市 stays level 3."""
    r = rep("real_vpww53_hyogo_danger_20260914_trimmed.xml")
    kinds = {i.area_name: i.kinds[0] for i in r.items}
    assert (kinds["姫路市"].name, kinds["姫路市"].level, kinds["姫路市"].severity) == ("レベル４大雨危険警報", 4, "danger")
    assert (kinds["相生市"].name, kinds["相生市"].level) == ("大雨警報", None)
    himeji, aioi, nishiwaki = (halls[0].model_copy(update={"id": n, "area_code": c})
                               for n, c in (("himeji", "2820100"), ("aioi", "2820800"), ("nishiwaki", "2821300")))
    assert switched(WarningTrigger([himeji, aioi, nishiwaki]).evaluate(r)) == {"himeji", "aioi"}
    assert switched(WarningTrigger([himeji, aioi, nishiwaki], min_level=4).evaluate(r)) == {"himeji"}
    # A 土砂災害危険警報 line raises the present format's 大雨警報（土砂災害） the same way.
    landslide = sample("real_vpww53_hyogo_danger_20260914_trimmed.xml").replace(
        "〈レベル４大雨危険警報〉姫路市".encode(), "〈レベル４土砂災害危険警報〉相生市　姫路市".encode())
    assert switched(WarningTrigger([himeji, aioi], min_level=4).evaluate(rep("x", landslide, "urn:ls"))) == {
        "himeji", "aioi"}


@pytest.mark.parametrize("name, category", [("jma_15_16_05_241226_VPWW59.xml", "waves"),
                                            ("jma_15_16_06_241226_VPWW60.xml", "heavy_snow")])
def test_waves_and_heavy_snow_act_only_when_configured(halls, name, category):
    """JMA's （Ｒ０６）（波浪） and （大雪） samples: 稚内市 波浪警報 / 大雪警報 発表, 猿払村 継続."""
    r = rep(name)
    assert r.scope == {category}
    assert WarningTrigger(halls).evaluate(r) == []  # not among the default kinds
    t = WarningTrigger(halls, kinds={category, "heavy_rain"})
    assert switched(t.evaluate(r)) == {"wakkanai", "sarufutsu"}
    t.evaluate(rep(RAIN))  # heavy rain on top: the other hazard's telegram changes nothing of this one
    assert t.active()["wakkanai"] == {category, "heavy_rain"}
