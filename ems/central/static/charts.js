// Time-series charts on uPlot (vendored in static/vendor/uplot, MIT): lines (solid, dashed, stepped), mode
// bands, a zero line, the value of every series at the cursor in the legend, drag to zoom, double-click back.
// Times are shown in Asia/Tokyo.  Same interface as the hand-written SVG charts it replaced: Charts.draw(box, opts).
"use strict";

const Charts = (() => {
  const TZ = "Asia/Tokyo";
  const H = 220;
  const live = new WeakMap();  // box -> uPlot instance (destroyed before a redraw)

  const tzDate = ts => uPlot.tzDate(new Date(ts * 1e3), TZ);
  const fmtTime = (ms, spanMs) => I18N.shortTime(ms, spanMs > 2 * 86400e3);

  /** One x array (seconds) for all series, each series' values at those times (null where it has none). */
  function align(series) {
    const xs = [...new Set(series.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const ys = series.map(s => {
      const y = new Array(xs.length).fill(null);
      for (const [t, v] of s.points) y[index.get(t)] = v;
      return y;
    });
    return [xs.map(x => x / 1e3), ...ys];
  }

  /** Mode bands behind the lines, drawn on the canvas before the series. */
  function bandsPlugin(bands) {
    return {
      hooks: {
        drawClear: u => {
          const ctx = u.ctx, { top, height } = u.bbox;
          ctx.save();
          for (const b of bands) {
            const x0 = u.valToPos(b.from / 1e3, "x", true), x1 = u.valToPos(b.to / 1e3, "x", true);
            const a = Math.max(u.bbox.left, x0), z = Math.min(u.bbox.left + u.bbox.width, x1);
            if (z <= a) continue;
            ctx.globalAlpha = 0.10;
            ctx.fillStyle = b.color;
            ctx.fillRect(a, top, Math.max(1, z - a), height);
          }
          ctx.restore();
        },
      },
    };
  }

  // The legend of the mode bands (uPlot draws the series' own legend).
  function bandLegendItem(color, text) {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = color;
    sw.style.opacity = "0.3";
    sw.style.height = "10px";
    item.append(sw, text);
    return item;
  }

  /**
   * Draw a chart into `box` (a .chart element).
   * opts: {title, unit, start, end (ms), series: [{name, color, points: [[ms, v]], dash, step, width}],
   *        bands: [{from, to, color, label, mode}], yMin, yMax, zeroLine, fmt}
   */
  function draw(box, opts) {
    const old = live.get(box);
    if (old) { old.destroy(); live.delete(box); }
    box.replaceChildren();
    const h3 = document.createElement("h3");
    h3.textContent = opts.title + (opts.unit ? ` [${opts.unit}]` : "");
    box.appendChild(h3);
    const legend = document.createElement("div");
    legend.className = "legend";
    // The series' own legend is uPlot's (below the plot, with the values at the cursor); here only the bands.
    for (const m of [...new Set((opts.bands || []).map(b => b.mode).filter(Boolean))]) {
      legend.appendChild(bandLegendItem(opts.bands.find(x => x.mode === m).color, t("chart.shaded", { mode: m })));
    }
    box.appendChild(legend);
    const series = opts.series.filter(s => s.points.length);
    if (!series.length) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = t("chart.no_data");
      box.appendChild(empty);
      return;
    }
    const plotBox = document.createElement("div");
    plotBox.className = "plot";
    plotBox.setAttribute("role", "img");
    plotBox.setAttribute("aria-label", opts.title + (opts.unit ? ` [${opts.unit}]` : ""));
    box.appendChild(plotBox);
    const fmt = opts.fmt || (v => v === null || v === undefined ? "—" : I18N.num(v, Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2));
    const range = (u, lo, hi) => {
      if (lo === null || hi === null) { lo = 0; hi = 1; }
      if (opts.zeroLine) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
      if (hi - lo < 1e-9) { hi += 1; if (opts.yMin === undefined) lo -= 1; }
      const pad = (hi - lo) * 0.05;
      return [opts.yMin ?? lo - pad, opts.yMax ?? hi + pad];
    };
    const width = Math.max(280, box.clientWidth - 16);
    const u = new uPlot({
      width, height: H, tzDate,
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true, min: opts.start / 1e3, max: opts.end / 1e3 }, y: { range } },
      axes: [
        { stroke: "#56626f", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#d7dde3" },
          values: (u, splits) => splits.map(s => fmtTime(s * 1e3, (opts.end - opts.start))) },
        { stroke: "#56626f", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#d7dde3" }, size: 52,
          values: (u, splits) => {
            const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
            // as many decimals as the step needs: 2.5 h steps show 2.5 and 7.5, not 3 and 8
            const digits = [0, 1, 2, 3].find(d => Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6) ?? 3;
            return splits.map(v => opts.fmt ? opts.fmt(v) : I18N.num(v, digits));
          } },
      ],
      series: [
        { label: t("chart.time"), value: (u, v) => v === null || v === undefined ? "—" : I18N.dateTime(v * 1e3) + " JST" },
        ...series.map(s => ({
          label: s.name, stroke: s.color, width: s.width || 1.8, dash: s.dash ? [5, 4] : undefined, spanGaps: true,
          paths: s.step ? uPlot.paths.stepped({ align: 1 }) : undefined, points: { show: s.points.length < 3, size: 6 },
          value: (u, v) => v === null || v === undefined ? "—" : `${fmt(v)} ${opts.unit || ""}`,
        })),
      ],
      plugins: [bandsPlugin(opts.bands || [])],
      hooks: opts.zeroLine ? { draw: [u => {
        const y = u.valToPos(0, "y", true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
        u.ctx.save(); u.ctx.strokeStyle = "#9aa5b1"; u.ctx.lineWidth = 1;
        u.ctx.beginPath(); u.ctx.moveTo(u.bbox.left, y); u.ctx.lineTo(u.bbox.left + u.bbox.width, y); u.ctx.stroke(); u.ctx.restore();
      }] } : {},
    }, align(series), plotBox);
    live.set(box, u);
    // Follow the width of the page (charts sit in a grid).
    if (!box._resize) {
      box._resize = new ResizeObserver(() => { const x = live.get(box); if (x) x.setSize({ width: Math.max(280, box.clientWidth - 16), height: H }); });
      box._resize.observe(box);
    }
  }

  return { draw };
})();
