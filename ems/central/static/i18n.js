// Message catalogues (static/i18n/ja.json, en.json) and Japanese-style formatting for both pages.
// Language: the user's choice (remembered in localStorage), else the browser's preference
// (navigator.languages, what it sends as Accept-Language), else Japanese.  Dates are always JST
// in Japanese style (2026/12/07 13:51); numbers are grouped with Intl.NumberFormat('ja-JP').
"use strict";

const I18N = (() => {
  const TZ = "Asia/Tokyo";
  const LANGS = ["ja", "en"];
  const STORE_KEY = "ems.lang";
  const cats = {};
  let lang = "ja";

  function preferred() {
    let stored = null;
    try { stored = localStorage.getItem(STORE_KEY); } catch (e) { /* storage off: browser preference */ }
    if (LANGS.includes(stored)) return stored;
    for (const l of navigator.languages || [navigator.language || ""]) {
      const base = String(l).toLowerCase().split("-")[0];
      if (LANGS.includes(base)) return base;
    }
    return "ja";
  }

  async function fetchCat(l) {
    if (cats[l]) return cats[l];
    const r = await fetch(`/static/i18n/${l}.json`, { cache: "no-cache" });
    if (!r.ok) throw new Error(`catalogue ${l}: HTTP ${r.status}`);
    cats[l] = await r.json();
    return cats[l];
  }

  /** Load the catalogue of `l` (default: the preferred language) and Japanese as the fallback. */
  async function init(l) {
    lang = LANGS.includes(l) ? l : preferred();
    await Promise.all([fetchCat("ja"), fetchCat(lang)]);
    document.documentElement.lang = lang;
    return lang;
  }

  /** Switch language, remember it, re-apply the static texts. */
  async function set(l) {
    try { localStorage.setItem(STORE_KEY, l); } catch (e) { /* not remembered */ }
    await init(l);
    apply(document);
  }

  /** The message `key` with {name} placeholders filled from `params`; the key itself if unknown. */
  function t(key, params) {
    let s = (cats[lang] && cats[lang][key]) ?? (cats.ja && cats.ja[key]) ?? key;
    if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (params[k] === undefined || params[k] === null ? m : String(params[k])));
    return s;
  }
  const has = key => !!(cats[lang] && key in cats[lang]);

  /** Fill elements marked data-i18n (text), data-i18n-placeholder, data-i18n-title, data-i18n-aria-label. */
  function apply(root) {
    for (const e of root.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
    for (const [attr, key] of [["placeholder", "i18nPlaceholder"], ["title", "i18nTitle"], ["aria-label", "i18nAriaLabel"]]) {
      for (const e of root.querySelectorAll(`[data-i18n-${attr}]`)) e.setAttribute(attr, t(e.dataset[key]));
    }
    const title = document.querySelector("title[data-i18n]");
    if (title) document.title = t(title.dataset.i18n);
  }

  // ------------------------------------------------------------------ formatting
  const nf = {};
  /** A number grouped the Japanese way with `digits` decimals; "—" when missing. */
  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const d = digits ?? 0;
    nf[d] = nf[d] || new Intl.NumberFormat("ja-JP", { minimumFractionDigits: d, maximumFractionDigits: d });
    return nf[d].format(v);
  }
  /** Whole yen ("1,234 円" / "¥1,234"); a loss of less than half a yen is 0, not "-0". */
  const yen = v => {
    if (v === null || v === undefined) return "—";
    const r = Math.round(v) || 0;
    return lang === "ja" ? num(r, 0) + " 円" : (r < 0 ? "−¥" + num(-r, 0) : "¥" + num(r, 0));
  };

  const parts = (ms, withSeconds) => {
    const p = {};
    for (const x of new Intl.DateTimeFormat("ja-JP", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: withSeconds ? "2-digit" : undefined, hourCycle: "h23" }).formatToParts(new Date(ms))) p[x.type] = x.value;
    return p;
  };
  /** "2026/12/07 13:51" (JST); withSeconds: "2026/12/07 13:51:05"; "—" when missing. */
  function dateTime(iso, withSeconds) {
    if (iso === null || iso === undefined || iso === "") return "—";
    const ms = typeof iso === "number" ? iso : Date.parse(iso);
    if (Number.isNaN(ms)) return "—";
    const p = parts(ms, withSeconds);
    return `${p.year}/${p.month}/${p.day} ${p.hour}:${p.minute}` + (withSeconds ? `:${p.second}` : "");
  }
  /** "12/07 13:51" (JST) for charts and short lists. */
  function shortTime(ms, withDate) {
    const p = parts(ms, false);
    return withDate ? `${p.month}/${p.day} ${p.hour}:${p.minute}` : `${p.hour}:${p.minute}`;
  }
  /** JST date "2026/12/07" of an ISO time or ms. */
  function date(iso) { const p = parts(typeof iso === "number" ? iso : Date.parse(iso), false); return `${p.year}/${p.month}/${p.day}`; }
  /** Parse "2026/12/07 13:51" (or 2026-12-07T13:51) as JST; null if not such a time. */
  function parseJst(text) {
    const m = /^\s*(\d{4})[/-](\d{1,2})[/-](\d{1,2})[ T]+(\d{1,2}):(\d{2})\s*$/.exec(text || "");
    if (!m) return null;
    const [y, mo, d, hh, mi] = m.slice(1).map(Number);
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59) return null;
    const ms = Date.UTC(y, mo - 1, d, hh - 9, mi);
    return dateTime(ms) === `${y}/${String(mo).padStart(2, "0")}/${String(d).padStart(2, "0")} ${String(hh).padStart(2, "0")}:${String(mi).padStart(2, "0")}` ? new Date(ms) : null;
  }

  return { init, set, t, has, apply, num, yen, dateTime, shortTime, date, parseJst, get lang() { return lang; }, LANGS, TZ };
})();
const t = I18N.t;
