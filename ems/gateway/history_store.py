"""The forecaster's measured slots on disk (``<state_dir>/history-<site>.csv``), so a restart keeps what was learnt.

A cache, not a record: the telemetry database holds the real history.  So
a bad line (bad values, the wrong number of cells, a field the csv module
refuses) is skipped with a warning naming the file and line (the good
lines are kept), an unreadable file means starting to learn afresh, and a
write is atomic (temp file + rename) but not fsynced: losing the last slot
to a power cut costs nothing worth an fsync per slot on a gateway's flash.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Sequence

from ems.atomicfile import replace_atomically

log = logging.getLogger(__name__)

COLUMNS = ("start", "load_w", "pv_w", "critical_w", "weather")
Row = tuple[datetime, float, float, float, float]


def history_path(state_dir: str | Path, site_id: str) -> Path:
    """Where ``site_id``'s forecaster history lives."""
    return Path(state_dir) / f"history-{site_id}.csv"


def save_history(path: Path, rows: Sequence[Row]) -> None:
    """Write ``rows`` atomically (NaN as an empty cell)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for t, *values in rows:
        w.writerow([t.isoformat()] + ["" if not math.isfinite(v) else f"{v:.1f}" if i < 3 else f"{v:.4f}"
                                      for i, v in enumerate(values)])
    replace_atomically(path, buf.getvalue().encode("utf-8"), durable=False)


def load_history(path: Path) -> tuple[list[Row], list[str]]:
    """(rows read, problems found), each problem naming the file and line; no file gives ([], [])."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read: {exc}"]
    lines = io.StringIO(text)
    try:
        header = _cells(next(lines, ""))
    except csv.Error as exc:
        return [], [f"{path}:1: {exc}"]
    if not header:
        return [], []
    if tuple(header) != COLUMNS:
        return [], [f"{path}:1: header {header!r} is not {','.join(COLUMNS)}"[:300]]
    rows: list[Row] = []
    problems: list[str] = []
    # Line by line (the file never has a newline inside a field), so a damaged line costs only itself.
    for line, raw in enumerate(lines, start=2):
        try:
            rows.append(_row(_cells(raw)))
        except (ValueError, csv.Error) as exc:
            problems.append(f"{path}:{line}: {exc}")
    return rows, problems


def _cells(line: str) -> list[str]:
    """The cells of one line; raises csv.Error for a line the csv module refuses (e.g. a giant field)."""
    return next(csv.reader([line]), [])


def _row(cells: list[str]) -> Row:
    if len(cells) != len(COLUMNS):
        raise ValueError(f"{len(cells)} cells, expected {len(COLUMNS)}")
    t = datetime.fromisoformat(cells[0])
    if t.tzinfo is None:
        raise ValueError(f"start {cells[0]!r} has no UTC offset")
    values = []
    for name, cell in zip(COLUMNS[1:], cells[1:]):
        try:
            v = float(cell) if cell.strip() else math.nan
        except ValueError:
            raise ValueError(f"{name} {cell!r} is not a number") from None
        if math.isinf(v) or v < 0 or (name == "weather" and v > 1):
            raise ValueError(f"{name} {cell!r} must be a finite value >= 0" + (" and <= 1" if name == "weather" else ""))
        values.append(v)
    return (t, *values)  # type: ignore[return-value]
