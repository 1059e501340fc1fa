"""``ems plan`` (ems/plan_cli.py): the CSV contract and the exit status 2 on bad input."""

import csv
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ems.cli import main as ems_main
from optimizer.plan import PLAN_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "fleet.yaml"
JST = timezone(timedelta(hours=9))
HEADER = "time,price_buy,price_sell,load_w,pv_w,critical_load_w"


def write_inputs(path: Path, n: int = 48, edit=None) -> Path:
    lines = [HEADER]
    t0 = datetime(2025, 7, 1, tzinfo=JST)
    for i in range(n):
        hour = i / 2
        price = 25.0 if 17 <= hour < 21 else 12.0
        pv = max(0.0, 8000 * (1 - abs(hour - 12) / 6)) if 6 < hour < 18 else 0.0
        row = [(t0 + timedelta(minutes=30 * i)).isoformat(), f"{price}", f"{price - 8}", "1200", f"{pv:.0f}", "900"]
        if edit:
            row = edit(i, row)
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(tmp_path, *extra, inputs=None, soc="55", mode="vpp", site="hall-01"):
    inputs = inputs or write_inputs(tmp_path / "inputs.csv")
    argv = ["--config", str(CONFIG), "--site", site, "--inputs", str(inputs), "--soc", soc, "--mode", mode,
            "--out", str(tmp_path / "plan.csv"), *extra]
    return ems_main(["plan", *argv])


def test_plan_and_summary_files(tmp_path, capsys):
    assert run(tmp_path, "--summary", str(tmp_path / "summary.json")) == 0
    rows = list(csv.DictReader((tmp_path / "plan.csv").open()))
    assert len(rows) == 48 and list(rows[0]) == list(PLAN_COLUMNS)
    assert datetime.fromisoformat(rows[0]["time"]) == datetime(2025, 7, 1, tzinfo=JST)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("status", "objective_jpy", "energy_cost_jpy", "build_ms", "solve_ms", "reserve_shortfall_wh",
                "fallback"):
        assert key in summary
    assert summary["status"] == "optimal" and summary["fallback"] is False
    # Evening peak at 25 JPY/kWh: the battery discharges then, above its reserve.
    evening = [float(r["discharge_w"]) for r in rows[34:42]]
    assert max(evening) > 0
    assert all(float(r["soc_wh"]) >= float(r["reserve_wh"]) - 1e-3 for r in rows)
    assert "hall-01: optimal" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["disaster_reserve", "islanded"])
def test_other_modes(tmp_path, mode):
    assert run(tmp_path, mode=mode) == 0
    rows = list(csv.DictReader((tmp_path / "plan.csv").open()))
    assert all(float(r["grid_export_w"]) == 0 for r in rows)


def drop_column(i, row):
    return row[:3] + row[4:]


@pytest.mark.parametrize("edit, header, message", [
    (None, "time,price_buy,price_sell,pv_w,critical_load_w", "line 1: missing column(s) load_w"),
    (lambda i, r: r[:3] + ["-5"] + r[4:] if i == 10 else r, None, "line 12 (row 11), column load_w: negative value"),
    (lambda i, r: r[:4] + ["nan"] + r[5:] if i == 3 else r, None, "line 5, column pv_w: value is NaN"),
    (lambda i, r: r[:1] + [""] + r[2:] if i == 7 else r, None, "line 9, column price_buy: missing value"),
    (lambda i, r: [r[0].replace("+09:00", "")] + r[1:] if i == 2 else r, None, "line 4, column time: time"),
    (lambda i, r: [datetime.fromisoformat(r[0]).replace(minute=15).isoformat()] + r[1:] if i == 5 else r, None,
     "line 7 (row 6), column time: irregular time step"),
])
def test_bad_inputs_exit_2_naming_line_and_column(tmp_path, capsys, edit, header, message):
    path = write_inputs(tmp_path / "bad.csv", edit=edit)
    if header:
        text = path.read_text().splitlines()
        path.write_text("\n".join([header] + [",".join(drop_column(0, ln.split(","))) for ln in text[1:]]) + "\n")
    assert run(tmp_path, inputs=path) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


@pytest.mark.parametrize("args, message", [
    (dict(soc="120"), "--soc: 120 is outside 0–100"),
    (dict(soc="-1"), "--soc: -1 is outside 0–100"),
    (dict(site="hall-99"), "unknown site 'hall-99'"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    assert run(tmp_path, **args) == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_and_bad_config(tmp_path, capsys):
    assert run(tmp_path, inputs=tmp_path / "nope.csv") == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "fleet.yaml"
    bad.write_text("fleet: {name: x}\nsites: []\n")
    code = ems_main(["plan", "--config", str(bad), "--site", "a", "--inputs", str(write_inputs(tmp_path / "i.csv")),
                 "--soc", "50", "--mode", "vpp", "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "sites" in capsys.readouterr().err


def test_event_time_only_in_disaster_mode(tmp_path, capsys):
    assert run(tmp_path, "--event-time", "2025-07-01T12:00:00+09:00", mode="vpp") == 2
    assert "only applies" in capsys.readouterr().err
    assert run(tmp_path, "--event-time", "2025-07-01T12:00:00+09:00", mode="disaster_reserve") == 0


def test_runs_as_a_module(tmp_path):
    inputs = write_inputs(tmp_path / "inputs.csv", n=8)
    proc = subprocess.run([sys.executable, "-m", "ems.cli", "plan", "--config", str(CONFIG), "--site", "hall-02",
                           "--inputs", str(inputs), "--soc", "40", "--mode", "vpp", "--out", str(tmp_path / "o.csv")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.csv").read_text().startswith(",".join(PLAN_COLUMNS))
    proc = subprocess.run([sys.executable, "-m", "ems.cli", "plan", "--config", str(CONFIG), "--site", "hall-02",
                           "--inputs", str(inputs), "--soc", "400", "--mode", "vpp", "--out", str(tmp_path / "o.csv")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "--soc" in proc.stderr
