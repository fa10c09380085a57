// The analytics view: top exchanges, top tickers, and one exchange in detail.

import { getJSON } from "./api.js";
import { themeColors } from "./candles.js";
import * as fmt from "./format.js";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

/** A ticker row that opens the symbol's chart when clicked. */
function clickable(tr, symbol) {
  tr.dataset.symbol = symbol;
  tr.classList.add("link");
  tr.title = `Open the ${symbol} chart`;
  return tr;
}

export class AnalyticsView {
  /** `onPickSymbol(exchange, symbol)`: a ticker row was clicked (exchange null: any venue). */
  constructor({ onPickExchange, onPickSymbol, onError }) {
    this.onPickExchange = onPickExchange;
    this.onPickSymbol = onPickSymbol;
    this.onError = onError;
    this.visible = false;
    this.exchange = "";
    this.detail = null;
    this.timer = null;
    $("a-period").addEventListener("change", () => this.refresh());
    $("a-by").addEventListener("change", () => this.refresh());
    $("top-exchanges").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-exchange]");
      if (tr) this.onPickExchange(tr.dataset.exchange);
    });
    // A ticker opens its chart: of any venue from the top tickers, of the drilled-down
    // exchange from its breakdown.
    $("top-tickers").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-symbol]");
      if (tr) this.onPickSymbol(null, tr.dataset.symbol);
    });
    $("d-tickers").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-symbol]");
      if (tr && this.detail) this.onPickSymbol(this.detail.exchange, tr.dataset.symbol);
    });
  }

  setExchange(name) {
    this.exchange = name;
    if (this.visible) this.refresh();
  }

  setVisible(visible) {
    this.visible = visible;
    clearInterval(this.timer);
    if (visible) {
      this.refresh();
      this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    }
  }

  async refresh() {
    if (!this.visible) return;
    const period = $("a-period").value;
    const by = $("a-by").value;
    // An older refresh (another exchange's) answering late must not replace this one's.
    const turn = (this.turn = (this.turn || 0) + 1);
    try {
      // One after the other: each is a heavy read, and the server serves only a few at once
      // (serve.heavy_reads) while a switch of exchange also refreshes the watchlist and chart.
      const exchanges = await getJSON("/api/analytics/top-exchanges", { period, by });
      const tickers = await getJSON("/api/analytics/top-tickers", { period, by, limit: 25 });
      const name = this.exchange || (exchanges.exchanges[0] && exchanges.exchanges[0].exchange);
      const detail = name ? await getJSON(`/api/analytics/exchange/${encodeURIComponent(name)}`, { period }) : null;
      if (turn !== this.turn) return;
      this.detail = detail;
      $("a-range").textContent = `${fmt.dateTime(exchanges.start)} – ${fmt.dateTime(exchanges.end)}`;
      this.renderTops(exchanges, tickers);
      this.render();
    } catch (err) {
      if (err.status !== 0) this.onError(err);
    }
  }

  renderTops(exchanges, tickers) {
    $("top-exchanges").tBodies[0].replaceChildren(...exchanges.exchanges.map((e) => {
      const tr = fmt.row([fmt.cell(e.exchange), fmt.cell(fmt.count(e.trades), "num"),
        fmt.cell(fmt.compact(e.quote_volume), "num"), fmt.cell(fmt.count(e.symbols), "num")]);
      tr.dataset.exchange = e.exchange;
      return tr;
    }));
    $("top-tickers").tBodies[0].replaceChildren(...tickers.tickers.map((t) => {
      const change = t.last_price / t.first_price - 1;
      const tr = fmt.row([fmt.cell(t.symbol), fmt.cell(fmt.count(t.trades), "num"),
        fmt.cell(fmt.compact(t.quote_volume), "num"), fmt.cell(fmt.price(t.last_price), "num"),
        fmt.cell(fmt.percent(change), fmt.signClass(change)), fmt.cell(fmt.count(t.exchanges), "num")]);
      return clickable(tr, t.symbol);
    }));
  }

  /** The drill-down of one exchange (also after a theme change). */
  render() {
    const d = this.detail;
    if (!d) return;
    $("d-name").textContent = d.exchange;
    const t = d.totals;
    const card = (k, v, s) => `<div class="kpi"><div class="k">${k}</div><div class="v">${v}</div><div class="s">${s || ""}</div></div>`;
    $("d-totals").innerHTML = [
      card("Trades", fmt.count(t.trades)),
      card("Quote volume", fmt.compact(t.quote_volume)),
      card("Mean trade", fmt.compact(t.mean_trade_value), "quote volume per trade"),
      card("Tickers", fmt.count(d.tickers.length)),
    ].join("");
    const bar = (value) => {
      const div = document.createElement("td");
      div.innerHTML = `<div class="share"><div class="bar" style="width:${Math.max(1, value * 120)}px"></div>${fmt.share(value)}</div>`;
      return div;
    };
    $("d-tickers").tBodies[0].replaceChildren(...d.tickers.map((x) => clickable(fmt.row([
      fmt.cell(x.symbol), fmt.cell(fmt.count(x.trades), "num"), bar(x.trade_share),
      fmt.cell(fmt.compact(x.quote_volume), "num"), bar(x.volume_share),
      fmt.cell(fmt.price(x.vwap), "num"), fmt.cell(fmt.price(x.low), "num"), fmt.cell(fmt.price(x.high), "num"),
    ]), x.symbol)));
    if (!this.visible) return;
    const colors = themeColors();
    const top = d.tickers.slice(0, 12).reverse();
    Plotly.react($("d-chart"), [{
      type: "bar", orientation: "h", y: top.map((x) => x.symbol), x: top.map((x) => x.volume_share * 100),
      marker: { color: colors.accent }, hovertemplate: "%{y}: %{x:.1f}% of volume<extra></extra>",
    }], {
      paper_bgcolor: colors.bg, plot_bgcolor: colors.bg, font: { color: colors.text, size: 11 },
      margin: { l: 80, r: 10, t: 24, b: 30 },
      title: { text: "Share of quote volume (%)", font: { size: 12 }, x: 0 },
      xaxis: { gridcolor: colors.grid, color: colors.muted }, yaxis: { color: colors.muted },
    }, { displaylogo: false, responsive: true });
  }
}
