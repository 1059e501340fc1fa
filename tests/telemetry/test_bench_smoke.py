"""The telemetry benchmark still runs (tiny sizes; the real figures come from `ems bench telemetry`)."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_runs_end_to_end(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_telemetry.py"
    spec = importlib.util.spec_from_file_location("bench_telemetry", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--points", "3000", "--sites", "3", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "InfluxDB 1.6" in out and "VictoriaMetrics" in out and "MQTT     3 sites" in out
