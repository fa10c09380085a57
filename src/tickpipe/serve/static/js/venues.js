// The shown asset on other venues: which exchanges list it, their candles for the same
// timeframe and lookback (fetched once, then kept live from the chart's WebSocket), and the
// spread between the venues per candle.

import { getJSON } from "./api.js";

const base = (symbol) => symbol.split("-")[0];
const quote = (symbol) => symbol.split("-").slice(1).join("-");

/**
 * The same asset on every other exchange: the same symbol where listed, else the same base
 * (BTC-USD beside BTC-USDT), same quote first. [{exchange, symbol}] in the exchanges' order.
 */
export function sameAsset(exchanges, exchange, symbol) {
  const out = [];
  for (const e of exchanges) {
    if (e.name === exchange) continue;
    const names = e.symbols.map((s) => s.symbol);
    const found = names.includes(symbol)
      ? symbol
      : names.find((s) => base(s) === base(symbol) && quote(s) === quote(symbol))
        ?? names.find((s) => base(s) === base(symbol));
    if (found) out.push({ exchange: e.name, symbol: found });
  }
  return out;
}

/**
 * Spread between venues at each candle of the shown one: the highest close minus the lowest
 * among the venues with a candle at that start; null where fewer than two have one.
 */
export function spread(candles, venues) {
  const byStart = venues.map((v) => new Map(v.candles.map((c) => [c.start, c.close])));
  return candles.map((c) => {
    const closes = [c.close];
    for (const m of byStart) if (m.has(c.start)) closes.push(m.get(c.start));
    return closes.length < 2 ? null : Math.max(...closes) - Math.min(...closes);
  });
}

/** The compared venues' candles, fetched with the chart's own query so the buckets align. */
export class VenueCompare {
  constructor(names) {
    this.names = names; // the chosen exchanges, in the order they were chosen
    this.shown = []; // [{exchange, symbol, candles}] of the chart on screen
    this.chartKey = ""; // the chart `shown` was fetched for
  }

  toggle(name, on) {
    this.names = on ? [...new Set([...this.names, name])] : this.names.filter((n) => n !== name);
  }

  /** Fetch each chosen venue's candles for `params` (the chart's /api/candles query). */
  async load(choices, params, chartKey) {
    const wanted = choices.filter((c) => this.names.includes(c.exchange));
    const bodies = await Promise.all(wanted.map((c) => getJSON("/api/candles", {
      ...params, exchange: c.exchange, symbol: c.symbol,
    }).catch((err) => {
      if (err.status === 0) throw err;
      return { candles: [] }; // a venue without this timeframe shows no line, the others do
    })));
    this.shown = wanted.map((c, i) => ({ ...c, candles: bodies[i].candles }));
    this.chartKey = chartKey;
    return this.shown;
  }

  /** The candle keys of the venues shown, for live updates of `interval`. */
  liveKeys(interval) {
    return this.shown.map((v) => ({ exchange: v.exchange, symbol: v.symbol, interval }));
  }

  /**
   * A live candle of a venue shown for `chartKey` in `interval`: put in its place (candles older
   * than `horizon` dropped). Whether it was one: false for anything else.
   */
  upsert(candle, chartKey, interval, horizon) {
    if (chartKey !== this.chartKey || candle.interval !== interval) return false;
    const venue = this.shown.find((v) => v.exchange === candle.exchange && v.symbol === candle.symbol);
    if (!venue) return false;
    const list = venue.candles;
    let i = list.length - 1;
    while (i >= 0 && list[i].start > candle.start) i -= 1; // live updates land at the end
    if (i >= 0 && list[i].start === candle.start) list[i] = candle;
    else list.splice(i + 1, 0, candle);
    let old = 0;
    while (old < list.length && list[old].start < horizon) old += 1;
    if (old) list.splice(0, old);
    return true;
  }

  /** The compared venues of the chart `chartKey` (none while they are fetched for it). */
  of(chartKey) {
    return chartKey === this.chartKey ? this.shown : [];
  }
}
