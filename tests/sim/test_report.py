"""The report files from a hand-made outcome: summary.md/html, results.json, PNG plots."""

from __future__ import annotations

import json
from datetime import timedelta

from ems.sim.drill import promises as pr
from ems.sim.drill.recorder import Mark
from ems.sim.drill.report import build_blocks, results_table, to_html, to_markdown, write_report
from ems.sim.telemetry_count import TelemetryCount
from tests.sim.test_promises import T0, _clock, outage, rec, scenario, trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def outcome(fleet, broken: bool):
    clock = _clock()
    wall = clock.released_wall
    traces = {"hall-01": trace(30, switch_at=T0 + timedelta(hours=2),
                               unserved_at=T0 + timedelta(hours=12) if broken else None),
              "hall-02": trace(30)}
    marks = [Mark(T0 + timedelta(hours=2), "warning", ("hall-01",), "JMA <storm> & rain"),
             Mark(T0 + timedelta(hours=10), "outage_start", ("hall-01",), "outage")]
    audit = [{"action": "mode_switch", "actor": "jma-warning-service", "target": "hall-01", "reason": "JMA",
              "time": (wall + timedelta(seconds=7200 / 3600)).isoformat(),
              "details": {"mode": "disaster_reserve", "command_id": "c1", "operation": "op-1"}},
             {"action": "ack", "actor": "site:hall-01", "target": "hall-01", "reason": "",
              "time": (wall + timedelta(seconds=2.05)).isoformat(), "details": {"command_id": "c1", "status": "ok"}}]
    return pr.evaluate(scenario(description="test <drill> & co"), fleet, clock, rec(traces, marks), {}, audit,
                       [outage("hall-01", 10, 6)], [], TelemetryCount(100, 100, 0, 0, 0, 0),
                       {"dead_tasks": [], "stalled_halls": [], "central_ok": True}, [], 12.0)


def test_report_files(tmp_path, fleet):
    out = outcome(fleet, broken=False)
    files = write_report(out, tmp_path / "report")
    for key in ("fleet_soc", "backup_hours"):
        data = files[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    md = files["summary_md"].read_text(encoding="utf-8")
    assert md.startswith("# Drill 't': PASSED")
    for heading in ("## Promises", "## Halls", "## Outages", "## Command audit", "## Timeline", "## Telemetry"):
        assert heading in md
    assert "![fleet state of charge, marks and modes](fleet_soc.png)" in md
    assert "| hall-01 | jma-warning-service |" in md
    assert "100 points produced" in md
    html = files["summary_html"].read_text(encoding="utf-8")
    assert "test &lt;drill&gt; &amp; co" in html and "<drill>" not in html
    assert "<img src='fleet_soc.png'" in html
    results = json.loads(files["results"].read_text(encoding="utf-8"))
    assert results["exit_code"] == 0 and results["telemetry"]["lost"] == 0
    assert results["halls"][0]["outages"][0]["length_h"] == 6.0
    assert results["commands"][0]["delay_wall_s"] > 0


def test_broken_promise_shows_in_every_form(tmp_path, fleet):
    out = outcome(fleet, broken=True)
    assert out.exit_code == 1
    blocks = build_blocks(out, {})
    md, html = to_markdown(blocks), to_html(blocks, "x")
    assert "FAILED: 1 promise(s) broken" in md
    assert "| critical_load | 0/1 | BROKEN |" in md
    assert "<td class='bad'>BROKEN</td>" in html
    table = results_table(out)
    assert table.splitlines()[1].startswith("hall-01")


def test_markdown_cells_are_escaped(fleet):
    md = to_markdown([("table", ["a|b"], [["x|y\nz"]])])
    assert "a\\|b" in md and "x\\|y z" in md
