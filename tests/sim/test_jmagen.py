"""Generated JMA reports: read by the real parser, switch the right halls, both formats; bad input refused."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ems.sim.drill.jmagen import (earthquake_report_xml, typhoon_report_xml, warning_report_xml,
                                  warning_reports_xml, write_report)
from ems.central.jma.feed import AtomFeedReader
from ems.central.jma.trigger import SwitchToDisaster, WarningTrigger

T = datetime(2025, 9, 15, 3, 0, tzinfo=timezone.utc)
AREAS = [("3120100", "鳥取市"), ("3130200", "岩美町")]


@pytest.mark.parametrize("fmt", ["current", "level2026"])
def test_report_switches_the_halls_of_its_areas(fmt, fleet):
    from ems.central.jma.parser import parse_report

    xmls = warning_reports_xml(T, AREAS, ["storm", "heavy_rain"], fmt)
    assert len(xmls) == (1 if fmt == "current" else 2)  # the 2026 format: one telegram per hazard
    trigger = WarningTrigger(fleet.sites, accept_drills=True)
    actions = []
    for n, xml in enumerate(xmls):
        report = parse_report(xml.encode(), entry_id=f"e1-{n}", source="generated")
        assert report.report_time == T and report.format == ("r06" if fmt == "level2026" else "vpww53")
        assert report.control_status == "訓練"
        assert WarningTrigger(fleet.sites).evaluate(report) == []  # a real service ignores drill telegrams
        actions += trigger.evaluate(report)
    assert sorted({a.site_id for a in actions if isinstance(a, SwitchToDisaster)}) == ["hall-01", "hall-02", "hall-07"]


def test_level_format_carries_levels(fleet):
    from ems.central.jma.parser import parse_report

    report = parse_report(warning_report_xml(T, AREAS[:1], ["heavy_rain"], "level2026").encode(), entry_id="e2",
                          source="generated")
    # min_level 4 still switches: the generated heavy-rain warning is a level-4 危険警報.
    actions = WarningTrigger(fleet.sites, min_level=4, accept_drills=True).evaluate(report)
    assert [a.site_id for a in actions] == ["hall-01", "hall-02"]
    assert all("レベル４" in a.reason for a in actions)


def test_a_written_report_is_read_once_from_the_folder(tmp_path):
    folder = tmp_path / "jma"
    write_report(folder, "w1.xml", warning_report_xml(T, AREAS, ["storm"]))
    assert [p.name for p in folder.iterdir()] == ["w1.xml"]  # no temporary file left behind
    assert folder.joinpath("w1.xml").read_text(encoding="utf-8") == warning_report_xml(T, AREAS, ["storm"])
    # A temp file caught half written (as replace_atomically names it) is not read by the poller.
    folder.joinpath(".w2.xml.k3x9.tmp").write_text(warning_report_xml(T, AREAS, ["heavy_rain"])[:200],
                                                   encoding="utf-8")
    reader = AtomFeedReader(str(folder), tmp_path / "seen.sqlite")
    first, second = reader.poll(), reader.poll()
    assert len(first) == 1 and second == [] and reader.last_parse_error is None
    reader.close()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="format"):
        warning_report_xml(T, AREAS, ["storm"], "v3")
    with pytest.raises(ValueError, match="kinds"):
        warning_report_xml(T, AREAS, ["tsunami"])
    with pytest.raises(ValueError, match="kinds"):
        warning_report_xml(T, AREAS, [])
    with pytest.raises(ValueError, match="timezone"):
        warning_report_xml(datetime(2025, 9, 15, 3), AREAS, ["storm"])


def test_area_names_are_escaped():
    xml = warning_report_xml(T, [("3120100", "A&B <town>")], ["storm"])
    assert "A&amp;B &lt;town&gt;" in xml


def test_earthquake_telegram_in_jma_format_drives_the_trigger(fleet):
    from ems.central.jma.parser import parse_report

    xml = earthquake_report_xml(T, [("3120100", "鳥取市", "6弱", "560"), ("3120300", "倉吉市", "4", "562")],
                                6.2, "鳥取県東部", 35.4, 134.2, 10)
    r = parse_report(xml.encode(), entry_id="q1", source="generated")
    q = r.earthquake
    assert (r.format, r.control_status, q.magnitude, q.max_int, q.origin_time) == ("vxse53", "訓練", 6.2, "6-", T)
    assert {(p.code, p.level, p.max_int) for p in q.places} == {
        ("3120100", "city", "6-"), ("560", "area", "6-"), ("3120300", "city", "4"), ("562", "area", "4")}
    switched = {a.site_id for a in WarningTrigger(fleet.sites, accept_drills=True).evaluate(r)}
    # 鳥取市 6弱 (city) and every hall of 鳥取県東部 (its seismic area, 6弱); 倉吉市 4 is below 5弱.
    assert switched == {s.id for s in fleet.sites if s.seismic_area_code == "560"}
    with pytest.raises(ValueError, match="intensity"):
        earthquake_report_xml(T, [("3120100", "鳥取市", "8", None)], 6.0, "x", 35, 134, 10)


def test_typhoon_telegram_in_jma_format_gives_arrivals(fleet):
    from ems.central.jma.parser import parse_report

    xml = typhoon_report_xml(T, "2514", "NANMADOL", [(0, 29.0, 131.5, 150), (12, 32.0, 132.5, 230),
                                                     (24, 35.0, 134.0, 260), (48, 40.0, 139.0, 330)])
    r = parse_report(xml.encode(), entry_id="t1", source="generated")
    assert r.control_status == "訓練" and [p.storm_circle.radius_km for p in r.typhoon.positions] == [150, 230, 260, 330]
    trigger = WarningTrigger(fleet.sites, accept_drills=True)
    assert len(trigger.evaluate(r)) == 14
    arrivals = trigger.typhoon_arrivals()
    hours = sorted((datetime.fromisoformat(a["arrival"]) - T).total_seconds() / 3600 for a in arrivals.values())
    assert len(hours) == 14 and 12 < hours[0] <= hours[-1] < 24
    with pytest.raises(ValueError, match="analysis"):
        typhoon_report_xml(T, "2514", "X", [(6, 30, 130, 100)])
