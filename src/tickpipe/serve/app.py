"""The HTTP API and the live WebSocket, as one Starlette app over a `Store` (DuckDB or
PostgreSQL: the routes call store methods, never SQL, so both answer the same).

Routes parse their parameters first (`params.py`: a bad one is a 4xx JSON answer naming it),
then read the store through the `ReadGate` (`reads.py`): on a worker thread (the event loop is
the pipeline's too, so it must never wait on the store), within the read budget, heavy reads
at most `serve.heavy_reads` at once. A read over its budget, a full gate or a store that
cannot answer is a 503 with the reason in JSON, never the database's own text.

TradingView's UDF datafeed (`udf.py`, under `/udf`) reads the same way, in UDF's shapes; the
handlers below answer its refusals in UDF's error shape with the same statuses.

Two guards wrap the app: `ExposureGuard` (`exposure.py`: the Host and Origin checks) outside,
then `TokenGuard` when there is an access token. The live WebSocket bounds what one
connection may ask for (`serve.max_subscriptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from tickpipe.durations import format_duration
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle
from tickpipe.runtime.clock import now_us
from tickpipe.runtime.status import PipelineStatus
from tickpipe.serve import consolidated, forecasts, monitoring, udf
from tickpipe.serve.exposure import WS_POLICY, Exposure, ExposureGuard
from tickpipe.serve.live import Hub, Subscriber
from tickpipe.serve.openapi import openapi_document
from tickpipe.serve.pages import PAGE_ROUTES, is_public
from tickpipe.serve.params import (
    MAX_PERIOD,
    MAX_TRADES,
    BadRequest,
    CandleQuery,
    parse_candle_query,
    parse_int,
    parse_span,
    parse_time,
    required,
)
from tickpipe.serve.precision import Precision, PrecisionCache
from tickpipe.serve.reads import RETRY_AFTER_S, Busy, ReadGate
from tickpipe.serve.settings import ServeConfig
from tickpipe.stores.base import Store, StoreError
from tickpipe.symbols import SymbolError, normalize_symbol

# A JSON answer below this goes out as is: compressing it saves less than the header costs.
GZIP_MIN_BYTES = 1024
WS_UNAUTHORIZED = 4401  # WebSocket close code: the 4000s are the application's own


class JSON(Response):
    """msgspec-encoded JSON: candle and trade structs encode directly, and fast."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


@dataclass
class ApiContext:
    """What the routes read. `hub` is None when serving a stored file (no live pushes)."""

    store: Store
    hub: Hub | None = None
    intervals: list[str] | None = None  # the pipeline's windows; None: whatever is stored
    status: Callable[[], PipelineStatus] | None = None  # the running pipeline's counters
    live_instruments: Callable[[], set[tuple[str, str]]] | None = None
    monitor: Any = None  # the running pipeline's Monitor (metrics, alerts); None: a stored file
    extra: dict[str, Any] = field(default_factory=dict)
    reads: ReadGate = field(default_factory=ReadGate)  # `create_app` sets serve's budgets
    precisions: PrecisionCache = field(default_factory=PrecisionCache)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A read bounded by key and size (never refused as busy; still within the budget)."""
        return await self.reads.read(self.store, fn, *args)

    async def heavy(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A read that may scan many rows: refused with 503 when the heavy slots are full."""
        return await self.reads.heavy(self.store, fn, *args)

    async def precision(self, exchange: str, symbol: str) -> Precision:
        """The instrument's price and size precision, from its newest trades (precision.py)."""

        async def newest(exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
            return await self.read(self.store.recent_trades, exchange, symbol, limit)

        return await self.precisions.of(exchange, symbol, newest)

    async def stored_intervals(self) -> list[str]:
        stored = await self.read(self.store.intervals)
        return sorted(set(stored) | set(self.intervals or ()))

    async def instrument(self, exchange_text: str, symbol_text: str) -> tuple[str, str]:
        """The (exchange, symbol) the store or the pipeline knows; 404 with a reason if not."""
        exchange = exchange_text.strip().lower()
        try:
            symbol = normalize_symbol(symbol_text)
        except SymbolError:
            symbol = symbol_text.strip().upper()
        if self.live_instruments is not None and (exchange, symbol) in self.live_instruments():
            return exchange, symbol
        if not await self.read(self.store.has_instrument, exchange, symbol):
            raise BadRequest(f"unknown symbol {symbol!r} on exchange {exchange!r}", 404)
        return exchange, symbol


def _ctx(request: Request | WebSocket) -> ApiContext:
    return request.app.state.ctx


# -- routes ---------------------------------------------------------------------------------


async def health(request: Request) -> JSON:
    """Whether the API answers and the store reads; what the live hub is doing."""
    ctx = _ctx(request)
    await ctx.read(ctx.store.ping)
    hub = ctx.hub
    return JSON({
        "status": "ok", "live": hub is not None, "store": ctx.store.describe(),
        "subscribers": len(hub.subscribers) if hub else 0, "dropped": hub.dropped if hub else 0,
    })  # fmt: skip


async def exchanges(request: Request) -> JSON:
    """Exchanges and their symbols, from the stored trades, each with its precision."""
    ctx = _ctx(request)
    rows = await ctx.heavy(ctx.store.instrument_summary)
    out: dict[str, list[dict[str, Any]]] = {}
    for exchange, symbol, count, first, last in rows:
        precision = await ctx.precision(exchange, symbol)
        out.setdefault(exchange, []).append({
            "symbol": symbol, "trades": count, "first_ts": first, "last_ts": last,
            **precision.as_json(),
        })  # fmt: skip
    return JSON({
        "exchanges": [{"name": name, "symbols": symbols} for name, symbols in out.items()],
        "intervals": await ctx.stored_intervals(),
    })  # fmt: skip


async def candles(request: Request) -> JSON:
    """Candles of one symbol: a stored interval, or any multiple of one (`bucket`)."""
    ctx = _ctx(request)
    q = request.query_params
    exchange, symbol = await ctx.instrument(required(q, "exchange"), required(q, "symbol"))
    query = parse_candle_query(q, exchange, symbol, await ctx.stored_intervals(), now_us())
    rows = await ctx.read(
        ctx.store.candles, exchange, symbol, query.interval, query.start, query.end,
        query.bucket, query.interval_size,
    )  # fmt: skip
    body: list[Any] = fill_gaps(rows, query.step) if query.fill else rows
    return JSON({
        "exchange": exchange, "symbol": symbol,
        "interval": format_duration(query.bucket) if query.bucket else query.interval,
        "from_interval": query.interval, "step": query.step, "start": query.start,
        "end": query.end, "candles": body,
    })  # fmt: skip


def fill_gaps(rows: list[Candle], step: int) -> list[dict[str, Any]]:
    """Empty buckets between two candles carry the previous close with zero volume.

    Only between stored candles: before the first there is no close to carry, and after the
    last the next trade may still come.
    """
    out: list[dict[str, Any]] = []
    prev: Candle | None = None
    for candle in rows:
        if prev is not None:
            for start in range(prev.start + step, candle.start, step):
                price = prev.close
                out.append({
                    **msgspec.structs.asdict(prev), "start": start, "open": price,
                    "high": price, "low": price, "close": price, "volume": 0.0,
                    "quote_volume": 0.0, "vwap": price, "mean_price": price, "trades": 0,
                    "buy_volume": 0.0, "sell_volume": 0.0, "first_seq": prev.last_seq,
                    "revision": 0, "filled": True,
                })  # fmt: skip
        out.append({**msgspec.structs.asdict(candle), "filled": False})
        prev = candle
    return out


async def _instrument_and_limit(request: Request, limit: int) -> tuple[str, str, int]:
    """The instrument a request names (404 if unknown) and its `?limit=` of rows."""
    q = request.query_params
    exchange, symbol = await _ctx(request).instrument(
        required(q, "exchange"), required(q, "symbol")
    )
    return exchange, symbol, parse_int(q, "limit", limit, 1, MAX_TRADES)


async def trades(request: Request) -> JSON:
    """The most recent trades of one symbol, newest first."""
    exchange, symbol, limit = await _instrument_and_limit(request, 100)
    ctx = _ctx(request)
    rows = await ctx.heavy(ctx.store.recent_trades, exchange, symbol, limit)
    return JSON({"exchange": exchange, "symbol": symbol, "trades": rows})


async def rolling(request: Request) -> JSON:
    """Rolling statistics of one symbol (30-minute average close, 5-minute min/max/avg)."""
    exchange, symbol, limit = await _instrument_and_limit(request, 60)
    ctx = _ctx(request)
    stats = await ctx.read(ctx.store.rolling_history, exchange, symbol, limit)
    return JSON({
        "exchange": exchange, "symbol": symbol, "latest": stats[0] if stats else None,
        "history": stats,
    })  # fmt: skip


async def kpis(request: Request) -> JSON:
    """What the store holds and, with a running pipeline, its counters (rates, lateness)."""
    ctx = _ctx(request)
    body: dict[str, Any] = {
        **await ctx.read(ctx.store.totals),
        "pipeline": pipeline_json(ctx.status()) if ctx.status else None,
    }  # fmt: skip
    if ctx.hub is not None:
        body["live"] = {
            "subscribers": len(ctx.hub.subscribers), "dropped": ctx.hub.dropped,
            "published_candles": ctx.hub.published_candles,
            "published_trades": ctx.hub.published_trades,
        }  # fmt: skip
    return JSON(body)


def pipeline_json(status: PipelineStatus) -> dict[str, Any]:
    """`/api/kpis`'s "pipeline": the status read model's counters, as JSON."""
    return {
        "mode": status.mode, "uptime_s": status.uptime_s,
        "trades": status.trades, "candles": status.candles,
        "candles_written": status.candles_written,
        "late_corrected": status.late_corrected,
        "late_rejected": status.late_rejected, "duplicates": status.duplicates,
        "malformed": status.malformed,
        "queue_depth": status.queue_depth, "queue_capacity": status.queue_capacity,
        "writer_pending": status.writer_pending,
        "lake_queued": status.lake_queued, "lake_dropped_trades": status.lake_dropped_trades,
        "sources": {
            name: {"connected": s.connected, "reconnects": s.reconnects, "trades": s.trades,
                   "last_disconnect": s.last_disconnect, "finished": s.finished,
                   "error": s.error}
            for name, s in status.sources.items()
        },
    }  # fmt: skip


def _period(request: Request) -> tuple[int, int]:
    q = request.query_params
    end = parse_time("end", q["end"]) if q.get("end") else now_us()
    return end - parse_span("period", q.get("period", "1h"), MAX_PERIOD), end


def _ranking(request: Request) -> tuple[int, int, str, int]:
    """The period, ranking (`by`: trades or volume) and `limit` of a top-N query."""
    start, end = _period(request)
    by = request.query_params.get("by", "trades")
    if by not in ("trades", "volume"):
        raise BadRequest(f"by={by!r}: use trades or volume")
    return start, end, by, parse_int(request.query_params, "limit", 10, 1, 1000)


def _over_range(store: Store, fn: Callable[..., Any], start: int, end: int, *args: Any) -> Any:
    """((start, end), `fn(start, end, *args)`) over the period widened to whole candles: the
    range the analytics answer for."""
    lo, hi = store.analytics_range(start, end)
    return (lo, hi), fn(lo, hi, *args)


async def top_exchanges(request: Request) -> JSON:
    """Exchanges ranked by trade count or by traded quote volume over a period."""
    ctx = _ctx(request)
    start, end, by, limit = _ranking(request)
    (start, end), rows = await ctx.heavy(
        _over_range, ctx.store, ctx.store.top_exchanges, start, end, by, limit
    )
    return JSON({"start": start, "end": end, "by": by, "exchanges": rows})


async def top_tickers(request: Request) -> JSON:
    """Symbols ranked by trade count or quote volume over a period, across exchanges."""
    ctx = _ctx(request)
    start, end, by, limit = _ranking(request)
    (start, end), rows = await ctx.heavy(
        _over_range, ctx.store, ctx.store.top_tickers, start, end, by, limit
    )
    return JSON({"start": start, "end": end, "by": by, "tickers": rows})


async def exchange_breakdown(request: Request) -> JSON:
    """One exchange over a period: trade statistics and each ticker's share of its trades."""
    ctx = _ctx(request)
    name = request.path_params["name"].strip().lower()
    start, end = _period(request)
    if not await ctx.read(ctx.store.has_exchange, name):
        raise BadRequest(f"unknown exchange {name!r}", 404)
    (start, end), (totals, tickers) = await ctx.heavy(
        _over_range, ctx.store, lambda lo, hi: ctx.store.exchange_breakdown(name, lo, hi),
        start, end,
    )  # fmt: skip
    return JSON({
        "exchange": name, "start": start, "end": end, "totals": totals, "tickers": tickers,
    })  # fmt: skip


async def openapi(request: Request) -> JSON:
    return JSON(openapi_document())


# -- live -----------------------------------------------------------------------------------


class Refused(Exception):
    """A client message that ends its connection: close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def live(websocket: WebSocket) -> None:
    """Push candle updates and trades of the subscribed (exchange, symbol, interval) keys.

    A connection holds at most `serve.max_subscriptions` keys, refused ones counted too, so
    no client can make the server look up symbols without end; past that, or on a message
    nested too deep to decode, it is closed with 1008 and the reason. Messages over the
    server's size limit are closed with 1009 by uvicorn before they get here.
    """
    ctx = _ctx(websocket)
    await websocket.accept()
    hub = ctx.hub
    if hub is None:
        await websocket.send_text(msgspec.json.encode({
            "type": "error", "reason": "no live pushes: this server reads a stored file "
            "(tickpipe serve); run `tickpipe run` or `demo` for live data",
        }).decode())  # fmt: skip
        await websocket.close(1000)
        return
    sub = hub.connect()
    sender = asyncio.create_task(_send_loop(websocket, sub))
    limit = websocket.app.state.max_subscriptions
    try:
        while True:
            message = await websocket.receive()
            # The sender ends when a send fails: the client has gone, and what it queued
            # before leaving must not cost any more lookups.
            if message["type"] == "websocket.disconnect" or sender.done():
                return
            raw = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            try:
                answer = await _on_client_message(ctx, hub, sub, raw, limit)
            except Refused as refused:
                await websocket.close(refused.code, refused.reason)
                return
            sub.put(msgspec.json.encode(answer))
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        hub.disconnect(sub)


def _text(item: dict[str, Any], name: str, default: str) -> str:
    value = item.get(name, default)
    if isinstance(value, dict | list):
        raise BadRequest(f"{name} must be text, not {type(value).__name__}")
    return str(value)


async def _on_client_message(
    ctx: ApiContext, hub: Hub, sub: Subscriber, raw: str, limit: int
) -> dict[str, Any]:
    """`{"subscribe": {"exchange", "symbol", "interval", "trades"}}` (or a list); the answer.

    `trades` (default true, as before it existed) says whether the instrument's trades are
    pushed too; subscribing again to a key with another `trades` changes only that.
    """
    try:
        message = msgspec.json.decode(raw)
    except RecursionError:
        raise Refused(WS_POLICY, "message nested too deep") from None
    except msgspec.DecodeError:
        return {"type": "error", "status": 400, "reason": "not a JSON subscribe message"}
    try:
        wanted = message["subscribe"] if isinstance(message, dict) else None
        if isinstance(wanted, dict):
            wanted = [wanted]
        if not isinstance(wanted, list) or not wanted:
            raise BadRequest('send {"subscribe": {"exchange", "symbol", "interval"}}')
        if len(sub.candle_keys) + sub.refused + len(wanted) > limit:
            raise Refused(WS_POLICY, f"too many subscriptions: at most {limit} per connection")
        keys = []
        intervals = await ctx.stored_intervals()
        for item in wanted:
            if not isinstance(item, dict):
                raise BadRequest("each subscription is an object with exchange, symbol, interval")
            exchange, symbol = await ctx.instrument(
                _text(item, "exchange", ""), _text(item, "symbol", "")
            )
            interval = _text(item, "interval", "1m")
            try:
                interval = parse_window(interval).name
            except ValueError:
                raise BadRequest(f"interval={interval!r}: not an interval (e.g. 1m)") from None
            if interval not in intervals:
                raise BadRequest(
                    f"interval={interval!r}: not allowed (allowed: {', '.join(intervals)})"
                )
            wants_trades = item.get("trades", True)
            if not isinstance(wants_trades, bool):
                raise BadRequest(f"trades={wants_trades!r}: use true or false")
            keys.append((exchange, symbol, interval, wants_trades))
    except BadRequest as exc:
        sub.refused += 1
        return {"type": "error", "status": exc.status, "reason": exc.reason}
    except KeyError:
        sub.refused += 1
        return {"type": "error", "status": 400, "reason": "not a JSON subscribe message"}
    for exchange, symbol, interval, wants_trades in keys:
        hub.subscribe(sub, exchange, symbol, interval, trades=wants_trades)
    return {"type": "subscribed", "keys": [list(k[:3]) for k in keys]}


async def _send_loop(websocket: WebSocket, sub: Subscriber) -> None:
    """Drain the subscriber's queue to the socket; tell the client when it lost updates."""
    told = 0
    while True:
        messages = await sub.get_all()
        if sub.dropped != told:
            told = sub.dropped
            await websocket.send_text(f'{{"type":"dropped","count":{told}}}')
        for message in messages:
            await websocket.send_text(message.decode())
            sub.sent += 1


# -- access token ---------------------------------------------------------------------------


class TokenGuard:
    """Requires `Authorization: Bearer TOKEN` or `?token=TOKEN` on HTTP and the WebSocket.

    The query form exists because a browser cannot set headers on a WebSocket. A refused HTTP
    request gets 401 JSON; a refused WebSocket is accepted and closed at once with code 4401
    and the reason, so a browser client can show why.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _allowed(self, scope: Scope) -> bool:
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value.lower().startswith(b"bearer "):
                given = value[7:].decode("latin-1").strip()
        if not given:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or (scope["type"] == "http" and is_public(scope["path"]))
            or self._allowed(scope)
        ):
            await self.app(scope, receive, send)
            return
        reason = "access token required (Authorization: Bearer TOKEN or ?token=TOKEN)"
        if scope["type"] == "http":
            await JSON({"error": reason}, status_code=401)(scope, receive, send)
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": WS_UNAUTHORIZED, "reason": reason})


# -- the app ---------------------------------------------------------------------------------


def _error(
    request: Request, reason: str, status: int, headers: dict[str, str] | None = None
) -> JSON:
    """A refusal with its reason: `{"error": ...}`, or UDF's `{"s": "error", "errmsg": ...}`
    under /udf, whose clients read that shape; the status is the same either way."""
    udf_route = request.url.path.startswith(udf.PREFIX + "/")
    body = {"s": "error", "errmsg": reason} if udf_route else {"error": reason}
    return JSON(body, status_code=status, headers=headers)


async def _bad_request(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, BadRequest)
    return _error(request, exc.reason, exc.status)


async def _http_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.detail, exc.status_code)


async def _unavailable(request: Request, exc: Exception) -> JSON:
    """503: a read over its budget, or a store that cannot answer (its one-line reason)."""
    return _error(request, str(exc), 503)


async def _busy(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, Busy)
    return _error(request, exc.reason, 503, {"Retry-After": str(RETRY_AFTER_S)})


async def _server_error(request: Request, exc: Exception) -> JSON:
    return _error(request, f"internal error: {type(exc).__name__}: {exc}", 500)


ROUTES = [
    Route("/openapi.json", openapi),
    Route("/api/health", health),
    Route("/api/exchanges", exchanges),
    Route("/api/candles", candles),
    Route("/api/trades", trades),
    Route("/api/rolling", rolling),
    Route("/api/kpis", kpis),
    Route("/api/kpis/history", monitoring.kpi_history),
    Route("/api/alerts", monitoring.alerts),
    Route("/metrics", monitoring.metrics),
    Route("/api/analytics/top-exchanges", top_exchanges),
    Route("/api/analytics/top-tickers", top_tickers),
    Route("/api/analytics/exchange/{name}", exchange_breakdown),
    Route("/api/forecasts", forecasts.forecasts),
    WebSocketRoute("/api/live", live),
    *consolidated.ROUTES,  # /api/quality, /api/composite (consolidated.py)
    *udf.ROUTES,  # TradingView's UDF datafeed under /udf (udf.py)
    *PAGE_ROUTES,  # the dashboard page and its static files (pages.py)
]


def create_app(
    ctx: ApiContext, token: str | None = None, serve: ServeConfig | None = None
) -> ASGIApp:
    """The API over `ctx`; with `token`, every request and WebSocket must present it.

    `serve` gives the names and origins it answers to, the WebSocket's limits and the read
    budgets; by default loopback names only.
    """
    serve = serve or ServeConfig()
    app = Starlette(
        routes=ROUTES,
        # JSON and /metrics compressed when large; the static files come already compressed.
        middleware=[Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES)],
        exception_handlers={
            BadRequest: _bad_request, HTTPException: _http_error, StoreError: _unavailable,
            Busy: _busy, Exception: _server_error,
        },
    )  # fmt: skip
    ctx.reads = ReadGate(serve.read_timeout_s, serve.heavy_reads)
    app.state.ctx = ctx
    app.state.max_subscriptions = serve.max_subscriptions
    guarded: ASGIApp = TokenGuard(app, token) if token else app
    return ExposureGuard(guarded, Exposure.of(serve))


__all__ = ["ApiContext", "CandleQuery", "create_app", "fill_gaps"]
