"""``ems plan``: plan one hall from an inputs CSV and write the schedule (and a summary).

    ems plan --config config/fleet.yaml --site hall-01 --inputs inputs.csv --soc 55 \\
             --mode vpp --out plan.csv [--summary summary.json]

inputs.csv: ``time`` (ISO 8601 with offset, one row per slot, regular),
``price_buy``, ``price_sell`` [JPY/kWh], ``load_w``, ``pv_w``,
``critical_load_w`` [W]; other columns are ignored.  plan.csv: see
:data:`optimizer.plan.PLAN_COLUMNS`.  Bad input exits with status 2 and a
message naming the file, line and column.  ``ems/cli.py`` adds the
subcommand with :func:`add_plan_parser`; :func:`run_plan` runs it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from datetime import datetime
from pathlib import Path

from devices.configfile import ConfigError
from ems.config import load_fleet
from ems.errors import UsageError
from optimizer.inputs import COLUMNS, InputError, SiteForecast
from optimizer.plan import PLAN_COLUMNS, Plan
from optimizer.planner import plan_site
from optimizer.settings import MODES, PlanSettings


def add_plan_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``plan`` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("plan", help="plan one hall's battery schedule from forecasts and prices",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="fleet YAML file")
    p.add_argument("--site", required=True, help="site id, e.g. hall-01")
    p.add_argument("--inputs", required=True, help="inputs CSV (time, price_buy, price_sell, load_w, pv_w, critical_load_w)")
    p.add_argument("--soc", required=True, type=float, help="measured state of charge [%%]")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--out", required=True, help="plan CSV to write")
    p.add_argument("--summary", help="summary JSON to write")
    p.add_argument("--event-time", help="disaster_reserve: ISO 8601 time the full reserve must be there")
    p.add_argument("--time-limit", type=float, default=5.0, help="solver time limit [s] (default 5)")
    p.set_defaults(func=run_plan)
    return p


def _parse_time(text: str, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{where}: not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:
        raise UsageError(f"{where}: time {text!r} has no UTC offset (write e.g. 2025-07-01T00:00:00+09:00)")
    return t


def read_inputs_csv(path: str | Path) -> SiteForecast:
    """Read and validate inputs.csv; UsageError names the file, the line and the column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise UsageError(f"{path}: file is empty")
    reader.fieldnames = header
    missing = [c for c in ("time", *COLUMNS) if c not in header]
    if missing:
        raise UsageError(f"{path}: line 1: missing column(s) {', '.join(missing)} (found: {', '.join(header)})")
    times, lines = [], []
    cols: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for row in reader:
        line = reader.line_num
        if all(not (v or "").strip() for v in row.values()):
            continue
        times.append(_parse_time(row["time"] or "", f"{path}: line {line}, column time"))
        for c in COLUMNS:
            raw = (row.get(c) or "").strip()
            if not raw:
                raise UsageError(f"{path}: line {line}, column {c}: missing value")
            try:
                value = float(raw)
            except ValueError:
                raise UsageError(f"{path}: line {line}, column {c}: not a number: {raw!r}") from None
            if math.isnan(value):
                raise UsageError(f"{path}: line {line}, column {c}: value is NaN")
            cols[c].append(value)
        lines.append(line)
    if not times:
        raise UsageError(f"{path}: no data rows")
    try:
        return SiteForecast.from_columns(times, **cols)
    except InputError as exc:
        if exc.row is None:
            raise UsageError(f"{path}: column {exc.column}: {exc.detail}") from None
        raise UsageError(f"{path}: line {lines[exc.row - 1]} (row {exc.row}), column {exc.column}: {exc.detail}") from None


def write_plan_csv(plan: Plan, path: str | Path) -> None:
    """Write the plan's rows with the plan.csv columns."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PLAN_COLUMNS))
        w.writeheader()
        for row in plan.rows():
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()})


def run_plan(args: argparse.Namespace) -> int:
    """Run ``ems plan``; returns the exit status (0 ok, 2 bad input)."""
    try:
        if not 0.0 <= args.soc <= 100.0 or math.isnan(args.soc):
            raise UsageError(f"--soc: {args.soc:g} is outside 0–100 %")
        if args.time_limit <= 0:
            raise UsageError("--time-limit must be > 0")
        try:
            fleet = load_fleet(args.config)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        try:
            site = fleet.site(args.site)
        except KeyError as exc:
            raise UsageError(f"--site: {exc.args[0]}") from None
        forecast = read_inputs_csv(args.inputs)
        event = _parse_time(args.event_time, "--event-time") if args.event_time else None
        if event is not None and args.mode != "disaster_reserve":
            raise UsageError("--event-time only applies to --mode disaster_reserve")
        plan = plan_site(site.safety_policy(), forecast, args.soc, args.mode,
                         settings=PlanSettings(time_limit_s=args.time_limit), event_time=event, site_id=site.id)
        try:
            write_plan_csv(plan, args.out)
            if args.summary:
                Path(args.summary).write_text(json.dumps(plan.summary(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write output: {exc}") from None
    except UsageError as exc:
        print(f"ems plan: error: {exc}", file=sys.stderr)
        return 2
    flag = " (rule-based fallback)" if plan.fallback else ""
    print(f"{site.id}: {plan.status.value}{flag}, {plan.n} slots, energy cost {plan.energy_cost_jpy:.1f} JPY, "
          f"reserve shortfall {plan.reserve_shortfall_wh:.0f} Wh, hours of power {plan.hours_of_power:.1f} h "
          f"-> {args.out}")
    return 0
