// The residents' page: shelter name, whether it has power, hours left.  No login, no other data.
"use strict";
const POWER_TEXT = {
  grid: ["電気あり（系統）", "Power on (grid)"],
  battery: ["停電中・蓄電池で給電", "Outage – on battery"],
  none: ["電気なし", "No power"],
  unknown: ["情報なし", "No information"],
};

function card(s) {
  const div = document.createElement("div");
  div.className = "shelter " + s.power;
  div.dataset.name = s.name;
  const name = document.createElement("div"); name.className = "name"; name.textContent = s.name;
  const area = document.createElement("div"); area.className = "area"; area.textContent = s.area_name || "";
  const power = document.createElement("div"); power.className = "power";
  const [ja, en] = POWER_TEXT[s.power] || POWER_TEXT.unknown;
  power.textContent = `${ja} / ${en}`;
  div.append(name, area, power);
  if (s.hours_left !== null && s.hours_left !== undefined) {
    const h = document.createElement("div"); h.className = "hours-big";
    h.textContent = s.hours_left >= 100 ? "100+ h" : `${s.hours_left.toFixed(1)} h`;
    const label = document.createElement("div"); label.className = "muted";
    label.textContent = "蓄電池で使える時間 / hours of battery power";
    div.append(h, label);
  }
  return div;
}

async function refresh() {
  try {
    const r = await fetch("/api/public/shelters", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    const data = await r.json();
    const box = document.getElementById("shelters");
    box.replaceChildren(...data.shelters.map(card));
    document.getElementById("updated").textContent =
      new Date(data.time).toLocaleString("ja-JP", { timeZone: "Asia/Tokyo" });
  } catch (e) {
    document.getElementById("updated").textContent = "取得できません / cannot load (" + e.message + ")";
  }
}
refresh();
setInterval(refresh, 30000);
