"""PNG plots of a drill (matplotlib, Agg backend: no display needed).

* ``fleet_soc.png``: every hall's state of charge and the fleet's (energy
  weighted), with warnings, staff switches, returns and infrastructure faults
  marked; below it one row per hall showing its mode and its outages.
* ``backup_hours.png``: per hall, the hours of reserve when the warning came
  (or when the grid failed, without a warning) and the hours of critical load
  served without a gap in its longest outage, against the H_disaster and
  H_vpp lines.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

JST = timezone(timedelta(hours=9), "JST")
MODE_COLOURS = {"vpp": "#cfe8cf", "disaster_reserve": "#f6d55c", "islanded": "#e4572e", "safe": "#a23b72",
                "manual": "#6fa8dc", "starting": "#dddddd"}
MARK_STYLES = {"warning": ("#d62728", "-", "JMA warning"), "switch": ("#ff7f0e", "--", "staff switch"),
               "return": ("#2ca02c", "--", "return to VPP"), "broker_down": ("#9467bd", ":", "broker down"),
               "broker_up": ("#9467bd", "-.", "broker up"), "central_restart": ("#8c564b", ":", "central restart"),
               "battery_failure": ("#000000", ":", "battery failure")}


def _mode_spans(times: list, modes: list[str]) -> list[tuple[Any, Any, str]]:
    spans = []
    start = 0
    for i in range(1, len(modes) + 1):
        if i == len(modes) or modes[i] != modes[start]:
            spans.append((times[start], times[min(i, len(times) - 1)], modes[start]))
            start = i
    return spans


def plot_fleet_soc(outcome: Any, path: Path) -> Path:
    """State of charge over time (top) and modes/outages per hall (bottom)."""
    traces, fleet = outcome.traces, outcome.fleet
    sites = [s for s in fleet.sites if s.id in traces and traces[s.id].t]
    fig, (ax, gantt) = plt.subplots(2, 1, figsize=(13, 9), sharex=True,
                                    gridspec_kw={"height_ratios": [1.35, 1]})
    cmap = plt.get_cmap("tab20")
    total_cap = sum(s.battery.capacity_wh for s in sites)
    n = min(len(traces[s.id].t) for s in sites)
    t_ref = [t.astimezone(JST) for t in traces[sites[0].id].t[:n]]
    for k, s in enumerate(sites):
        tr = traces[s.id]
        ax.plot([t.astimezone(JST) for t in tr.t], tr.soc, lw=0.8, alpha=0.55, color=cmap(k % 20), label=s.id)
    fleet_soc = 100 * np.sum([np.asarray(traces[s.id].stored_wh[:n]) for s in sites], axis=0) / total_cap
    ax.plot(t_ref, fleet_soc, lw=2.6, color="black", label="fleet (energy)")
    seen = set()
    for m in outcome.marks:
        style = MARK_STYLES.get(m.kind)
        if style is None:
            continue
        colour, ls, label = style
        ax.axvline(m.t.astimezone(JST), color=colour, ls=ls, lw=1.4, label=None if m.kind in seen else label)
        seen.add(m.kind)
    ax.set_ylabel("state of charge [%]")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"Drill '{outcome.scenario.name}': state of charge, warnings and switches")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.9)

    for row, s in enumerate(sites):
        tr = traces[s.id]
        times = [t.astimezone(JST) for t in tr.t]
        for a, b, mode in _mode_spans(times, tr.mode):
            gantt.barh(row, mdates.date2num(b) - mdates.date2num(a), left=mdates.date2num(a), height=0.8,
                       color=MODE_COLOURS.get(mode, "#cccccc"), edgecolor="none")
        for o in (outcome.halls[s.id].outages if s.id in outcome.halls else []):
            a, b = o.start.astimezone(JST), o.end.astimezone(JST)
            gantt.barh(row, mdates.date2num(b) - mdates.date2num(a), left=mdates.date2num(a), height=0.3,
                       color="#222222", edgecolor="none")
    gantt.set_yticks(range(len(sites)), [s.id for s in sites], fontsize=8)
    gantt.invert_yaxis()
    gantt.set_xlabel("time (JST)")
    handles = [Patch(color=c, label=m) for m, c in MODE_COLOURS.items() if m != "starting"]
    handles.append(Patch(color="#222222", label="grid outage"))
    gantt.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    gantt.set_title("mode of each hall (colour) and its grid outages (black bar)", fontsize=10)
    gantt.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=JST))
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_backup_hours(outcome: Any, path: Path) -> Path:
    """Bars per hall: reserve hours at the warning, at the start of its longest outage, and hours served."""
    halls = list(outcome.halls.values())
    ids = [h.site for h in halls]
    at_warning, at_outage, served, owed, lengths = [], [], [], [], []
    for h in halls:
        at_warning.append(h.hours_at_warning if h.hours_at_warning is not None else np.nan)
        longest = max(h.outages, key=lambda o: o.length_h, default=None)
        at_outage.append(longest.hours_left_at_start if longest and longest.hours_left_at_start is not None
                         else np.nan)
        served.append(longest.served_h if longest else np.nan)
        owed.append(min(longest.length_h, longest.guaranteed_h) if longest else np.nan)
        lengths.append(longest.length_h if longest else np.nan)
    x = np.arange(len(ids))
    w = 0.27
    fig, ax = plt.subplots(figsize=(13, 5.8))
    ax.bar(x - w, at_warning, w, color="#4c72b0", label="reserve when the warning came [h]")
    ax.bar(x, at_outage, w, color="#8172b3", label="reserve when the grid failed (longest outage) [h]")
    bars = ax.bar(x + w, served, w, color="#55a868", label="critical load served without a gap [h]")
    for i in range(len(ids)):
        if not np.isnan(owed[i]):
            ax.plot([x[i] + w / 2, x[i] + 1.5 * w], [owed[i], owed[i]], color="black", lw=2.2)
            if served[i] + 1e-9 < owed[i]:
                bars[i].set_color("#c44e52")
            ax.annotate(f"{lengths[i]:.1f} h\noutage", (x[i] + w, max(served[i], owed[i])), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize=7)
        if halls[i].battery_failed:
            ax.annotate("battery\nfailed", (x[i], 0.3), ha="center", fontsize=8, color="#a23b72", fontweight="bold")
    h_dis = max((h.h_disaster for h in halls), default=12.0)
    h_vpp = max((h.h_vpp for h in halls), default=4.0)
    ax.axhline(h_dis, color="#d62728", ls="--", lw=1.5, label=f"H_disaster = {h_dis:g} h")
    ax.axhline(h_vpp, color="#ff7f0e", ls=":", lw=1.5, label=f"H_vpp = {h_vpp:g} h")
    ax.plot([], [], color="black", lw=2, label="hours owed in that outage")
    ax.set_xticks(x, ids, rotation=45, ha="right")
    ax.set_ylabel("hours of critical load [h]")
    ax.set_title(f"Drill '{outcome.scenario.name}': backup hours per hall "
                 "(a red bar served fewer hours than owed)")
    ax.grid(axis="y", alpha=0.3)
    values = np.concatenate([np.asarray(v, float) for v in (at_warning, at_outage, served)] + [[h_dis]])
    ax.set_ylim(0, max(h_dis * 1.2, np.nanmax(values) * 1.2))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
