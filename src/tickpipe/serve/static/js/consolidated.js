// The consolidated price beside the venues (chart view) and data quality per venue (pipeline
// view), from /api/composite and /api/quality. Both come with a running pipeline; over a stored
// file (live: false) the panels stay hidden, as they do on an older server without the routes.

import { getOptional } from "./api.js";
import * as fmt from "./format.js";

const EVERY_MS = 2000;
const RETRY_MS = 60000;
export const COMPOSITE = "composite";
const $ = (id) => document.getElementById(id);

/** The exchanges list with "composite" and its symbols appended, when the server has any. */
export async function withComposite(exchanges) {
  let body = null;
  try {
    body = await getOptional("/api/composite");
  } catch {
    return exchanges;
  }
  const symbols = body ? body.composites.map((c) => ({ symbol: c.symbol })) : [];
  const others = exchanges.filter((e) => e.name !== COMPOSITE);
  return symbols.length ? [...others, { name: COMPOSITE, symbols }] : others;
}

export class ConsolidatedView {
  /** `selection()` gives the chart's {exchange, symbol}. */
  constructor({ selection }) {
    this.selection = selection;
    this.composites = null; // null: this server has none
    this.quality = null;
    this.retryAfter = 0;
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), EVERY_MS);
  }

  async refresh() {
    if (Date.now() < this.retryAfter) return;
    try {
      const [composite, quality] = await Promise.all([
        getOptional("/api/composite"), getOptional("/api/quality"),
      ]);
      this.composites = composite && composite.live ? composite.composites : null;
      this.quality = quality && quality.live ? quality.venues : null;
      if (!this.composites && !this.quality) this.retryAfter = Date.now() + RETRY_MS;
    } catch {
      return; // the next turn asks again; the chart's own error banner speaks for the server
    }
    this.render();
  }

  render() {
    this.renderComposite();
    this.renderQuality();
  }

  /** The composite of the chart's symbol: its price, and each venue's deviation and age. */
  renderComposite() {
    const { exchange, symbol } = this.selection();
    const found = (this.composites || []).find((c) => exchange === COMPOSITE
      ? c.symbol === symbol
      : c.venues.some((v) => v.exchange === exchange && v.symbol === symbol));
    $("c-panel").hidden = !found;
    if (!found) return;
    $("c-symbol").textContent = found.symbol;
    $("c-price").textContent = fmt.price(found.price);
    $("c-venues").tBodies[0].replaceChildren(...found.venues.map((v) => {
      const deviation = fmt.cell(fmt.percent(v.deviation_pct / 100), v.included ? "num" : "num down");
      const state = v.stale ? "stale" : v.included ? "in" : "out";
      const tr = fmt.row([
        fmt.cell(v.exchange), fmt.cell(fmt.price(v.price), "num"), deviation,
        fmt.cell(fmt.duration(v.stale_s * 1000), "num"), fmt.cell(state, v.included ? "" : "muted"),
      ]);
      tr.dataset.exchange = v.exchange;
      return tr;
    }));
  }

  /** One row per venue: delays, out-of-order share, gaps, duplicates, future-stamped. */
  renderQuality() {
    $("p-quality-panel").hidden = this.quality === null;
    if (this.quality === null) return;
    const body = $("p-quality").tBodies[0];
    if (!this.quality.length) {
      body.replaceChildren(fmt.emptyRow("no trades yet", 8));
      return;
    }
    body.replaceChildren(...this.quality.map((q) => {
      const tr = fmt.row([
        fmt.cell(q.exchange), fmt.cell(fmt.count(q.received), "num"),
        fmt.cell(fmt.duration(q.delay_p50_ms), "num"), fmt.cell(fmt.duration(q.delay_p99_ms), "num"),
        fmt.cell(fmt.share(q.out_of_order_share), "num"),
        fmt.cell(`${fmt.count(q.gaps)} (${fmt.count(q.missing)} missed, ${fmt.count(q.recovered)} fetched)`, "num"),
        fmt.cell(fmt.count(q.duplicates), "num"), fmt.cell(fmt.count(q.future), "num"),
      ]);
      tr.dataset.exchange = q.exchange;
      return tr;
    }));
  }
}
