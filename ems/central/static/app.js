// Shelter EMS dashboard: one page, hash routes, polling the JSON API.  No build step, no network but our own.
// Every value from the API goes into the page as text (never as HTML).
"use strict";

const TZ = "Asia/Tokyo";
const MODE_LABEL = { vpp: "VPP", disaster_reserve: "Disaster reserve 災害", islanded: "Islanded 自立", manual: "Manual", safe: "Safe" };
const MODE_COLOR = { vpp: "#2563eb", disaster_reserve: "#dc2626", islanded: "#7c3aed", manual: "#b45309", safe: "#4b5563" };
const S = { me: null, csrf: null, fleet: null, view: null, timer: null, sort: { key: "site", desc: false }, area: "", filter: "" };

// ---------------------------------------------------------------- helpers
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "style") e.style.cssText = v;  // CSSOM, allowed by the CSP (style attributes are not)
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const $ = sel => document.querySelector(sel);
const can = p => !!S.me && S.me.permissions.includes(p);
const kw = w => (w === null || w === undefined) ? "—" : (w / 1000).toFixed(1);
const pct = v => (v === null || v === undefined) ? "—" : v.toFixed(0) + " %";
const jst = iso => iso ? new Date(iso).toLocaleString("ja-JP", { timeZone: TZ, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "—";
const hoursClass = (hrs, need) => hrs === null || hrs === undefined ? "" : hrs < Math.min(4, need) ? "low" : hrs < need ? "mid" : "good";
const fmtHours = hrs => hrs === null || hrs === undefined ? "—" : hrs >= 100 ? "100+" : hrs.toFixed(1);

function modePill(mode) {
  return h("span", { class: "mode " + (mode || "unknown") }, mode ? (MODE_LABEL[mode] || mode) : "unknown");
}
function statusPill(status) { return h("span", { class: "status " + status }, status); }
function onlineDot(row) {
  const cls = row.online === false ? "off" : row.online && row.stale ? "stale" : row.online ? "on" : "";
  const title = row.online === false ? "offline" : row.stale ? `stale (${row.state_age_s ?? "?"} s)` : row.online ? "online" : "never heard";
  return h("span", { class: "dot " + cls, title });
}
// Which prices and weather a hall's plan used and when it last heard from the central service (its state's "inputs").
function inputLines(r, withWeather) {
  const i = r.inputs || {};
  const line = (cls, label, english, text) => h("div", { class: "inp " + cls, title: `${english}: ${text}` }, h("span", { class: "muted" }, label), text);
  return [
    line("inp-price", "価格: ", "Prices of the plan", i.price_source || "—"),
    withWeather ? line("inp-weather", "天気: ", "Weather of the plan", i.weather_source || "—") : null,
    line("inp-central", "中央との最終通信: ", "Last message from the central service", i.last_central_at ? jst(i.last_central_at) + " JST" : "—"),
  ];
}
function socCell(v) {
  return h("td", { class: "num" }, h("span", { class: "socbar" }, h("i", { style: `width:${Math.max(0, Math.min(100, v || 0))}%` })), pct(v));
}

class ApiError extends Error {
  constructor(status, body) { super(body && body.message || `HTTP ${status}`); this.status = status; this.body = body; }
  fields() { return Array.isArray(this.body && this.body.detail) ? this.body.detail : []; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && S.csrf) headers["X-CSRF-Token"] = S.csrf;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", cache: "no-store" });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401 && path !== "/api/login") { showLogin(); }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-error").forEach(e => e.textContent = "");
}

function showFieldErrors(form, err) {
  form.querySelectorAll(".field-error").forEach(e => e.textContent = "");
  const general = form.querySelector(".form-error");
  if (general) general.textContent = "";
  let placed = false;
  for (const d of err.fields()) {
    const name = (d.loc || []).filter(p => !["body", "query"].includes(p)).join(".");
    const slot = form.querySelector(`.field-error[data-for="${CSS.escape(name.split(".")[0])}"]`);
    if (slot) { slot.textContent = d.msg; placed = true; }
  }
  if (!placed && general) general.textContent = err.message;
}

function modal(title, body, confirmText, cls) {
  return new Promise(resolve => {
    const root = $("#modal-root");
    const close = ok => { root.replaceChildren(); resolve(ok); };
    root.replaceChildren(h("div", { class: "modal-back" },
      h("div", { class: "modal", role: "dialog", "aria-modal": "true" },
        h("h3", {}, title), body,
        h("div", { class: "row" },
          h("button", { id: "modal-cancel", onclick: () => close(false) }, "Cancel"),
          h("button", { id: "modal-confirm", class: cls || "primary", onclick: () => close(true) }, confirmText)))));
  });
}

// ---------------------------------------------------------------- session
function showLogin() {
  S.me = null; S.csrf = null;
  stopPolling();
  $("#login").classList.remove("hidden");
  $("#view").replaceChildren();
  $("#nav").classList.add("hidden");
  $("#who").classList.add("hidden");
  $("#banners").replaceChildren();
}

function loggedIn(me) {
  S.me = me; S.csrf = me.csrf_token || S.csrf;
  $("#login").classList.add("hidden");
  $("#nav").classList.remove("hidden");
  $("#who").classList.remove("hidden");
  $("#who-name").textContent = me.display_name || me.username;
  $("#who-roles").textContent = "(" + me.roles.join(", ") + ")";
  for (const a of document.querySelectorAll("#nav a[data-perm]")) {
    a.classList.toggle("hidden", !a.dataset.perm.split(" ").some(can));
  }
  startPolling();
  route();
}

$("#login-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    const me = await api("POST", "/api/login", { username: $("#login-username").value, password: $("#login-password").value });
    $("#login-password").value = "";
    loggedIn(me);
  } catch (e) {
    $("#login-error").textContent = e.status === 429 ? e.message : e.status === 401 ? "Wrong user name or password" : e.message;
  }
});
$("#logout").addEventListener("click", async () => { try { await api("POST", "/api/logout"); } catch (e) { /* gone anyway */ } showLogin(); });

// ---------------------------------------------------------------- polling and routing
function stopPolling() { if (S.timer) clearInterval(S.timer); S.timer = null; }
function startPolling() { stopPolling(); refreshFleet(); S.timer = setInterval(refreshFleet, 2500); }

async function refreshFleet() {
  if (!S.me) return;
  try {
    S.fleet = await api("GET", "/api/fleet");
  } catch (e) { return; }
  renderBanners();
  const openAlarms = S.fleet.halls.reduce((n, r) => n + r.open_alarms, 0);
  const badge = $("#alarm-badge");
  badge.textContent = openAlarms; badge.classList.toggle("zero", openAlarms === 0);
  if (S.view && S.view.update) S.view.update();
}

function renderBanners() {
  const box = $("#banners");
  const kids = [];
  const names = Object.fromEntries(S.fleet.halls.map(r => [r.site, r.name]));
  for (const s of S.fleet.suggestions || []) {
    kids.push(h("div", { class: "banner", dataset: { suggestion: s.id } },
      h("b", {}, "JMA: warning cancelled"),
      h("span", {}, `${names[s.site] || s.site}: ${s.reason}. It may return to VPP — only staff can do that (Disaster panel).`),
      can("return_to_vpp") ? h("button", { onclick: async () => { await api("POST", `/api/jma/suggestions/${s.id}/dismiss`); refreshFleet(); } }, "Dismiss") : null));
  }
  if (S.fleet.jma && S.fleet.jma.enabled && S.fleet.jma.last_error) {
    kids.push(h("div", { class: "banner jma-error" }, h("b", {}, "JMA feed problem: "), S.fleet.jma.last_error));
  }
  box.replaceChildren(...kids);
}

const VIEWS = {};
function route() {
  if (!S.me) return;
  const parts = (location.hash || "#/fleet").slice(2).split("/");
  let name = parts[0] || "fleet";
  if (!VIEWS[name]) name = "fleet";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.nav === (name === "site" ? "fleet" : name));
  if (S.view && S.view.unmount) S.view.unmount();
  const box = $("#view");
  box.replaceChildren();
  S.view = VIEWS[name](box, parts.slice(1).map(decodeURIComponent));
  if (S.fleet && S.view.update) S.view.update();
}
window.addEventListener("hashchange", route);
setInterval(() => { $("#clock").textContent = new Date().toLocaleString("ja-JP", { timeZone: TZ }) + " JST"; }, 1000);

// ---------------------------------------------------------------- fleet overview
const COLUMNS = [
  ["site", "Hall"], ["area_code", "Area"], ["mode", "Mode / reason"], ["soc_pct", "SoC", "num"],
  ["battery_w", "Battery kW", "num"], ["pv_w", "PV kW", "num"], ["grid_w", "Grid kW", "num"],
  ["hours_left", "Hours left", "num"], ["online", "Online"], [null, "Last ack"], [null, "入力 Inputs"], ["open_alarms", "Alarms", "num"],
];

VIEWS.fleet = box => {
  const summary = h("div", { class: "row", id: "fleet-summary" });
  const areaSel = h("select", { id: "area-filter", onchange: () => { S.area = areaSel.value; update(); } }, h("option", { value: "" }, "All areas"));
  const text = h("input", { id: "text-filter", placeholder: "filter halls…", value: S.filter, oninput: () => { S.filter = text.value; update(); } });
  const head = h("tr", {}, COLUMNS.map(([key, label, cls]) => h("th", {
    class: [key ? "sortable" : "", cls || "", S.sort.key === key ? "sorted" + (S.sort.desc ? "" : " asc") : ""].join(" "),
    onclick: key ? () => { S.sort = { key, desc: S.sort.key === key ? !S.sort.desc : false }; route(); } : null,
  }, label)));
  const body = h("tbody", { id: "fleet-body" });
  box.append(h("div", { class: "panel" }, summary), h("div", { class: "panel" },
    h("div", { class: "row", style: "margin-bottom:8px" }, h("h2", { style: "margin:0" }, "Fleet"), areaSel, text,
      h("span", { class: "muted small" }, "click a hall for live values and history")),
    h("table", { id: "fleet-table" }, h("thead", {}, head), body)));

  function update() {
    const f = S.fleet;
    if (areaSel.options.length === 1) for (const a of f.areas) areaSel.append(h("option", { value: a.area_code }, `${a.area_name || a.area_code} (${a.halls})`));
    areaSel.value = S.area;
    let rows = f.halls.filter(r => (!S.area || r.area_code === S.area) &&
      (!S.filter || (r.name + r.site + r.area_name).toLowerCase().includes(S.filter.toLowerCase())));
    const k = S.sort.key;
    rows = rows.slice().sort((a, b) => {
      const va = a[k], vb = b[k];
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      const c = typeof va === "string" ? va.localeCompare(vb) : va - vb;
      return S.sort.desc ? -c : c;
    });
    body.replaceChildren(...rows.map(r => h("tr", { class: "clickable mode-" + r.mode + (r.online === false ? " offline" : ""), dataset: { site: r.site }, onclick: () => { location.hash = "#/site/" + r.site; } },
      h("td", {}, h("div", { class: "hall-name" }, r.name), h("div", { class: "muted small" }, r.site)),
      h("td", {}, r.area_name || "", h("div", { class: "muted small" }, r.area_code)),
      h("td", {}, modePill(r.mode), h("div", { class: "reason", title: r.mode_reason || "" }, r.mode_reason || "")),
      socCell(r.soc_pct),
      h("td", { class: "num" }, kw(r.battery_w)), h("td", { class: "num" }, kw(r.pv_w)), h("td", { class: "num" }, kw(r.grid_w)),
      h("td", { class: "num" }, h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster) }, fmtHours(r.hours_left)), h("span", { class: "muted small" }, " h")),
      h("td", {}, onlineDot(r), r.stale && r.online ? h("span", { class: "small muted" }, " stale") : ""),
      h("td", { class: "small" }, r.last_ack ? [statusPill(r.last_ack.status), " ", r.last_ack.kind || "", h("div", { class: "muted" }, jst(r.last_ack.at))] : "—"),
      h("td", { class: "small inputs" }, inputLines(r, false)),
      h("td", { class: "num" }, h("span", { class: "badge" + (r.open_alarms ? "" : " zero") }, r.open_alarms)))));
    const counts = {};
    for (const r of f.halls) counts[r.mode || "unknown"] = (counts[r.mode || "unknown"] || 0) + 1;
    const online = f.halls.filter(r => r.online && !r.stale).length;
    const hrs = f.halls.map(r => r.hours_left).filter(v => v !== null && v !== undefined);
    summary.replaceChildren(
      h("span", { class: "chip" }, h("b", {}, `${online}/${f.halls.length}`), "online"),
      ...Object.entries(counts).map(([m, n]) => h("span", { class: "chip" }, h("b", {}, n), modePill(m === "unknown" ? null : m))),
      h("span", { class: "chip" }, h("b", { class: "hours " + hoursClass(hrs.length ? Math.min(...hrs) : null, 12) }, hrs.length ? fmtHours(Math.min(...hrs)) + " h" : "—"), "shortest hours of power"),
      h("span", { class: "chip" }, h("b", {}, kw(f.halls.reduce((s, r) => s + (r.stored_wh || 0), 0))), "kWh stored"));
  }
  return { update };
};

// ---------------------------------------------------------------- hall detail
const RANGES = ["1h", "6h", "24h", "7d", "30d"];
VIEWS.site = (box, [siteId]) => {
  let range = "24h", custom = null, chartTimer = null;
  const head = h("div", { class: "panel", id: "site-head" });
  const tiles = h("div", { class: "tiles", id: "site-tiles" });
  const from = h("input", { type: "datetime-local", id: "range-from" }), to = h("input", { type: "datetime-local", id: "range-to" });
  const rangeRow = h("div", { class: "row ranges" }, h("b", {}, "Range"),
    RANGES.map(r => h("button", { dataset: { range: r }, class: r === range ? "active" : "", onclick: ev => { range = r; custom = null; mark(); loadCharts(); } }, r)),
    h("span", { class: "muted small" }, "or from"), from, h("span", { class: "muted small" }, "to"), to,
    h("button", { onclick: () => { if (from.value && to.value) { custom = [from.value + ":00+09:00", to.value + ":00+09:00"]; mark(); loadCharts(); } } }, "Show (JST)"),
    h("span", { class: "muted small", id: "hist-note" }));
  const charts = h("div", { class: "charts" });
  const boxes = ["soc", "power", "hours", "price"].map(id => h("div", { class: "chart", id: "chart-" + id }));
  charts.append(...boxes);
  const alarms = h("div", { class: "panel" });
  box.append(h("div", { class: "row", style: "margin-bottom:8px" }, h("a", { href: "#/fleet" }, "← Fleet")), head,
    h("div", { class: "panel" }, tiles), h("div", { class: "panel" }, rangeRow, h("div", { style: "height:10px" }), charts), alarms);

  function mark() { rangeRow.querySelectorAll("button[data-range]").forEach(b => b.classList.toggle("active", !custom && b.dataset.range === range)); }

  async function loadCharts() {
    const q = custom ? `start=${encodeURIComponent(custom[0])}&end=${encodeURIComponent(custom[1])}` : `range=${range}`;
    let d;
    try { d = await api("GET", `/api/sites/${encodeURIComponent(siteId)}/history?${q}`); }
    catch (e) { $("#hist-note").textContent = e.message; return; }
    $("#hist-note").textContent = `${d.backend} history, ${d.step_s} s steps`;
    const t0 = Date.parse(d.start), t1 = Date.parse(d.end);
    const pts = (name, scale) => (d.series[name] || []).map(([t, v]) => [Date.parse(t), v * (scale || 1)]);
    const bands = [];
    d.modes.forEach((m, i) => {  // shade the time spent outside normal VPP operation
      const next = d.modes[i + 1];
      if (m.mode !== "vpp") bands.push({ from: Date.parse(m.time), to: next ? Date.parse(next.time) : t1, color: MODE_COLOR[m.mode] || "#9aa5b1", label: `${m.mode}: ${m.reason || ""}`, mode: m.mode });
    });
    Charts.draw(boxes[0], { title: "State of charge", unit: "%", start: t0, end: t1, yMin: 0, yMax: 100, bands,
      series: [{ name: "actual", color: "#15803d", points: pts("soc_pct") }, { name: "plan", color: "#15803d", dash: true, step: true, points: pts("plan_soc_pct") }] });
    Charts.draw(boxes[1], { title: "Power (+ battery discharging, + grid importing)", unit: "kW", start: t0, end: t1, zeroLine: true, bands,
      series: [{ name: "battery", color: "#2563eb", points: pts("battery_w", 1e-3) }, { name: "plan battery", color: "#2563eb", dash: true, step: true, points: pts("plan_battery_w", 1e-3) },
        { name: "PV", color: "#eab308", points: pts("pv_w", 1e-3) }, { name: "grid", color: "#6b7280", points: pts("grid_w", 1e-3) }] });
    const row = S.fleet && S.fleet.halls.find(r => r.site === siteId);
    const need = row ? row.h_disaster : 12;
    Charts.draw(boxes[2], { title: "Hours of critical power", unit: "h", start: t0, end: t1, yMin: 0, bands,
      series: [{ name: "hours left", color: "#dc2626", points: pts("hours_left_h") }, { name: `${need} h target`, color: "#9aa5b1", dash: true, points: [[t0, need], [t1, need]] }] });
    Charts.draw(boxes[3], { title: "Price (JEPX)", unit: "JPY/kWh", start: t0, end: t1, yMin: 0, bands,
      series: [{ name: "price", color: "#7c3aed", step: true, points: pts("price_jpy_per_kwh") }] });
  }

  async function loadAlarms() {
    let d;
    try { d = await api("GET", `/api/alarms?state=open&site=${encodeURIComponent(siteId)}`); } catch (e) { return; }
    alarms.replaceChildren(h("h2", {}, "Open alarms"), d.alarms.length ? alarmTable(d.alarms, loadAlarms) : h("p", { class: "muted" }, "none"));
  }

  function update() {
    const r = S.fleet.halls.find(x => x.site === siteId);
    if (!r) { head.replaceChildren(h("p", { class: "error" }, `unknown hall ${siteId}`)); return; }
    head.replaceChildren(h("div", { class: "row" }, h("h2", { style: "margin:0;font-size:20px" }, r.name), h("span", { class: "muted" }, `${r.site} · ${r.area_name} (${r.area_code})`),
      modePill(r.mode), onlineDot(r), h("span", { class: "muted small" }, r.online ? (r.stale ? "stale" : "online") : "offline")),
      h("div", { class: "muted", style: "margin-top:6px" }, `Reason: ${r.mode_reason || "—"} · since ${jst(r.mode_since)} · by ${r.mode_by || "—"}`),
      h("div", { class: "small inputs detail", id: "site-inputs", style: "margin-top:6px" }, inputLines(r, true)));
    const tile = (k, v, u, cls) => h("div", { class: "tile " + (cls || "") }, h("div", { class: "k" }, k), h("div", { class: "v" }, v, h("span", { class: "u" }, u)));
    tiles.replaceChildren(
      tile("Hours of critical power", h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster), id: "site-hours" }, fmtHours(r.hours_left)), `h  (target ${r.h_disaster} h)`, "hero"),
      tile("State of charge", r.soc_pct === null ? "—" : r.soc_pct.toFixed(0), `%  of ${(r.capacity_wh / 1000).toFixed(0)} kWh`),
      tile("Battery", kw(r.battery_w), r.battery_w > 0 ? "kW discharging" : "kW charging"),
      tile("PV", kw(r.pv_w), "kW"),
      tile("Grid", kw(r.grid_w), r.grid_ok === false ? "kW — GRID LOST" : r.grid_w < 0 ? "kW exporting" : "kW importing"));
  }
  loadCharts(); loadAlarms();
  chartTimer = setInterval(() => { if (!custom) loadCharts(); loadAlarms(); }, 30000);
  return { update, unmount: () => clearInterval(chartTimer) };
};

// ---------------------------------------------------------------- alarms
function alarmTable(list, reload) {
  const names = S.fleet ? Object.fromEntries(S.fleet.halls.map(r => [r.site, r.name])) : {};
  return h("table", { id: "alarm-table" }, h("thead", {}, h("tr", {}, ["Severity", "Hall", "Code", "Message", "Raised", "Cleared", "Acknowledged", ""].map(t => h("th", {}, t)))),
    h("tbody", {}, list.map(a => h("tr", { dataset: { alarm: a.id } },
      h("td", {}, h("span", { class: "sev " + a.severity }, a.severity)),
      h("td", {}, names[a.site] || a.site), h("td", {}, a.code), h("td", {}, a.message),
      h("td", { class: "small" }, jst(a.raised_at)), h("td", { class: "small" }, a.active ? h("b", {}, "active") : jst(a.cleared_at)),
      h("td", { class: "small" }, a.acked_by ? `${a.acked_by} ${jst(a.acked_at)}${a.ack_note ? " — " + a.ack_note : ""}` : "—"),
      h("td", {}, !a.acked_by && can("ack_alarm") ? h("button", { class: "ack-alarm", onclick: async () => {
        const note = h("input", { id: "ack-note", placeholder: "what was done (optional)", style: "width:100%" });
        if (!await modal("Acknowledge alarm", h("div", {}, h("p", {}, `${names[a.site] || a.site}: ${a.message}`), note), "Acknowledge")) return;
        try { await api("POST", `/api/alarms/${encodeURIComponent(a.id)}/ack`, { note: note.value }); } catch (e) { alert(e.message); }
        reload(); refreshFleet();
      } }, "Ack") : "")))));
}

VIEWS.alarms = box => {
  let state = "open";
  const list = h("div", {});
  const tabs = h("div", { class: "row ranges" }, [["open", "Open"], ["active", "Active"], ["all", "History"]].map(([s, l]) =>
    h("button", { dataset: { state: s }, class: s === state ? "active" : "", onclick: () => { state = s; tabs.querySelectorAll("button").forEach(b => b.classList.toggle("active", b.dataset.state === s)); load(); } }, l)));
  box.append(h("div", { class: "panel" }, h("h2", {}, "Alarms"), tabs, h("div", { style: "height:8px" }), list));
  async function load() {
    try {
      const d = await api("GET", `/api/alarms?state=${state}`);
      list.replaceChildren(d.alarms.length ? alarmTable(d.alarms, load) : h("p", { class: "muted" }, "No alarms."));
    } catch (e) { list.replaceChildren(h("p", { class: "error" }, e.message)); }
  }
  load();
  const t = setInterval(load, 10000);
  return { unmount: () => clearInterval(t) };
};

// ---------------------------------------------------------------- operations (shared by VPP and disaster)
function operationTable(op) {
  const rows = S.fleet ? Object.fromEntries(S.fleet.halls.map(r => [r.site, r])) : {};
  const c = op.counts;
  return h("div", { id: "op-" + op.id, class: "operation", dataset: { op: op.id } },
    h("div", { class: "row" }, h("b", {}, `${op.kind} by ${op.actor}`), h("span", { class: "muted" }, jst(op.created_at)), h("span", {}, `“${op.reason}”`),
      h("span", { class: "op-counts" }, `${c.ok} ok · ${c.sent} waiting · ${c.refused + c.failed} refused/failed · ${c.timeout} no answer`)),
    h("table", { class: "op-table" }, h("thead", {}, h("tr", {}, (op.kind === "dispatch"
      ? ["Hall", "Lease (JST)", "Ack", "Mode now", "Target kW", "Battery now kW", "Off target kW"]
      : ["Hall", "Command", "Ack", "Mode now", "Hours left", "Progress to reserve", "Battery now"]).map(t => h("th", {}, t)))),
      h("tbody", {}, op.commands.map(cmd => {
        const r = rows[cmd.site] || {};
        const prog = r.reserve_progress;
        const first = [h("td", {}, h("div", { class: "hall-name" }, r.name || cmd.site), h("div", { class: "muted small" }, cmd.site))];
        const ack = h("td", { class: "ack-status" }, statusPill(cmd.status), cmd.error ? h("div", { class: "small error" }, cmd.error) : "", cmd.acked_at ? h("div", { class: "muted small" }, jst(cmd.acked_at)) : "");
        if (cmd.kind === "dispatch") {
          const p = cmd.payload, live = Date.parse(p.start) <= Date.now() && Date.now() < Date.parse(p.end);
          return h("tr", { dataset: { site: cmd.site } }, first,
            h("td", { class: "small" }, `${jst(p.start)} – ${jst(p.end)}`, live ? h("b", {}, " (active)") : "", h("div", { class: "muted" }, cmd.command_id)),
            ack, h("td", {}, modePill(r.mode)), h("td", { class: "num" }, kw(p.power_w)), h("td", { class: "num" }, kw(r.battery_w)),
            h("td", { class: "num" }, live && r.battery_w !== null && r.battery_w !== undefined ? kw(r.battery_w - p.power_w) : "—"));
        }
        return h("tr", { dataset: { site: cmd.site } }, first,
          h("td", { class: "small" }, `mode → ${cmd.payload.mode}`, h("div", { class: "muted" }, cmd.command_id)), ack,
          h("td", {}, modePill(r.mode)),
          h("td", { class: "num" }, h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster) }, fmtHours(r.hours_left)), " h"),
          h("td", {}, prog === null || prog === undefined ? "—" : h("span", {}, h("span", { class: "progress" + (prog >= 1 ? " done" : "") }, h("i", { style: `width:${(prog * 100).toFixed(0)}%` })), ` ${(prog * 100).toFixed(0)} % of ${r.h_disaster} h`)),
          h("td", { class: "num" }, kw(r.battery_w), " kW"));
      }))));
}

function opWatcher(slot) {
  let opId = null;
  return {
    set(id) { opId = id; this.update(); },
    async update() {
      if (!opId) return;
      try { slot.replaceChildren(operationTable(await api("GET", `/api/operations/${opId}`))); } catch (e) { /* keep the last view */ }
    },
  };
}

// ---------------------------------------------------------------- disaster panel
function scopeForm(prefix, { danger }) {
  const areas = S.fleet ? S.fleet.areas : [];
  const halls = S.fleet ? S.fleet.halls : [];
  const areaSel = h("select", { id: prefix + "-area" }, areas.map(a => h("option", { value: a.area_code }, `${a.area_name || a.area_code} (${a.halls})`)));
  const picks = h("div", { class: "hall-picks", id: prefix + "-halls" }, halls.map(r => h("label", { class: "inline" }, h("input", { type: "checkbox", value: r.site }), r.name, " ", modePill(r.mode))));
  const radios = ["all", "area", "sites"].map(v => h("input", { type: "radio", name: prefix + "-scope", value: v, id: `${prefix}-scope-${v}`, checked: v === "all",
    onchange: () => { picks.classList.toggle("hidden", v !== "sites"); areaSel.disabled = v !== "area"; } }));
  picks.classList.add("hidden"); areaSel.disabled = true;
  const reason = h("textarea", { id: prefix + "-reason", placeholder: danger ? "e.g. 台風10号接近 — typhoon No.10 approaching" : "e.g. warning lifted, shelters closed" });
  const confirm = h("input", { type: "checkbox", id: prefix + "-confirm" });
  const form = h("form", { id: prefix + "-form" },
    h("div", { class: "row" }, h("label", { class: "inline" }, radios[0], "All halls"), h("label", { class: "inline" }, radios[1], "Area"), areaSel,
      h("label", { class: "inline" }, radios[2], "Chosen halls")), h("div", { class: "field-error", dataset: { for: "scope" } }),
    picks, h("div", { class: "field-error", dataset: { for: "sites" } }),
    h("label", { style: "display:flex" }, "Reason (kept in the audit log and shown at every hall)", reason), h("div", { class: "field-error", dataset: { for: "reason" } }),
    h("label", { class: "inline" }, confirm, danger ? "I confirm: these halls stop VPP trading and charge to the full disaster reserve." : "I confirm: these halls return to normal VPP operation."),
    h("div", { class: "field-error", dataset: { for: "confirm" } }), h("div", { class: "form-error error" }));
  const read = () => {
    const scope = radios.find(r => r.checked).value;
    const body = { scope, reason: reason.value, confirm: confirm.checked };
    if (scope === "area") body.area_code = areaSel.value;
    if (scope === "sites") body.sites = [...picks.querySelectorAll("input:checked")].map(i => i.value);
    return body;
  };
  const describe = body => body.scope === "all" ? `all ${halls.length} halls` : body.scope === "area"
    ? `all halls in ${(areas.find(a => a.area_code === body.area_code) || {}).area_name || body.area_code}` : `${body.sites.length} chosen hall(s)`;
  return { form, read, describe, reset: () => { reason.value = ""; confirm.checked = false; } };
}

/** JMA panel (issue 12): forecast arrival of typhoon storm-force wind per hall, and the last telegram of each kind
 *  with what it did (GET /api/jma/status). Labels through t() when the catalogue has them, else Japanese. */
function jmaForecastPanel() {
  const L = (key, ja) => { const s = typeof t === "function" ? t(key) : key; return s === key ? ja : s; };
  const jst = iso => iso ? new Date(iso).toLocaleString("ja-JP", { timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }) : "—";
  const KIND = { "warning-r06": "気象警報・注意報（Ｒ０６）", warning: "気象警報・注意報", typhoon: "台風", earthquake: "地震", tsunami: "津波" };
  const body = h("div", { id: "jma-forecast" }, h("p", { class: "muted small" }, "…"));
  api("GET", "/api/jma/status").then(st => {
    const names = Object.fromEntries((S.fleet ? S.fleet.halls : []).map(r => [r.site, r.name]));
    const arr = Object.entries(st.typhoon_arrivals || {}).sort((a, b) => a[1].arrival < b[1].arrival ? -1 : 1);
    const rows = arr.map(([site, a]) => h("tr", { dataset: { site } }, h("td", {}, names[site] || site),
      h("td", {}, `台風${a.typhoon.slice(-2)}号 ${a.name || ""}`), h("td", { class: "arrival" }, jst(a.arrival)), h("td", {}, a.area), h("td", { class: "muted small" }, jst(a.report_time))));
    const last = Object.entries(st.last_reports || {}).map(([k, r]) => h("li", { dataset: { kind: k } },
      h("b", {}, KIND[k] || k), ` ${r.title}（${jst(r.report_time)}${r.control_status !== "通常" ? "・" + r.control_status : ""}）: `,
      r.did.length ? r.did.join("、") : L("jma.did_nothing", "動作なし")));
    body.replaceChildren(
      arr.length ? h("table", {}, h("thead", {}, h("tr", {}, [["jma.col_hall", "避難所"], ["jma.col_typhoon", "台風"], ["jma.col_arrival", "暴風域の到達予想"], ["jma.col_area", "区分"], ["jma.col_report", "発表"]].map(([k, ja]) => h("th", {}, L(k, ja))))), h("tbody", {}, rows))
        : h("p", { class: "muted" }, L("jma.no_arrivals", "到達予想なし: リードタイム内に暴風警戒域に入る避難所はありません")),
      h("h3", {}, L("jma.last_reports", "気象庁電文（種類ごとの最新）")),
      last.length ? h("ul", { class: "small" }, last) : h("p", { class: "muted small" }, L("jma.no_reports", "まだ受信していません")));
  }).catch(() => body.replaceChildren(h("p", { class: "muted small" }, L("jma.status_unavailable", "気象庁情報を取得できません"))));
  return h("div", { class: "panel" }, h("h2", {}, L("jma.forecast_title", "台風の到達予想と気象庁電文")), body);
}

VIEWS.disaster = box => {
  const opSlot = h("div", { id: "disaster-op" }), watch = opWatcher(opSlot);
  const live = h("tbody", { id: "disaster-live" });
  const parts = [];
  if (can("switch_disaster")) {
    const sf = scopeForm("disaster", { danger: true });
    const btn = h("button", { class: "danger", id: "disaster-submit", type: "button" }, "Switch to disaster mode 災害モード");
    btn.addEventListener("click", async () => {
      const body = sf.read();
      if (!await modal("Switch to disaster mode?", h("p", {}, `${sf.describe(body)} go to disaster_reserve: no VPP, charge to the 12-hour reserve. Reason: “${body.reason}”`), "Switch now", "danger")) return;
      try { const op = await api("POST", "/api/disaster/switch", body); sf.reset(); clearErrors(sf.form); watch.set(op.id); }
      catch (e) { showFieldErrors(sf.form, e); }
    });
    parts.push(h("div", { class: "panel" }, h("h2", {}, "Switch halls to disaster mode"), sf.form, h("div", { class: "row" }, btn)));
  }
  parts.push(h("div", { class: "panel" }, h("h2", {}, "Progress of the last switch (acks arrive live)"), opSlot));
  parts.push(h("div", { class: "panel" }, h("h2", {}, "All halls: mode and hours of power"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Hall", "Mode / reason", "Online", "SoC", "Hours left", "Progress to reserve"].map(t => h("th", {}, t)))), live)));
  parts.push(jmaForecastPanel());
  if (can("return_to_vpp")) {
    const rf = scopeForm("return", { danger: false });
    const btn = h("button", { class: "go-vpp", id: "return-submit", type: "button" }, "Return to VPP");
    btn.addEventListener("click", async () => {
      const body = rf.read();
      if (!await modal("Return to VPP?", h("p", {}, `${rf.describe(body)} leave disaster mode and resume VPP. Reason: “${body.reason}”`), "Return to VPP", "go-vpp")) return;
      try { const op = await api("POST", "/api/disaster/return", body); rf.reset(); clearErrors(rf.form); watch.set(op.id); }
      catch (e) { showFieldErrors(rf.form, e); }
    });
    parts.push(h("div", { class: "panel" }, h("h2", {}, "Return to VPP (separate, explicit action)"), rf.form, h("div", { class: "row" }, btn)));
  }
  box.append(...parts);
  api("GET", "/api/operations?limit=1&kind=disaster").then(d => { if (d.operations.length) watch.set(d.operations[0].id); }).catch(() => {});
  function update() {
    live.replaceChildren(...S.fleet.halls.map(r => h("tr", { class: "mode-" + r.mode, dataset: { site: r.site } },
      h("td", {}, h("div", { class: "hall-name" }, r.name), h("div", { class: "muted small" }, `${r.site} · ${r.area_name}`)),
      h("td", {}, modePill(r.mode), h("div", { class: "reason" }, r.mode_reason || "")),
      h("td", {}, onlineDot(r)), socCell(r.soc_pct),
      h("td", { class: "num" }, h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster) }, fmtHours(r.hours_left)), " h"),
      h("td", {}, r.reserve_progress === null ? "—" : [h("span", { class: "progress" + (r.reserve_progress >= 1 ? " done" : "") }, h("i", { style: `width:${(r.reserve_progress * 100).toFixed(0)}%` })), ` ${(r.reserve_progress * 100).toFixed(0)} %`]))));
    watch.update();
  }
  return { update };
};

// ---------------------------------------------------------------- VPP dispatch
function nextSlotJst(minutes) {
  const slot = 30 * 60e3, t = Math.ceil((Date.now() + (minutes || 0) * 60e3) / slot) * slot;
  return new Date(t + 9 * 3600e3).toISOString().slice(0, 16);
}

VIEWS.vpp = box => {
  const power = h("input", { id: "vpp-power", type: "number", step: "0.1", value: "20" });
  const start = h("input", { id: "vpp-start", type: "datetime-local", value: nextSlotJst(0), step: 1800 });
  const dur = h("select", { id: "vpp-duration" }, [30, 60, 90, 120, 180, 240].map(m => h("option", { value: m, selected: m === 60 }, `${m / 60} h`)));
  const reason = h("input", { id: "vpp-reason", placeholder: "aggregator call id / why", style: "min-width:260px" });
  const out = h("div", { id: "vpp-preview" }), opSlot = h("div", { id: "vpp-op" }), watch = opWatcher(opSlot);
  const form = h("form", { id: "vpp-form", onsubmit: ev => ev.preventDefault() },
    h("div", { class: "row" },
      h("label", {}, "Power [kW] (+ discharge / − charge)", power, h("div", { class: "field-error", dataset: { for: "power_kw" } })),
      h("label", {}, "Start (JST, slot boundary)", start, h("div", { class: "field-error", dataset: { for: "start" } })),
      h("label", {}, "Duration", dur, h("div", { class: "field-error", dataset: { for: "end" } })),
      h("label", {}, "Reason", reason, h("div", { class: "field-error", dataset: { for: "reason" } }))),
    h("div", { class: "row" }, h("button", { id: "vpp-preview-btn", class: "primary", type: "button", onclick: () => preview() }, "Preview allocation"),
      h("button", { id: "vpp-send", type: "button", disabled: true, onclick: () => send() }, "Send dispatch")), h("div", { class: "form-error error" }));
  const body = () => {
    const s = new Date(start.value + ":00+09:00");
    return { power_kw: parseFloat(power.value), start: isNaN(s) ? start.value : s.toISOString(),
      end: isNaN(s) ? start.value : new Date(s.getTime() + dur.value * 60e3).toISOString(), reason: reason.value };
  };
  async function preview() {
    try {
      const p = await api("POST", "/api/vpp/preview", body());
      clearErrors(form);
      renderPreview(p); $("#vpp-send").disabled = !p.halls.some(x => x.delta_w.some(v => Math.abs(v) >= 1));
    } catch (e) { showFieldErrors(form, e); out.replaceChildren(); $("#vpp-send").disabled = true; }
  }
  async function send() {
    const b = body();
    if (!await modal("Send dispatch?", h("p", {}, `${b.power_kw} kW from ${jst(b.start)} for ${dur.value} min to the halls shown.`), "Send")) return;
    try { const op = await api("POST", "/api/vpp/dispatch", b); clearErrors(form); watch.set(op.id); }
    catch (e) { showFieldErrors(form, e); }
  }
  function renderPreview(p) {
    const names = Object.fromEntries(S.fleet.halls.map(r => [r.site, r.name]));
    const req = p.request_w[0] || 0, alloc = p.allocated_w.reduce((a, b) => a + b, 0) / Math.max(1, p.allocated_w.length);
    const max = Math.max(1, ...p.halls.map(x => Math.max(...x.delta_w.map(Math.abs))));
    out.replaceChildren(
      h("div", { class: "row" }, h("span", { class: "chip" }, h("b", {}, kw(req)), "kW asked"), h("span", { class: "chip" }, h("b", {}, kw(alloc)), "kW allocated (mean)"),
        h("span", { class: "chip" }, h("b", {}, kw(Math.max(...p.unmet_w.map(Math.abs)))), "kW unmet (worst slot)"), h("span", { class: "muted" }, `${p.status}, ${p.solve_ms} ms, ${p.times.length} slots`)),
      ...p.notes.map(n => h("p", { class: "muted small" }, n)),
      h("table", { id: "vpp-alloc" }, h("thead", {}, h("tr", {}, ["Hall", "Baseline kW", "Share kW (mean)", "", "Share per slot kW", "Baseline from"].map(t => h("th", {}, t)))),
        h("tbody", {}, p.halls.map(x => {
          const mean = x.delta_w.reduce((a, b) => a + b, 0) / x.delta_w.length;
          return h("tr", { dataset: { site: x.site } }, h("td", {}, names[x.site] || x.site), h("td", { class: "num" }, kw(x.baseline_w[0])),
            h("td", { class: "num" }, kw(mean)), h("td", {}, h("span", { class: "bar-h" + (mean < 0 ? " neg" : ""), style: `width:${Math.abs(mean) / max * 160}px` })),
            h("td", { class: "small" }, x.delta_w.map(kw).join(" / ")), h("td", { class: "small muted" }, x.baseline_source));
        }))),
      Object.keys(p.excluded).length ? h("p", { class: "muted small" }, "Not taking part: " + Object.entries(p.excluded).map(([s, why]) => `${names[s] || s} (${why})`).join(", ")) : "");
  }
  box.append(h("div", { class: "panel" }, h("h2", {}, "VPP dispatch: fleet request"), form), h("div", { class: "panel" }, h("h2", {}, "Allocation"), out),
    h("div", { class: "panel" }, h("h2", {}, "Sent: acks and delivery"), opSlot));
  api("GET", "/api/operations?limit=1&kind=dispatch").then(d => { if (d.operations.length) watch.set(d.operations[0].id); }).catch(() => {});
  return { update: () => watch.update() };
};

// ---------------------------------------------------------------- audit
VIEWS.audit = box => {
  const action = h("select", { id: "audit-action", onchange: () => load() }, ["", "login", "login_failed", "logout", "mode_switch", "dispatch", "ack", "ack_timeout", "alarm_ack", "jma_warning", "jma_cancelled", "user_added", "token_created"].map(a => h("option", { value: a }, a || "all actions")));
  const verifyOut = h("span", { id: "audit-verify-result" });
  const table = h("tbody", { id: "audit-body" });
  box.append(h("div", { class: "panel" }, h("h2", {}, "Audit log (append-only, hash-chained)"),
    h("div", { class: "row" }, action,
      h("button", { id: "audit-verify", onclick: async () => {
        const v = await api("GET", "/api/audit/verify");
        verifyOut.textContent = v.ok ? `✔ chain intact (${v.checked} records)` : `✘ broken at seq ${v.first_bad_seq}: ${v.problem}`;
        verifyOut.className = v.ok ? "" : "error";
      } }, "Verify chain"), verifyOut,
      can("export_audit") ? h("a", { href: "/api/audit/export.csv", id: "audit-export" }, "Export CSV") : ""),
    h("table", { id: "audit-table" }, h("thead", {}, h("tr", {}, ["#", "Time (JST)", "Actor", "Action", "Target", "Reason", "Details"].map(t => h("th", {}, t)))), table)));
  async function load() {
    const q = action.value ? `&action=${action.value}` : "";
    try {
      const d = await api("GET", `/api/audit?limit=300&newest_first=true${q}`);
      table.replaceChildren(...d.records.map(r => h("tr", {},
        h("td", { class: "num" }, r.seq), h("td", { class: "small" }, jst(r.time)), h("td", {}, r.actor), h("td", {}, r.action),
        h("td", {}, r.target), h("td", {}, r.reason), h("td", { class: "small muted" }, JSON.stringify(r.details)))));
    } catch (e) { table.replaceChildren(h("tr", {}, h("td", { class: "error" }, e.message))); }
  }
  load();
  return {};
};

// ---------------------------------------------------------------- start
(async () => {
  try { loggedIn(await api("GET", "/api/me")); } catch (e) { showLogin(); }
})();
