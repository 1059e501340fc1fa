// Small SVG time-series charts: lines (solid, dashed, stepped), mode bands, hover read-out.
// No library, no network.  Times are shown in Asia/Tokyo.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const TZ = "Asia/Tokyo";
  const W = 640, H = 220, M = { l: 46, r: 12, t: 10, b: 24 };

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  const fmtTime = (ms, spanMs) => {
    const d = new Date(ms);
    const opts = spanMs > 2 * 86400e3
      ? { month: "numeric", day: "numeric", hour: "2-digit", timeZone: TZ, hour12: false }
      : { hour: "2-digit", minute: "2-digit", timeZone: TZ, hour12: false };
    return d.toLocaleString("ja-JP", opts);
  };

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(6));
    return out;
  }

  function timeTicks(t0, t1) {
    const steps = [10, 30, 60, 300, 600, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map(s => s * 1e3);
    const step = steps.find(s => (t1 - t0) / s <= 7) || steps[steps.length - 1];
    const offset = 9 * 3600e3; // ticks on round JST times
    const out = [];
    for (let t = Math.ceil((t0 + offset) / step) * step - offset; t <= t1; t += step) out.push(t);
    return out;
  }

  /**
   * Draw a chart into `box` (a .chart element).
   * opts: {title, unit, start, end (ms), series: [{name, color, points: [[ms, v]], dash, step, width}],
   *        bands: [{from, to, color, label}], yMin, yMax, zeroLine, fmt}
   */
  function draw(box, opts) {
    box.innerHTML = "";
    const h3 = document.createElement("h3");
    h3.textContent = opts.title + (opts.unit ? ` [${opts.unit}]` : "");
    box.appendChild(h3);
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const s of opts.series) {
      const item = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = s.color;
      if (s.dash) sw.style.background = `repeating-linear-gradient(90deg, ${s.color} 0 4px, transparent 4px 7px)`;
      item.append(sw, s.name);
      legend.appendChild(item);
    }
    const shaded = [...new Set((opts.bands || []).map(b => b.mode).filter(Boolean))];
    for (const m of shaded) {
      const b = opts.bands.find(x => x.mode === m);
      const item = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = b.color; sw.style.opacity = "0.3"; sw.style.height = "10px";
      item.append(sw, t("chart.shaded", { mode: m }));
      legend.appendChild(item);
    }
    box.appendChild(legend);
    const all = opts.series.flatMap(s => s.points.map(p => p[1]));
    if (!all.length) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = t("chart.no_data");
      box.appendChild(empty);
      return;
    }
    const t0 = opts.start, t1 = opts.end;
    let lo = opts.yMin ?? Math.min(...all), hi = opts.yMax ?? Math.max(...all);
    if (opts.zeroLine) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (hi - lo < 1e-9) { hi += 1; lo -= opts.yMin === undefined ? 1 : 0; }
    const pad = (hi - lo) * 0.05;
    if (opts.yMin === undefined) lo -= pad;
    if (opts.yMax === undefined) hi += pad;
    const x = t => M.l + (t - t0) / (t1 - t0) * (W - M.l - M.r);
    const y = v => M.t + (hi - v) / (hi - lo) * (H - M.t - M.b);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": opts.title + (opts.unit ? ` [${opts.unit}]` : "") });
    box.appendChild(svg);
    for (const b of opts.bands || []) {
      const a = Math.max(t0, b.from), z = Math.min(t1, b.to);
      if (z <= a) continue;
      const r = el("rect", { x: x(a), y: M.t, width: Math.max(1, x(z) - x(a)), height: H - M.t - M.b,
        fill: b.color, "fill-opacity": 0.09 }, svg);
      if (b.label) el("title", {}, r).textContent = b.label;
    }
    const grid = el("g", { class: "grid" }, svg), axis = el("g", { class: "axis" }, svg);
    const fmt = opts.fmt || (v => Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : String(+v.toFixed(2)));
    for (const v of niceTicks(lo, hi, 4)) {
      el("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }, grid);
      el("text", { x: M.l - 5, y: y(v) + 4, "text-anchor": "end" }, axis).textContent = fmt(v);
    }
    for (const t of timeTicks(t0, t1)) {
      el("line", { x1: x(t), x2: x(t), y1: M.t, y2: H - M.b }, grid);
      el("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, axis).textContent = fmtTime(t, t1 - t0);
    }
    if (opts.zeroLine && lo < 0 && hi > 0) {
      el("line", { x1: M.l, x2: W - M.r, y1: y(0), y2: y(0), stroke: "#9aa5b1", "stroke-width": 1 }, svg);
    }
    for (const s of opts.series) {
      if (!s.points.length) continue;
      let d = "";
      s.points.forEach(([t, v], i) => {
        if (i === 0) d += `M${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        else if (s.step) d += `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
        else d += `L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      });
      el("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.8,
        "stroke-dasharray": s.dash ? "5 4" : "", "vector-effect": "non-scaling-stroke",
        "stroke-linejoin": "round" }, svg);
    }
    // Hover read-out: the nearest point of every series at the mouse time.
    const cursor = el("line", { y1: M.t, y2: H - M.b, stroke: "#16283d", "stroke-width": 1, visibility: "hidden",
      "vector-effect": "non-scaling-stroke" }, svg);
    const tip = document.createElement("div");
    tip.className = "tip hidden";
    box.appendChild(tip);
    svg.addEventListener("mousemove", ev => {
      const r = svg.getBoundingClientRect();
      const px = (ev.clientX - r.left) / r.width * W;
      const t = t0 + (px - M.l) / (W - M.l - M.r) * (t1 - t0);
      if (t < t0 || t > t1) return;
      cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
      const lines = [fmtTime(t, 0) + " JST"];
      for (const s of opts.series) {
        let best = null;
        for (const p of s.points) if (best === null || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
        if (best) lines.push(`${s.name}: ${I18N.num(best[1], 2)} ${opts.unit || ""}`);
      }
      tip.textContent = "";
      lines.forEach((l, i) => { if (i) tip.appendChild(document.createElement("br")); tip.appendChild(document.createTextNode(l)); });
      tip.classList.remove("hidden");
      const left = ev.clientX - box.getBoundingClientRect().left;
      tip.style.left = Math.min(left + 12, box.clientWidth - tip.offsetWidth - 4) + "px";
      tip.style.top = "34px";
    });
    svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); tip.classList.add("hidden"); });
  }

  return { draw, fmtTime };
})();
