"""A local stand-in for Finnhub's WebSocket and crypto REST API, with scripted faults.

It speaks the documented protocol on 127.0.0.1: `/?token=...` (a wrong token is refused with
HTTP 401), `{"type":"subscribe","symbol":"BINANCE:BTCUSDT"}` / `unsubscribe` per symbol,
`{"type":"trade","data":[{"s","p","t","v","c"}]}` messages that may carry several trades,
`{"type":"ping"}` every `ping_interval` seconds (also while `silent`), `{"type":"error"}` for a
bad request, and WebSocket pings answered. REST (`rest_url`): `/api/v1/crypto/exchange` and
`/api/v1/crypto/symbol?exchange=...`, authenticated by the `X-Finnhub-Token` header.

`published` holds each trade message that reached a client, as the list of its trades, repeats
included. Faults: `drop_after(n)`, `drop_all()`, `silent`, `send(...)` in any order and any
number of times, `send_raw(...)`, `reject_next(429, retry_after=...)` for upgrades,
`reject_rest_next(429, retry_after=...)` for REST, `close_quoting_path()` (a close reason that
echoes the request URL, token and all).

The aggregator scaffolding (token, heartbeat message, catch-all REST) is `base.FakeFeed`,
which the Tiingo fake builds on too.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from picows import WSUpgradeRequest

from .base import FakeFeed, FeedConnection, encode

# Venues and pairs the REST symbol list knows, in Finnhub's spelling.
SYMBOLS = {
    "BINANCE": [("BTC/USDT", "BINANCE:BTCUSDT"), ("ETH/USDT", "BINANCE:ETHUSDT")],
    "COINBASE": [("BTC/USD", "COINBASE:BTC-USD")],
    "KRAKEN": [("XBT/USD", "KRAKEN:XXBTZUSD")],
}


class FakeFinnhub(FakeFeed):
    """Finnhub's WebSocket and crypto REST API on 127.0.0.1, scripted by the test that owns it."""

    name = "finnhub"

    def __init__(self, token: str = "test-token", *, ping_interval: float = 10.0) -> None:
        super().__init__(token, heartbeat_interval=ping_interval)
        self._price: dict[str, float] = {}
        self._clock = time.time_ns() // 1_000_000

    def accept(self, request: WSUpgradeRequest, path: str) -> int:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        return 200 if query.get("token") == [self.token] else 401

    def on_request(self, conn: FeedConnection, message: Any) -> None:
        if not isinstance(message, dict) or message.get("type") not in ("subscribe", "unsubscribe"):
            self._reply(conn, {"type": "error", "msg": "Invalid message"})
            return
        symbol = message.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            self._reply(conn, {"type": "error", "msg": "Invalid symbol"})
        elif message["type"] == "subscribe":
            conn.subscriptions.add(symbol)
        else:
            conn.subscriptions.discard(symbol)

    def heartbeat(self) -> bytes:
        return encode({"type": "ping"})

    def trade(
        self,
        symbol: str,
        *,
        price: float | None = None,
        volume: float | None = None,
        t: int | None = None,
    ) -> dict[str, Any]:
        """The next trade of `symbol` (Finnhub spelling), not sent yet."""
        if price is None:
            last = self._price.get(symbol, 100.0)
            price = self._price[symbol] = self._walk(last)
        if volume is None:
            volume = round(self.rng.uniform(0.0001, 2.0), 6)
        if t is None:
            self._clock += self.rng.randint(0, 3)
            t = self._clock
        return {"s": symbol, "p": price, "t": t, "v": volume, "c": None}

    def send(self, *trades: dict[str, Any]) -> int:
        """One trade message per connection, with the given trades of its subscriptions."""
        if self.silent:
            return 0
        sent = 0
        delivered: list[dict[str, Any]] = []
        for conn in self.open_connections():
            mine = [t for t in trades if t["s"] in conn.subscriptions]
            if mine and self._write(conn, encode({"type": "trade", "data": mine})):
                sent += 1
                delivered = mine
        if sent:
            self.published.append(delivered)
        return sent

    def publish(self, symbol: str, count: int = 1) -> list[dict[str, Any]]:
        """Make `count` trades of `symbol` and send them in one message."""
        trades = [self.trade(symbol) for _ in range(count)]
        self.send(*trades)
        return trades

    async def feed(self, symbols: Iterable[str], messages: int, per_message: int = 3) -> None:
        symbols = list(symbols)
        for n in range(messages):
            self.send(*(self.trade(symbols[(n + k) % len(symbols)]) for k in range(per_message)))
            if n % 50 == 49:
                await asyncio.sleep(0)

    def rest(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, Any]:
        if headers.get("X-Finnhub-Token") != self.token:
            return 401, {"error": f"Invalid API key {headers.get('X-Finnhub-Token')}"}
        if path == "/api/v1/crypto/exchange":
            return 200, list(SYMBOLS)
        if path == "/api/v1/crypto/symbol":
            rows = SYMBOLS.get(query.get("exchange", "").upper(), [])
            return 200, [
                {"description": f"{query['exchange']} {raw}", "displaySymbol": d, "symbol": raw}
                for d, raw in rows
            ]
        return 404, {"error": "not found"}
