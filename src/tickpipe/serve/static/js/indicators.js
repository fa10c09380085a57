// Technical indicators on candle closes: RSI (Wilder), MACD and Bollinger bands, with their
// periods as the user sets them and as the URL keeps them. Pure functions: an array of closes
// in, arrays of the same length out, null where the window is not yet full.

/** The settings a chart starts with; `on` says whether each indicator is drawn. */
export const DEFAULTS = {
  rsi: { on: false, period: 14 },
  macd: { on: false, fast: 12, slow: 26, signal: 9 },
  bb: { on: false, period: 20, k: 2 },
};

/**
 * Exponential moving average seeded with the simple average of the first `n` values (the
 * usual seed of MACD and of TA-Lib): defined from index n-1. Nulls before the series starts
 * are skipped, so an EMA of a MACD line starts where that line starts.
 */
export function emaSeeded(values, n) {
  const out = new Array(values.length).fill(null);
  const k = 2 / (n + 1);
  let seen = 0;
  let sum = 0;
  let prev = null;
  for (let i = 0; i < values.length; i += 1) {
    const v = values[i];
    if (v === null || v === undefined) continue;
    seen += 1;
    if (seen < n) {
      sum += v;
    } else if (seen === n) {
      prev = (sum + v) / n;
      out[i] = prev;
    } else {
      prev = v * k + prev * (1 - k);
      out[i] = prev;
    }
  }
  return out;
}

/**
 * Relative strength index, Wilder's definition: the first average gain and loss are plain means
 * of the first `n` changes, each later one (avg * (n - 1) + change) / n. Defined from index n.
 * No losses in the window: 100 (no gains either: 50).
 */
export function rsi(closes, n) {
  const out = new Array(closes.length).fill(null);
  let gain = 0;
  let loss = 0;
  for (let i = 1; i < closes.length; i += 1) {
    const change = closes[i] - closes[i - 1];
    const up = change > 0 ? change : 0;
    const down = change < 0 ? -change : 0;
    if (i <= n) {
      gain += up / n;
      loss += down / n;
      if (i < n) continue;
    } else {
      gain = (gain * (n - 1) + up) / n;
      loss = (loss * (n - 1) + down) / n;
    }
    out[i] = loss === 0 ? (gain === 0 ? 50 : 100) : 100 - 100 / (1 + gain / loss);
  }
  return out;
}

/** MACD: EMA(fast) - EMA(slow) of the closes, its EMA(signal), and their difference. */
export function macd(closes, fast, slow, signal) {
  const f = emaSeeded(closes, fast);
  const s = emaSeeded(closes, slow);
  const line = closes.map((_, i) => (f[i] === null || s[i] === null ? null : f[i] - s[i]));
  const sig = emaSeeded(line, signal);
  const hist = line.map((v, i) => (v === null || sig[i] === null ? null : v - sig[i]));
  return { line, signal: sig, hist };
}

/** Bollinger bands: the simple average of `n` closes ± k population standard deviations. */
export function bollinger(closes, n, k) {
  const mid = new Array(closes.length).fill(null);
  const upper = mid.slice();
  const lower = mid.slice();
  for (let i = n - 1; i < closes.length; i += 1) {
    let sum = 0;
    for (let j = i - n + 1; j <= i; j += 1) sum += closes[j];
    const mean = sum / n;
    let sq = 0;
    for (let j = i - n + 1; j <= i; j += 1) sq += (closes[j] - mean) ** 2;
    const sd = Math.sqrt(sq / n);
    mid[i] = mean;
    upper[i] = mean + k * sd;
    lower[i] = mean - k * sd;
  }
  return { mid, upper, lower };
}

// -- settings: the URL and the inputs ---------------------------------------------------------

// Each indicator's numbers in the order the URL and the input box give them.
const FIELDS = { rsi: ["period"], macd: ["fast", "slow", "signal"], bb: ["period", "k"] };

/** Whole periods from 1 to 500; Bollinger's width any positive number up to 10. */
function valid(name, values) {
  if (values.length !== FIELDS[name].length || values.some((v) => !Number.isFinite(v) || v <= 0)) return false;
  const periods = name === "bb" ? values.slice(0, 1) : values;
  if (periods.some((v) => !Number.isInteger(v) || v > 500)) return false;
  if (name === "macd" && values[0] >= values[1]) return false;
  return name !== "bb" || values[1] <= 10;
}

/** Numbers typed as "12,26,9" (or with spaces or slashes); null when they are not valid. */
export function parseParams(name, text) {
  const values = String(text).trim().split(/[\s,/]+/).map(Number);
  if (!valid(name, values)) return null;
  return Object.fromEntries(FIELDS[name].map((f, i) => [f, values[i]]));
}

export function formatParams(name, settings) {
  return FIELDS[name].map((f) => settings[f]).join(",");
}

/** Settings from the page's query: `rsi=14&macd=12,26,9&bb=20,2` (present: drawn). */
export function fromQuery(query) {
  const out = structuredClone(DEFAULTS);
  for (const name of Object.keys(FIELDS)) {
    if (!query.has(name)) continue;
    const parsed = parseParams(name, query.get(name));
    Object.assign(out[name], parsed || {}, { on: true });
  }
  return out;
}

/** The query parameters of the indicators drawn. */
export function toQuery(settings) {
  const out = {};
  for (const name of Object.keys(FIELDS)) {
    if (settings[name].on) out[name] = formatParams(name, settings[name]);
  }
  return out;
}

/** Label of a drawn indicator, e.g. "RSI 14", "MACD 12,26,9", "BB 20,2". */
export function label(name, settings) {
  return `${{ rsi: "RSI", macd: "MACD", bb: "BB" }[name]} ${formatParams(name, settings)}`;
}
