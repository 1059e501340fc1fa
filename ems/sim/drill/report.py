"""The drill report: ``summary.md``, ``summary.html``, ``results.json`` and the PNG plots, in one folder.

The summary is built once as a list of blocks (headings, paragraphs, tables,
images) and rendered twice, to Markdown and to a self-contained HTML page.
Times are shown in Japan time (JST); energies in kWh or Wh, hours in h,
money in JPY, as the column headers say.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ems.sim.drill.promises import DrillOutcome, HallResult

JST = timezone(timedelta(hours=9), "JST")
Block = tuple  # ("h1"|"h2"|"p"|"table"|"img", ...)


def _t(t: datetime | None) -> str:
    return t.astimezone(JST).strftime("%m-%d %H:%M") if t else "–"


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _kwh(wh: float | None) -> str:
    return "–" if wh is None else f"{wh / 1000:.1f}"


def _verdict(o: DrillOutcome) -> str:
    broken = o.broken
    return "PASSED: every promise kept" if not broken else f"FAILED: {len(broken)} promise(s) broken"


def _hall_rows(o: DrillOutcome) -> list[list[str]]:
    rows = []
    for h in o.halls.values():
        outs = h.outages
        rows.append([
            h.site, h.warned_by or "–", _t(h.warned_at), _kwh(h.energy_at_warning_wh), _f(h.hours_at_warning),
            _f(h.time_to_reserve_h, "{:.2f}"),
            " + ".join(f"{x.length_h:.1f}" for x in outs) or "–",
            " + ".join(f"{min(x.length_h, x.guaranteed_h):.1f}" for x in outs) or "–",
            " + ".join(f"{x.served_h:.1f}" for x in outs) or "–",
            f"{sum(x.unserved_wh for x in outs):.0f}" if outs else "–",
            _kwh(sum(x.shed_wh for x in outs)) if outs else "–",
            f"{h.vpp_revenue_jpy:.0f}", h.final_mode + (" (battery failed)" if h.battery_failed else ""),
        ])
    return rows


HALL_HEADERS = ["hall", "switched by", "switched at (JST)", "energy at warning [kWh]", "reserve at warning [h]",
                "time to H_disaster [h]", "outage length [h]", "owed [h]", "served without gap [h]",
                "unserved critical [Wh]", "non-critical shed [kWh]", "VPP revenue before event [JPY]", "final mode"]


def _outage_rows(o: DrillOutcome) -> list[list[str]]:
    rows = []
    for h in o.halls.values():
        for x in h.outages:
            rows.append([h.site, _t(x.start), _t(x.end), f"{x.length_h:.1f}", f"{x.soc_at_start:.0f}",
                         _f(x.hours_left_at_start), x.basis, f"{x.served_h:.1f}", f"{x.unserved_wh:.0f}",
                         _kwh(x.shed_wh), _f(x.islanded_after_min, "{:.0f}"), _f(x.resynced_after_min, "{:.0f}"),
                         "kept" if x.ok else "BROKEN"])
    return rows


def _command_rows(o: DrillOutcome) -> list[list[str]]:
    return [[_t(c.sent_at), c.actor, c.op_kind, c.site, c.mode, c.status,
             _f(c.delay_sim_s, "{:.0f}"), _f(c.delay_wall_s, "{:.2f}"), c.reason[:80]] for c in o.commands]


def _promise_rows(o: DrillOutcome) -> list[list[str]]:
    by: dict[str, list] = {}
    for c in o.checks:
        by.setdefault(c.promise, []).append(c)
    rows = []
    for promise, checks in by.items():
        bad = [c for c in checks if not c.ok]
        rows.append([promise, f"{len(checks) - len(bad)}/{len(checks)}", "kept" if not bad else "BROKEN",
                     "; ".join(f"{c.subject}: {c.detail}" for c in bad)[:600]
                     or f"e.g. {checks[0].subject}: {checks[0].detail}"[:200]])
    return rows


def build_blocks(o: DrillOutcome, images: dict[str, str]) -> list[Block]:
    s = o.scenario
    blocks: list[Block] = [
        ("h1", f"Drill '{s.name}': {_verdict(o)}"),
        ("p", s.description.strip() or "(no description)"),
        ("p", f"Start {s.start.astimezone(JST):%Y-%m-%d %H:%M} JST, {s.duration_h:g} h simulated at {o.speed:g}× "
              f"in {o.wall_s:.0f} s of wall time; seed {s.seed}; fleet '{o.fleet.fleet.name}' "
              f"({len(o.halls)} halls). Everything ran through the production paths: Modbus TCP to the simulated "
              f"halls, the edge daemons with the optimizer, MQTT, the central service and its HTTP API, telemetry "
              f"outboxes shipped to the history store."),
        ("h2", "Promises"),
        ("table", ["promise", "kept", "result", "details (every broken one, else an example)"], _promise_rows(o)),
        ("h2", "Halls"),
        ("p", "Energy and reserve hours are taken when the hall's first disaster switch was sent (JMA or staff). "
              "Reserve hours are what the hall reports (configured average critical load). 'Owed' is min(outage "
              "length, guaranteed hours); 'served without gap' counts from the outage start to the first unserved "
              "critical energy. VPP revenue: grid bill without the battery minus the bill with it, at the hall's "
              "JEPX-like buy/sell prices, from the start until the hall's first switch or outage."),
        ("table", HALL_HEADERS, _hall_rows(o)),
    ]
    if "fleet_soc" in images:
        blocks.append(("img", images["fleet_soc"], "fleet state of charge, marks and modes"))
    if "backup_hours" in images:
        blocks.append(("img", images["backup_hours"], "backup hours per hall"))
    arrival = [c for c in o.checks if c.promise == "reserve_by_arrival"]
    if arrival:
        blocks += [("h2", "Reserve by the typhoon's forecast arrival"),
                   ("p", "Each hall a typhoon forecast reached: switched by the JMA typhoon trigger before any "
                         "warning, and its H_disaster reserve by the forecast arrival of storm-force wind — or why "
                         "its battery, inverter or grid connection could not charge that much in time."),
                   ("table", ["hall", "result", "details"],
                    [[c.subject, "unreachable" if c.ok and c.detail.startswith("unreachable") else
                      "kept" if c.ok else "BROKEN", c.detail] for c in arrival])]
    outages = _outage_rows(o)
    if outages:
        blocks += [("h2", "Outages"),
                   ("table", ["hall", "start (JST)", "end (JST)", "length [h]", "SoC at start [%]",
                              "reserve at start [h]", "guaranteed", "served without gap [h]",
                              "unserved critical [Wh]", "non-critical shed [kWh]", "islanded seen after [min]",
                              "back from islanded after grid return [min]", "promise"], outages),
                   ("p", "The physics islands the hall at once (the backup panel carries the shelter); the "
                         "daemon sees it within its loss debounce and leaves islanded only after the grid was "
                         "stable for its return debounce, both counted in control cycles, so in simulated time "
                         "they grow with the speed of the drill.")]
    blocks += [("h2", "Command audit"),
               ("p", "Every mode command sent by the central service (from its hash-chained audit log), who asked "
                     "for it and each hall's ack. Delays in simulated seconds and in wall seconds "
                     f"(limit {s.promises.ack_within_s:g} s wall)."),
               ("table", ["sent (JST)", "who", "operation", "hall", "mode", "ack", "delay [s sim]",
                          "delay [s wall]", "reason"], _command_rows(o)) if o.commands else
               ("p", "No mode commands were sent in this drill.")]
    blocks += [("h2", "Timeline"),
               ("table", ["time (JST)", "what", "halls", "details"],
                [[_t(m.t), m.kind, ", ".join(m.halls) if len(m.halls) < 15 else "all", m.label] for m in o.marks])]
    t = o.telemetry
    blocks += [("h2", "Telemetry"),
               ("p", (f"{t.produced} points produced by the halls' outboxes, {t.stored} in the history store, "
                      f"{t.pending} pending, {t.dropped} dropped, {t.rejected} rejected: {t.lost} lost.")
                if t is not None else "Shipped to InfluxDB: not counted by the drill.")]
    if o.observations:
        blocks += [("h2", "Observations"), ("list", o.observations)]
    return blocks


# -- rendering -------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}\n")
        elif kind == "h2":
            out.append(f"## {b[1]}\n")
        elif kind == "p":
            out.append(f"{b[1]}\n")
        elif kind == "list":
            out.append("\n".join(f"- {_md_cell(x)}" for x in b[1]) + "\n")
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})\n")
        elif kind == "table":
            headers, rows = b[1], b[2]
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("")
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;"
        "font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}.bad{color:#b00;font-weight:bold}")


def to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    out = [f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{_CSS}</style><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "img":
            out.append(f"<p><img src='{e(b[1])}' alt='{e(b[2])}'></p>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(
                f"<td class='bad'>{e(c)}</td>" if str(c) in ("BROKEN",) else f"<td>{e(str(c))}</td>" for c in r)
                + "</tr>" for r in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out)


def results_json(o: DrillOutcome) -> dict[str, Any]:
    """Machine-readable results: verdict, checks, per-hall figures, commands, telemetry."""
    def hall(h: HallResult) -> dict[str, Any]:
        return {"site": h.site, "warned_at": h.warned_at, "warned_by": h.warned_by,
                "energy_at_warning_wh": h.energy_at_warning_wh, "hours_at_warning": h.hours_at_warning,
                "time_to_reserve_h": h.time_to_reserve_h, "vpp_revenue_jpy": h.vpp_revenue_jpy,
                "final_mode": h.final_mode, "battery_failed": h.battery_failed,
                "outages": [{"start": x.start, "end": x.end, "length_h": x.length_h, "guaranteed_h": x.guaranteed_h,
                             "served_h": x.served_h, "unserved_wh": x.unserved_wh, "shed_wh": x.shed_wh,
                             "ok": x.ok} for x in h.outages]}

    return {"scenario": o.scenario.name, "exit_code": o.exit_code, "speed": o.speed, "wall_s": o.wall_s,
            "checks": [{"promise": c.promise, "subject": c.subject, "ok": c.ok, "detail": c.detail} for c in o.checks],
            "halls": [hall(h) for h in o.halls.values()],
            "commands": [{"site": c.site, "mode": c.mode, "actor": c.actor, "op_kind": c.op_kind, "status": c.status,
                          "sent_at": c.sent_at, "acked_at": c.acked_at, "delay_wall_s": c.delay_wall_s}
                         for c in o.commands],
            "telemetry": o.telemetry.to_dict() if o.telemetry is not None else None,
            "liveness": o.liveness, "observations": o.observations}


def write_report(o: DrillOutcome, folder: Path) -> dict[str, Path]:
    """Write summary.md, summary.html, results.json, fleet_soc.png and backup_hours.png into ``folder``."""
    from ems.sim.drill.plots import plot_backup_hours, plot_fleet_soc

    folder.mkdir(parents=True, exist_ok=True)
    files = {"fleet_soc": plot_fleet_soc(o, folder / "fleet_soc.png"),
             "backup_hours": plot_backup_hours(o, folder / "backup_hours.png")}
    blocks = build_blocks(o, {k: p.name for k, p in files.items()})
    files["summary_md"] = folder / "summary.md"
    files["summary_md"].write_text(to_markdown(blocks), encoding="utf-8")
    files["summary_html"] = folder / "summary.html"
    files["summary_html"].write_text(to_html(blocks, f"Drill {o.scenario.name}"), encoding="utf-8")
    files["results"] = folder / "results.json"
    files["results"].write_text(json.dumps(results_json(o), default=_json_default, indent=1, ensure_ascii=False),
                                encoding="utf-8")
    return files


def _json_default(x: Any) -> Any:
    if isinstance(x, datetime):
        return x.isoformat()
    raise TypeError(f"cannot encode {type(x).__name__}")


def results_table(o: DrillOutcome) -> str:
    """A short plain-text table of the halls for the terminal."""
    lines = [f"{'hall':8} {'switched':>11} {'res@warn h':>10} {'to 12h h':>8} {'outage h':>9} {'owed h':>7} "
             f"{'served h':>9} {'unserved Wh':>11} {'shed kWh':>8} {'VPP JPY':>8}"]
    for r in _hall_rows(o):
        lines.append(f"{r[0]:8} {r[2]:>11} {r[4]:>10} {r[5]:>8} {r[6]:>9} {r[7]:>7} {r[8]:>9} {r[9]:>11} "
                     f"{r[10]:>8} {r[11]:>8}")
    return "\n".join(lines)
