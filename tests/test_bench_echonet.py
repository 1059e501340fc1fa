"""benchmarks/bench_echonet.py: one tiny real run prints both protocols' figures and their ratio."""

from __future__ import annotations

import json

from benchmarks.bench_echonet import main


def test_short_run_prints_both_protocols(tmp_path, capsys):
    out_json = tmp_path / "figures.json"
    assert main(["--seconds", "0.2", "--rounds", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert out.count("ECHONET/Modbus: latency x") == 4
    figures = json.loads(out_json.read_text())
    for name in ("read battery", "read meter", "read pv", "write battery setpoint"):
        for proto in ("modbus", "echonet"):
            r = figures[name][proto]
            assert r["polls"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] and r["cpu_ms"] > 0
    assert figures["read meter"]["echonet"]["requests_per_poll"] == 1.0  # E7, E0, E3 in one Get
    assert figures["write battery setpoint"]["echonet"]["requests_per_poll"] == 2.0  # SetC + read-back Get
