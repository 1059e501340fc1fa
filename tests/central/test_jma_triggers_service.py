"""The central service acting on JMA's telegrams: earthquake, typhoon and drill, audited as the warning service."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from ems.central.jma import JMA_ACTOR
from ems.central.jma.feed import AtomFeedReader
from ems.central.jma.trigger import WarningTrigger
from ems.central.service import JmaParts
from tests.central.conftest import Api, feed_fleet, make_env

SAMPLES = Path(__file__).resolve().parent / "jma" / "samples"


def test_earthquake_switch_is_audited_and_the_status_shows_each_kind(tmp_path, fleet):
    env = make_env(tmp_path / "c", fleet)
    feed_fleet(env.store, fleet)
    folder = tmp_path / "jma"
    folder.mkdir()
    shutil.copy(SAMPLES / "jma_32-35_07_07_240613_VXSE53_trimmed.xml", folder / "a_quake.xml")
    drill = (SAMPLES / "jma_15_16_03_241226_VPWW55.xml").read_bytes().replace(
        "<Status>通常</Status>".encode(), "<Status>訓練</Status>".encode())
    (folder / "b_drill.xml").write_bytes(drill.replace(b"0121400", b"3120400"))  # a drill for 境港市
    env.service.jma = JmaParts(AtomFeedReader(str(folder), tmp_path / "seen.sqlite"),
                               WarningTrigger(fleet.sites, quake_min_intensity="3"), poll_s=3600, source=str(folder))
    env.service.jma_status.enabled = True
    # 境港市 震度３ (hall-06), and 日南町 (hall-14), not listed, by its area 鳥取県西部 (3); 米子市 2, 大山町 1.
    assert asyncio.run(env.service.poll_jma_once()) == 2
    sent = env.link.commands("mode")
    assert {e["site"] for e in sent} == {"hall-06", "hall-14"}
    assert all(e["issued_by"] == JMA_ACTOR and e["payload"]["mode"] == "disaster_reserve" for e in sent)
    audit = [r for r in env.service.audit.records(action="jma_warning")]
    sakai = next(r for r in audit if r.target == "hall-06")
    assert sakai.actor == JMA_ACTOR and "震度3 in 境港市 (3120400)" in sakai.reason
    assert "2009-08-11 05:07 JST" in sakai.reason and sakai.details["trigger"] == "earthquake"
    api = Api(env)
    try:
        status = api.login("vera").get("/api/jma/status").json()
    finally:
        api.close()
    last = status["last_reports"]
    assert set(last) == {"earthquake", "warning-r06"}
    assert len(last["earthquake"]["did"]) == 2 and last["earthquake"]["title"] == "震源・震度に関する情報"
    assert last["warning-r06"]["control_status"] == "訓練" and last["warning-r06"]["did"] == []
    assert last["warning-r06"]["note"]["code"] == "drill"
    assert {d["site"] for d in last["earthquake"]["did"]} == {"hall-06", "hall-14"}


def test_typhoon_arrival_is_in_the_api(tmp_path, fleet):
    sites = [s.model_copy(update={"lat": 24.28, "lon": 153.98}) if s.id == "hall-06" else s for s in fleet.sites]
    env = make_env(tmp_path / "c", fleet)
    feed_fleet(env.store, fleet)
    folder = tmp_path / "jma"
    folder.mkdir()
    shutil.copy(SAMPLES / "real_vptw60_typhoon.xml", folder / "typhoon.xml")
    trigger = WarningTrigger(sites)
    env.service.jma = JmaParts(AtomFeedReader(str(folder), tmp_path / "seen.sqlite"), trigger, poll_s=3600,
                               source=str(folder))
    assert asyncio.run(env.service.poll_jma_once()) == 1
    api = Api(env)
    try:
        arrivals = api.login("vera").get("/api/jma/arrivals").json()["arrivals"]
    finally:
        api.close()
    assert set(arrivals) == {"hall-06"} and arrivals["hall-06"]["typhoon"] == "2613"
    assert arrivals["hall-06"]["arrival"].startswith("2026-08-01T") or arrivals["hall-06"]["arrival"].startswith(
        "2026-08-02T")
