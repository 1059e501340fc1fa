"""Typhoon lead time: storm-warning areas per forecast time, asymmetric circles, forecast arrival per hall.

real_vptw60_typhoon.xml: typhoon 2613 (DOLPHIN) as JMA delivered it on 2026-08-01 09:45 JST, moving west
toward the Ogasawara islands: storm area 150 km now, storm-warning area 200 km at +12 h (21.6N 156.1E),
230 km at +24 h (22.8N 153.6E), 290 km at +48 h, 330 km at +72 h (24.4N 143.0E).
"""

from datetime import timedelta
from pathlib import Path

import pytest

from ems.config import load_fleet
from ems.central.jma.geo import BEARINGS, circle_from_axes, destination, distance_km, inside
from ems.central.jma.parser import parse_report
from ems.central.jma.trigger import SuggestDisaster, SuggestReturn, SwitchToDisaster, WarningTrigger

from .helpers import sample

ROOT = Path(__file__).resolve().parents[3]
TYPHOON = "real_vptw60_typhoon.xml"


@pytest.fixture(scope="module")
def halls():
    base = load_fleet(ROOT / "config" / "fleet.yaml").sites[0]
    return [base.model_copy(update={"id": "minamitorishima", "name": "南鳥島", "lat": 24.28, "lon": 153.98}),
            base.model_copy(update={"id": "chichijima", "name": "父島", "lat": 27.09, "lon": 142.19})]


def rep(name=TYPHOON, data=None, entry=None):
    return parse_report(data if data is not None else sample(name), entry_id=entry or f"urn:{name}")


def test_asymmetric_area_is_an_offset_circle():
    # JMA: 強風域 北東 500 km, 南西 330 km → one circle of radius 415 km whose centre is 85 km to the north-east.
    c = circle_from_axes(20.2, 158.3, [("北東", 500.0), ("南西", 330.0)])
    assert c.radius_km == pytest.approx(415)
    assert distance_km(20.2, 158.3, c.lat, c.lon) == pytest.approx(85, abs=0.5)
    ne = destination(20.2, 158.3, BEARINGS["北東"], 490)
    sw = destination(20.2, 158.3, BEARINGS["南西"], 340)
    assert inside(c, *ne) and not inside(c, *sw)  # a plain 500 km circle would take both
    assert circle_from_axes(20.2, 158.3, [("", 150.0)]).radius_km == 150
    assert rep().typhoon.positions[0].storm_circle.radius_km == 150  # km value, not 80 海里 converted


def test_switch_before_any_warning_within_the_lead_time(halls):
    r = rep()
    t = WarningTrigger(halls)
    actions = t.evaluate(r)
    assert {a.site_id for a in actions if isinstance(a, SwitchToDisaster)} == {"minamitorishima"}
    a = actions[0]
    assert a.trigger == "typhoon" and "台風第13号 DOLPHIN" in a.reason and "暴風警戒域" in a.reason
    arrival = t.typhoon_arrivals()["minamitorishima"]
    lead = (parse_iso(arrival["arrival"]) - r.report_time)
    # Between the +12 h circle (hall 365 km from its centre, radius 200) and the +24 h one (168 km, 230).
    assert timedelta(hours=11) < lead < timedelta(hours=23.3)
    assert arrival["typhoon"] == "2613" and "chichijima" not in t.typhoon_arrivals()
    assert t.evaluate(rep(entry="urn:again")) == []  # already switched for this typhoon


def parse_iso(text):
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_lead_time_decides(halls):
    assert WarningTrigger(halls, typhoon_lead_h=6).evaluate(rep()) == []
    t = WarningTrigger(halls, typhoon_lead_h=96)
    assert {a.site_id for a in t.evaluate(rep())} == {"minamitorishima", "chichijima"}
    assert parse_iso(t.typhoon_arrivals()["chichijima"]["arrival"]) - rep().report_time > timedelta(hours=48)


def test_suggest_mode_and_moving_away(halls):
    t = WarningTrigger(halls, typhoon_action="suggest")
    assert {type(a) for a in t.evaluate(rep())} == {SuggestDisaster}
    t = WarningTrigger(halls)
    t.evaluate(rep())
    # The next report has the typhoon far to the west: the hall may return, and its arrival is gone.
    away = sample(TYPHOON).replace(b"+22.8+153.6/", b"+22.8+133.6/").replace(b"+21.6+156.1/", b"+21.6+136.1/")
    actions = t.evaluate(rep(data=away, entry="urn:away"))
    assert [type(a) for a in actions] == [SuggestReturn] and actions[0].site_id == "minamitorishima"
    assert t.typhoon_arrivals() == {}


def test_drill_typhoon_switches_nothing(halls):
    drill = sample(TYPHOON).replace("<Status>通常</Status>".encode(), "<Status>訓練</Status>".encode())
    t = WarningTrigger(halls)
    assert t.evaluate(rep(data=drill)) == [] and t.typhoon_arrivals() == {}


def test_a_tropical_depression_has_no_storm_area(halls):
    """JMA's VPTW60 sample of a 熱帯低気圧(TD): positions but no storm area, so nothing can be reached."""
    r = rep("jma_10_05_01_200826_VPTW60.xml")
    assert r.typhoon.typhoon_class.startswith("熱帯低気圧") and len(r.typhoon.positions) == 7
    assert all(p.storm_circle is None for p in r.typhoon.positions)
    t = WarningTrigger(halls, typhoon_lead_h=120)
    assert t.evaluate(r) == [] and t.typhoon_arrivals() == {}
