"""A local stand-in for Binance's spot WebSocket streams, with scripted faults.

It speaks the documented protocol on 127.0.0.1: combined streams at `/stream?streams=a/b`
(events wrapped as `{"stream": ..., "data": ...}`), raw streams at `/ws/<stream>`, live
`SUBSCRIBE` / `UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS` requests answered with
`{"result": ..., "id": ...}`, a ping every `ping_interval` seconds and a disconnect when no
pong came back within `pong_timeout`.

It remembers every trade: `history` holds each trade the exchange made (sent or not), and
`published` each trade event written to a client, in order, repeats included, so a test can
assert that a client received exactly what was sent. Each trade is also its own aggregate
trade (`agg_history`, ids counted separately): connections subscribed to `<symbol>@aggTrade`
get that form.

The REST API (`rest_url`, aiohttp on 127.0.0.1) answers from the same history:
`GET /api/v3/exchangeInfo` (the traded symbols plus `listed` extras, some not TRADING),
`/api/v3/trades` (the most recent, limited to `recent_window` when set),
`/api/v3/historicalTrades` (by `fromId`; answers 401 without an API key when
`historical_needs_key`), `/api/v3/aggTrades` (by `fromId`, or by `startTime`/`endTime` at most
an hour apart, as Binance allows) and `/api/v3/ticker/price`.
`rest_requests` records every request; `rest_reject_next(429, retry_after=...)` refuses the
next ones.

Faults: `drop_after(n)` cuts the connection (no close frame) after n more frames, `silent`
stops data while pings and pongs go on, `send(...)` takes trades in any order and any number of
times (reordering, duplicates), `skip(symbol, n)` loses trades (a gap), `send_raw` writes
any frame (malformed input), `reject_next(429, retry_after=...)` refuses upgrades.

Use it with `async with FakeBinance() as server:` in async tests, or `FakeBinanceThread` from
synchronous ones (for example when `tickpipe run` runs as a subprocess), or run
`python -m tests.fakes.binance_server --rate 100` by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from picows import WSCloseCode, WSMsgType, WSUpgradeRequest

from .base import FakeExchange, RestHandler, encode
from .base import ServerConnection as BaseConnection

T = TypeVar("T")


@dataclass
class ServerConnection(BaseConnection):
    """What the server knows about one client connection."""

    combined: bool = False
    streams: set[str] = field(default_factory=set)
    trades_sent: list[dict[str, Any]] = field(default_factory=list)
    pings_sent: int = 0


class FakeBinance(FakeExchange):
    """Binance spot streams on 127.0.0.1, scripted by the test that owns it."""

    name = "binance"
    upgrade_refusal = b'{"code":-1003,"msg":"Too many requests."}'
    rest_refusal = {"code": -1003, "msg": "Too many requests; current limit is 6000 weight."}

    def __init__(
        self,
        symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
        *,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        port: int = 0,
        rest_port: int = 0,
        seed: int = 1,
    ) -> None:
        self.symbols = [s.upper().replace("-", "") for s in symbols]
        super().__init__(self.symbols, port=port, rest_port=rest_port, seed=seed)
        # Symbols the exchange lists besides those it trades here: symbol -> (base, quote, status)
        self.listed: dict[str, tuple[str, str, str]] = {
            "BTCUSDC": ("BTC", "USDC", "TRADING"),
            "ETHBTC": ("ETH", "BTC", "TRADING"),
            "BNBUSDT": ("BNB", "USDT", "TRADING"),
            "LUNAUSDT": ("LUNA", "USDT", "BREAK"),
        }
        self.recent_window: int | None = None  # how many recent trades /api/v3/trades knows
        self.historical_needs_key = False
        self.rest_page_limit: int | None = None  # rows per page below the asked `limit`
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self.agg_history: dict[str, list[dict[str, Any]]] = {s: [] for s in self.symbols}
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.answer_pings = True
        self._next_id: dict[str, int] = {s: 1_000_000 for s in self.symbols}
        self._next_agg: dict[str, int] = {s: 500_000 for s in self.symbols}
        self._agg_of: dict[tuple[str, int], dict[str, Any]] = {}
        self._price: dict[str, float] = {s: 100.0 * (n + 1) for n, s in enumerate(self.symbols)}

    # -- the exchange --------------------------------------------------------------------

    def trade(
        self,
        symbol: str,
        *,
        price: float | None = None,
        qty: float | None = None,
        buyer_is_maker: bool | None = None,
        trade_time: int | None = None,
    ) -> dict[str, Any]:
        """Make the next trade of `symbol` (a `trade` event payload) without sending it."""
        symbol = symbol.upper().replace("-", "")
        if symbol not in self._next_id:
            self.symbols.append(symbol)
            self.history[symbol] = []
            self.agg_history[symbol] = []
            self._next_id[symbol] = 1_000_000
            self._next_agg[symbol] = 500_000
            self._price[symbol] = 100.0
        if price is None:
            price = self._walk(self._price[symbol])
        self._price[symbol] = price  # the last price, as /api/v3/ticker/price gives it
        if qty is None:
            qty = round(self._rng.uniform(0.0001, 2.0), 5)
        if buyer_is_maker is None:
            buyer_is_maker = self._rng.random() < 0.5
        now = time.time_ns() // 1_000_000
        trade_id = self._next_id[symbol]
        self._next_id[symbol] += 1
        event = {
            "e": "trade",
            "E": now,
            "s": symbol,
            "t": trade_id,
            "p": f"{price:.8f}",
            "q": f"{qty:.8f}",
            "T": trade_time if trade_time is not None else now,
            "m": buyer_is_maker,
            "M": True,
        }
        self.history[symbol].append(event)
        agg = {
            "e": "aggTrade", "E": now, "s": symbol, "a": self._next_agg[symbol],
            "p": event["p"], "q": event["q"], "f": trade_id, "l": trade_id, "T": event["T"],
            "m": buyer_is_maker, "M": True,
        }  # fmt: skip
        self._next_agg[symbol] += 1
        self.agg_history[symbol].append(agg)
        self._agg_of[(symbol, trade_id)] = agg
        return event

    def agg_of(self, event: dict[str, Any]) -> dict[str, Any]:
        """The aggregate trade (`aggTrade` event) of a trade event."""
        return self._agg_of[(event["s"], event["t"])]

    def send(self, *trades: dict[str, Any]) -> int:
        """Write trades to every subscribed connection, in the order given; returns frames sent.

        The same trade twice is a duplicate; trades out of id order are a reordering. A trade
        reaches `@trade` subscribers as a trade and `@aggTrade` subscribers as its aggregate.
        """
        if self.silent:
            return 0
        sent = 0
        for event in trades:
            forms = [event]
            if event["e"] == "trade" and (event["s"], event["t"]) in self._agg_of:
                forms.append(self.agg_of(event))
            for form in forms:
                stream = f"{form['s'].lower()}@{form['e']}"
                reached = False
                for conn in self.open_connections():
                    if stream in conn.streams:
                        payload = {"stream": stream, "data": form} if conn.combined else form
                        if self._write(conn, encode(payload)):
                            conn.trades_sent.append(form)
                            reached = True
                            sent += 1
                if reached:
                    self.published.append(form)
        return sent

    def send_raw(self, payload: bytes | str, fragments: int = 1) -> int:
        """Write any text message (a malformed one, say) to every open connection, split into
        `fragments` WebSocket frames (a text frame and continuations) when more than one."""
        data = payload.encode() if isinstance(payload, str) else payload
        if fragments > 1:
            size = -(-len(data) // fragments)
            pieces = [data[i : i + size] for i in range(0, len(data), size)]
            for conn in self.open_connections():
                assert conn.transport is not None
                for n, piece in enumerate(pieces):
                    kind = WSMsgType.TEXT if n == 0 else WSMsgType.CONTINUATION
                    conn.transport.send(kind, piece, fin=n == len(pieces) - 1)
                conn.frames_sent += 1
            return len(self.open_connections())
        return super().send_raw(data)

    def send_server_shutdown(self) -> int:
        """Binance's notice that this server goes down soon."""
        return self.send_raw(encode({"e": "serverShutdown", "E": time.time_ns() // 1_000_000}))

    async def feed(self, rate: float, count: int | None = None) -> None:
        """Publish trades round-robin over `symbols` at `rate` per second (forever by default)."""
        await self._pace(rate, count, lambda n: self.publish(self.symbols[n % len(self.symbols)]))

    # -- faults --------------------------------------------------------------------------

    def drop_after(self, frames: int) -> None:
        """Cut the connection (TCP close, no close frame) once `frames` more frames are out."""
        super().drop_after(frames)
        if frames == 0:
            self.drop_all()

    # -- REST ----------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        self.rest_requests.append((request.path, dict(request.query)))
        refused = self._rest_refusal()
        if refused is not None:
            return refused
        routes = {
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/trades": self._recent_trades,
            "/api/v3/historicalTrades": self._historical_trades,
            "/api/v3/aggTrades": self._agg_trades,
            "/api/v3/ticker/price": self._ticker_price,
        }
        route = routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="<html>404 Not Found</html>")
        try:
            return web.json_response(route(request))
        except _RestError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)

    def _exchange_info(self, request: web.Request) -> dict[str, Any]:
        listing = dict(self.listed)
        for symbol in self.symbols:
            listing[symbol] = (*_split(symbol), "TRADING")
        return {
            "timezone": "UTC",
            "serverTime": time.time_ns() // 1_000_000,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 6000},
            ],
            "exchangeFilters": [],
            "symbols": [
                {"symbol": symbol, "status": status, "baseAsset": base, "baseAssetPrecision": 8,
                 "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                 "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True, "filters": [],
                 "permissionSets": [["SPOT"]]}
                for symbol, (base, quote, status) in listing.items()
            ],
        }  # fmt: skip

    def _symbol(self, request: web.Request) -> str:
        symbol = request.query.get("symbol", "")
        if not symbol:
            raise _RestError(400, -1102, "Mandatory parameter 'symbol' was not sent.")
        if symbol not in self.history:
            raise _RestError(400, -1121, "Invalid symbol.")
        return symbol

    def _limit(self, request: web.Request) -> int:
        try:
            limit = int(request.query.get("limit", "500"))
        except ValueError:
            raise _RestError(400, -1100, "Illegal characters found in parameter 'limit'.") from None
        if not 1 <= limit <= 1000:
            raise _RestError(400, -1100, "Parameter 'limit': legal range is '1..1000'.")
        return limit

    def _from(self, events: list[dict[str, Any]], key: str, request: web.Request) -> list:
        limit = min(self._limit(request), self.rest_page_limit or 1000)
        query = request.query
        if "startTime" in query or "endTime" in query:
            if "fromId" in query:
                raise _RestError(400, -1128, "Combination of optional parameters invalid.")
            start = int(query.get("startTime", 0))
            end = int(query.get("endTime", start + 3_600_000 - 1))
            if end - start > 3_600_000:  # ccxt asks for exactly an hour, which Binance allows
                raise _RestError(400, -1127, "More than 1 hours between startTime and endTime.")
            return [e for e in events if start <= e["T"] <= end][:limit]
        if "fromId" not in query:
            return events[-limit:]
        from_id = int(request.query["fromId"])
        at = bisect.bisect_left(events, from_id, key=lambda e: e[key])  # ids grow in history
        return events[at : at + limit]

    def _recent_trades(self, request: web.Request) -> list[dict[str, Any]]:
        symbol = self._symbol(request)
        window = self.history[symbol]
        if self.recent_window is not None:
            window = window[-self.recent_window :] if self.recent_window else []
        return [_rest_trade(e) for e in window[-self._limit(request) :]]

    def _historical_trades(self, request: web.Request) -> list[dict[str, Any]]:
        if self.historical_needs_key and "X-MBX-APIKEY" not in request.headers:
            raise _RestError(401, -2014, "API-key format invalid.")
        symbol = self._symbol(request)
        return [_rest_trade(e) for e in self._from(self.history[symbol], "t", request)]

    def _agg_trades(self, request: web.Request) -> list[dict[str, Any]]:
        symbol = self._symbol(request)
        return [
            {k: e[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")}
            for e in self._from(self.agg_history[symbol], "a", request)
        ]

    def _ticker_price(self, request: web.Request) -> Any:
        if "symbol" in request.query:
            symbol = self._symbol(request)
            return {"symbol": symbol, "price": f"{self._price[symbol]:.8f}"}
        if "symbols" in request.query:
            try:
                names = json.loads(request.query["symbols"])
            except ValueError:
                raise _RestError(400, -1100, "Illegal characters found in 'symbols'.") from None
            if any(n not in self.history for n in names):
                raise _RestError(400, -1121, "Invalid symbol.")
        else:
            names = list(self.history)
        return [{"symbol": n, "price": f"{self._price[n]:.8f}"} for n in names]

    # -- internals -----------------------------------------------------------------------

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [("/{path:.*}", self._rest)]

    def _connect(self, request: WSUpgradeRequest, path: str) -> ServerConnection | None:
        parts = urllib.parse.urlsplit(path)
        if parts.path.rstrip("/") == "/stream":
            query = urllib.parse.parse_qs(parts.query)
            names = query.get("streams", [""])[0]
            streams = {s for s in names.split("/") if s}
            combined = True
        elif parts.path.rstrip("/") == "/ws":
            streams, combined = set(), False
        elif parts.path.startswith("/ws/"):
            streams, combined = {s for s in parts.path[4:].split("/") if s}, False
        else:
            return None
        return ServerConnection(len(self.connections), path, combined=combined, streams=streams)

    def _answers_pings(self) -> bool:
        return self.answer_pings

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            conn.requests.append(payload)
            self._reply(conn, {"code": 3, "msg": "Invalid JSON: expected value"})
            return
        conn.requests.append(msg)
        if not isinstance(msg, dict) or "method" not in msg:
            self._reply(conn, {"code": 2, "msg": "Invalid request: missing field `method`"})
            return
        method, params, req_id = msg["method"], msg.get("params", []), msg.get("id")
        if method == "SUBSCRIBE":
            conn.streams.update(params)
            self._reply(conn, {"result": None, "id": req_id})
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
            self._reply(conn, {"result": None, "id": req_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": sorted(conn.streams), "id": req_id})
        else:
            self._reply(conn, {"code": 2, "msg": f"Invalid request: unknown variant {method}"})

    def _tick(self) -> float:
        return min(self.ping_interval, self.pong_timeout) / 2

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        """Ping every connection; drop the ones that left pings unanswered too long."""
        assert conn.transport is not None
        if now - conn.last_pong > self.pong_timeout:
            conn.transport.send_close(WSCloseCode.POLICY_VIOLATION, b"pong timeout")
            self._drop(conn, "no pong")
        elif now - conn.opened_at >= (conn.pings_sent + 1) * self.ping_interval:
            conn.transport.send_ping(str(conn.pings_sent).encode())
            conn.pings_sent += 1


class _RestError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _rest_trade(event: dict[str, Any]) -> dict[str, Any]:
    """A `trade` event as `/api/v3/trades` and `/api/v3/historicalTrades` answer it."""
    return {
        "id": event["t"],
        "price": event["p"],
        "qty": event["q"],
        "quoteQty": f"{float(event['p']) * float(event['q']):.8f}",
        "time": event["T"],
        "isBuyerMaker": event["m"],
        "isBestMatch": True,
    }


def _split(symbol: str) -> tuple[str, str]:
    for quote in ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "USD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


async def faulty_session(server: FakeBinance) -> None:
    """A session a live run must come through exact: trades on BTCUSDT and ETHUSDT,
    duplicates, reordering, a malformed frame and a dropped connection, during which the
    exchange trades on (those trades come back over REST)."""
    for _ in range(150):
        server.publish("BTCUSDT")
        server.publish("ETHUSDT")
        await asyncio.sleep(0.002)
    first, second = server.trade("BTCUSDT"), server.trade("BTCUSDT")
    server.send(second, first, first, second)  # out of order, and each twice
    server.send_raw(b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"x"}}')
    server.send_raw(b"not json at all")
    for _ in range(50):
        server.publish("ETHUSDT")
    await asyncio.sleep(0.3)
    server.drop_all("scripted drop mid-stream")
    server.skip("BTCUSDT", 40)  # traded while tickpipe is away: fetched again over REST
    server.skip("ETHUSDT", 25)
    await server.wait_connections(2, timeout=30)
    for _ in range(150):
        server.publish("BTCUSDT")
        server.publish("ETHUSDT")
        await asyncio.sleep(0.002)


class FakeBinanceThread:
    """A `FakeBinance` on its own event loop thread, for synchronous tests.

    `call(fn)` runs `fn(server)` on the server's loop and returns its result, which is how a
    test reads `published` or scripts a fault without racing the server.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: FakeBinance | None = None

    def __enter__(self) -> FakeBinanceThread:
        self._thread.start()
        self.server = self.run(FakeBinance(**self._kwargs).start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def rest_url(self) -> str:
        assert self.server is not None
        return self.server.rest_url

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Start a coroutine (a `feed`, say) on the server's loop without waiting."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, fn: Callable[[FakeBinance], T], timeout: float | None = 30.0) -> T:
        """Run `fn(server)` on the server's loop and return what it returns."""
        server = self.server
        assert server is not None

        async def call() -> T:
            return fn(server)

        return self.run(call(), timeout)


def main(argv: list[str] | None = None) -> None:
    """Serve a steady feed until interrupted; prints the URL to point a source at."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--rate", type=float, default=10.0, help="trades per second, all symbols")
    parser.add_argument("--count", type=int, default=None, help="stop feeding after this many")
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with FakeBinance(args.symbols.split(","), port=args.port) as server:
            print(server.url, server.rest_url, flush=True)
            await server.feed(args.rate, args.count)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
