"""``ems drill`` as a real process (exit 1 on a broken promise, 2 on a bad file) and the runtime on the
embedded broker (no Mosquitto)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from devices.simulator.clock import AcceleratedClock
from ems.sim.drill.staff import ApiError, StaffClient
from ems.sim.runtime import FleetRuntime, RuntimeOptions
from tests.sim.conftest import FLEET_FILE, ROOT

BROKEN = """\
name: broken-on-purpose
description: a hall whose battery died loses its grid; its shelter goes dark
start: "2025-09-15T20:00:00+09:00"
speed: 3600
duration_h: 2.5
events:
  - {at_h: 0.3, type: battery_failure, hall: hall-06}
  - {at_h: 0.8, type: outage, halls: [hall-06], length_h: 1}
"""


def ems_drill(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ems.cli", "drill", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_bad_scenario_exits_2_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN.replace("hall: hall-06", "hall: hall-66"), encoding="utf-8")
    r = ems_drill(str(bad), "--config", str(FLEET_FILE), "--report", str(tmp_path / "r"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"error: {bad}: events[0].hall: unknown hall 'hall-66'" in r.stderr
    assert not (tmp_path / "r").exists()  # nothing ran


def test_bad_speed_exits_2(tmp_path):
    good = tmp_path / "s.yaml"
    good.write_text(BROKEN, encoding="utf-8")
    r = ems_drill(str(good), "--config", str(FLEET_FILE), "--report", str(tmp_path / "r"), "--speed", "-3",
                  timeout=60)
    assert r.returncode == 2 and "--speed" in r.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_broken_promise_exits_1_with_a_report(tmp_path):
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(textwrap.dedent(BROKEN), encoding="utf-8")
    report = tmp_path / "report"
    r = ems_drill(str(scenario), "--config", str(FLEET_FILE), "--report", str(report), "--seed", "3")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BROKEN critical_load hall-06" in r.stderr
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    broken = [c for c in results["checks"] if not c["ok"]]
    assert [(c["promise"], c["subject"]) for c in broken] == [("critical_load", "hall-06")]
    hall = next(h for h in results["halls"] if h["site"] == "hall-06")
    assert hall["battery_failed"] and hall["outages"][0]["unserved_wh"] > 300
    assert (report / "drill.log").stat().st_size > 0
    assert "FAILED" in (report / "summary.md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_runtime_on_the_embedded_broker_switches_a_hall_over_http(tmp_path, fleet):
    clock = AcceleratedClock(datetime(2025, 9, 15, 3, tzinfo=timezone.utc), 600)
    rt = FleetRuntime(fleet, clock, RuntimeOptions(state_dir=tmp_path, broker="embedded", cycle_s=0.5))
    async with rt:
        assert rt.broker.kind == "embedded" and "embedded broker" in rt.describe()
        ok = await rt.wait_until(lambda: all(d.status and d.status.mode.effective.value == "vpp"
                                             for d in rt.daemons.values()), 60)
        assert ok, {s: d.status.mode.effective.value if d.status else None for s, d in rt.daemons.items()}
        staff = StaffClient(rt.central_url, *rt.credentials("municipal"))
        op = await asyncio.to_thread(staff.switch_to_disaster, "halls", "embedded broker test", None, ["hall-04"])
        assert [c["site"] for c in op["commands"]] == ["hall-04"]
        assert await rt.wait_until(
            lambda: rt.daemons["hall-04"].machine.requested.mode.value == "disaster_reserve", 30)
        acked = await rt.wait_until(lambda: any(
            c["status"] == "ok" for o in staff.operations() if o["id"] == op["id"] for c in o["commands"]), 30)
        assert acked
        viewer = StaffClient(rt.central_url, *rt.credentials("operator"))
        with pytest.raises(ApiError) as info:  # operators may not switch disaster mode
            await asyncio.to_thread(viewer.switch_to_disaster, "all", "not allowed", None, None)
        assert info.value.status == 403
        await rt.stop()
        count = rt.telemetry_count()
        assert count.produced > 100 and count.lost == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_runtime_ships_telemetry_to_influxdb(tmp_path, fleet):
    from ems.sim.runtime import InfluxTarget
    from tests.servers import InfluxDB1Server

    server = InfluxDB1Server(tmp_path / "influx")
    await asyncio.to_thread(server.start)
    try:
        server.query("CREATE DATABASE ems", method="POST")
        clock = AcceleratedClock(datetime(2025, 9, 15, 3, tzinfo=timezone.utc), 600)
        rt = FleetRuntime(fleet, clock, RuntimeOptions(state_dir=tmp_path / "state", central=False, cycle_s=0.5,
                                                       influx=InfluxTarget(server.url, "ems")))
        async with rt:
            assert rt.central_url is None and "InfluxDB" in rt.describe()
            assert await rt.wait_until(lambda: sum(s.status.sent_points for s in rt.shippers.values()) > 200, 60)
            await rt.stop()
            assert rt.telemetry_count() is None  # counted in InfluxDB, not here
            sent = sum(s.status.sent_points for s in rt.shippers.values())
            assert all(len(ob) == 0 for ob in rt.outboxes.values())
        result = server.query("SELECT COUNT(reserve_wh) FROM site", db="ems")
        assert result["results"][0].get("series"), result
    finally:
        await asyncio.to_thread(server.stop)
    assert sent > 200


def test_influx_url_must_be_http(tmp_path):
    good = tmp_path / "s.yaml"
    good.write_text(BROKEN, encoding="utf-8")
    r = ems_drill(str(good), "--config", str(FLEET_FILE), "--report", str(tmp_path / "r"),
                  "--influx-url", "influx.example:8086", timeout=60)
    assert r.returncode == 2 and "--influx-url: must start with http://" in r.stderr
