// Shelter EMS dashboard: one page, hash routes, polling the JSON API.  No build step, no network but our own.
// Every value from the API goes into the page as text (never as HTML).  Every text comes from the message
// catalogues (static/i18n/ja.json, en.json) through t(); dates are JST in Japanese style (I18N.dateTime).
"use strict";

const TZ = "Asia/Tokyo";
const MODES = ["vpp", "disaster_reserve", "islanded", "manual", "safe"];
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
const kw = w => (w === null || w === undefined) ? "—" : I18N.num(w / 1000, 1);
const pct = v => (v === null || v === undefined) ? "—" : I18N.num(v, 0) + " %";
const jst = iso => I18N.dateTime(iso, true);
const hoursClass = (hrs, need) => hrs === null || hrs === undefined ? "" : hrs < Math.min(4, need) ? "low" : hrs < need ? "mid" : "good";
const fmtHours = hrs => hrs === null || hrs === undefined ? "—" : hrs >= 100 ? "100+" : I18N.num(hrs, 1);
const modeName = m => m ? (I18N.has("mode." + m) ? t("mode." + m) : m) : t("mode.unknown");
const statusName = s => I18N.has("status." + s) ? t("status." + s) : s;
const sevName = s => I18N.has("severity." + s) ? t("severity." + s) : s;
const roleName = r => I18N.has("role." + r) ? t("role." + r) : r;
const actionName = a => I18N.has("action." + a) ? t("action." + a) : a;

function modePill(mode) {
  return h("span", { class: "mode " + (mode || "unknown") }, modeName(mode));
}
function statusPill(status) { return h("span", { class: "status " + status, dataset: { status } }, statusName(status)); }
function onlineDot(row) {
  const cls = row.online === false ? "off" : row.online && row.stale ? "stale" : row.online ? "on" : "";
  const title = row.online === false ? t("online.off") : row.stale ? t("online.stale_s", { s: row.state_age_s ?? "?" }) : row.online ? t("online.on") : t("online.never");
  return h("span", { class: "dot " + cls, title, role: "img", "aria-label": title });
}
// Which prices and weather a hall's plan used and when it last heard from the central service (its state's "inputs").
function inputLines(r, withWeather) {
  const i = r.inputs || {};
  const line = (cls, key, text) => h("div", { class: "inp " + cls, title: `${t(key + "_long")}: ${text}` }, h("span", { class: "muted" }, t(key) + ": "), text);
  return [
    line("inp-price", "inputs.price", i.price_source || "—"),
    withWeather ? line("inp-weather", "inputs.weather", i.weather_source || "—") : null,
    line("inp-central", "inputs.central", i.last_central_at ? jst(i.last_central_at) + " JST" : "—"),
  ];
}
function socCell(v) {
  return h("td", { class: "num" }, h("span", { class: "socbar", "aria-hidden": "true" }, h("i", { style: `width:${Math.max(0, Math.min(100, v || 0))}%` })), pct(v));
}
function hoursCell(r) {
  return h("td", { class: "num" }, h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster) }, fmtHours(r.hours_left)), h("span", { class: "muted small" }, " h"));
}

class ApiError extends Error {
  constructor(status, body) { super(body && body.message || `HTTP ${status}`); this.status = status; this.body = body; }
  fields() { return Array.isArray(this.body && this.body.detail) ? this.body.detail : []; }
}

const STATUS_KEYS = { 400: "err.bad_request", 401: "err.unauthorized", 403: "err.forbidden", 404: "err.not_found",
  409: "err.conflict", 422: "err.invalid", 429: "err.rate_limited", 502: "err.backend", 503: "err.unavailable" };
/** A translated message for any error: the status in words, the server's detail (never for 5xx: no internals). */
function errText(e) {
  if (!(e instanceof ApiError)) return t("err.network");
  const key = STATUS_KEYS[e.status] || (e.status >= 500 ? "err.server" : "err.http");
  const detail = e.status < 500 && e.body ? (e.body.message || (typeof e.body.detail === "string" ? e.body.detail : "")) : "";
  return t(key, { status: e.status }) + (detail ? " — " + detail : "");
}
/** A translated message for one FastAPI field error {loc, msg, type}. */
function fieldText(d, name) {
  const base = name.split(".")[0];
  for (const key of [`err.field.${base}.${d.type}`, `err.field.${base}`, `err.type.${d.type}`]) if (I18N.has(key)) return t(key);
  return d.msg;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && S.csrf) headers["X-CSRF-Token"] = S.csrf;
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", cache: "no-store" });
  } catch (e) { throw new ApiError(0, null); }
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
  for (const d of err instanceof ApiError ? err.fields() : []) {
    const name = (d.loc || []).filter(p => !["body", "query"].includes(p)).join(".");
    const slot = form.querySelector(`.field-error[data-for="${CSS.escape(name.split(".")[0])}"]`);
    if (slot) { slot.textContent = fieldText(d, name); placed = true; }
  }
  if (!placed && general) general.textContent = errText(err);
}

function modal(title, body, confirmText, cls) {
  return new Promise(resolve => {
    const root = $("#modal-root");
    const close = ok => { root.replaceChildren(); resolve(ok); };
    root.replaceChildren(h("div", { class: "modal-back" },
      h("div", { class: "modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "modal-title" },
        h("h3", { id: "modal-title" }, title), body,
        h("div", { class: "row" },
          h("button", { id: "modal-cancel", onclick: () => close(false) }, t("common.cancel")),
          h("button", { id: "modal-confirm", class: cls || "primary", onclick: () => close(true) }, confirmText)))));
    $("#modal-confirm").focus();
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

async function loggedIn(me) {
  S.me = me; S.csrf = me.csrf_token || S.csrf;
  // The language this user chose last time, on any browser (kept with the account on the server).
  if (me.language && me.language !== I18N.lang) { await I18N.set(me.language); langLabel(); }
  $("#login").classList.add("hidden");
  $("#nav").classList.remove("hidden");
  $("#who").classList.remove("hidden");
  showWho();
  for (const a of document.querySelectorAll("#nav a[data-perm]")) {
    a.classList.toggle("hidden", !a.dataset.perm.split(" ").some(can));
  }
  startPolling();
  route();
}
function showWho() {
  if (!S.me) return;
  $("#who-name").textContent = S.me.display_name || S.me.username;
  $("#who-roles").textContent = "(" + S.me.roles.map(roleName).join(", ") + ")";
}

function langLabel() {
  const sw = $("#lang-switch"), other = I18N.lang === "ja" ? "en" : "ja";
  sw.textContent = t("lang.switch_to_" + other); sw.lang = other;
}

function wireLogin() {
  $("#login-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    try {
      const me = await api("POST", "/api/login", { username: $("#login-username").value, password: $("#login-password").value });
      $("#login-password").value = "";
      loggedIn(me);
    } catch (e) {
      $("#login-error").textContent = e.status === 401 ? t("auth.wrong") : errText(e);
    }
  });
  $("#logout").addEventListener("click", async () => { try { await api("POST", "/api/logout"); } catch (e) { /* gone anyway */ } showLogin(); });
  const sw = $("#lang-switch");
  langLabel();
  sw.addEventListener("click", async () => {
    await I18N.set(I18N.lang === "ja" ? "en" : "ja");
    langLabel(); showWho();
    if (S.me) { S.me.language = I18N.lang; api("PUT", "/api/me/language", { language: I18N.lang }).catch(() => { /* kept in this browser */ }); }
    if (S.fleet) renderBanners();
    if (S.me) route();
  });
}

// ---------------------------------------------------------------- polling and routing
function stopPolling() { if (S.timer) clearInterval(S.timer); S.timer = null; }
function startPolling() { stopPolling(); refreshFleet(); S.timer = setInterval(refreshFleet, 2500); }

async function refreshFleet() {
  if (!S.me) return;
  try {
    S.fleet = await api("GET", "/api/fleet");
  } catch (e) { return; }
  S.clockOffset = Date.parse(S.fleet.time) - Date.now();  // the service's clock (a simulation's, in the demo)
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
      // kind "disaster": a trigger set to suggest, or a 津波注意報 — staff decide; "return": warnings lifted.
      h("b", {}, t(s.kind === "disaster" ? "jma.suggest_disaster" : "jma.cancelled")),
      h("span", {}, t(s.kind === "disaster" ? "jma.may_need_disaster" : "jma.may_return", { hall: names[s.site] || s.site, reason: s.reason })),
      can("return_to_vpp") ? h("button", { onclick: async () => { try { await api("POST", `/api/jma/suggestions/${s.id}/dismiss`); } catch (e) { alert(errText(e)); } refreshFleet(); } }, t("common.dismiss")) : null));
  }
  const n = S.fleet.notify;
  if (n && n.last_error) {  // an operator must know when alarms stop reaching phones and mailboxes
    kids.push(h("div", { class: "banner jma-error", id: "notify-error" }, h("b", {}, t("notify.problem") + " "), n.last_error,
      h("span", { class: "muted small" }, " " + t("notify.counts", { sent: n.sent, failed: n.failed }))));
  }
  if (S.fleet.jma && S.fleet.jma.enabled && S.fleet.jma.last_error) {
    kids.push(h("div", { class: "banner jma-error" }, h("b", {}, t("jma.feed_problem") + " "), S.fleet.jma.last_error));
  }
  box.replaceChildren(...kids);
}

const VIEWS = {};
function route() {
  if (!S.me) return;
  const parts = (location.hash || "#/fleet").slice(2).split("/");
  let name = parts[0] || "fleet";
  if (!VIEWS[name]) name = "fleet";
  for (const a of document.querySelectorAll("#nav a")) {
    const on = a.dataset.nav === (name === "site" ? "fleet" : name);
    a.classList.toggle("active", on);
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (S.view && S.view.unmount) S.view.unmount();
  const box = $("#view");
  box.replaceChildren();
  S.view = VIEWS[name](box, parts.slice(1).map(decodeURIComponent));
  if (S.fleet && S.view.update) S.view.update();
}

// ---------------------------------------------------------------- fleet overview
const COLUMNS = [
  ["site", "col.hall"], ["area_code", "col.area"], ["mode", "col.mode"], ["soc_pct", "col.soc", "num"],
  ["battery_w", "col.battery_kw", "num"], ["pv_w", "col.pv_kw", "num"], ["grid_w", "col.grid_kw", "num"],
  ["hours_left", "col.hours_left", "num"], ["online", "col.online"], [null, "col.last_ack"], [null, "col.inputs"], ["open_alarms", "col.alarms", "num"],
];
const HOUR_BINS = [[0, 2], [2, 4], [4, 6], [6, 8], [8, 10], [10, 12], [12, Infinity]];

/** SVG map of the halls from their latitude and longitude (no tiles): colour = mode, ring = hours left. */
function hallMap(halls) {
  const NS = "http://www.w3.org/2000/svg";
  const el = (name, attrs, parent) => { const e = document.createElementNS(NS, name); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (parent) parent.append(e); return e; };
  const W = 420, H = 300, P = 26;
  const pts = halls.filter(r => typeof r.lat === "number" && typeof r.lon === "number");
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "hall-map", id: "hall-map", role: "group", "aria-label": t("fleet.map_label") });
  if (!pts.length) { el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = t("fleet.map_none"); return svg; }
  const lat0 = Math.min(...pts.map(r => r.lat)), lat1 = Math.max(...pts.map(r => r.lat));
  const lon0 = Math.min(...pts.map(r => r.lon)), lon1 = Math.max(...pts.map(r => r.lon));
  const kx = Math.cos((lat0 + lat1) / 2 * Math.PI / 180);  // equirectangular: keep distances about right
  const spanX = Math.max(1e-3, (lon1 - lon0) * kx), spanY = Math.max(1e-3, lat1 - lat0);
  const scale = Math.min((W - 2 * P) / spanX, (H - 2 * P) / spanY);
  const ox = (W - spanX * scale) / 2, oy = (H - spanY * scale) / 2;
  el("rect", { x: 1, y: 1, width: W - 2, height: H - 2, class: "map-bg" }, svg);
  el("text", { x: 8, y: H - 8, class: "map-note" }, svg).textContent = t("fleet.map_span", { km: I18N.num(Math.max(spanX / kx, spanY) * 111.32, 0) });
  for (const r of pts) {
    const x = ox + (r.lon - lon0) * kx * scale, y = H - oy - (r.lat - lat0) * scale;
    const label = `${r.name}: ${modeName(r.mode)}, ${t("col.hours_left")} ${fmtHours(r.hours_left)} h`;
    const a = el("a", { href: "#/site/" + encodeURIComponent(r.site), "aria-label": label, class: "map-hall", "data-site": r.site }, svg);
    el("title", {}, a).textContent = label;
    el("circle", { cx: x, cy: y, r: 11, class: "ring hours-ring " + (hoursClass(r.hours_left, r.h_disaster) || "none") }, a);
    el("circle", { cx: x, cy: y, r: 7, fill: MODE_COLOR[r.mode] || "#9aa5b1", class: r.online === false ? "offline" : "" }, a);
  }
  return svg;
}

/** Bars of how many halls have how many hours of critical power. */
function hoursSpread(halls) {
  const counts = HOUR_BINS.map(([lo, hi]) => halls.filter(r => typeof r.hours_left === "number" && r.hours_left >= lo && r.hours_left < hi).length);
  const unknown = halls.filter(r => typeof r.hours_left !== "number").length;
  const max = Math.max(1, ...counts, unknown);
  const bar = (label, n, cls) => h("div", { class: "spread-row" }, h("span", { class: "spread-label" }, label),
    h("span", { class: "spread-bar " + cls, style: `width:${n / max * 100}%` }), h("b", {}, I18N.num(n)));
  return h("div", { id: "hours-spread", class: "spread" }, HOUR_BINS.map(([lo, hi], i) =>
    bar(hi === Infinity ? t("fleet.bin_over", { lo }) : t("fleet.bin", { lo, hi }), counts[i], hoursClass((lo + Math.min(hi, 24)) / 2, 12))),
    unknown ? bar(t("fleet.bin_unknown"), unknown, "") : null);
}

VIEWS.fleet = box => {
  let range = "24h", mapKey = null;
  const summary = h("div", { class: "row", id: "fleet-summary" });
  const areaSel = h("select", { id: "area-filter", "aria-label": t("fleet.area_filter"), onchange: () => { S.area = areaSel.value; update(); } }, h("option", { value: "" }, t("fleet.all_areas")));
  const text = h("input", { id: "text-filter", placeholder: t("fleet.filter_placeholder"), "aria-label": t("fleet.filter_placeholder"), value: S.filter, oninput: () => { S.filter = text.value; update(); } });
  const head = h("tr", {}, COLUMNS.map(([key, label, cls]) => h("th", {
    class: [key ? "sortable" : "", cls || "", S.sort.key === key ? "sorted" + (S.sort.desc ? "" : " asc") : ""].join(" "),
    "aria-sort": S.sort.key === key ? (S.sort.desc ? "descending" : "ascending") : null,
  }, key ? h("button", { class: "th-sort", type: "button", onclick: () => { S.sort = { key, desc: S.sort.key === key ? !S.sort.desc : false }; route(); } }, t(label)) : t(label))));
  const body = h("tbody", { id: "fleet-body" });
  const mapBox = h("div", { class: "map-box" }), spreadBox = h("div", { class: "spread-box" });
  const charts = ["fleet-power", "fleet-energy"].map(id => h("div", { class: "chart", id: "chart-" + id }));
  const note = h("span", { class: "muted small", id: "fleet-hist-note" });
  const rangeRow = h("div", { class: "row ranges" }, h("b", {}, t("range.label")),
    ["6h", "24h", "7d"].map(r => h("button", { type: "button", dataset: { range: r }, class: r === range ? "active" : "", onclick: () => { range = r; rangeRow.querySelectorAll("button").forEach(b => b.classList.toggle("active", b.dataset.range === r)); loadCharts(); } }, t("range." + r))), note);
  box.append(h("div", { class: "panel" }, h("h1", { class: "h2" }, t("fleet.title")), summary),
    h("div", { class: "fleet-top" },
      h("div", { class: "panel" }, h("h2", {}, t("fleet.map_title")), mapBox,
        h("div", { class: "legend small" }, MODES.map(m => h("span", {}, h("i", { style: `background:${MODE_COLOR[m]}` }), modeName(m))),
          h("span", {}, h("i", { class: "ring-key good" }), t("fleet.ring_good")), h("span", {}, h("i", { class: "ring-key low" }), t("fleet.ring_low")))),
      h("div", { class: "panel" }, h("h2", {}, t("fleet.spread_title")), spreadBox)),
    h("div", { class: "panel" }, h("h2", {}, t("fleet.charts_title")), rangeRow, h("div", { class: "charts" }, charts)),
    h("div", { class: "panel" },
      h("div", { class: "row", style: "margin-bottom:8px" }, h("h2", { style: "margin:0" }, t("fleet.halls")), areaSel, text,
        h("span", { class: "muted small" }, t("fleet.click_hint"))),
      h("table", { id: "fleet-table" }, h("thead", {}, head), body)));

  async function loadCharts() {
    let d;
    try { d = await api("GET", `/api/fleet/history?range=${range}`); note.textContent = ""; }
    catch (e) { note.textContent = errText(e); return; }
    const t0 = Date.parse(d.start), t1 = Date.parse(d.end);
    const pts = (name, scale) => (d.series[name] || []).map(([tt, v]) => [Date.parse(tt), v * scale]);
    Charts.draw(charts[0], { title: t("chart.fleet_power"), unit: "kW", start: t0, end: t1, zeroLine: true,
      series: [{ name: t("chart.battery"), color: "#2563eb", points: pts("battery_w", 1e-3) }, { name: t("chart.pv"), color: "#ca8a04", points: pts("pv_w", 1e-3) },
        { name: t("chart.grid"), color: "#4b5563", points: pts("grid_w", 1e-3) }] });
    Charts.draw(charts[1], { title: t("chart.fleet_stored"), unit: "kWh", start: t0, end: t1, yMin: 0,
      series: [{ name: t("chart.stored"), color: "#15803d", points: pts("stored_wh", 1e-3) }] });
  }

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
      h("td", {}, h("a", { class: "hall-name", href: "#/site/" + encodeURIComponent(r.site) }, r.name), h("div", { class: "muted small" }, r.site)),
      h("td", {}, r.area_name || "", h("div", { class: "muted small" }, r.area_code)),
      h("td", {}, modePill(r.mode), h("div", { class: "reason", title: r.mode_reason || "" }, r.mode_reason || "")),
      socCell(r.soc_pct),
      h("td", { class: "num" }, kw(r.battery_w)), h("td", { class: "num" }, kw(r.pv_w)), h("td", { class: "num" }, kw(r.grid_w)),
      hoursCell(r),
      h("td", {}, onlineDot(r), r.stale && r.online ? h("span", { class: "small muted" }, " " + t("online.stale")) : ""),
      h("td", { class: "small" }, r.last_ack ? [statusPill(r.last_ack.status), " ", r.last_ack.kind ? actionName(r.last_ack.kind) : "", h("div", { class: "muted" }, jst(r.last_ack.at))] : "—"),
      h("td", { class: "small inputs" }, inputLines(r, false)),
      h("td", { class: "num" }, h("span", { class: "badge" + (r.open_alarms ? "" : " zero") }, r.open_alarms)))));
    const counts = {};
    for (const r of f.halls) counts[r.mode || "unknown"] = (counts[r.mode || "unknown"] || 0) + 1;
    const online = f.halls.filter(r => r.online && !r.stale).length;
    const hrs = f.halls.map(r => r.hours_left).filter(v => v !== null && v !== undefined);
    summary.replaceChildren(
      h("span", { class: "chip" }, h("b", {}, `${online}/${f.halls.length}`), t("fleet.online")),
      ...Object.entries(counts).map(([m, n]) => h("span", { class: "chip" }, h("b", {}, n), modePill(m === "unknown" ? null : m))),
      h("span", { class: "chip" }, h("b", { class: "hours " + hoursClass(hrs.length ? Math.min(...hrs) : null, 12) }, hrs.length ? fmtHours(Math.min(...hrs)) + " h" : "—"), t("fleet.shortest")),
      h("span", { class: "chip" }, h("b", {}, kw(f.halls.reduce((s, r) => s + (r.stored_wh || 0), 0))), t("fleet.kwh_stored")));
    // Redraw the map and the spread only when what they show changed: a link that is replaced every 2.5 s
    // loses the keyboard focus (and a click on it in progress).
    const key = f.halls.map(r => [r.site, r.mode, fmtHours(r.hours_left), hoursClass(r.hours_left, r.h_disaster), r.online, I18N.lang].join(":")).join("|");
    if (key !== mapKey) { mapKey = key; mapBox.replaceChildren(hallMap(f.halls)); spreadBox.replaceChildren(hoursSpread(f.halls)); }
  }
  loadCharts();
  const timer = setInterval(loadCharts, 60000);
  return { update, unmount: () => clearInterval(timer) };
};

// ---------------------------------------------------------------- hall detail
const RANGES = ["1h", "6h", "24h", "7d", "30d"];
/** A JST time field typed the Japanese way (2026/12/07 13:30): the browser's own date picker follows its UI
 *  language (US order in an English Chromium), this one does not. */
function jstInput(id, labelKey, value) {
  return h("input", { id, type: "text", inputmode: "numeric", placeholder: "2026/12/07 13:30", "aria-label": t(labelKey), size: 16, value: value || "" });
}
VIEWS.site = (box, [siteId]) => {
  let range = "24h", custom = null, chartTimer = null;
  const head = h("div", { class: "panel", id: "site-head" });
  const tiles = h("div", { class: "tiles", id: "site-tiles" });
  const from = jstInput("range-from", "range.from"), to = jstInput("range-to", "range.to");
  const note = h("span", { class: "muted small", id: "hist-note", role: "status" });
  const rangeRow = h("div", { class: "row ranges" }, h("b", {}, t("range.label")),
    RANGES.map(r => h("button", { type: "button", dataset: { range: r }, class: r === range ? "active" : "", onclick: () => { range = r; custom = null; mark(); loadCharts(); } }, t("range." + r))),
    h("span", { class: "muted small" }, t("range.from")), from, h("span", { class: "muted small" }, t("range.to")), to,
    h("button", { type: "button", id: "range-show", onclick: () => {
      const a = I18N.parseJst(from.value), b = I18N.parseJst(to.value);
      if (!a || !b) { note.textContent = t("range.bad_time"); return; }
      custom = [a.toISOString(), b.toISOString()]; mark(); loadCharts();
    } }, t("range.show")), note);
  const charts = h("div", { class: "charts" });
  const boxes = ["soc", "power", "hours", "price"].map(id => h("div", { class: "chart", id: "chart-" + id }));
  charts.append(...boxes);
  const alarms = h("div", { class: "panel" });
  const money = h("div", { class: "panel row", id: "site-money" });
  box.append(h("div", { class: "row", style: "margin-bottom:8px" }, h("a", { href: "#/fleet" }, "← " + t("nav.fleet"))), head,
    h("div", { class: "panel" }, tiles), money, h("div", { class: "panel" }, rangeRow, h("div", { style: "height:10px" }), charts), alarms);

  function mark() { rangeRow.querySelectorAll("button[data-range]").forEach(b => b.classList.toggle("active", !custom && b.dataset.range === range)); }

  async function loadCharts() {
    const q = custom ? `start=${encodeURIComponent(custom[0])}&end=${encodeURIComponent(custom[1])}` : `range=${range}`;
    let d;
    try { d = await api("GET", `/api/sites/${encodeURIComponent(siteId)}/history?${q}`); }
    catch (e) { note.textContent = errText(e); return; }
    note.textContent = t("range.note", { backend: d.backend, step: I18N.num(d.step_s) });
    const t0 = Date.parse(d.start), t1 = Date.parse(d.end);
    const pts = (name, scale) => (d.series[name] || []).map(([tt, v]) => [Date.parse(tt), v * (scale || 1)]);
    const bands = [];
    d.modes.forEach((m, i) => {  // shade the time spent outside normal VPP operation
      const next = d.modes[i + 1];
      if (m.mode !== "vpp") bands.push({ from: Date.parse(m.time), to: next ? Date.parse(next.time) : t1, color: MODE_COLOR[m.mode] || "#9aa5b1", label: `${modeName(m.mode)}: ${m.reason || ""}`, mode: modeName(m.mode) });
    });
    Charts.draw(boxes[0], { title: t("chart.soc"), unit: "%", start: t0, end: t1, yMin: 0, yMax: 100, bands,
      series: [{ name: t("chart.actual"), color: "#15803d", points: pts("soc_pct") }, { name: t("chart.plan"), color: "#15803d", dash: true, step: true, points: pts("plan_soc_pct") }] });
    Charts.draw(boxes[1], { title: t("chart.power"), unit: "kW", start: t0, end: t1, zeroLine: true, bands,
      series: [{ name: t("chart.battery"), color: "#2563eb", points: pts("battery_w", 1e-3) }, { name: t("chart.plan_battery"), color: "#2563eb", dash: true, step: true, points: pts("plan_battery_w", 1e-3) },
        { name: t("chart.pv"), color: "#ca8a04", points: pts("pv_w", 1e-3) }, { name: t("chart.grid"), color: "#4b5563", points: pts("grid_w", 1e-3) }] });
    const row = S.fleet && S.fleet.halls.find(r => r.site === siteId);
    const need = row ? row.h_disaster : 12;
    Charts.draw(boxes[2], { title: t("chart.hours"), unit: "h", start: t0, end: t1, yMin: 0, bands,
      series: [{ name: t("chart.hours_left"), color: "#dc2626", points: pts("hours_left_h") }, { name: t("chart.target", { h: need }), color: "#6b7280", dash: true, points: [[t0, need], [t1, need]] }] });
    Charts.draw(boxes[3], { title: t("chart.price"), unit: t("unit.jpy_per_kwh"), start: t0, end: t1, yMin: 0, bands,
      series: [{ name: t("chart.price_buy"), color: "#7c3aed", step: true, points: pts("price_jpy_per_kwh") },
        { name: t("chart.price_sell"), color: "#0d9488", step: true, dash: true, points: pts("price_sell_jpy_per_kwh") }] });
  }

  async function loadAlarms() {
    let d;
    try { d = await api("GET", `/api/alarms?state=open&site=${encodeURIComponent(siteId)}`); }
    catch (e) { alarms.replaceChildren(h("h2", {}, t("alarms.open_title")), h("p", { class: "error" }, errText(e))); return; }
    alarms.replaceChildren(h("h2", {}, t("alarms.open_title")), d.alarms.length ? alarmTable(d.alarms, loadAlarms) : h("p", { class: "muted" }, t("common.none")));
  }

  function update() {
    const r = S.fleet.halls.find(x => x.site === siteId);
    if (!r) { head.replaceChildren(h("p", { class: "error" }, t("site.unknown", { site: siteId }))); return; }
    head.replaceChildren(h("div", { class: "row" }, h("h1", { class: "h1-hall" }, r.name), h("span", { class: "muted" }, `${r.site} · ${r.area_name} (${r.area_code})`),
      modePill(r.mode), onlineDot(r), h("span", { class: "muted small" }, r.online ? (r.stale ? t("online.stale") : t("online.on")) : t("online.off"))),
      h("div", { class: "muted", style: "margin-top:6px" }, t("site.reason_line", { reason: r.mode_reason || "—", since: jst(r.mode_since), by: r.mode_by || "—" })),
      h("div", { class: "small inputs detail", id: "site-inputs", style: "margin-top:6px" }, inputLines(r, true)));
    const tile = (k, v, u, cls) => h("div", { class: "tile " + (cls || "") }, h("div", { class: "k" }, k), h("div", { class: "v" }, v, h("span", { class: "u" }, u)));
    tiles.replaceChildren(
      tile(t("site.hours"), h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster), id: "site-hours" }, fmtHours(r.hours_left)), " " + t("site.hours_unit", { h: r.h_disaster }), "hero"),
      tile(t("site.soc"), r.soc_pct === null ? "—" : I18N.num(r.soc_pct, 0), " " + t("site.soc_unit", { kwh: I18N.num(r.capacity_wh / 1000, 0) })),
      tile(t("site.battery"), kw(r.battery_w), " " + (r.battery_w > 0 ? t("site.kw_discharging") : t("site.kw_charging"))),
      tile(t("site.pv"), kw(r.pv_w), " kW"),
      tile(t("site.grid"), kw(r.grid_w), " " + (r.grid_ok === false ? t("site.kw_grid_lost") : r.grid_w < 0 ? t("site.kw_exporting") : t("site.kw_importing"))));
  }
  /** This hall's earnings today and this month (JST) against the cost without its battery. */
  async function loadMoney() {
    if (!can("view_history")) return;
    const chips = [];
    for (const period of ["day", "month"]) {
      let d;
      try { d = await api("GET", `/api/earnings?period=${period}&count=1&site=${encodeURIComponent(siteId)}`); } catch (e) { money.replaceChildren(h("span", { class: "error" }, errText(e))); return; }
      const x = d.halls.find(e => e.site === siteId);
      chips.push(h("span", { class: "chip", dataset: { period } }, h("b", { class: "earn" + (x && x.earnings_jpy < 0 ? " neg" : "") }, x ? I18N.yen(x.earnings_jpy) : "—"),
        t(period === "day" ? "money.today" : "money.this_month"),
        x ? h("span", { class: "muted small" }, t("money.against", { without: I18N.yen(x.cost_without_battery_jpy), with: I18N.yen(x.cost_with_battery_jpy) })) : ""));
    }
    money.replaceChildren(h("b", {}, t("money.title_short")), ...chips, h("a", { href: "#/money", class: "small" }, t("money.all_halls")));
  }
  loadCharts(); loadAlarms(); loadMoney();
  chartTimer = setInterval(() => { if (!custom) loadCharts(); loadAlarms(); loadMoney(); }, 30000);
  return { update, unmount: () => clearInterval(chartTimer) };
};

// ---------------------------------------------------------------- alarms
// What the alarm means and what to do, in the reader's language (the catalogue, per code); below it the
// gateway's own detail with its figures, which gateways write in English (marked lang="en" for screen readers).
function alarmMessageCell(a) {
  if (!I18N.has("alarm_help." + a.code)) return h("td", {}, a.message);
  return h("td", {}, h("div", {}, t("alarm_help." + a.code)),
    a.message ? h("div", { class: "muted small", lang: "en", title: t("alarms.detail_from_gateway") }, a.message) : "");
}

function alarmTable(list, reload) {
  const names = S.fleet ? Object.fromEntries(S.fleet.halls.map(r => [r.site, r.name])) : {};
  return h("table", { id: "alarm-table" }, h("thead", {}, h("tr", {}, ["alarms.severity", "col.hall", "alarms.code", "alarms.message", "alarms.raised", "alarms.cleared", "alarms.acked", "alarms.action"].map(k => h("th", {}, t(k))))),
    h("tbody", {}, list.map(a => h("tr", { dataset: { alarm: a.id } },
      h("td", {}, h("span", { class: "sev " + a.severity }, sevName(a.severity))),
      h("td", {}, names[a.site] || a.site), h("td", {}, I18N.has("alarm." + a.code) ? [t("alarm." + a.code), h("div", { class: "muted small" }, a.code)] : a.code), alarmMessageCell(a),
      h("td", { class: "small" }, jst(a.raised_at)), h("td", { class: "small" }, a.active ? h("b", {}, t("alarms.active_now")) : jst(a.cleared_at)),
      h("td", { class: "small" }, a.acked_by ? `${a.acked_by} ${jst(a.acked_at)}${a.ack_note ? " — " + a.ack_note : ""}` : "—"),
      h("td", {}, !a.acked_by && can("ack_alarm") ? h("button", { class: "ack-alarm", onclick: async () => {
        const note = h("input", { id: "ack-note", placeholder: t("alarms.note_placeholder"), "aria-label": t("alarms.note_placeholder"), style: "width:100%" });
        if (!await modal(t("alarms.ack_title"), h("div", {}, h("p", {}, `${names[a.site] || a.site}: ${a.message}`), note), t("alarms.ack"))) return;
        try { await api("POST", `/api/alarms/${encodeURIComponent(a.id)}/ack`, { note: note.value }); } catch (e) { alert(errText(e)); }
        reload(); refreshFleet();
      } }, t("alarms.ack")) : "")))));
}

VIEWS.alarms = box => {
  let state = "open";
  const list = h("div", {});
  const tabs = h("div", { class: "row ranges" }, [["open", "alarms.tab_open"], ["active", "alarms.tab_active"], ["all", "alarms.tab_all"]].map(([s, l]) =>
    h("button", { type: "button", dataset: { state: s }, class: s === state ? "active" : "", onclick: () => { state = s; tabs.querySelectorAll("button").forEach(b => b.classList.toggle("active", b.dataset.state === s)); load(); } }, t(l))));
  box.append(h("div", { class: "panel" }, h("h1", { class: "h2" }, t("alarms.title")), tabs, h("div", { style: "height:8px" }), list));
  async function load() {
    try {
      const d = await api("GET", `/api/alarms?state=${state}`);
      list.replaceChildren(d.alarms.length ? alarmTable(d.alarms, load) : h("p", { class: "muted" }, t("alarms.none")));
    } catch (e) { list.replaceChildren(h("p", { class: "error" }, errText(e))); }
  }
  load();
  const timer = setInterval(load, 10000);
  return { unmount: () => clearInterval(timer) };
};

// ---------------------------------------------------------------- operations (shared by VPP and disaster)
function operationTable(op) {
  const rows = S.fleet ? Object.fromEntries(S.fleet.halls.map(r => [r.site, r])) : {};
  const c = op.counts;
  return h("div", { id: "op-" + op.id, class: "operation", dataset: { op: op.id } },
    h("div", { class: "row" }, h("b", {}, t("op.by", { kind: actionName(op.kind), actor: op.actor })), h("span", { class: "muted" }, jst(op.created_at)), h("span", {}, `“${op.reason}”`),
      h("span", { class: "op-counts" }, t("op.counts", { ok: c.ok, sent: c.sent, bad: c.refused + c.failed, timeout: c.timeout }))),
    h("table", { class: "op-table" }, h("thead", {}, h("tr", {}, (op.kind === "dispatch"
      ? ["col.hall", "op.lease", "op.ack", "op.mode_now", "op.target_kw", "op.battery_now_kw", "op.off_target_kw"]
      : ["col.hall", "op.command", "op.ack", "op.mode_now", "col.hours_left", "op.progress", "op.battery_now"]).map(k => h("th", {}, t(k))))),
      h("tbody", {}, op.commands.map(cmd => {
        const r = rows[cmd.site] || {};
        const prog = r.reserve_progress;
        const first = [h("td", {}, h("div", { class: "hall-name" }, r.name || cmd.site), h("div", { class: "muted small" }, cmd.site))];
        const ack = h("td", { class: "ack-status" }, statusPill(cmd.status), cmd.error ? h("div", { class: "small error" }, cmd.error) : "", cmd.acked_at ? h("div", { class: "muted small" }, jst(cmd.acked_at)) : "");
        if (cmd.kind === "dispatch") {
          const p = cmd.payload, live = Date.parse(p.start) <= Date.now() && Date.now() < Date.parse(p.end);
          return h("tr", { dataset: { site: cmd.site } }, first,
            h("td", { class: "small" }, `${jst(p.start)} – ${jst(p.end)}`, live ? h("b", {}, " " + t("op.active")) : "", h("div", { class: "muted" }, cmd.command_id)),
            ack, h("td", {}, modePill(r.mode)), h("td", { class: "num" }, kw(p.power_w)), h("td", { class: "num" }, kw(r.battery_w)),
            h("td", { class: "num" }, live && r.battery_w !== null && r.battery_w !== undefined ? kw(r.battery_w - p.power_w) : "—"));
        }
        return h("tr", { dataset: { site: cmd.site } }, first,
          h("td", { class: "small" }, t("op.mode_to", { mode: modeName(cmd.payload.mode) }), h("div", { class: "muted" }, cmd.command_id)), ack,
          h("td", {}, modePill(r.mode)),
          h("td", { class: "num" }, h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster) }, fmtHours(r.hours_left)), " h"),
          h("td", {}, prog === null || prog === undefined ? "—" : h("span", {}, h("span", { class: "progress" + (prog >= 1 ? " done" : "") }, h("i", { style: `width:${(prog * 100).toFixed(0)}%` })), " " + t("op.progress_of", { pct: I18N.num(prog * 100, 0), h: r.h_disaster }))),
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
  const areaSel = h("select", { id: prefix + "-area", "aria-label": t("scope.area") }, areas.map(a => h("option", { value: a.area_code }, `${a.area_name || a.area_code} (${a.halls})`)));
  const picks = h("div", { class: "hall-picks", id: prefix + "-halls" }, halls.map(r => h("label", { class: "inline" }, h("input", { type: "checkbox", value: r.site }), r.name, " ", modePill(r.mode))));
  const radios = ["all", "area", "sites"].map(v => h("input", { type: "radio", name: prefix + "-scope", value: v, id: `${prefix}-scope-${v}`, checked: v === "all",
    onchange: () => { picks.classList.toggle("hidden", v !== "sites"); areaSel.disabled = v !== "area"; } }));
  picks.classList.add("hidden"); areaSel.disabled = true;
  const reason = h("textarea", { id: prefix + "-reason", placeholder: t(danger ? "scope.reason_placeholder_switch" : "scope.reason_placeholder_return") });
  const confirm = h("input", { type: "checkbox", id: prefix + "-confirm" });
  const form = h("form", { id: prefix + "-form" },
    h("fieldset", { class: "row plain" }, h("legend", { class: "sr-only" }, t("scope.legend")), h("label", { class: "inline" }, radios[0], t("scope.all")), h("label", { class: "inline" }, radios[1], t("scope.area")), areaSel,
      h("label", { class: "inline" }, radios[2], t("scope.sites"))), h("div", { class: "field-error", dataset: { for: "scope" } }),
    picks, h("div", { class: "field-error", dataset: { for: "sites" } }),
    h("label", { style: "display:flex" }, t("scope.reason"), reason), h("div", { class: "field-error", dataset: { for: "reason" } }),
    h("label", { class: "inline" }, confirm, t(danger ? "scope.confirm_switch" : "scope.confirm_return")),
    h("div", { class: "field-error", dataset: { for: "confirm" } }), h("div", { class: "form-error error" }));
  const read = () => {
    const scope = radios.find(r => r.checked).value;
    const body = { scope, reason: reason.value, confirm: confirm.checked };
    if (scope === "area") body.area_code = areaSel.value;
    if (scope === "sites") body.sites = [...picks.querySelectorAll("input:checked")].map(i => i.value);
    return body;
  };
  const describe = body => body.scope === "all" ? t("scope.describe_all", { n: halls.length }) : body.scope === "area"
    ? t("scope.describe_area", { area: (areas.find(a => a.area_code === body.area_code) || {}).area_name || body.area_code }) : t("scope.describe_sites", { n: body.sites.length });
  return { form, read, describe, reset: () => { reason.value = ""; confirm.checked = false; } };
}

/** When the hall reaches its disaster reserve at the current charge rate, or until when its power lasts. */
function outlookCell(r) {
  const o = r.outlook || {};
  const cell = (cls, text) => h("td", { class: "small outlook " + cls }, text);
  if (o.power_until) return cell("islanded", t("disaster.lasts_until", { time: I18N.dateTime(o.power_until) }));
  switch (o.reserve_status) {
    case "reached": return cell("reached", t("disaster.reached"));
    case "charging": return cell("charging", t("disaster.reach_at", { time: I18N.dateTime(o.reserve_at) }));
    case "too_slow": return cell("short", t(o.deadline === "typhoon" ? "disaster.cannot_reach_before_typhoon" : "disaster.cannot_reach_before", { time: I18N.dateTime(o.horizon_until) }));
    case "not_charging": return cell("short", t("disaster.not_charging"));
    default: return cell("", "—");
  }
}

/** JMA panel (issue 12): forecast arrival of typhoon storm-force wind per hall, and the last telegram of each kind
 *  with what it did (GET /api/jma/status). Labels through t() when the catalogue has them, else Japanese. */
function jmaForecastPanel() {
  const L = (key, ja, p) => { const s = typeof t === "function" ? t(key, p) : key; return s === key ? ja : s; };
  // What a telegram did / why it did nothing, as the trigger reports it (ems/central/jma/trigger.py).
  const DID = { switch: ["jma.did_switch", "災害モードに切替"], suggest_disaster: ["jma.did_suggest_disaster", "災害モードを提案"],
    suggest_return: ["jma.did_suggest_return", "VPP復帰を提案"] };
  const NOTE = { drill: ["jma.note_drill", "訓練・試験電文のため動作なし"], too_old: ["jma.note_too_old", "古い電文のため動作なし"],
    skipped: ["jma.note_skipped", "一部の項目を読み飛ばしました"] };
  const jst = iso => I18N.dateTime(iso);
  const KIND = { "warning-r06": L("jma.kind.warning_r06", "気象警報・注意報（Ｒ０６）"), warning: L("jma.kind.warning", "気象警報・注意報"),
    typhoon: L("jma.kind.typhoon", "台風"), earthquake: L("jma.kind.earthquake", "地震"), tsunami: L("jma.kind.tsunami", "津波") };
  const body = h("div", { id: "jma-forecast" }, h("p", { class: "muted small" }, "…"));
  api("GET", "/api/jma/status").then(st => {
    const names = Object.fromEntries((S.fleet ? S.fleet.halls : []).map(r => [r.site, r.name]));
    const arr = Object.entries(st.typhoon_arrivals || {}).sort((a, b) => a[1].arrival < b[1].arrival ? -1 : 1);
    const rows = arr.map(([site, a]) => h("tr", { dataset: { site } }, h("td", {}, names[site] || site),
      h("td", {}, t("jma.typhoon_no", { n: Number(a.typhoon.slice(-2)), name: a.name || "" })), h("td", { class: "arrival" }, jst(a.arrival)), h("td", {}, a.area), h("td", { class: "muted small" }, jst(a.report_time))));
    const last = Object.entries(st.last_reports || {}).map(([k, r]) => h("li", { dataset: { kind: k } },
      h("b", {}, KIND[k] || k), ` ${r.title}（${jst(r.report_time)}${r.control_status !== "通常" ? "・" + r.control_status : ""}）: `,
      r.did.length ? r.did.map(d => `${names[d.site] || d.site}: ${L(...(DID[d.action] || [d.action, d.action]))}`).join("、")
        : L("jma.did_nothing", "動作なし"),
      r.note ? h("span", { class: "muted", title: r.note.detail }, `（${L(...(NOTE[r.note.code] || [r.note.code, r.note.detail]))}）`) : null));
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
    const btn = h("button", { class: "danger", id: "disaster-submit", type: "button" }, t("disaster.switch_button"));
    btn.addEventListener("click", async () => {
      const body = sf.read();
      if (!await modal(t("disaster.switch_confirm_title"), h("p", {}, t("disaster.switch_confirm_text", { who: sf.describe(body), reason: body.reason })), t("disaster.switch_now"), "danger")) return;
      try { const op = await api("POST", "/api/disaster/switch", body); sf.reset(); clearErrors(sf.form); watch.set(op.id); }
      catch (e) { showFieldErrors(sf.form, e); }
    });
    parts.push(h("div", { class: "panel" }, h("h2", {}, t("disaster.switch_title")), sf.form, h("div", { class: "row" }, btn)));
  }
  parts.push(h("div", { class: "panel" }, h("h2", {}, t("disaster.progress_title")), opSlot));
  parts.push(h("div", { class: "panel" }, h("h2", {}, t("disaster.halls_title")),
    h("table", {}, h("thead", {}, h("tr", {}, ["col.hall", "col.mode", "col.online", "col.soc", "col.hours_left", "op.progress", "disaster.outlook"].map(k => h("th", {}, t(k))))), live)));
  parts.push(jmaForecastPanel());
  if (can("return_to_vpp")) {
    const rf = scopeForm("return", { danger: false });
    const btn = h("button", { class: "go-vpp", id: "return-submit", type: "button" }, t("disaster.return_button"));
    btn.addEventListener("click", async () => {
      const body = rf.read();
      if (!await modal(t("disaster.return_confirm_title"), h("p", {}, t("disaster.return_confirm_text", { who: rf.describe(body), reason: body.reason })), t("disaster.return_button"), "go-vpp")) return;
      try { const op = await api("POST", "/api/disaster/return", body); rf.reset(); clearErrors(rf.form); watch.set(op.id); }
      catch (e) { showFieldErrors(rf.form, e); }
    });
    parts.push(h("div", { class: "panel" }, h("h2", {}, t("disaster.return_title")), rf.form, h("div", { class: "row" }, btn)));
  }
  box.append(h("h1", { class: "sr-only" }, t("nav.disaster")), ...parts);
  api("GET", "/api/operations?limit=1&kind=disaster").then(d => { if (d.operations.length) watch.set(d.operations[0].id); }).catch(() => {});
  function update() {
    live.replaceChildren(...S.fleet.halls.map(r => h("tr", { class: "mode-" + r.mode, dataset: { site: r.site } },
      h("td", {}, h("div", { class: "hall-name" }, r.name), h("div", { class: "muted small" }, `${r.site} · ${r.area_name}`)),
      h("td", {}, modePill(r.mode), h("div", { class: "reason" }, r.mode_reason || "")),
      h("td", {}, onlineDot(r)), socCell(r.soc_pct),
      h("td", { class: "num" }, h("span", { class: "hours " + hoursClass(r.hours_left, r.h_disaster) }, fmtHours(r.hours_left)), " h"),
      h("td", {}, r.reserve_progress === null || r.reserve_progress === undefined ? "—" : [h("span", { class: "progress" + (r.reserve_progress >= 1 ? " done" : "") }, h("i", { style: `width:${(r.reserve_progress * 100).toFixed(0)}%` })), ` ${I18N.num(r.reserve_progress * 100, 0)} %`]),
      outlookCell(r))));
    watch.update();
  }
  return { update };
};

// ---------------------------------------------------------------- VPP dispatch
function nextSlotJst(minutes) {
  const slot = 30 * 60e3, tt = Math.ceil((Date.now() + (minutes || 0) * 60e3) / slot) * slot;
  return I18N.dateTime(tt);
}

VIEWS.vpp = box => {
  const power = h("input", { id: "vpp-power", type: "number", step: "0.1", value: "20" });
  const start = jstInput("vpp-start", "vpp.start", nextSlotJst(0));
  const dur = h("select", { id: "vpp-duration" }, [30, 60, 90, 120, 180, 240].map(m => h("option", { value: m, selected: m === 60 }, t("vpp.hours_option", { h: I18N.num(m / 60, m % 60 ? 1 : 0) }))));
  const reason = h("input", { id: "vpp-reason", placeholder: t("vpp.reason_placeholder"), style: "min-width:260px" });
  const out = h("div", { id: "vpp-preview" }), opSlot = h("div", { id: "vpp-op" }), watch = opWatcher(opSlot);
  const form = h("form", { id: "vpp-form", onsubmit: ev => ev.preventDefault() },
    h("div", { class: "row" },
      h("label", {}, t("vpp.power"), power, h("div", { class: "field-error", dataset: { for: "power_kw" } })),
      h("label", {}, t("vpp.start"), start, h("div", { class: "field-error", dataset: { for: "start" } })),
      h("label", {}, t("vpp.duration"), dur, h("div", { class: "field-error", dataset: { for: "end" } })),
      h("label", {}, t("vpp.reason"), reason, h("div", { class: "field-error", dataset: { for: "reason" } }))),
    h("div", { class: "row" }, h("button", { id: "vpp-preview-btn", class: "primary", type: "button", onclick: () => preview() }, t("vpp.preview")),
      h("button", { id: "vpp-send", type: "button", disabled: true, onclick: () => send() }, t("vpp.send"))), h("div", { class: "form-error error" }));
  const body = () => {
    const s = I18N.parseJst(start.value);
    return { power_kw: parseFloat(power.value), start: s ? s.toISOString() : start.value,
      end: s ? new Date(s.getTime() + dur.value * 60e3).toISOString() : start.value, reason: reason.value };
  };
  /** A start the page cannot read is named at the field, not sent. */
  function startOk() {
    if (I18N.parseJst(start.value)) return true;
    clearErrors(form);
    form.querySelector('.field-error[data-for="start"]').textContent = t("err.field.start");
    return false;
  }
  async function preview() {
    if (!startOk()) { out.replaceChildren(); $("#vpp-send").disabled = true; return; }
    try {
      const p = await api("POST", "/api/vpp/preview", body());
      clearErrors(form);
      renderPreview(p); $("#vpp-send").disabled = !p.halls.some(x => x.delta_w.some(v => Math.abs(v) >= 1));
    } catch (e) { showFieldErrors(form, e); out.replaceChildren(); $("#vpp-send").disabled = true; }
  }
  async function send() {
    if (!startOk()) return;
    const b = body();
    if (!await modal(t("vpp.send_confirm_title"), h("p", {}, t("vpp.send_confirm_text", { kw: I18N.num(b.power_kw, 1), start: I18N.dateTime(b.start), min: dur.value })), t("vpp.send"))) return;
    try { const op = await api("POST", "/api/vpp/dispatch", b); clearErrors(form); watch.set(op.id); }
    catch (e) { showFieldErrors(form, e); }
  }
  function renderPreview(p) {
    const names = Object.fromEntries(S.fleet.halls.map(r => [r.site, r.name]));
    const req = p.request_w[0] || 0, alloc = p.allocated_w.reduce((a, b) => a + b, 0) / Math.max(1, p.allocated_w.length);
    const max = Math.max(1, ...p.halls.map(x => Math.max(...x.delta_w.map(Math.abs))));
    out.replaceChildren(
      h("div", { class: "row" }, h("span", { class: "chip" }, h("b", {}, kw(req)), t("vpp.kw_asked")), h("span", { class: "chip" }, h("b", {}, kw(alloc)), t("vpp.kw_allocated")),
        h("span", { class: "chip" }, h("b", {}, kw(Math.max(...p.unmet_w.map(Math.abs)))), t("vpp.kw_unmet")), h("span", { class: "muted" }, t("vpp.solve_note", { status: p.status, ms: I18N.num(p.solve_ms, 0), n: p.times.length }))),
      ...p.notes.map(n => h("p", { class: "muted small" }, n)),
      h("table", { id: "vpp-alloc" }, h("thead", {}, h("tr", {}, ["col.hall", "vpp.baseline_kw", "vpp.share_kw", "vpp.share_bar", "vpp.share_slots", "vpp.baseline_from"].map(k => h("th", {}, t(k))))),
        h("tbody", {}, p.halls.map(x => {
          const mean = x.delta_w.reduce((a, b) => a + b, 0) / x.delta_w.length;
          return h("tr", { dataset: { site: x.site } }, h("td", {}, names[x.site] || x.site), h("td", { class: "num" }, kw(x.baseline_w[0])),
            h("td", { class: "num" }, kw(mean)), h("td", {}, h("span", { class: "bar-h" + (mean < 0 ? " neg" : ""), style: `width:${Math.abs(mean) / max * 160}px` })),
            h("td", { class: "small" }, x.delta_w.map(kw).join(" / ")), h("td", { class: "small muted" }, x.baseline_source));
        }))),
      Object.keys(p.excluded).length ? h("p", { class: "muted small" }, t("vpp.excluded") + " " + Object.entries(p.excluded).map(([s, why]) => `${names[s] || s} (${why})`).join(", ")) : "");
  }
  box.append(h("div", { class: "panel" }, h("h1", { class: "h2" }, t("vpp.title")), form), h("div", { class: "panel" }, h("h2", {}, t("vpp.allocation")), out),
    h("div", { class: "panel" }, h("h2", {}, t("vpp.sent")), opSlot));
  api("GET", "/api/operations?limit=1&kind=dispatch").then(d => { if (d.operations.length) watch.set(d.operations[0].id); }).catch(() => {});
  return { update: () => watch.update() };
};

// ---------------------------------------------------------------- money (VPP earnings against no battery)
VIEWS.money = box => {
  let period = "day";
  const note = h("p", { class: "muted small", id: "money-note", role: "status" });
  const fleetBox = h("div", { id: "money-fleet" }), hallsBox = h("div", { id: "money-halls" });
  const csv = h("a", { id: "money-csv", class: "button-link", href: "/api/earnings.csv?period=day" }, t("money.csv"));
  const tabs = h("div", { class: "row ranges" }, h("b", {}, t("money.per")), [["day", "money.per_day"], ["month", "money.per_month"]].map(([p, k]) =>
    h("button", { type: "button", dataset: { period: p }, class: p === period ? "active" : "", onclick: () => { period = p; csv.href = `/api/earnings.csv?period=${p}`; tabs.querySelectorAll("button").forEach(b => b.classList.toggle("active", b.dataset.period === p)); load(); } }, t(k))), csv);
  box.append(h("div", { class: "panel" }, h("h1", { class: "h2" }, t("money.title")), h("p", { class: "muted small" }, t("money.explain")), tabs, note, fleetBox),
    h("div", { class: "panel" }, h("h2", {}, t("money.halls_title")), hallsBox));
  const label = p => period === "month" ? p.replace("-", "/") : p.replaceAll("-", "/");
  async function load() {
    let d;
    try { d = await api("GET", `/api/earnings?period=${period}`); note.textContent = ""; }
    catch (e) { note.textContent = errText(e); return; }
    if (!d.fleet.length) { fleetBox.replaceChildren(h("p", { class: "muted" }, t("money.none"))); hallsBox.replaceChildren(); return; }
    const max = Math.max(1, ...d.fleet.map(x => Math.abs(x.earnings_jpy)));
    fleetBox.replaceChildren(h("table", { id: "money-fleet-table" },
      h("thead", {}, h("tr", {}, ["money.period", "money.cost_without", "money.cost_with", "money.earnings", "", "money.import_kwh", "money.export_kwh", "money.coverage"].map(k => h("th", { class: k === "money.period" ? "" : "num" }, k ? t(k) : "")))),
      h("tbody", {}, d.fleet.map(x => h("tr", { dataset: { period: x.period } }, h("td", {}, label(x.period)),
        h("td", { class: "num" }, I18N.yen(x.cost_without_battery_jpy)), h("td", { class: "num" }, I18N.yen(x.cost_with_battery_jpy)),
        h("td", { class: "num earn" + (x.earnings_jpy < 0 ? " neg" : "") }, h("b", {}, I18N.yen(x.earnings_jpy))),
        h("td", {}, h("span", { class: "bar-h" + (x.earnings_jpy < 0 ? " neg" : ""), style: `width:${Math.abs(x.earnings_jpy) / max * 160}px` })),
        h("td", { class: "num" }, I18N.num(x.import_kwh, 1)), h("td", { class: "num" }, I18N.num(x.export_kwh, 1)),
        h("td", { class: "num" }, I18N.num(x.priced_share * 100, 0) + " %"))))));
    const names = Object.fromEntries((S.fleet ? S.fleet.halls : []).map(r => [r.site, r.name]));
    const periods = [...new Set(d.halls.map(x => x.period))].sort().reverse();
    const last = periods[0];
    const rows = d.halls.filter(x => x.period === last).sort((a, b) => b.earnings_jpy - a.earnings_jpy);
    hallsBox.replaceChildren(h("p", { class: "muted small" }, t("money.halls_for", { period: label(last) })), h("table", { id: "money-halls-table" },
      h("thead", {}, h("tr", {}, ["col.hall", "money.cost_without", "money.cost_with", "money.earnings"].map(k => h("th", { class: k === "col.hall" ? "" : "num" }, t(k))))),
      h("tbody", {}, rows.map(x => h("tr", { dataset: { site: x.site } }, h("td", {}, h("a", { href: "#/site/" + encodeURIComponent(x.site) }, names[x.site] || x.site)),
        h("td", { class: "num" }, I18N.yen(x.cost_without_battery_jpy)), h("td", { class: "num" }, I18N.yen(x.cost_with_battery_jpy)),
        h("td", { class: "num earn" + (x.earnings_jpy < 0 ? " neg" : "") }, I18N.yen(x.earnings_jpy)))))));
  }
  load();
  const timer = setInterval(load, 60000);
  return { unmount: () => clearInterval(timer) };
};

// ---------------------------------------------------------------- audit
const AUDIT_ACTIONS = ["login", "login_failed", "logout", "mode_switch", "dispatch", "ack", "ack_timeout", "command_resent", "alarm_ack", "jma_warning", "jma_cancelled", "user_added", "token_created"];
VIEWS.audit = box => {
  const action = h("select", { id: "audit-action", "aria-label": t("audit.filter"), onchange: () => load() }, ["", ...AUDIT_ACTIONS].map(a => h("option", { value: a }, a ? actionName(a) : t("audit.all_actions"))));
  const verifyOut = h("span", { id: "audit-verify-result", role: "status" });
  const table = h("tbody", { id: "audit-body" });
  box.append(h("div", { class: "panel" }, h("h1", { class: "h2" }, t("audit.title")),
    h("div", { class: "row" }, action,
      h("button", { id: "audit-verify", type: "button", onclick: async () => {
        try {
          const v = await api("GET", "/api/audit/verify");
          verifyOut.textContent = v.ok ? t("audit.intact", { n: I18N.num(v.checked) }) : t("audit.broken", { seq: v.first_bad_seq, problem: v.problem });
          verifyOut.className = v.ok ? "" : "error";
        } catch (e) { verifyOut.textContent = errText(e); verifyOut.className = "error"; }
      } }, t("audit.verify")), verifyOut,
      can("export_audit") ? h("a", { href: "/api/audit/export.csv", id: "audit-export" }, t("audit.export")) : ""),
    h("table", { id: "audit-table" }, h("thead", {}, h("tr", {}, ["audit.seq", "audit.time", "audit.actor", "audit.action", "audit.target", "audit.reason", "audit.details"].map(k => h("th", {}, t(k))))), table)));
  async function load() {
    const q = action.value ? `&action=${action.value}` : "";
    try {
      const d = await api("GET", `/api/audit?limit=300&newest_first=true${q}`);
      table.replaceChildren(...d.records.map(r => h("tr", {},
        h("td", { class: "num" }, r.seq), h("td", { class: "small" }, jst(r.time)), h("td", {}, r.actor), h("td", {}, actionName(r.action)),
        h("td", {}, r.target), h("td", {}, r.reason), h("td", { class: "small muted" }, JSON.stringify(r.details)))));
    } catch (e) { table.replaceChildren(h("tr", {}, h("td", { class: "error", colspan: 7 }, errText(e)))); }
  }
  load();
  return {};
};

// ---------------------------------------------------------------- start
(async () => {
  try { await I18N.init(); } catch (e) { /* catalogue unreachable: keys show, the page still works */ }
  I18N.apply(document);
  wireLogin();
  window.addEventListener("hashchange", route);
  const tick = () => { $("#clock").textContent = I18N.dateTime(Date.now() + (S.clockOffset || 0), true) + " JST"; };
  tick(); setInterval(tick, 1000);
  try { loggedIn(await api("GET", "/api/me")); } catch (e) { showLogin(); }
})();
