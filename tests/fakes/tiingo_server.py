"""A local stand-in for Tiingo's crypto firehose and crypto meta REST endpoint, with faults.

It speaks the documented protocol on 127.0.0.1 at `/crypto`: a subscribe request
`{"eventName":"subscribe","authorization":token,"eventData":{"thresholdLevel":5,"tickers":[...]}}`
is acknowledged with `{"messageType":"I","response":{"code":200,"message":"Success"},
"data":{"subscriptionId":N}}`, a wrong token gets `{"messageType":"E","response":{"code":401,
...}}` and a close; each update is its own message, `{"messageType":"A","service":"crypto_data",
"data":["T",ticker,date,exchange,lastSize,lastPrice]}` (quotes `"Q"` too at thresholdLevel 2);
a heartbeat `{"messageType":"H","response":{"code":200,"message":"HeartBeat"}}` goes out every
`heartbeat_interval` seconds, also while `silent`. REST (`rest_url`): `/tiingo/crypto` with the
`Authorization: Token ...` header.

`published` holds each trade that reached a client (as a one-trade list, like the Finnhub
fake's messages), repeats included. Faults are those of `FakeFeed`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from .base import FakeFeed, FeedConnection, encode

TICKERS = [
    {"ticker": "btcusd", "baseCurrency": "btc", "quoteCurrency": "usd", "name": "BTC/USD"},
    {"ticker": "ethusd", "baseCurrency": "eth", "quoteCurrency": "usd", "name": "ETH/USD"},
    {"ticker": "ethbtc", "baseCurrency": "eth", "quoteCurrency": "btc", "name": "ETH/BTC"},
]
VENUES = ("binance", "gdax", "bitfinex", "kraken")


class FakeTiingo(FakeFeed):
    """Tiingo's crypto firehose on 127.0.0.1, scripted by the test that owns it."""

    name = "tiingo"
    ws_path = "/crypto"

    def __init__(self, token: str = "test-token", *, heartbeat_interval: float = 10.0) -> None:
        super().__init__(token, heartbeat_interval=heartbeat_interval)
        self.thresholds: dict[int, int] = {}  # connection id -> thresholdLevel
        self._price: dict[str, float] = {}
        self._clock = time.time_ns() // 1000
        self._next_subscription = 4_000_000

    def accept(self, request: Any, path: str) -> int:
        return 200 if path.split("?")[0].rstrip("/") == "/crypto" else 404

    def on_request(self, conn: FeedConnection, message: Any) -> None:
        if not isinstance(message, dict) or message.get("eventName") not in (
            "subscribe",
            "unsubscribe",
        ):
            self._reply(conn, _response("E", 400, "eventName not valid"))
            return
        if message.get("authorization") != self.token:
            self._reply(conn, _response("E", 401, "Invalid token"))
            self._drop(conn)
            return
        data = message.get("eventData") or {}
        tickers = data.get("tickers") or []
        if message["eventName"] == "subscribe":
            try:
                self.thresholds[conn.id] = int(data.get("thresholdLevel", 2))
            except (TypeError, ValueError):
                self._reply(conn, _response("E", 400, "thresholdLevel not valid"))
                return
            conn.subscriptions.update(t.lower() for t in tickers)
            self._next_subscription += 1
            ack = _response("I", 200, "Success")
            ack["data"] = {"subscriptionId": self._next_subscription}
            self._reply(conn, ack)
        else:
            conn.subscriptions.difference_update(t.lower() for t in tickers)

    def heartbeat(self) -> bytes:
        return encode(_response("H", 200, "HeartBeat"))

    def trade(
        self,
        ticker: str,
        exchange: str | None = None,
        *,
        price: float | None = None,
        size: float | None = None,
        date: str | None = None,
    ) -> list[Any]:
        """The `data` array of the next trade of `ticker`, not sent yet."""
        if exchange is None:
            exchange = self.rng.choice(VENUES)
        if price is None:
            last = self._price.get(ticker, 100.0)
            price = self._price[ticker] = self._walk(last)
        if size is None:
            size = round(self.rng.uniform(0.0001, 2.0), 8)
        if date is None:
            self._clock += self.rng.randint(0, 2000)
            date = datetime.fromtimestamp(self._clock / 1e6, UTC).isoformat(timespec="microseconds")
        return ["T", ticker, date, exchange, size, price]

    def send(self, *trades: list[Any]) -> int:
        """Each trade as its own message to every connection subscribed to its ticker."""
        if self.silent:
            return 0
        sent = 0
        for data in trades:
            message = encode({"messageType": "A", "service": "crypto_data", "data": data})
            reached = False
            for conn in self.open_connections():
                if data[1] in conn.subscriptions and self._write(conn, message):
                    reached = True
                    sent += 1
            if reached:
                self.published.append([data])
        return sent

    def send_quote(self, ticker: str, exchange: str = "gdax") -> int:
        """A top-of-book update (what thresholdLevel 2 adds): not a trade."""
        date = datetime.now(UTC).isoformat()
        data = ["Q", ticker, date, exchange, 1.5, 99.0, 99.5, 2.5, 100.0]
        message = encode({"messageType": "A", "service": "crypto_data", "data": data})
        return sum(self._write(c, message) for c in self.open_connections())

    def publish(self, ticker: str, count: int = 1) -> list[list[Any]]:
        trades = [self.trade(ticker) for _ in range(count)]
        self.send(*trades)
        return trades

    def rest(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, Any]:
        if headers.get("Authorization") != f"Token {self.token}":
            return 401, {"detail": f"Invalid token {headers.get('Authorization')}"}
        if path.rstrip("/") == "/tiingo/crypto":
            return 200, TICKERS
        return 404, {"detail": "Not found."}


def _response(kind: str, code: int, message: str) -> dict[str, Any]:
    return {"messageType": kind, "response": {"code": code, "message": message}}
