// Candles on the page: a series kept sorted by start, live roll-up of stored intervals into a
// custom bucket, the overlays, and the Plotly figure. Times are µs since the epoch, as the API
// gives them.

import { axisTime } from "./format.js";
import { DEFAULTS, bollinger, label, macd, rsi } from "./indicators.js";
import { spread } from "./venues.js";

// Lines of the compared venues, in the order they were chosen.
const VENUE_COLORS = ["#f5a623", "#3fa7ff", "#c86dd7", "#33c3a0", "#e4572e"];

/** Candles keyed by start, kept in order; live updates replace a candle or append one. */
export class CandleSeries {
  constructor(candles) {
    this.candles = candles.slice();
  }

  /** Put `candle` in its place; returns the candle it replaced (undefined: a new one). */
  upsert(candle) {
    const list = this.candles;
    const last = list.length ? list[list.length - 1].start : -Infinity;
    if (candle.start > last) {
      list.push(candle);
      return undefined;
    }
    // Updates land on the newest candles almost always: search from the end.
    for (let i = list.length - 1; i >= 0; i -= 1) {
      if (list[i].start === candle.start) {
        const old = list[i];
        list[i] = candle;
        return old;
      }
      if (list[i].start < candle.start) {
        list.splice(i + 1, 0, candle);
        return undefined;
      }
    }
    list.unshift(candle);
    return undefined;
  }

  /** Drop the candles that start before `start`; returns how many went. */
  dropBefore(start) {
    let n = 0;
    while (n < this.candles.length && this.candles[n].start < start) n += 1;
    if (n) this.candles.splice(0, n);
    return n;
  }
}

/**
 * Rolls live candles of a stored interval up into a larger bucket, exactly as the API's
 * `bucket=` does: open of the first, close of the last, extremes and sums over all.
 */
export class BucketRollup {
  constructor(step) {
    this.step = step;
    this.parts = new Map(); // start of a stored candle -> that candle
  }

  add(candle) {
    this.parts.set(candle.start, candle);
    const bucket = candle.start - (candle.start % this.step);
    for (const start of this.parts.keys()) {
      if (start < bucket - this.step) this.parts.delete(start);
    }
    const inside = [...this.parts.values()]
      .filter((c) => c.start >= bucket && c.start < bucket + this.step)
      .sort((a, b) => a.start - b.start);
    return rollup(inside, bucket);
  }
}

export function rollup(parts, start) {
  const first = parts[0];
  const last = parts[parts.length - 1];
  let high = -Infinity;
  let low = Infinity;
  let volume = 0;
  let quoteVolume = 0;
  let trades = 0;
  let buy = 0;
  let sell = 0;
  for (const c of parts) {
    high = Math.max(high, c.high);
    low = Math.min(low, c.low);
    volume += c.volume;
    quoteVolume += c.quote_volume;
    trades += c.trades;
    buy += c.buy_volume;
    sell += c.sell_volume;
  }
  return {
    ...last, start, open: first.open, high, low, close: last.close, volume,
    quote_volume: quoteVolume, vwap: volume > 0 ? quoteVolume / volume : last.close, trades,
    buy_volume: buy, sell_volume: sell, first_seq: first.first_seq,
    final: parts.every((c) => c.final),
  };
}

export function sma(values, n) {
  const out = new Array(values.length).fill(null);
  let sum = 0;
  for (let i = 0; i < values.length; i += 1) {
    sum += values[i];
    if (i >= n) sum -= values[i - n];
    if (i >= n - 1) out[i] = sum / n;
  }
  return out;
}

export function ema(values, n) {
  const out = new Array(values.length).fill(null);
  const k = 2 / (n + 1);
  let prev = null;
  for (let i = 0; i < values.length; i += 1) {
    prev = prev === null ? values[i] : values[i] * k + prev * (1 - k);
    if (i >= n - 1) out[i] = prev;
  }
  return out;
}

/** VWAP anchored at the first candle shown: traded quote volume over traded volume so far. */
export function anchoredVwap(candles) {
  let qv = 0;
  let v = 0;
  return candles.map((c) => {
    qv += c.quote_volume;
    v += c.volume;
    return v > 0 ? qv / v : null;
  });
}

export function themeColors() {
  const css = getComputedStyle(document.documentElement);
  const get = (name) => css.getPropertyValue(name).trim();
  return {
    bg: get("--panel"), text: get("--text"), muted: get("--muted"), grid: get("--grid"),
    border: get("--border"), up: get("--up"), down: get("--down"), vwap: get("--vwap"),
    sma: get("--sma"), ema: get("--ema"), avg30: get("--avg30"), accent: get("--accent"),
  };
}

/**
 * Price labels in the instrument's precision: on the axis with trailing zeros dropped (so
 * neighbouring labels differ), in the hover with every place. Unknown precision: 6 digits.
 */
function priceAxis(decimals) {
  if (!Number.isInteger(decimals)) return { tickformat: ",.6~g" };
  return { tickformat: `,.${decimals}~f`, hoverformat: `,.${decimals}f` };
}

// On a touch screen a finger drag pans the chart (a zoom box is for a mouse).
const TOUCH = window.matchMedia("(pointer: coarse)").matches;

/** Room on the right for the price labels: their longest is the highest price, every place. */
function axisWidth(candles, decimals) {
  const high = Math.max(1, ...candles.map((c) => c.high));
  const digits = Math.floor(Math.log10(high)) + 1;
  const chars = digits + Math.floor((digits - 1) / 3) + (Number.isInteger(decimals) ? decimals + 1 : 4);
  return Math.max(64, 16 + 7 * chars);
}

/**
 * The candlestick figure: price with overlays above, volume below, one shared time axis.
 * `uirevision` is the chart's identity (exchange, symbol, timeframe, lookback): while it stays
 * the same, Plotly keeps the user's zoom and pan across every live redraw.
 */
export function candleFigure({
  candles, rolling, overlays, colors, uirevision, title, priceDecimals, indicators = DEFAULTS, venues = [],
}) {
  const x = candles.map((c) => axisTime(c.start));
  const close = candles.map((c) => c.close);
  const traces = [
    {
      type: "candlestick", name: title, x,
      open: candles.map((c) => c.open), high: candles.map((c) => c.high),
      low: candles.map((c) => c.low), close,
      customdata: candles.map((c) => c.start),
      increasing: { line: { color: colors.up, width: 1 }, fillcolor: colors.up },
      decreasing: { line: { color: colors.down, width: 1 }, fillcolor: colors.down },
      whiskerwidth: 0, hoverinfo: "none", showlegend: false,
    },
    {
      type: "bar", name: "volume", x, y: candles.map((c) => c.volume), yaxis: "y2",
      customdata: candles.map((c) => c.start),
      marker: { color: candles.map((c) => (c.close >= c.open ? colors.up : colors.down)), opacity: 0.55 },
      hoverinfo: "none", showlegend: false,
    },
  ];
  const line = (name, y, color, dash) => ({
    type: "scatter", mode: "lines", name, x, y, connectgaps: true,
    line: { color, width: 1.4, dash: dash || "solid" }, hoverinfo: "none",
  });
  if (overlays.vwap) traces.push(line("VWAP", anchoredVwap(candles), colors.vwap, "dot"));
  if (overlays.sma) traces.push(line("SMA 20", sma(close, 20), colors.sma));
  if (overlays.ema) traces.push(line("EMA 50", ema(close, 50), colors.ema));
  if (overlays.avg30 && rolling.length) {
    const points = rolling.filter((r) => !candles.length || r.ts >= candles[0].start);
    traces.push({
      ...line("30m avg", points.map((r) => r.avg_close_30m), colors.avg30, "dash"),
      mode: "lines+markers", marker: { size: 4, color: colors.avg30 },
      x: points.map((r) => axisTime(r.ts)), line: { color: colors.avg30, width: 1.6, dash: "dash" },
    });
  }
  const axis = { gridcolor: colors.grid, zerolinecolor: colors.grid, linecolor: colors.border, color: colors.muted };
  const panels = studyTraces(traces, { candles, x, close, indicators, venues, colors });
  const domains = stackDomains(panels.length);
  const layout = {
    uirevision,
    paper_bgcolor: colors.bg, plot_bgcolor: colors.bg,
    font: { color: colors.text, size: 11 },
    margin: { l: 8, r: axisWidth(candles, priceDecimals), t: 24, b: 40 }, // top: the hover legend
    // No hover boxes: the legend above the chart shows the hovered candle (main.js).
    dragmode: TOUCH ? "pan" : "zoom", hovermode: "x", showlegend: true,
    legend: { orientation: "h", x: 0, y: 1, yanchor: "top", bgcolor: "rgba(0,0,0,0)", font: { size: 11 } },
    xaxis: { ...axis, type: "date", anchor: "y2", rangeslider: { visible: false }, showspikes: true, spikemode: "across", spikethickness: 1, spikecolor: colors.muted },
    yaxis: {
      ...axis, domain: domains.price, side: "right", fixedrange: false, ...priceAxis(priceDecimals),
      showspikes: true, spikemode: "across", spikesnap: "cursor", spikethickness: 1, spikedash: "dot", spikecolor: colors.muted,
    },
    yaxis2: { ...axis, domain: domains.volume, side: "right", showgrid: false, tickformat: ".3~s" },
  };
  panels.forEach((panel, i) => {
    layout[`yaxis${i + 3}`] = { ...axis, domain: domains.panels[i], side: "right", ...panel.axis,
      title: { text: panel.name, font: { size: 10 }, standoff: 4 } };
  });
  return { traces, layout };
}

/**
 * Price and volume share the chart with the indicator panels: volume at the bottom, then each
 * panel, price above them all. [price, volume, panels...] as Plotly axis domains.
 */
function stackDomains(count) {
  if (!count) return { price: [0.24, 1], volume: [0, 0.19], panels: [] };
  const gap = 0.03;
  const panel = Math.min(0.18, 0.5 / count);
  const volume = 0.12;
  const panels = [];
  let bottom = volume + gap;
  for (let i = 0; i < count; i += 1) {
    panels.push([bottom, bottom + panel - gap]);
    bottom += panel;
  }
  return { price: [bottom + gap, 1], volume: [0, volume], panels };
}

/**
 * Bollinger bands and the compared venues' closes drawn over the price; RSI, MACD and the
 * venues' spread each in its own panel (yaxis3, yaxis4, ...). Traces carry `meta` naming what
 * they draw, so anyone (the tests too) can find them. Returns the panels, bottom first.
 */
function studyTraces(traces, { candles, x, close, indicators, venues, colors }) {
  const panels = [];
  const line = (name, y, color, extra) => ({
    type: "scatter", mode: "lines", name, x, y, connectgaps: false,
    line: { color, width: 1.2 }, hoverinfo: "none", ...extra,
  });
  if (indicators.bb.on) {
    const { period, k } = indicators.bb;
    const bands = bollinger(close, period, k);
    const name = label("bb", indicators.bb);
    traces.push(line(name, bands.upper, colors.muted, { meta: "bb.upper", legendgroup: "bb" }));
    traces.push(line(`${name} mid`, bands.mid, colors.muted, { meta: "bb.mid", legendgroup: "bb", showlegend: false, line: { color: colors.muted, width: 1, dash: "dot" } }));
    traces.push(line(`${name} lower`, bands.lower, colors.muted, { meta: "bb.lower", legendgroup: "bb", showlegend: false, fill: "tonexty", fillcolor: "rgba(127,127,127,0.06)" }));
  }
  venues.forEach((v, i) => {
    const color = VENUE_COLORS[i % VENUE_COLORS.length];
    traces.push({
      ...line(`${v.exchange} ${v.symbol}`, v.candles.map((c) => c.close), color, { meta: `venue.${v.exchange}` }),
      x: v.candles.map((c) => axisTime(c.start)), customdata: v.candles.map((c) => c.start),
      connectgaps: true,
    });
  });
  const panel = (name, extra) => {
    panels.push({ name, axis: extra || {} });
    return `y${panels.length + 2}`;
  };
  if (venues.length) {
    const yaxis = panel("spread", { tickformat: ",.6~g" });
    const values = spread(candles, venues);
    const latest = values.filter((v) => v !== null).pop();
    const latestText = latest === undefined ? "" : `: ${Number(latest.toPrecision(6))}`;
    traces.push({
      type: "bar", name: `spread (max−min)${latestText}`, meta: "spread", x, y: values, yaxis,
      customdata: candles.map((c) => c.start), marker: { color: colors.muted }, hoverinfo: "none",
    });
  }
  if (indicators.macd.on) {
    const { fast, slow, signal } = indicators.macd;
    const m = macd(close, fast, slow, signal);
    const yaxis = panel(label("macd", indicators.macd), { tickformat: ".3~g" });
    traces.push({
      type: "bar", name: "MACD hist", meta: "macd.hist", x, y: m.hist, yaxis, showlegend: false, hoverinfo: "none",
      marker: { color: m.hist.map((h) => (h !== null && h < 0 ? colors.down : colors.up)), opacity: 0.6 },
    });
    traces.push(line(label("macd", indicators.macd), m.line, colors.ema, { meta: "macd.line", yaxis }));
    traces.push(line("signal", m.signal, colors.sma, { meta: "macd.signal", yaxis, showlegend: false }));
  }
  if (indicators.rsi.on) {
    const yaxis = panel(label("rsi", indicators.rsi), { range: [0, 100], tickvals: [30, 50, 70], fixedrange: true });
    traces.push(line(label("rsi", indicators.rsi), rsi(close, indicators.rsi.period), colors.vwap, { meta: "rsi", yaxis }));
  }
  return panels;
}
