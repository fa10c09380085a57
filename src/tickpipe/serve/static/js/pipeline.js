// The pipeline view: throughput, lag, data volume, each source's connection, and alerts.
// /api/kpis is always there; /api/kpis/history and /api/alerts come with the monitor and are
// used when they answer (a 404 means this server has none, and the page shows what it has).

import { getJSON, getOptional } from "./api.js";
import { themeColors } from "./candles.js";
import * as fmt from "./format.js";

const SAMPLE_MS = 2000;
const SAMPLES = 300; // ten minutes of the page's own samples
const OPTIONAL_RETRY_MS = 60000;
const $ = (id) => document.getElementById(id);

export class PipelineView {
  constructor({ onError }) {
    this.onError = onError;
    this.visible = false;
    this.samples = []; // {t (ms), trades, tps, freshnessMs}
    this.kpis = null;
    this.history = null; // PipelineMetric rows, when the server keeps them
    this.alerts = null;
    this.optionalAfter = { history: 0, alerts: 0 }; // when to ask a missing route again
  }

  start() {
    this.sample();
    setInterval(() => this.sample(), SAMPLE_MS);
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible) {
      this.fetchOptional();
      this.render();
    }
  }

  async sample() {
    let kpis;
    try {
      kpis = await getJSON("/api/kpis");
    } catch (err) {
      if (err.status !== 0) this.onError(err);
      return;
    }
    const now = Date.now();
    const prev = this.samples[this.samples.length - 1];
    const trades = kpis.pipeline ? kpis.pipeline.trades : kpis.stored_trades;
    const tps = prev && trades >= prev.trades ? ((trades - prev.trades) * 1000) / (now - prev.t) : null;
    const freshnessMs = kpis.last_recv_ts ? now - kpis.last_recv_ts / 1000 : null;
    this.samples.push({ t: now, trades, tps, freshnessMs });
    if (this.samples.length > SAMPLES) this.samples.shift();
    this.kpis = kpis;
    if (this.visible) {
      await this.fetchOptional();
      this.render();
    }
  }

  async fetchOptional() {
    const now = Date.now();
    const ask = async (name, path, params) => {
      if (now < this.optionalAfter[name]) return this[name];
      try {
        const body = await getOptional(path, params);
        if (body === null) this.optionalAfter[name] = now + OPTIONAL_RETRY_MS;
        return body;
      } catch {
        return this[name];
      }
    };
    const history = await ask("history", "/api/kpis/history", { lookback: "1h" });
    this.history = history && history.metrics ? history.metrics : null;
    this.alerts = await ask("alerts", "/api/alerts");
  }

  render() {
    if (!this.visible || !this.kpis) return;
    const k = this.kpis;
    const p = k.pipeline;
    const last = this.samples[this.samples.length - 1];
    const card = (key, value, sub) => `<div class="kpi"><div class="k">${key}</div><div class="v">${value}</div><div class="s">${sub || ""}</div></div>`;
    const cards = [
      card("Throughput", last && last.tps !== null ? `${fmt.count(last.tps)}/s` : "–", "trades accepted"),
      card("Freshness", fmt.duration(last ? last.freshnessMs : null), "now − newest stored trade"),
      card("Stored trades", fmt.compact(k.stored_trades), fmt.count(k.stored_trades)),
      card("Stored candles", fmt.compact(k.stored_candles), fmt.count(k.stored_candles)),
    ];
    if (p) {
      cards.push(
        card("Queue", `${fmt.count(p.queue_depth)}`, `of ${fmt.compact(p.queue_capacity)} trades`),
        card("Writer pending", fmt.count(p.writer_pending), "trades not yet stored"),
        card("Late", `${fmt.count(p.late_corrected)} / ${fmt.count(p.late_rejected)}`, "corrected / rejected"),
        card("Duplicates", fmt.count(p.duplicates), `${fmt.count(p.malformed)} malformed`),
        card("Uptime", fmt.duration(p.uptime_s * 1000), p.mode),
      );
    }
    if (k.live) cards.push(card("Live clients", fmt.count(k.live.subscribers), `${fmt.count(k.live.dropped)} pushes dropped`));
    const events = Object.entries(k.events || {}).map(([kind, n]) => `${kind} ${n}`).join(", ");
    cards.push(card("Events", fmt.count(Object.values(k.events || {}).reduce((a, b) => a + b, 0)), events || "no gaps or disconnects"));
    $("p-kpis").innerHTML = cards.join("");
    this.renderSources(p);
    this.renderAlerts();
    this.renderCharts();
  }

  renderSources(p) {
    const rows = p ? Object.entries(p.sources) : [];
    $("p-sources").tBodies[0].replaceChildren(...(rows.length ? rows.map(([name, s]) => {
      // Why a source is down (its error, or its last disconnect while it waits) beside its state.
      const [text, ok, why] = s.error ? ["failed", false, s.error]
        : s.finished ? ["done", true, ""]
        : s.connected ? ["connected", true, ""] : ["disconnected", false, s.last_disconnect || ""];
      const state = document.createElement("td");
      const pill = document.createElement("span");
      pill.className = `pill ${ok ? "ok" : "bad"}`;
      pill.textContent = text;
      state.append(pill);
      if (why) {
        const reason = document.createElement("span");
        reason.className = "muted";
        reason.title = why;
        reason.textContent = ` ${why.length > 60 ? `${why.slice(0, 59)}…` : why}`;
        state.append(reason);
      }
      return fmt.row([fmt.cell(name), state, fmt.cell(fmt.count(s.trades), "num"), fmt.cell(fmt.count(s.reconnects), "num")]);
    }) : [fmt.emptyRow("no running pipeline: this server reads a stored file", 4)]));
  }

  renderAlerts() {
    const panel = $("p-alerts-panel");
    panel.hidden = this.alerts === null;
    if (this.alerts === null) return;
    // An active alert's own transition is in the history too: list each alert once.
    const active = this.alerts.active || [];
    const key = (a) => JSON.stringify([a.rule, a.labels || {}, a.state, a.since]);
    const shown = new Set(active.map(key));
    const items = [...active, ...(this.alerts.history || []).filter((a) => !shown.has(key(a))).slice(0, 20)];
    const pill = (text, cls) => {
      const td = document.createElement("td");
      const span = document.createElement("span");
      span.className = `pill ${cls}`;
      span.textContent = text;
      td.append(span);
      return td;
    };
    // Over a stored file no pipeline runs here: an alert it left active is its last known
    // state, not one firing now.
    const running = Boolean(this.kpis?.pipeline);
    const stateCell = (a) => {
      if (running || !active.includes(a) || a.state === "resolved") return pill(a.state, a.state);
      const td = pill(`was ${a.state}`, "stale");
      td.title = "the last state stored: the pipeline that raised it is not running here";
      return td;
    };
    $("p-alerts").tBodies[0].replaceChildren(...(items.length ? items.map((a) => {
      const where = Object.values(a.labels || {}).filter(Boolean).join(" ");
      return fmt.row([pill(a.severity, a.severity), stateCell(a), fmt.cell(a.rule),
        fmt.cell(where), fmt.cell(a.message), fmt.cell(fmt.dateTime(a.since))]);
    }) : [fmt.emptyRow("no alerts", 6)]));
  }

  renderCharts() {
    const colors = themeColors();
    const layout = (ytitle) => ({
      paper_bgcolor: colors.bg, plot_bgcolor: colors.bg, font: { color: colors.text, size: 11 },
      margin: { l: 50, r: 10, t: 10, b: 30 }, showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.12 }, uirevision: "pipeline",
      xaxis: { type: "date", gridcolor: colors.grid, color: colors.muted },
      yaxis: { title: { text: ytitle }, gridcolor: colors.grid, color: colors.muted, rangemode: "tozero" },
    });
    const config = { displaylogo: false, responsive: true };
    const line = (name, x, y, color) => ({ type: "scatter", mode: "lines", name, x, y, line: { color, width: 1.6 } });
    let throughput;
    let lag;
    if (this.history && this.history.length) {
      const rows = [...this.history].sort((a, b) => a.ts - b.ts);
      const x = rows.map((r) => fmt.axisTime(r.ts));
      throughput = [{ ...line("trades/s stored", x, rows.map((r) => r.trades_per_s), colors.accent), customdata: rows.map((r) => r.ts) }];
      lag = [line("p50", x, rows.map((r) => r.lag_p50_ms), colors.up), line("p99", x, rows.map((r) => r.lag_p99_ms), colors.down)];
      $("p-tp-source").textContent = "stored KPIs, last hour";
      $("p-lag-source").textContent = "event time to stored, ms";
    } else {
      const points = this.samples.filter((s) => s.tps !== null);
      const x = points.map((s) => fmt.axisTime(s.t * 1000));
      throughput = [line("trades/s", x, points.map((s) => s.tps), colors.accent)];
      lag = [line("freshness", x, points.map((s) => s.freshnessMs), colors.up)];
      $("p-tp-source").textContent = "sampled by this page";
      $("p-lag-source").textContent = "now − newest stored trade, ms";
    }
    Plotly.react($("p-throughput"), throughput, layout("trades/s"), config);
    Plotly.react($("p-lag"), lag, layout("ms"), config);
  }
}
