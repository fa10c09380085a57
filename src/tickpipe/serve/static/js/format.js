// Number and time formatting shared by the views.

export function price(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 2 : abs >= 1 ? 4 : 6;
  return value.toLocaleString("en-US", { minimumFractionDigits: Math.min(digits, 2), maximumFractionDigits: digits });
}

export function qty(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", { maximumFractionDigits: value >= 100 ? 2 : 5 });
}

export function count(value) {
  if (value === null || value === undefined) return "–";
  return Math.round(value).toLocaleString("en-US");
}

export function compact(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 }).format(value);
}

export function percent(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const sign = value > 0 ? "+" : "";
  return `${sign}${(value * 100).toFixed(digits)}%`;
}

export function share(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${(value * 100).toFixed(1)}%`;
}

export function clock(us) {
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function dateTime(us) {
  return new Date(us / 1000).toLocaleString("en-GB", { hour12: false });
}

export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
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
