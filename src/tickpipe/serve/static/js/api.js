// The page's only ways to the server: JSON over /api and the live socket /api/live.
// A page opened with ?token=... hands the token on to both (a browser cannot set headers on
// a WebSocket, so the query form is used everywhere).

const TOKEN = new URLSearchParams(location.search).get("token") || "";

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

function withToken(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  if (TOKEN) query.set("token", TOKEN);
  const text = query.toString();
  return text ? `?${text}` : "";
}

/** GET /api/...; throws ApiError with the server's reason on a 4xx/5xx or a network failure. */
export async function getJSON(path, params) {
  let answer;
  try {
    answer = await fetch(path + withToken(params), { cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, `server unreachable (${err.message})`);
  }
  let body = null;
  try {
    body = await answer.json();
  } catch {
    body = null;
  }
  if (!answer.ok) throw new ApiError(answer.status, (body && body.error) || answer.statusText);
  return body;
}

/** A route that may not exist on this server (added by later versions): null on 404. */
export async function getOptional(path, params) {
  try {
    return await getJSON(path, params);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

export function keepToken(params) {
  if (TOKEN) params.set("token", TOKEN);
  return params;
}

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 8000;

/**
 * The live socket: subscribes, reconnects forever with jittered, capped backoff, and says
 * what it is doing through `onState(state, detail)` so the page can show it. `onMessage` gets
 * every decoded push; `onOpen(reconnected)` runs after each (re)subscription.
 *
 * Besides the chart's own key it holds `extras`: more candle keys on the same connection (the
 * compared venues), each asked in a message of its own, so that one the server refuses (a venue
 * it has no live feed of) neither ends the others nor shows as the page's error.
 */
export class LiveSocket {
  constructor({ onMessage, onState, onOpen }) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.onOpen = onOpen;
    this.subscription = null;
    this.extras = []; // [{exchange, symbol, interval, trades: false}]
    this.asked = new Set(); // the extras asked on this connection, as JSON
    this.refusedExtras = 0;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.everOpened = false;
    // What each answer the server still owes is to, oldest first: the server answers every
    // message in order. "open": the chart's subscription; "quiet": a change of `trades`;
    // "extra": one of `extras`.
    this.answers = [];
  }

  /** Ask for the symbol's trades, or stop them, on the open connection (the server changes only
   * that); a reconnect subscribes with the newest choice. */
  setTrades(trades) {
    if (!this.subscription || this.subscription.trades === trades) return;
    this.subscription = { ...this.subscription, trades };
    this._send(this.subscription, "quiet");
  }

  /** Candle updates of these keys too (the chart's key stays); asked at once on the open
   * connection, and again on every reconnect. Keys no longer wanted are not unsubscribed (the
   * hub has none): the page ignores their pushes until the next new connection. */
  setExtras(keys) {
    this.extras = keys.map((k) => ({ ...k, trades: false }));
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.answers[0] !== "open") this._askExtras();
  }

  _askExtras() {
    for (const key of this.extras) {
      const text = JSON.stringify(key);
      if (this.asked.has(text)) continue;
      this.asked.add(text);
      this._send(key, "extra");
    }
  }

  _send(subscription, kind) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.answers.push(kind);
    this.ws.send(JSON.stringify({ subscribe: subscription }));
  }

  /** Follow a new (exchange, symbol, interval): a fresh connection, since the hub has no
   * unsubscribe and the old keys would keep pushing. */
  subscribe(subscription, extras = []) {
    this.subscription = subscription;
    this.extras = extras.map((k) => ({ ...k, trades: false }));
    this.attempt = 0;
    this.everOpened = false;
    this._drop();
    this._connect();
  }

  _drop() {
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = this.ws.onmessage = this.ws.onopen = this.ws.onerror = null;
      this.ws.close();
      this.ws = null;
    }
  }

  _connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/live${withToken({})}`);
    this.ws = ws;
    this.answers = [];
    this.asked = new Set();
    ws.onopen = () => this._send(this.subscription, "open");
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "subscribed" && message.type !== "error") {
        this.onMessage(message);
        return;
      }
      const kind = this.answers.shift();
      if (kind === "extra") {
        if (message.type === "error") this.refusedExtras += 1;
      } else if (message.type === "error") {
        this.onState("error", message.reason);
      } else if (kind === "open" || kind === undefined) {
        const reconnected = this.attempt > 0 || this.everOpened;
        this.attempt = 0;
        this.everOpened = true;
        this.onState("live", "");
        this._askExtras();
        this.onOpen(reconnected);
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === 4401) {
        this.onState("error", event.reason || "access token required");
      }
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
      const jittered = delay * (0.8 + 0.4 * Math.random());
      this.attempt += 1;
      this.onState("reconnecting", { attempt: this.attempt, delayMs: jittered });
      this.timer = setTimeout(() => this._connect(), jittered);
    };
  }
}
