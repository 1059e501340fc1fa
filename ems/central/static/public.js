// The residents' page: shelter name, whether it has power, hours left.  No login, no other data.
// Japanese first; the 日本語 / English switch is remembered in this browser (i18n.js).
"use strict";
let last = null;

function card(s) {
  const div = document.createElement("section");
  div.className = "shelter " + s.power;
  div.dataset.name = s.name;
  const name = document.createElement("h2"); name.className = "name"; name.textContent = s.name;
  const area = document.createElement("div"); area.className = "area"; area.textContent = s.area_name || "";
  const power = document.createElement("div"); power.className = "power";
  power.textContent = t("public.power." + (["grid", "battery", "none"].includes(s.power) ? s.power : "unknown"));
  div.append(name, area, power);
  if (s.hours_left !== null && s.hours_left !== undefined) {
    const h = document.createElement("div"); h.className = "hours-big";
    h.textContent = t("public.hours_value", { h: s.hours_left >= 100 ? "100+" : I18N.num(s.hours_left, 1) });
    const label = document.createElement("div"); label.className = "muted";
    label.textContent = t("public.hours");
    div.append(h, label);
  }
  return div;
}

function render() {
  if (!last) return;
  const box = document.getElementById("shelters");
  box.replaceChildren(...(last.shelters.length ? last.shelters.map(card) : [Object.assign(document.createElement("p"), { textContent: t("public.none") })]));
  document.getElementById("updated").textContent = I18N.dateTime(last.time) + " JST";
}

async function refresh() {
  try {
    const r = await fetch("/api/public/shelters", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    last = await r.json();
    render();
  } catch (e) {
    document.getElementById("updated").textContent = t("public.cannot_load", { why: e.message });
  }
}

(async () => {
  try { await I18N.init(); } catch (e) { /* texts stay as served (Japanese) */ }
  I18N.apply(document);
  const sw = document.getElementById("lang-switch");
  const label = () => { const other = I18N.lang === "ja" ? "en" : "ja"; sw.textContent = t("lang.switch_to_" + other); sw.lang = other; };
  label();
  sw.addEventListener("click", async () => { await I18N.set(I18N.lang === "ja" ? "en" : "ja"); label(); render(); });
  refresh();
  setInterval(refresh, 30000);
})();
