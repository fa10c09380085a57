// The dashboard: pickers, the live candlestick chart, the watchlist and the trades tape.
// Everything it shows comes from the API (/api/...) and the live socket (/api/live).

import { ApiError, LiveSocket, getJSON, keepToken } from "./api.js";
import { AnalyticsView } from "./analytics.js";
import { BucketRollup, CandleSeries, candleFigure, rollup, themeColors } from "./candles.js";
import { appendCandle, drawCandle, drawLine, dropCandles } from "./lastbar.js";
import { ConsolidatedView, withComposite } from "./consolidated.js";
import { Forecasts } from "./forecast.js";
import * as fmt from "./format.js";
import * as indicators from "./indicators.js";
import { PipelineView } from "./pipeline.js";
import { StudyControls } from "./studies.js";
import { VenueCompare, sameAsset } from "./venues.js";

const MAX_CANDLES_SHOWN = 20000; // beyond this a browser chart stalls: ask for a larger timeframe
const TAPE_ROWS = 80;
const MIN_SLOTS = 30; // the chart is at least this many candles wide
const TAPE_EVERY_MS = 200; // the tape and the quote redraw at most 5 times a second
const WATCHLIST_EVERY_MS = 10000;
const ROLLING_EVERY_MS = 30000;
const EXCHANGES_EVERY_MS = 30000;
const FORECASTS_EVERY_MS = 5000;
const VENUES_EVERY_MS = 5000; // a custom bucket's compared venues (stored intervals come live)
// Indicator panels, Bollinger bands and compared venues follow live updates with a whole redraw
// this often at most; candles and the price lines are drawn at the next animation frame
// (lastbar.js).
const FULL_EVERY_MS = 1000;
// Candles drawn in place (new ones, ones gone out of the lookback) are laid out again by Plotly
// (its axes' ticks, its hover) this long after the first of them at most.
const RESYNC_EVERY_MS = 10000;
// Room on the autoranged axes, so the next candles are drawn in place (headroomTraces): right
// of the newest candle this share of the candles shown, at least HEADROOM_SLOTS candles (in the
// window of a few candles, FEW_HEADROOM_SLOTS); above and below the prices this share of their
// range; above the largest volume this factor.
const HEADROOM_SHARE = 0.05;
const HEADROOM_SLOTS = 8;
const FEW_HEADROOM_SLOTS = 5;
const HEADROOM_PRICE = 0.1;
const HEADROOM_VOLUME = 1.3;
// A live symbol with no trade for this long is shown as quiet (the header says since when);
// `?quiet=30s` sets another span.
const QUIET_AFTER_US = fmt.parseDuration(new URLSearchParams(location.search).get("quiet")) ?? 60e6;
const PLOT_CONFIG = { displaylogo: false, responsive: true, scrollZoom: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);

const state = {
  live: false, // the server pushes (run/demo), or only reads a stored file (serve)
  exchanges: [], // [{name, symbols: [{symbol, trades, ...}]}]
  intervals: [],
  exchange: query.get("exchange") || "",
  symbol: query.get("symbol") || "",
  timeframe: query.get("tf") || "",
  lookback: query.get("lookback") || "1h",
  view: query.get("view") || "chart",
  overlays: { vwap: true, sma: true, ema: false, avg30: true },
  indicators: indicators.fromQuery(query), // RSI, MACD, Bollinger: on/off and periods
  venues: new VenueCompare((query.get("venues") || "").split(",").filter(Boolean)),
  // the chart being shown
  series: new CandleSeries([]),
  rolling: [],
  step: 0,
  baseInterval: "",
  rollup: null,
  loading: null, // the chart's key while its first data is on the way; pushes wait meanwhile
  pending: [],
  tape: [],
  lastPrice: null,
  drawn: null, // the choice the chart shows: {key, exchange, symbol, timeframe, lookback}
  fallbacks: 0,
  refusal: null, // why the choice asked for was refused, shown once the fallback is drawn
  hovered: null, // the start of the candle under the pointer; null: the legend shows the newest
  // the watchlist: each symbol's 24h figures, and how the table is searched and sorted
  watch: { rows: new Map(), search: "", sort: "symbol", dir: "asc" },
  tapeTimes: [],
  generation: 0,
  lastTradeUs: null, // the event time of the shown symbol's newest trade known to the page
  quietEnd: null, // ms: the chart ends at the last trade (none in the lookback), not now
};

// Counters the page exposes for tests and for anyone debugging in the browser console.
// `renders`: whole redraws of the figure; `lastDraws`: live updates drawn on the newest candle;
// `renderMs`, `lastDrawMs`: the main thread's time in each (the page's drawing cost); `redraws`:
// the whole redraws of live updates by why ("new candle": off an autoranged axis, "follow": the
// indicator panels, "resync": Plotly laying out what was drawn in place, ...).
const stats = { renders: 0, lastDraws: 0, redraws: {}, renderMs: 0, lastDrawMs: 0, liveCandles: 0, venueCandles: 0, liveTrades: 0, fetches: 0, reconnects: 0, dropped: 0 };
// `onDrawn(candle, how)`, when set (benchmarks/page_latency.py), runs after each drawing of the
// chart with its newest candle; `how`: "whole" (a whole redraw) or "alone" (drawn in place).
// `onReceived(candle)` runs as a pushed candle update reaches the page's handler.
window.tickpipe = { state, stats, onDrawn: null, onReceived: null };

const socket = new LiveSocket({ onMessage, onState: showLiveState, onOpen: onLiveOpen });
const analytics = new AnalyticsView({
  onPickExchange: (name) => selectExchange(name),
  onPickSymbol: (exchange, symbol) => openChart(exchange, symbol),
  onError: showError,
});
const pipeline = new PipelineView({ onError: showError });
const forecasts = new Forecasts();
window.tickpipe.forecasts = forecasts;
const consolidated = new ConsolidatedView({ selection: () => ({ exchange: state.exchange, symbol: state.symbol }) });

// -- start ----------------------------------------------------------------------------------

async function start() {
  // Plotly follows window resizes only; the chart's box also changes when the quote line wraps.
  new ResizeObserver(() => {
    steadyChartBox();
    if ($("chart").data) Plotly.Plots.resize($("chart"));
  }).observe($("chart"));
  applyTheme(document.documentElement.dataset.theme);
  wireControls();
  showView(state.view);
  try {
    const health = await getJSON("/api/health");
    state.live = health.live;
  } catch (err) {
    showError(err);
    if (err.status === 401) {
      showLiveState("locked", "");
      return; // nothing to show without the token; the message says how to get in
    }
  }
  if (!state.live) showLiveState("stored", "");
  await loadExchanges();
  pipeline.start();
  consolidated.start();
  setInterval(refreshWatchlist, WATCHLIST_EVERY_MS);
  setInterval(refreshRolling, ROLLING_EVERY_MS);
  setInterval(refreshExchanges, EXCHANGES_EVERY_MS);
  setInterval(refreshForecasts, FORECASTS_EVERY_MS);
  setInterval(renderQuiet, 1000);
  setInterval(() => {
    if (!venuesLive()) refreshVenues();
  }, VENUES_EVERY_MS);
}

/** A symbol that starts trading later (a quiet one, a new listing) joins the pickers and the
 * watchlist together. */
async function refreshExchanges() {
  let body;
  try {
    body = await getJSON("/api/exchanges");
    body.exchanges = await withComposite(body.exchanges);
  } catch {
    return;
  }
  // A symbol's precision may still change while it has few trades: that counts too.
  const names = (list) => JSON.stringify(list.map((e) => [e.name, e.symbols.map((s) => [s.symbol, s.price_decimals, s.size_decimals])]));
  if (names(body.exchanges) === names(state.exchanges)) return;
  state.exchanges = body.exchanges;
  const exchange = state.exchanges.find((e) => e.name === state.exchange);
  if (!exchange) return;
  $("exchange").replaceChildren(...state.exchanges.map((e) => new Option(e.name, e.name)));
  $("symbol").replaceChildren(...exchange.symbols.map((s) => new Option(s.symbol, s.symbol)));
  markPickers();
  buildWatchlist(exchange);
}

async function loadExchanges() {
  // A fresh `tickpipe demo` may have stored nothing yet: ask again until it has.
  for (;;) {
    try {
      const body = await getJSON("/api/exchanges");
      state.exchanges = await withComposite(body.exchanges);
      state.intervals = body.intervals
        .filter((name) => !name.includes("/") && fmt.parseDuration(name) !== null)
        .sort((a, b) => fmt.parseDuration(a) - fmt.parseDuration(b));
      if (state.exchanges.length) break;
      $("chart-foot").textContent = "waiting for the first trades…";
    } catch (err) {
      showError(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  clearError();
  if (!state.timeframe || !validTimeframe(state.timeframe)) {
    state.timeframe = defaultTimeframe();
  }
  const exchange = state.exchanges.find((e) => e.name === state.exchange) || state.exchanges[0];
  fillTimeframes();
  selectExchange(exchange.name, state.symbol);
}

function validTimeframe(tf) {
  return state.intervals.includes(tf) || fmt.parseDuration(tf) !== null;
}

// -- pickers ----------------------------------------------------------------------------------

// A typed duration box: marked invalid until it reads as a duration, then `apply`'d normalized.
function onDuration(input, apply) {
  input.addEventListener("change", (e) => {
    const us = fmt.parseDuration(e.target.value);
    e.target.classList.toggle("invalid", us === null);
    if (us !== null) apply(fmt.formatDuration(us));
  });
}

function wireControls() {
  $("exchange").addEventListener("change", (e) => selectExchange(e.target.value));
  $("symbol").addEventListener("change", (e) => selectSymbol(e.target.value));
  onDuration($("bucket"), setTimeframe);
  $("lookbacks").addEventListener("click", (e) => {
    if (e.target.dataset.lookback) setLookback(e.target.dataset.lookback);
  });
  onDuration($("lookback"), setLookback);
  $("tabs").addEventListener("click", (e) => {
    if (e.target.dataset.view) showView(e.target.dataset.view);
  });
  showZone();
  $("tz").addEventListener("click", () => {
    fmt.setUtc(!fmt.isUtc());
    showZone();
    renderChart();
    renderTape();
    analytics.render();
    pipeline.render();
  });
  $("theme").addEventListener("click", () => {
    applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  });
  $("overlays").addEventListener("change", (e) => {
    state.overlays[e.target.dataset.overlay] = e.target.checked;
    renderChart();
  });
  for (const box of $("overlays").querySelectorAll("input")) {
    box.checked = state.overlays[box.dataset.overlay];
  }
  wireStudies();
  $("watchlist").addEventListener("click", (e) => {
    const th = e.target.closest("th[data-sort]");
    if (th) sortWatchlist(th.dataset.sort);
    const tr = e.target.closest("tr[data-symbol]");
    if (tr) selectSymbol(tr.dataset.symbol);
  });
  $("side-tabs").addEventListener("click", (e) => {
    const side = e.target.dataset.side;
    if (!side) return;
    $("view-chart").dataset.side = side;
    for (const b of $("side-tabs").children) b.classList.toggle("active", b.dataset.side === side);
    followTape();
  });
  window.addEventListener("resize", followTape); // a narrow window hides the tape behind a tab
  window.addEventListener("resize", () => steadyChartBox(true));
  $("watch-search").addEventListener("input", (e) => {
    state.watch.search = e.target.value;
    renderWatchlist();
  });
}

function fillTimeframes() {
  const seg = $("timeframes");
  seg.replaceChildren(...state.intervals.map((name) => {
    const b = document.createElement("button");
    b.textContent = name;
    b.dataset.timeframe = name;
    b.addEventListener("click", () => setTimeframe(name));
    return b;
  }));
}

function markPickers() {
  for (const b of $("timeframes").children) b.classList.toggle("active", b.dataset.timeframe === state.timeframe);
  $("bucket").value = state.intervals.includes(state.timeframe) ? "" : state.timeframe;
  for (const b of $("lookbacks").children) b.classList.toggle("active", b.dataset.lookback === state.lookback);
  $("lookback").value = ["10m", "1h", "24h"].includes(state.lookback) ? "" : state.lookback;
  $("exchange").value = state.exchange;
  $("symbol").value = state.symbol;
  saveUrl();
}

function saveUrl() {
  const params = keepToken(new URLSearchParams({
    exchange: state.exchange, symbol: state.symbol, tf: state.timeframe,
    lookback: state.lookback, view: state.view, ...indicators.toQuery(state.indicators),
    ...(state.venues.names.length ? { venues: state.venues.names.join(",") } : {}),
  }));
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

function selectExchange(name, wantedSymbol) {
  const exchange = state.exchanges.find((e) => e.name === name);
  if (!exchange) return;
  state.exchange = name;
  $("exchange").replaceChildren(...state.exchanges.map((e) => new Option(e.name, e.name)));
  $("symbol").replaceChildren(...exchange.symbols.map((s) => new Option(s.symbol, s.symbol)));
  const symbols = exchange.symbols.map((s) => s.symbol);
  const keep = wantedSymbol || state.symbol;
  const preferred = symbols.find((s) => s.startsWith("BTC-")) || symbols[0];
  state.symbol = symbols.includes(keep) ? keep : preferred;
  buildWatchlist(exchange);
  analytics.setExchange(name);
  loadChart();
  consolidated.renderComposite();
}

function selectSymbol(symbol) {
  state.symbol = symbol;
  loadChart();
  consolidated.renderComposite();
}

function setTimeframe(tf) {
  state.timeframe = tf;
  loadChart();
}

function setLookback(lookback) {
  state.lookback = lookback;
  loadChart();
}

function showView(view) {
  state.view = ["chart", "analytics", "pipeline"].includes(view) ? view : "chart";
  for (const name of ["chart", "analytics", "pipeline"]) $(`view-${name}`).hidden = name !== state.view;
  for (const b of $("tabs").children) b.classList.toggle("active", b.dataset.view === state.view);
  analytics.setVisible(state.view === "analytics");
  pipeline.setVisible(state.view === "pipeline");
  if (state.view === "chart") window.requestAnimationFrame(() => Plotly.Plots.resize($("chart")));
  followTape();
  saveUrl();
}

// -- live trades only while the tape is on screen -------------------------------------------

let tapeShown = false;

/** Whether the trades tape is on screen (not on a hidden tab, not in another view). */
function tapeVisible() {
  return $("tape").checkVisibility();
}

/** Ask the server for the symbol's trades only while the tape shows them; when it comes back
 * into view, fill it with what was missed meanwhile. */
function followTape() {
  const shown = tapeVisible();
  if (shown === tapeShown) return;
  tapeShown = shown;
  socket.setTrades(shown);
  if (shown && !state.loading && socket.subscription) refreshTape(); // a chart is loaded
}

async function refreshTape() {
  const key = chartKey();
  let body;
  try {
    body = await getJSON("/api/trades", { exchange: state.exchange, symbol: state.symbol, limit: TAPE_ROWS });
  } catch {
    return; // the live state shows why the server is unreachable
  }
  if (key !== chartKey() || state.loading) return;
  // Trades pushed while the request was out are kept: each trade once, newest first.
  const byId = new Map([...body.trades, ...state.tape].map((t) => [t.trade_id, t]));
  state.tape = [...byId.values()].sort((a, b) => b.ts - a.ts || b.seq - a.seq).slice(0, TAPE_ROWS);
  renderTape();
}

/** The switch names the zone the times are in; its tooltip says what a click changes to. */
function showZone() {
  const local = `local time (${fmt.localOffset()})`;
  $("tz").textContent = fmt.isUtc() ? "UTC" : "Local";
  $("tz").title = fmt.isUtc() ? `Times in UTC; click for ${local}` : `Times in ${local}; click for UTC`;
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("tickpipe.theme", theme);
  $("theme").title = theme === "dark" ? "Switch to the light theme" : "Switch to the dark theme";
  renderChart();
  analytics.render();
  pipeline.render();
}

// -- the chart ------------------------------------------------------------------------------

/**
 * The boxes around the chart keep the largest size they took while one chart is shown (`reset`:
 * another chart, another window size). The side panels grow with their widest price and the
 * quote line wraps with its text, which change with every trade: the chart's box changed about
 * once a second, and each change is a whole Plotly redraw (Plots.resize), with the updates
 * behind it waiting.
 */
function steadyChartBox(reset = false) {
  const boxes = [...document.querySelectorAll("#view-chart > .watchlist, #view-chart > .tape")];
  const quote = document.querySelector("#view-chart .quote");
  if (reset) {
    for (const el of boxes) el.style.minWidth = "";
    if (quote) quote.style.minHeight = "";
    return;
  }
  for (const el of boxes) {
    const width = el.getBoundingClientRect().width;
    if (width > (parseFloat(el.style.minWidth) || 0)) el.style.minWidth = `${width}px`;
  }
  const height = quote?.getBoundingClientRect().height ?? 0;
  if (quote && height > (parseFloat(quote.style.minHeight) || 0)) quote.style.minHeight = `${height}px`;
}

function chartKey() {
  return [state.exchange, state.symbol, state.timeframe, state.lookback].join("|");
}

/** Show the chosen (exchange, symbol, timeframe, lookback). The live subscription starts as soon
 * as the candles' interval is known; pushes wait in `pending` until all the data is in. */
function loadChart() {
  const lookbackUs = fmt.parseDuration(state.lookback);
  const stepUs = fmt.parseDuration(state.timeframe);
  if (lookbackUs / stepUs > MAX_CANDLES_SHOWN) {
    refuseChoice(`${state.lookback} of ${state.timeframe} candles is ${Math.round(lookbackUs / stepUs).toLocaleString()} candles: choose a larger timeframe or a shorter lookback (at most ${MAX_CANDLES_SHOWN.toLocaleString()})`);
    return;
  }
  markPickers();
  steadyChartBox(true);
  state.hovered = null;
  state.loading = chartKey();
  state.pending = [];
  state.tape = [];
  state.lastPrice = null;
  state.lastTradeUs = null;
  renderQuiet();
  $("q-symbol").textContent = state.symbol;
  $("q-exchange").textContent = state.exchange;
  for (const tr of $("watchlist").querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.symbol === state.symbol);
  fetchChart(true);
}

/**
 * A refused timeframe or lookback leaves the pickers saying what the chart shows: the last
 * choice drawn for this symbol (still on screen, still live), else the same timeframe over the
 * default hour (a bookmarked or typed choice on a first load). The reason stays on screen.
 */
function refuseChoice(reason) {
  state.generation += 1; // a fetch still under way for the refused choice must not land
  const drawn = state.drawn;
  const same = drawn && drawn.exchange === state.exchange && drawn.symbol === state.symbol;
  const fallbacks = state.refusal === null ? 0 : state.fallbacks + 1;
  if (fallbacks > 1) {
    // The default timeframe over an hour refused too: say so, and ask for nothing more.
    state.refusal = null;
    state.loading = null;
    markPickers();
    showError(new ApiError(400, reason));
    return;
  }
  state.timeframe = same ? drawn.timeframe : fallbacks ? defaultTimeframe() : state.timeframe;
  state.lookback = same ? drawn.lookback : "1h";
  if (same && drawn.key === chartKey() && !state.loading) {
    markPickers();
    showError(new ApiError(400, reason));
    return;
  }
  state.fallbacks = fallbacks;
  state.refusal = state.refusal ?? reason;
  loadChart();
}

function defaultTimeframe() {
  return state.intervals.includes("1m") ? "1m" : state.intervals[0];
}

async function fetchChart(subscribe) {
  const generation = ++state.generation;
  const key = chartKey();
  state.loading = key;
  const stored = state.intervals.includes(state.timeframe);
  const params = { exchange: state.exchange, symbol: state.symbol, lookback: state.lookback };
  if (stored) params.interval = state.timeframe;
  else params.bucket = state.timeframe;
  // Stored data, no live feed: the lookback ends at the symbol's newest stored trade, not now
  // (a file written yesterday would otherwise show an empty chart).
  const lastUs = state.live ? null : precisionOf(state.symbol).last_ts;
  if (lastUs) params.end = Math.floor(lastUs / 1000) + 1; // ms, just after that trade
  try {
    stats.fetches += 1;
    let body = await getJSON("/api/candles", params);
    if (generation !== state.generation) return;
    state.quietEnd = null;
    if (state.live && !body.candles.length) {
      // A quiet symbol: nothing traded in the lookback. Show the lookback up to its last trade
      // rather than an empty chart; its next trade brings the chart back to now.
      const newest = await getJSON("/api/trades", { exchange: state.exchange, symbol: state.symbol, limit: 1 });
      if (generation !== state.generation) return;
      if (newest.trades.length) {
        params.end = Math.floor(newest.trades[0].ts / 1000) + 1;
        body = await getJSON("/api/candles", params);
        if (generation !== state.generation) return;
        state.quietEnd = params.end;
      }
    }
    state.step = body.step;
    state.baseInterval = body.from_interval;
    if (subscribe && state.live) {
      tapeShown = tapeVisible();
      socket.subscribe({ exchange: state.exchange, symbol: state.symbol, interval: state.baseInterval, trades: tapeShown });
    }
    let rollup = null;
    if (body.interval !== body.from_interval) {
      // A custom bucket: live pushes come per stored interval; keep the current bucket's
      // parts so each push can be rolled up into the bucket exactly.
      rollup = new BucketRollup(body.step);
      const now = Date.now() * 1000;
      const bucketStart = now - (now % body.step) - body.step;
      const parts = await getJSON("/api/candles", {
        exchange: state.exchange, symbol: state.symbol, interval: body.from_interval,
        start: Math.floor(bucketStart / 1000),
      });
      if (generation !== state.generation) return;
      for (const c of parts.candles) rollup.add(c);
    }
    const [tradesBody, rollingBody] = await Promise.all([
      getJSON("/api/trades", { exchange: state.exchange, symbol: state.symbol, limit: TAPE_ROWS }),
      fetchRolling(),
      // The chart does not wait on a failed forecasts read: the scoreboard stays as it was.
      forecasts.load(state.exchange, state.symbol, stored ? state.timeframe : null, state.lookback).catch(() => {}),
    ]);
    if (generation !== state.generation) return;
    state.rollup = rollup;
    state.series = new CandleSeries(body.candles);
    state.rolling = rollingBody;
    state.tape = tradesBody.trades;
    state.lastPrice = state.tape.length ? state.tape[0].price : null;
    state.lastTradeUs = state.tape.length ? state.tape[0].ts : (precisionOf(state.symbol).last_ts ?? null);
    state.loading = null;
    const waiting = state.pending;
    state.pending = [];
    for (const message of waiting) onMessage(message);
    state.drawn = { key, exchange: state.exchange, symbol: state.symbol, timeframe: state.timeframe, lookback: state.lookback };
    clearError();
    if (state.refusal) showError(new ApiError(400, state.refusal));
    state.refusal = null;
    renderChart();
    renderTape();
    refreshVenues();
    $("chart-foot").textContent = `${body.candles.length.toLocaleString()} candles of ${body.interval}` +
      (body.interval !== body.from_interval ? ` (rolled up from ${body.from_interval})` : "") +
      ` · ${state.lookback} back` + (lastUs ? ` to the last trade stored, ${fmt.dateTime(lastUs)}` : "") +
      (state.quietEnd ? ` to the last trade, ${fmt.dateTime(state.quietEnd * 1000)} (none since)` : "") +
      ` · ${state.live ? "live" : "stored data, no live feed"}`;
    renderQuiet();
  } catch (err) {
    if (generation !== state.generation) return;
    state.loading = null;
    if (err.status >= 400 && err.status < 500 && err.status !== 401 && state.drawn?.key !== key) {
      refuseChoice(err.message); // the server refused it: back to what the chart can show
      return;
    }
    state.refusal = null;
    showError(err);
  }
}

async function fetchRolling() {
  const minutes = Math.ceil(fmt.parseDuration(state.lookback) / 60e6);
  try {
    const body = await getJSON("/api/rolling", { exchange: state.exchange, symbol: state.symbol, limit: Math.min(10000, minutes + 2) });
    return body.history.slice().reverse();
  } catch (err) {
    if (err.status === 0) throw err;
    return [];
  }
}

async function refreshForecasts() {
  if (state.loading || !state.symbol || state.view !== "chart") return;
  const key = chartKey();
  const stored = state.intervals.includes(state.timeframe);
  try {
    const before = JSON.stringify(forecasts.points);
    await forecasts.load(state.exchange, state.symbol, stored ? state.timeframe : null, state.lookback);
    // Only new forecasts redraw the figure (none kept: nothing to draw).
    if (key === chartKey() && JSON.stringify(forecasts.points) !== before) scheduleRender("forecasts");
  } catch {
    // the live state shows why the server is unreachable
  }
}

async function refreshRolling() {
  if (state.loading || !state.symbol) return;
  const key = chartKey();
  try {
    const rolling = await fetchRolling();
    if (key !== chartKey()) return;
    state.rolling = rolling;
    scheduleRender("rolling");
  } catch {
    // the live state shows why the server is unreachable
  }
}

function onMessage(message) {
  if (message.type === "dropped") {
    // The server dropped pushes this page read too slowly: the chart may miss updates until
    // the next refetch, so say so rather than show it as complete.
    stats.dropped = message.count;
    $("chart-foot").dataset.dropped = `${message.count.toLocaleString()} live updates dropped (slow client)`;
    return;
  }
  if (state.loading) {
    if (state.pending.length < 100000) state.pending.push(message);
    return;
  }
  if (message.type === "candle" && venuesLive()) {
    const horizon = Date.now() * 1000 - fmt.parseDuration(state.lookback);
    if (state.venues.upsert(message, chartKey(), state.baseInterval, horizon - (horizon % state.step))) {
      stats.venueCandles += 1;
      scheduleFollow(); // the venue's line and the spread, with the next whole redraw
      return;
    }
  }
  if (message.exchange !== state.exchange || message.symbol !== state.symbol) return;
  if (message.type === "candle") {
    if (message.interval !== state.baseInterval) return;
    stats.liveCandles += 1;
    if (state.quietEnd !== null) {
      // The quiet symbol traded again: the chart goes back to the lookback up to now.
      state.quietEnd = null;
      fetchChart(false);
      return;
    }
    const candle = state.rollup ? state.rollup.add(message) : message;
    window.tickpipe.onReceived?.(candle);
    const replaced = state.series.upsert(candle);
    if (!replaced || !sameBar(replaced, candle)) {
      // A trade went into it: the newest trade is at most the candle's last update.
      noteTrade(Math.min(candle.updated_at, candle.start + state.step - 1));
    }
    // Without pushed trades (tape hidden), the newest candle's close is the last price.
    const candles = state.series.candles;
    const newest = candle.start >= candles[candles.length - 1].start;
    if (!tapeShown && newest) state.lastPrice = candle.close;
    const horizon = Date.now() * 1000 - fmt.parseDuration(state.lookback);
    const dropped = state.series.dropBefore(horizon - (horizon % state.step));
    if (dropped) scheduleCandle(null); // gone from the figure at the next frame too
    // A new candle, or a change to one (a final one unchanged: nothing).
    if (!replaced || !sameBar(replaced, candle)) scheduleCandle(candle.start);
  } else if (message.type === "trades") {
    // One message per engine step: this symbol's new trades, oldest first.
    const now = performance.now();
    for (const trade of message.trades) {
      state.tape.unshift(trade);
      state.tapeTimes.push(now);
    }
    if (state.tape.length > TAPE_ROWS) state.tape.length = TAPE_ROWS;
    stats.liveTrades += message.trades.length;
    if (message.trades.length) {
      state.lastPrice = message.trades[message.trades.length - 1].price;
      noteTrade(message.trades[message.trades.length - 1].ts);
    }
    scheduleTape();
  }
}

function noteTrade(us) {
  if (state.lastTradeUs === null || us > state.lastTradeUs) state.lastTradeUs = us;
  if (!$("q-quiet").hidden) renderQuiet();
}

/**
 * A live symbol with no trade for QUIET_AFTER_US looks quiet, not broken: the header says for
 * how long and when its last trade was (the chart keeps its last candles).
 */
function renderQuiet() {
  const el = $("q-quiet");
  const last = state.lastTradeUs;
  const idleUs = last === null ? 0 : Date.now() * 1000 - last;
  const quiet = state.live && !state.loading && last !== null && idleUs >= QUIET_AFTER_US;
  el.hidden = !quiet;
  if (!quiet) {
    delete el.dataset.lastTs;
    return;
  }
  el.textContent = `quiet: no trade for ${fmt.span(idleUs)} · last ${fmt.dateTime(last)}`;
  el.title = `No trade of ${state.symbol} on ${state.exchange} since ${fmt.dateTime(last)}; the feed is live`;
  el.dataset.lastTs = String(last);
}

/** Whether two versions of a candle draw the same (a candle turning final changes nothing). */
function sameBar(a, b) {
  return a.open === b.open && a.high === b.high && a.low === b.low && a.close === b.close && a.volume === b.volume;
}

// A candle update is drawn at the next animation frame (one drawing per frame, however many
// updates came), in place whenever Plotly need not lay the figure out again (lastbar.js): an
// update of a candle on screen, a new candle where the time axis has room (renderChart keeps
// some), candles gone out of the lookback, and the price lines (VWAP, SMA, EMA) with them.
// A whole redraw (Plotly.react: 55-107 ms on this machine under load, which the updates behind
// it wait for) only when the view must change: a candle off an autoranged axis, a correction of
// an older candle, another choice; the indicator panels and venues follow within
// FULL_EVERY_MS, and Plotly lays out what was drawn in place within RESYNC_EVERY_MS (ticks,
// hover). Trades change only the tape and the quote, redrawn at most every TAPE_EVERY_MS.
let chartFrame = null;
let fullDue = false; // the next frame redraws the whole figure
let followTimer = null;
let resyncTimer = null;
let lastFull = 0;
let tapeTimer = null;
let lastTape = 0;
// What the figure on screen holds: {key, candles (as drawn), offset (candles dropped on the
// left since Plotly drew: shape number = index + offset), colors, lines (traces that follow the
// candles), few (the window of a few candles: a new candle must fit in it, as in an autorange),
// mark (the newest shape drawn in place and its path: whether Plotly redrew over it)}.
let shown = null;
const changed = new Set(); // starts of candles changed since they were drawn (null: a drop)

/** The whole figure at the next animation frame. */
function scheduleRender(why = "other") {
  fullDue = fullDue || why;
  requestFrame();
}

/** The candle that starts at `start` alone, at the next animation frame. */
function scheduleCandle(start) {
  changed.add(start);
  requestFrame();
}

/** A whole redraw within FULL_EVERY_MS of the last one, for what follows the candles and
 * cannot be drawn in place. Candles that short wait one candle longer. */
function scheduleFollow() {
  if (followTimer !== null) return;
  const stepMs = state.step / 1000;
  const every = stepMs <= FULL_EVERY_MS ? FULL_EVERY_MS + stepMs : FULL_EVERY_MS;
  const wait = Math.max(0, every - (performance.now() - lastFull));
  followTimer = setTimeout(() => {
    followTimer = null;
    scheduleRender("follow");
  }, wait);
}

/** A whole redraw within RESYNC_EVERY_MS, for candles added or dropped in place. */
function scheduleResync() {
  if (resyncTimer !== null) return;
  resyncTimer = setTimeout(() => {
    resyncTimer = null;
    scheduleRender("resync");
  }, RESYNC_EVERY_MS);
}

function requestFrame() {
  if (chartFrame !== null) return;
  chartFrame = requestAnimationFrame(() => {
    chartFrame = null;
    const why = fullDue || renderChanged();
    if (why === true) return;
    stats.redraws[why] = (stats.redraws[why] ?? 0) + 1;
    renderChart();
  });
}

/** Draw the changed candles in place (lastbar.js), and the price lines with them: true, else
 * why only a whole redraw can show them. */
function renderChanged() {
  const candles = state.series.candles;
  const div = $("chart");
  if (!candles.length || !shown || typeof Plotly === "undefined" || shown.key !== chartKey()) return "no figure";
  if (div.data?.[0]?.close.length !== shown.candles.length) return "figure changed";
  if (!changed.size) return true;
  const began = performance.now();
  const drawn = shown.candles;
  // Gone out of the lookback: the same candles leave the figure.
  let gone = 0;
  while (gone < drawn.length && drawn[gone].start < candles[0].start) gone += 1;
  if (gone) {
    if (gone >= drawn.length || !dropCandles(div, shown.offset, gone)) return "dropped";
    drawn.splice(0, gone);
    shown.offset += gone;
    scheduleResync();
  }
  const starts = [...changed].filter((s) => s !== null).sort((a, b) => a - b);
  for (const start of starts) {
    let j = candles.length - 1; // updates are of the newest candles: searched from the end
    while (j >= 0 && candles[j].start > start) j -= 1;
    const candle = j >= 0 && candles[j].start === start ? candles[j] : null;
    if (!candle) continue; // gone out of the lookback since
    let i = drawn.length - 1;
    while (i >= 0 && drawn[i].start > start) i -= 1;
    let shape;
    if (i >= 0 && drawn[i].start === start) {
      shape = drawCandle(div, candle, i, shown.colors, i + shown.offset);
      if (!shape) return "axis";
      drawn[i] = candle;
    } else if (i === drawn.length - 1) {
      const at = drawn.length + shown.offset;
      shape = appendCandle(div, candle, fmt.axisTime(candle.start), shown.colors, at, shown.few);
      if (!shape) return "new candle";
      drawn.push(candle);
      scheduleResync();
    } else {
      return "inserted"; // a candle between two drawn
    }
    shown.mark = { shape, d: shape.getAttribute("d") };
  }
  changed.clear();
  if (drawn.length !== candles.length || drawn[drawn.length - 1].start !== candles[candles.length - 1].start) return "candles missed";
  if (!drawLines(div)) scheduleFollow();
  const newest = candles[candles.length - 1];
  stats.lastDraws += 1;
  if (state.hovered === null || state.hovered === newest.start) showLegend(newest, false);
  renderQuote(candles);
  stats.lastDrawMs += performance.now() - began;
  window.tickpipe.onDrawn?.(newest, "alone");
  return true;
}

/** The price lines that follow the candles (VWAP, SMA, EMA, Bollinger's upper and middle),
 * redrawn in place from the candles shown; false when others follow them too (the indicator
 * panels, a filled band) and only a whole redraw shows those. The figure's data of every trace
 * that follows the candles is brought up to them either way (its readers read the candles'
 * values). */
function drawLines(div) {
  const fig = chartFigure(shown.candles, shown.colors);
  let all = true;
  for (let k = 2; k < fig.traces.length; k += 1) {
    const trace = fig.traces[k];
    const data = div.data[k];
    if (trace.x !== fig.traces[0].x) continue; // its own times (venues, the 30m average)
    if (!data || data.type !== trace.type || data.meta !== trace.meta || data.yaxis !== trace.yaxis) {
      all = false; // not the figure drawn: the whole redraw
      continue;
    }
    data.name = trace.name; // the spread's says its latest value
    data.y = trace.y;
    if (trace.customdata) data.customdata = trace.customdata;
    if (Array.isArray(trace.marker?.color)) data.marker.color = trace.marker.color;
    if (!shown.lines.some((l) => l.k === k)) all = false;
  }
  for (const { k, name, connect } of shown.lines) {
    if (fig.traces[k]?.name !== name || !drawLine(div, k, fig.traces[k].y, connect)) return false;
  }
  return all;
}

function scheduleTape() {
  if (tapeTimer !== null) return;
  const wait = Math.max(0, TAPE_EVERY_MS - (performance.now() - lastTape));
  tapeTimer = setTimeout(() => {
    tapeTimer = null;
    lastTape = performance.now();
    renderTape();
    renderQuote(state.series.candles);
  }, wait);
}

/** A few candles (the first minutes of a run, a new listing) are drawn MIN_SLOTS candles
 * wide near the right, not one candle stretched over sub-millisecond ticks. */
let fewRange = null; // the window last set for a few candles

function fewCandlesRange(div, layout, candles) {
  const shown = div.layout?.xaxis;
  const zoomed = fewRange && div.layout?.uirevision === layout.uirevision && shown?.autorange === false &&
    (shown.range?.[0] !== fewRange[0] || shown.range?.[1] !== fewRange[1]);
  if (zoomed) {
    // The user zoomed or panned since: the figure names their range, so the redraw keeps it.
    layout.xaxis.range = shown.range.slice();
    layout.xaxis.autorange = false;
    return;
  }
  fewRange = null;
  if (!candles.length || !state.step) return;
  const last = candles[candles.length - 1].start;
  if ((last - candles[0].start) / state.step >= MIN_SLOTS - 1) {
    layout.xaxis.autorange = true;
    return;
  }
  // The newest FEW_HEADROOM_SLOTS candles from the right: the next ones are drawn in place.
  const room = Math.min(FEW_HEADROOM_SLOTS, MIN_SLOTS - 1 - (last - candles[0].start) / state.step);
  fewRange = [fmt.axisTime(last - (MIN_SLOTS - 0.5 - room) * state.step), fmt.axisTime(last + (room + 0.5) * state.step)];
  layout.xaxis.range = fewRange.slice();
  layout.xaxis.autorange = false;
}

/** The chart's figure of `candles` as chosen on the page (forecasts and headroom apart). */
function chartFigure(candles, colors) {
  return candleFigure({
    candles, rolling: state.rolling, overlays: state.overlays, colors,
    uirevision: chartKey(), title: `${state.symbol} ${state.timeframe}`,
    priceDecimals: precisionOf(state.symbol).price_decimals,
    indicators: state.indicators, venues: state.venues.of(chartKey()),
  });
}

/**
 * Invisible points that the autoranged axes reach, so the next candles fit without moving them
 * (and are drawn in place): HEADROOM_SHARE of the candles right of the newest (at least
 * HEADROOM_SLOTS), HEADROOM_PRICE of the price range above and below the candles, and
 * HEADROOM_VOLUME times the largest volume.
 */
function headroomTraces(candles) {
  const newest = candles[candles.length - 1];
  const slots = Math.max(HEADROOM_SLOTS, Math.ceil(candles.length * HEADROOM_SHARE));
  const x = fmt.axisTime(newest.start + slots * state.step);
  let low = Infinity;
  let high = -Infinity;
  let volume = 0;
  for (const c of candles) {
    low = Math.min(low, c.low);
    high = Math.max(high, c.high);
    volume = Math.max(volume, c.volume);
  }
  const room = (high - low || Math.abs(high) * 1e-4) * HEADROOM_PRICE;
  const point = { type: "scatter", mode: "markers", showlegend: false, hoverinfo: "skip", marker: { opacity: 0, size: 1 } };
  return [
    { ...point, name: "headroom", x: [x, x], y: [low - room, high + room] },
    { ...point, name: "volume headroom", x: [x], y: [volume * HEADROOM_VOLUME], yaxis: "y2" },
  ];
}

function renderChart() {
  const div = $("chart");
  if (!div || typeof Plotly === "undefined") return;
  const began = performance.now();
  const candles = state.series.candles;
  const colors = themeColors();
  const { traces, layout } = chartFigure(candles, colors);
  // The lines that follow the candles and can be drawn in place: on the price axis, unfilled.
  const lines = [];
  traces.forEach((t, k) => {
    if (k > 1 && t.x === traces[0].x && t.type === "scatter" && t.mode === "lines" && !t.yaxis && !t.fill) {
      lines.push({ k, name: t.name, connect: t.connectgaps === true });
    }
  });
  traces.push(...forecasts.traces(candles, colors));
  if (candles.length && state.step) traces.push(...headroomTraces(candles));
  fewCandlesRange(div, layout, candles);
  Plotly.react(div, traces, layout, PLOT_CONFIG);
  stats.renders += 1;
  fullDue = false;
  changed.clear();
  lastFull = performance.now();
  clearTimeout(followTimer);
  followTimer = null;
  clearTimeout(resyncTimer);
  resyncTimer = null;
  shown = { key: chartKey(), candles: candles.slice(), offset: 0, colors, lines, few: fewRange !== null, mark: null };
  if (!div.dataset.crosshair) followCursor(div);
  // A live update changes the hovered candle too: the legend follows it.
  const newest = candles[candles.length - 1];
  showLegend(state.hovered === null ? newest : candles.find((c) => c.start === state.hovered) ?? newest);
  renderQuote(candles);
  stats.renderMs += performance.now() - began;
  if (newest) window.tickpipe.onDrawn?.(newest, "whole");
}

// -- studies and compared venues ------------------------------------------------------------

let studies = null;

function wireStudies() {
  studies = new StudyControls({
    indicators: state.indicators, venues: state.venues,
    onChange: () => {
      saveUrl();
      renderChart();
    },
    onVenues: () => {
      saveUrl();
      refreshVenues();
    },
  });
}

/** Whether the compared venues come over the live socket: a live server, and a stored
 * interval (a custom bucket would need each venue's parts of the bucket: fetched every few s). */
function venuesLive() {
  return state.live && state.intervals.includes(state.timeframe);
}

/** The chosen venues' candles of the shown asset: fetched, then kept live over the chart's
 * WebSocket (fetched again every few seconds for a custom bucket). */
async function refreshVenues() {
  if (!state.symbol || !state.exchanges.length) return;
  const choices = sameAsset(state.exchanges, state.exchange, state.symbol);
  studies.showVenues(choices);
  const key = chartKey();
  const params = { lookback: state.lookback, [state.intervals.includes(state.timeframe) ? "interval" : "bucket"]: state.timeframe };
  if (venuesLive() && state.baseInterval && !state.loading) {
    // Asked before the fetch, so the fetch holds every update made before the pushes start
    // (one pushed while the fetch is out is drawn with that candle's next update).
    const wanted = choices.filter((c) => state.venues.names.includes(c.exchange));
    socket.setExtras(wanted.map((c) => ({ exchange: c.exchange, symbol: c.symbol, interval: state.baseInterval })));
  }
  try {
    await state.venues.load(choices, params, key);
  } catch {
    return; // the live state shows why the server is unreachable
  }
  if (key === chartKey() && !state.loading) scheduleRender("venues");
}

/** A row elsewhere (analytics) opens the chart of its symbol: on `exchange`, or (none given)
 * on the exchange shown when it lists the symbol, else on the first that does. */
function openChart(exchange, symbol) {
  const lists = (e) => e.symbols.some((s) => s.symbol === symbol);
  if (!exchange) {
    const shown = state.exchanges.find((e) => e.name === state.exchange);
    exchange = shown && lists(shown) ? shown.name : state.exchanges.find(lists)?.name;
  }
  if (!exchange) return;
  showView("chart");
  if (exchange === state.exchange) selectSymbol(symbol);
  else selectExchange(exchange, symbol);
}

// -- crosshair ------------------------------------------------------------------------------

/**
 * The crosshair's two labels: the hovered candle's OHLCV in the legend above the chart (the
 * newest candle when the pointer is elsewhere), and the price under the pointer on the axis.
 */
function followCursor(div) {
  div.dataset.crosshair = "on";
  div.on("plotly_hover", (event) => {
    const point = event.points.find((p) => p.curveNumber <= 1); // the candles or their volume
    if (!point) return;
    // Plotly numbers the candles it laid out: some may have left the figure since (drawn in place).
    const candle = shown?.candles[point.pointIndex - shown.offset];
    state.hovered = candle?.start ?? null;
    showLegend(candle);
  });
  // A zoom, a pan or a resize: Plotly redraws the traces from what it laid out last, without
  // what was drawn in place since; the whole redraw brings that back.
  // Seen by the newest shape drawn in place: Plotly redrew it, or took it away.
  div.on("plotly_relayout", () => {
    const mark = shown?.mark;
    if (mark && (!mark.shape.isConnected || mark.shape.getAttribute("d") !== mark.d)) scheduleRender("view");
  });
  div.on("plotly_unhover", () => {
    state.hovered = null;
    showLegend(state.series.candles[state.series.candles.length - 1]);
  });
  div.addEventListener("mousemove", (e) => showCursorPrice(div, e));
  div.addEventListener("mouseleave", () => { $("cursor-price").hidden = true; });
}

/** The hovered (or newest) candle in the legend; `place`: move the legend to the chart's corner
 * too (reading where the chart is lays the page out: not on a live update drawn in place). */
function showLegend(candle, place = true) {
  const legend = $("hover-legend");
  const chart = $("chart");
  if (place) {
    legend.style.left = `${chart.offsetLeft + 8}px`;
    legend.style.top = `${chart.offsetTop + 4}px`;
  }
  if (!candle) {
    legend.replaceChildren();
    delete legend.dataset.start;
    return;
  }
  const { price_decimals: places } = precisionOf(state.symbol);
  const item = (name, text) => [document.createTextNode(` ${name} `), Object.assign(document.createElement("b"), { textContent: text })];
  legend.replaceChildren(
    ...item("", fmt.dateTime(candle.start)),
    ...item("O", fmt.price(candle.open, places)), ...item("H", fmt.price(candle.high, places)),
    ...item("L", fmt.price(candle.low, places)), ...item("C", fmt.price(candle.close, places)),
    ...item("V", fmt.compact(candle.volume)), ...item("T", fmt.count(candle.trades)),
  );
  legend.dataset.start = String(candle.start);
}

function showCursorPrice(div, e) {
  const label = $("cursor-price");
  const y = div._fullLayout?.yaxis;
  const x = div._fullLayout?.xaxis;
  const top = e.clientY - div.getBoundingClientRect().top;
  if (!y || !x || top < y._offset || top > y._offset + y._length) {
    label.hidden = true;
    return;
  }
  label.textContent = fmt.price(y.p2l(top - y._offset), precisionOf(state.symbol).price_decimals);
  label.style.left = `${div.offsetLeft + x._offset + x._length + 2}px`;
  label.style.top = `${div.offsetTop + top - 9}px`;
  label.hidden = false;
}

/** The instrument's precision, as /api/exchanges gives it (none yet: the formats guess). */
function precisionOf(symbol) {
  const exchange = state.exchanges.find((e) => e.name === state.exchange);
  return exchange?.symbols.find((s) => s.symbol === symbol) ?? {};
}

function renderQuote(candles) {
  const last = state.lastPrice ?? (candles.length ? candles[candles.length - 1].close : null);
  const places = precisionOf(state.symbol).price_decimals;
  $("q-last").textContent = fmt.price(last, places);
  if (!candles.length) {
    for (const id of ["q-open", "q-high", "q-low", "q-vol", "q-trades"]) $(id).textContent = "–";
    $("q-change").textContent = "";
    return;
  }
  const { open, high, low, volume, trades } = rollup(candles, candles[0].start);
  const change = last / open - 1;
  $("q-open").textContent = fmt.price(open, places);
  $("q-high").textContent = fmt.price(high, places);
  $("q-low").textContent = fmt.price(low, places);
  $("q-vol").textContent = fmt.compact(volume);
  $("q-trades").textContent = fmt.count(trades);
  const latest = state.rolling.length ? state.rolling[state.rolling.length - 1].avg_close_30m : null;
  $("q-avg30").textContent = fmt.price(latest, places);
  const el = $("q-change");
  el.textContent = `${fmt.signedPrice(last - open, places)} (${fmt.percent(change)}) ${state.lookback}`;
  el.className = `quote-change ${change > 0 ? "up" : change < 0 ? "down" : ""}`;
  const row = $("watchlist").querySelector(`tr[data-symbol="${CSS.escape(state.symbol)}"]`);
  if (row && last !== null) row.children[1].textContent = fmt.price(last, places);
}

function renderTape() {
  const body = $("tape").tBodies[0];
  const { price_decimals: places, size_decimals: lots } = precisionOf(state.symbol);
  body.replaceChildren(...state.tape.map((t) => {
    const side = t.side === "buy" ? "num up" : t.side === "sell" ? "num down" : "num";
    return fmt.row([fmt.cell(fmt.clock(t.ts)), fmt.cell(fmt.price(t.price, places), side), fmt.cell(fmt.qty(t.size, lots), "num")]);
  }));
  const now = performance.now();
  state.tapeTimes = state.tapeTimes.filter((t) => now - t < 5000);
  $("tape-rate").textContent = state.live ? `${(state.tapeTimes.length / 5).toFixed(1)}/s` : "";
}

// -- watchlist ------------------------------------------------------------------------------

function buildWatchlist(exchange) {
  state.watch.rows = new Map(exchange.symbols.map((s) => [s.symbol, { symbol: s.symbol, last: null, change: null, volume: null }]));
  renderWatchlist();
  refreshWatchlist();
}

/** Last price, 24-hour change and quote volume of every symbol of the exchange: one request. */
async function refreshWatchlist() {
  const name = state.exchange;
  if (!name) return;
  let body;
  try {
    body = await getJSON(`/api/analytics/exchange/${encodeURIComponent(name)}`, { period: "24h" });
  } catch {
    return; // a busy or failing read leaves the rows as they were; the next refresh tries again
  }
  if (name !== state.exchange) return;
  for (const t of body.tickers) {
    // Only the symbols the pickers list: one that began trading since comes with the next
    // refresh of the exchange list, in both at once.
    const row = state.watch.rows.get(t.symbol);
    if (row) Object.assign(row, { last: t.close, change: t.close / t.open - 1, volume: t.quote_volume });
  }
  renderWatchlist();
}

/** The rows that match the search, in the chosen order (no figure yet: always last). */
function renderWatchlist() {
  const { rows, sort, dir } = state.watch;
  const wanted = state.watch.search.toUpperCase().replace(/[^A-Z0-9]/g, "");
  const shown = [...rows.values()].filter((r) => r.symbol.replace(/[^A-Z0-9]/g, "").includes(wanted));
  const sign = dir === "asc" ? 1 : -1;
  shown.sort((a, b) => {
    if (sort === "symbol") return sign * a.symbol.localeCompare(b.symbol);
    if (a[sort] === null || a[sort] === undefined) return 1;
    if (b[sort] === null || b[sort] === undefined) return -1;
    return sign * (a[sort] - b[sort]) || a.symbol.localeCompare(b.symbol);
  });
  $("watchlist").tBodies[0].replaceChildren(...shown.map((r) => {
    const last = r.symbol === state.symbol && state.lastPrice !== null ? state.lastPrice : r.last;
    const tr = fmt.row([
      fmt.cell(r.symbol), fmt.cell(fmt.price(last, precisionOf(r.symbol).price_decimals), "num"),
      fmt.cell(fmt.percent(r.change), r.change === null ? "num" : fmt.signClass(r.change)),
      fmt.cell(fmt.compact(r.volume), "num"),
    ]);
    tr.dataset.symbol = r.symbol;
    tr.classList.toggle("selected", r.symbol === state.symbol);
    return tr;
  }));
  for (const th of $("watchlist").tHead.querySelectorAll("th[data-sort]")) {
    if (th.dataset.sort === sort) th.dataset.dir = dir;
    else delete th.dataset.dir;
  }
}

function sortWatchlist(key) {
  const watch = state.watch;
  // A new column starts with what a trader looks for first: A-Z, or the largest numbers.
  watch.dir = watch.sort === key ? (watch.dir === "asc" ? "desc" : "asc") : key === "symbol" ? "asc" : "desc";
  watch.sort = key;
  renderWatchlist();
}

// -- live state -----------------------------------------------------------------------------

function showLiveState(kind, detail) {
  const pill = $("live-status");
  const banner = $("banner");
  if (kind === "live") {
    pill.dataset.state = "live";
    pill.querySelector(".label").textContent = "live";
    banner.hidden = true;
  } else if (kind === "reconnecting") {
    pill.dataset.state = "reconnecting";
    pill.querySelector(".label").textContent = "reconnecting";
    banner.hidden = false;
    banner.textContent = `Live feed disconnected, reconnecting… (attempt ${detail.attempt}, ` +
      `next try in ${(detail.delayMs / 1000).toFixed(1)} s). The chart shows the last data received.`;
  } else if (kind === "stored") {
    pill.dataset.state = "stored";
    pill.querySelector(".label").textContent = "stored data";
  } else if (kind === "locked") {
    pill.dataset.state = "reconnecting";
    pill.querySelector(".label").textContent = "no access";
  } else if (kind === "error") {
    showError(new ApiError(400, `live feed: ${detail}`));
  }
}

function onLiveOpen(reconnected) {
  if (!reconnected) return;
  // Back after a drop: what happened meanwhile is only in the store, so fetch it again.
  stats.reconnects += 1;
  fetchChart(false); // the compared venues too, once the chart is in
  refreshWatchlist();
  analytics.refresh();
}

function showError(err) {
  if (err instanceof ApiError && err.status === 0 && !$("banner").hidden) return;
  const box = $("error");
  box.hidden = false;
  box.textContent = err.status === 401
    ? "Access token required: open this page with ?token=YOUR_TOKEN"
    : `${err.message}`;
}

function clearError() {
  $("error").hidden = true;
}

start();
