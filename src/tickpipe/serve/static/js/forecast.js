// Next-candle forecasts on the chart page: the forecast band (80 %) and predicted close drawn
// over the candles, and the scoreboard beside them: per interval, the model against the naive
// baselines, with a model that does not beat the last close marked as such.
// All of it from /api/forecasts, which reads what a pipeline with forecast = true kept.

import { getOptional } from "./api.js";
import * as fmt from "./format.js";

const NAMES = { model: "model", last_close: "last close", last_move: "last move" };

export class Forecasts {
  constructor() {
    this.points = []; // [{start, close, low, high, ...}] of the chart's interval, oldest first
    this.board = []; // the scoreboard rows of the chart's symbol
    this.key = "";
  }

  /** Read the forecasts of (exchange, symbol, interval) over `lookback`; `interval` null: a
   * custom bucket, which has no forecasts (they are of stored intervals). */
  async load(exchange, symbol, interval, lookback) {
    const key = [exchange, symbol, interval, lookback].join("|");
    if (!interval) {
      this.points = [];
      this.key = key;
      this.renderBoard(null);
      return;
    }
    const body = await getOptional("/api/forecasts", { exchange, symbol, interval, lookback });
    this.points = body ? body.forecasts : [];
    this.board = body ? body.scoreboard : [];
    this.key = key;
    this.renderBoard(interval);
  }

  /** The band and the predicted close as Plotly traces, from the first candle shown on. */
  traces(candles, colors) {
    const from = candles.length ? candles[0].start : -Infinity;
    const points = this.points.filter((p) => p.start >= from);
    if (!points.length) return [];
    const x = points.map((p) => fmt.axisTime(p.start));
    const band = { type: "scatter", mode: "lines", x, line: { width: 0, color: colors.accent }, connectgaps: false };
    return [
      { ...band, name: "forecast low", y: points.map((p) => p.low), showlegend: false, hovertemplate: "band low %{y}<extra></extra>" },
      {
        ...band, name: "forecast band 80%", y: points.map((p) => p.high), fill: "tonexty",
        fillcolor: "rgba(120, 140, 255, 0.18)", hovertemplate: "band high %{y}<extra></extra>",
      },
      {
        type: "scatter", mode: "markers", name: "forecast", x, y: points.map((p) => p.close),
        marker: { symbol: "line-ew-open", size: 10, color: colors.accent, line: { width: 2 } },
        hovertemplate: "forecast %{y}<extra></extra>",
      },
    ];
  }

  renderBoard(interval) {
    const body = document.querySelector("#forecast-scores tbody");
    const note = document.getElementById("forecast-note");
    if (!body) return;
    if (!this.board.length) {
      body.replaceChildren(fmt.emptyRow("no forecasts kept (run with --forecast)", 9));
      note.textContent = "";
      return;
    }
    body.replaceChildren(...this.board.map((r) => boardRow(r, interval)));
    const scored = this.board.filter((r) => r.forecasters.model.n > 0);
    const losing = scored.filter((r) => !r.beats_baseline).length;
    note.textContent = `${losing} of ${scored.length} intervals do not beat the last close`;
  }
}

function boardRow(r, interval) {
  const m = r.forecasters.model;
  const base = r.forecasters.last_close;
  const move = r.forecasters.last_move;
  const verdict = m.n === 0 ? fmt.cell("no forecast yet", "muted")
    : r.beats_baseline ? fmt.cell("beats last close", "up")
    : fmt.cell("does not beat last close", "down");
  const tr = fmt.row([
    fmt.cell(r.interval), fmt.cell(fmt.count(m.n), "num"),
    fmt.cell(fmt.price(m.mae), "num"), fmt.cell(fmt.price(base.mae), "num"),
    fmt.cell(fmt.price(m.rmse), "num"), fmt.cell(fmt.price(base.rmse), "num"),
    fmt.cell(fmt.share(m.directional_accuracy), "num"), fmt.cell(fmt.share(move.directional_accuracy), "num"),
    fmt.cell(fmt.share(m.band_coverage), "num"), verdict,
  ]);
  tr.dataset.interval = r.interval;
  tr.dataset.beats = String(r.beats_baseline);
  tr.classList.toggle("selected", r.interval === interval);
  tr.title = Object.entries(r.forecasters).map(([name, s]) => `${NAMES[name] || name}: ${fmt.count(s.n)} candles`).join(", ");
  return tr;
}
