// Number and time formatting shared by the views.

/**
 * A price in its instrument's precision (`decimals`, from /api/exchanges: the places its trades
 * need); without one, a guess from its size.
 */
export function price(value, decimals) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (Number.isInteger(decimals)) return fixed(value, decimals);
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 2 : abs >= 1 ? 4 : 6;
  return value.toLocaleString("en-US", { minimumFractionDigits: Math.min(digits, 2), maximumFractionDigits: digits });
}

/** A change of price, signed, in the instrument's precision; never "-0.00". */
export function signedPrice(value, decimals) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const places = Number.isInteger(decimals) ? decimals : 2;
  // Float noise below half a tick is no change at all.
  const rounded = Math.round(value * 10 ** places) / 10 ** places;
  if (rounded === 0) return fixed(0, places);
  return `${rounded > 0 ? "+" : "-"}${fixed(Math.abs(rounded), places)}`;
}

/** A size in the instrument's lot precision; without one, a guess from its size. */
export function qty(value, decimals) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (Number.isInteger(decimals)) return fixed(value, decimals);
  return value.toLocaleString("en-US", { maximumFractionDigits: value >= 100 ? 2 : 5 });
}

function fixed(value, decimals) {
  return value.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export function count(value) {
  if (value === null || value === undefined) return "–";
  return Math.round(value).toLocaleString("en-US");
}

export function compact(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 }).format(value);
}

/** A signed percentage; a change too small for `digits` places gets the places it needs. */
export function percent(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value === 0) return `${(0).toFixed(digits)}%`;
  const pct = value * 100;
  const places = Math.max(digits, Math.min(8, digits - Math.floor(Math.log10(Math.abs(pct))) - 1));
  return `${pct > 0 ? "+" : "-"}${Math.abs(pct).toFixed(places)}%`;
}

export function share(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${(value * 100).toFixed(1)}%`;
}

// Every time the page writes is in one zone, UTC or the browser's own, and one format
// (2026-12-06 20:19:40.123); the header's switch chooses, and the browser remembers it.
let utc = localStorage.getItem("tickpipe.tz") === "utc";

export function isUtc() {
  return utc;
}

export function setUtc(on) {
  utc = on;
  localStorage.setItem("tickpipe.tz", on ? "utc" : "local");
}

/** The browser's own offset from UTC, e.g. "UTC+09:00". */
export function localOffset() {
  const minutes = -new Date().getTimezoneOffset();
  const two = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  return `UTC${minutes < 0 ? "-" : "+"}${two(minutes / 60)}:${two(minutes % 60)}`;
}

function fields(us) {
  const d = new Date(us / 1000);
  return utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** 20:19:40.123 */
export function clock(us) {
  const [, , , h, m, s, ms] = fields(us);
  return `${pad(h)}:${pad(m)}:${pad(s)}.${pad(ms, 3)}`;
}

/** 2026-12-06 20:19:40 */
export function dateTime(us) {
  const [y, mo, d, h, m, s] = fields(us);
  return `${y}-${pad(mo)}-${pad(d)} ${pad(h)}:${pad(m)}:${pad(s)}`;
}

/** A µs timestamp as the wall-clock string Plotly puts on a date axis, in the page's zone. */
export function axisTime(us) {
  const [, , , , , , ms] = fields(us);
  return `${dateTime(us)}.${pad(ms, 3)}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

/** A time span in whole units, as a person says it: "40 s", "3 min", "2 h 5 min", "3 d 4 h". */
export function span(us) {
  const s = Math.max(0, Math.floor(us / 1e6));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** "15s", "2m", "1h", "3d" -> µs, or null when the text is not a duration. */
export function parseDuration(text) {
  const found = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(text || "");
  if (!found) return null;
  const unit = { ms: 1e3, s: 1e6, m: 60e6, h: 3600e6, d: 86400e6 }[found[2]];
  return Math.round(Number(found[1]) * unit);
}

/** µs -> the shortest "15s"/"2m"/"1h" spelling, as the API names intervals. */
export function formatDuration(us) {
  for (const [unit, size] of [["d", 86400e6], ["h", 3600e6], ["m", 60e6], ["s", 1e6], ["ms", 1e3]]) {
    if (us % size === 0) return `${us / size}${unit}`;
  }
  return `${us / 1e3}ms`;
}

export function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

export function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c);
  return tr;
}

/** One row across the whole table, for "nothing here" messages. */
export function emptyRow(text, columns) {
  const td = cell(text, "muted");
  td.colSpan = columns;
  return row([td]);
}

export function signClass(value) {
  return value > 0 ? "num up" : value < 0 ? "num down" : "num";
}
