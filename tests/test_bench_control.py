"""benchmarks/bench_control.py: layout, statistics, bad options and one short real run.

The real run uses tiny settings (2 s per size, sizes 1 and 3, each also with the optimizer) against the
hall simulator in a child process on loopback; it checks the figures are
printed and plausible, not how fast this machine is.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.bench_control import (
    DEFAULT_CONFIG,
    SizeResult,
    main,
    overlapping,
    percentile,
    pick_free_ports,
    plan_layout,
    verdicts,
)
from devices.readings import Nature
from ems.config import load_fleet


def test_layout_spreads_devices_over_endpoints_with_unique_ids() -> None:
    fleet = load_fleet(DEFAULT_CONFIG)
    ports = [20001, 20002, 20003, 20004]
    site, endpoints = plan_layout(fleet, "hall-02", 10, 3, ports)
    devices = [d for ep in endpoints for d in ep.devices]
    assert len(devices) == 10 and len(endpoints) == 4
    assert len({d.id for d in devices}) == 10
    assert [d.id for d in devices[:3]] == ["battery", "meter", "pv"]  # the site's own devices first
    assert [d.id for d in site.devices] == ["battery", "meter", "pv"] and site.id == "hall-02"
    assert Counter(d.nature for d in devices) == {Nature.BATTERY: 4, Nature.METER: 3, Nature.PV: 3}
    assert endpoints[0].hall.id == "hall-02" and endpoints[1].hall.id != "hall-02"
    for k, ep in enumerate(endpoints):
        assert ep.port == ports[k]
        assert [d.transport.port for d in ep.devices] == [ports[k]] * len(ep.devices)
        assert [d.transport.unit for d in ep.devices] == list(range(1, len(ep.devices) + 1))
        assert ep.hall.devices == list(ep.devices)
    assert all(d.period_s == 1.0 and d.transport.host == "127.0.0.1" for d in devices)


def test_layout_keeps_the_sites_three_devices_for_one_device_and_cycles_halls() -> None:
    fleet = load_fleet(DEFAULT_CONFIG)
    site, endpoints = plan_layout(fleet, "hall-01", 1, 1, [1, 2, 3])
    assert [len(ep.devices) for ep in endpoints] == [1, 1, 1]
    assert [d.nature for d in site.devices] == [Nature.BATTERY, Nature.METER, Nature.PV]
    n_halls = len(fleet.sites)
    _site, many = plan_layout(fleet, "hall-01", 3 * (n_halls + 1), 3, list(range(1000, 1000 + n_halls + 1)))
    assert many[n_halls].hall.id == "hall-01"  # more endpoints than halls: the halls repeat


def test_layout_rejects_too_few_ports_and_unknown_site() -> None:
    fleet = load_fleet(DEFAULT_CONFIG)
    with pytest.raises(ValueError, match="need 4 ports"):
        plan_layout(fleet, "hall-01", 10, 3, [1, 2, 3])
    with pytest.raises(KeyError, match="hall-99"):
        plan_layout(fleet, "hall-99", 3, 3, [1])


def test_free_ports_are_distinct() -> None:
    ports = pick_free_ports(20)
    assert len(set(ports)) == 20 and all(1024 <= p <= 65535 for p in ports)


def test_percentile_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def _result(devices: int, **kw) -> SizeResult:
    base = dict(devices=devices, endpoints=1, all_ready=True, wall_s=10.0, cycles=10, cycle_mean_ms=5.0,
                cycle_p95_ms=8.0, cycle_max_ms=9.0, overruns=0, cpu_pct=3.0, cpu_ms_per_cycle=30.0,
                polls=devices * 10, polls_per_s=float(devices), failures=0, requests_per_poll=1.5,
                cpu_ms_per_poll=0.6, read_median_ms=2.0, read_p95_ms=4.0, sim_cpu_pct=4.0, mode="self_consumption")
    base.update(kw)
    return SizeResult(**base)


def test_verdicts_judge_the_50_device_run_and_say_what_is_not_met() -> None:
    v = verdicts([_result(1, cpu_pct=50.0), _result(50)])
    assert [x["met"] for x in v] == [True, True, True] and {x["devices"] for x in v} == {50}
    v = verdicts([_result(50, cpu_pct=12.0, overruns=1, polls_per_s=40.0)])
    assert [x["met"] for x in v] == [False, False, False]
    assert "12.00 % of one core" in v[2]["detail"]
    v = verdicts([_result(50, failures=1)])
    assert v[0]["met"] is False
    v = verdicts([_result(10)])  # the goal size was not run: judged on the largest, and said so
    assert all("only 10 devices run" in x["detail"] for x in v)


def test_verdicts_with_the_optimizer_judge_cycles_overlapping_a_plan_and_the_loops_cpu() -> None:
    planned = dict(optimizer=True, worker="thread", plans=30, overlap_cycles=30, loop_cpu_pct=3.0)
    v = verdicts([_result(50), _result(50, **planned, overlap_p99_ms=20.0)])
    assert [x["met"] for x in v] == [True] * 5 and "(thread)" in v[3]["goal"]
    v = verdicts([_result(50), _result(50, **{**planned, "loop_cpu_pct": 11.0}, overlap_p99_ms=60.0)])
    assert [x["met"] for x in v[3:]] == [False, False] and "p99 60.00 ms" in v[3]["detail"]


def test_overlapping_cycles() -> None:
    cycles = [(1.010, 10.0), (2.010, 10.0), (3.010, 10.0)]  # (end [s], duration [ms]): 1.000-1.010, ...
    assert overlapping(cycles, [(1.005, 1.100), (2.500, 2.600)]) == [10.0]
    assert overlapping(cycles, [(0.0, 5.0)]) == [10.0, 10.0, 10.0]
    assert overlapping(cycles, []) == []


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "0"], "device counts must be 1..1000"),
    (["--sizes", "a,b"], "not a comma-separated list"),
    (["--seconds", "-1"], "must be > 0"),
    (["--rtt-count", "x"], "not a number"),
    (["--units-per-port", "300"], "at most 247"),
    (["--site", "hall-99"], "hall-99"),
    (["--config", "/nonexistent/fleet.yaml"], "fleet.yaml"),
])
def test_bad_options_exit_2_naming_the_problem(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_short_real_run_prints_rows_and_verdicts(tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "figures.json"
    rc = main(["--seconds", "2", "--sizes", "1,3", "--rtt-count", "100", "--optimizer", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"back-to-back \(100 reads\) median \d+\.\d+ ms", out)
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s+(\d+)\s+1\s+\d+\s+\d+\.\d+.*$", out, re.M)}
    assert set(rows) == {1, 3}, out
    assert "Goal: 50 devices within a 1 s cycle using under 10 % of one core" in out
    assert len(re.findall(r"^  .+ (met|NOT met) \(", out, re.M)) == 5
    assert re.search(r"^\s+3\s+thread\s+\d+\s+\d+\.\d+", out, re.M), out
    figures = json.loads(out_json.read_text())
    planned = {s["devices"]: s for s in figures["sizes"] if s["optimizer"]}
    assert planned[1]["plans"] == 0, "one device, no meter: safe mode, nothing to plan"
    assert planned[3]["plans"] >= 1 and planned[3]["overlap_cycles"] >= 1 and planned[3]["worker"] == "thread"
    sizes = {s["devices"]: s for s in figures["sizes"] if not s["optimizer"]}
    assert set(sizes) == {1, 3}
    for n, s in sizes.items():
        assert s["all_ready"] and s["failures"] == 0, s
        assert s["cycles"] >= 1 and 0 < s["cycle_mean_ms"] < 1000
        assert 0 < s["cpu_pct"] < 100
        # every device polled about once a second over the window (generous: a loaded machine)
        assert 0.5 * n <= s["polls_per_s"] <= 2.0 * n, s
    rt = figures["round_trip"]
    assert rt["count"] == 100 and 0 < rt["median_ms"] <= rt["p99_ms"]
    assert len(figures["verdicts"]) == 5 and all(v["devices"] == 3 for v in figures["verdicts"])
