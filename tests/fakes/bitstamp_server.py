"""A local stand-in for Bitstamp's WebSocket v2 and REST API, with scripted faults.

On 127.0.0.1 it answers `{"event": "bts:subscribe", "data": {"channel": "live_trades_btcusd"}}`
with `bts:subscription_succeeded`, the client's `{"event": "bts:heartbeat"}` with
`{"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}}`, pushes trade events
in the documented shape, and serves `GET /api/v2/transactions/{pair}/?time=minute|hour|day` and
`GET /api/v2/trading-pairs-info/`. Trade ids are global across pairs, as on Bitstamp.

Faults: `drop_all()`, `silent`, `send(...)` in any order and repeats, `skip(pair, n)`,
`send_raw`, `request_reconnect()`, `rest_reject_next(429, retry_after=...)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import FakeExchange, RestHandler, encode
from .base import ServerConnection as BaseConnection

WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class ServerConnection(BaseConnection):
    channels: set[str] = field(default_factory=set)
    heartbeats: int = 0  # the client's bts:heartbeat requests


class FakeBitstamp(FakeExchange):
    """Bitstamp on 127.0.0.1, scripted by the test that owns it."""

    name = "bitstamp"
    connection_type = ServerConnection
    rest_refusal = {"status": "error", "reason": "Rate limit exceeded"}

    def __init__(self, pairs: Iterable[str] = ("btcusd", "ethusd"), seed: int = 1) -> None:
        self.pairs = list(pairs)
        super().__init__(self.pairs, seed=seed)
        self.answer_heartbeats = True
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self._next_id = 300_000_000
        self._price = {p: 1000.0 * (n + 1) for n, p in enumerate(self.pairs)}

    # -- inspection ----------------------------------------------------------------------

    async def wait_subscribed(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(
            lambda: sum(len(c.channels) for c in self.open_connections()) >= count, timeout
        )

    # -- the exchange --------------------------------------------------------------------

    def trade(self, pair: str, *, taker: int | None = None) -> dict[str, Any]:
        """The next trade of `pair` (a trade event's `data`), not sent. Ids are global, and
        other pairs' trades (not modelled) take ids too, so a pair's ids skip."""
        self._next_id += self._rng.randint(1, 5)
        price = self._price[pair] = round(self._price[pair] * self._rng.uniform(0.999, 1.001), 2)
        amount = round(self._rng.uniform(0.0001, 2.0), 8)
        micros = time.time_ns() // 1000
        data = {
            "id": self._next_id,
            "timestamp": str(micros // 1_000_000),
            "amount": amount,
            "amount_str": f"{amount:.8f}",
            "price": price,
            "price_str": f"{price:.2f}",
            "type": self._rng.randint(0, 1) if taker is None else taker,
            "microtimestamp": str(micros),
            "buy_order_id": self._rng.randint(10**15, 10**16),
            "sell_order_id": self._rng.randint(10**15, 10**16),
        }
        self.history[pair].append(data)
        return data

    def send(self, pair: str, *trades: dict[str, Any]) -> int:
        if self.silent:
            return 0
        channel = f"live_trades_{pair}"
        sent = 0
        for data in trades:
            frame = encode({"data": data, "channel": channel, "event": "trade"})
            reached = [
                self._write(c, frame) for c in self.open_connections() if channel in c.channels
            ]
            if any(reached):
                self.published.append(data)
                sent += 1
        return sent

    def publish(self, pair: str, **kwargs: Any) -> dict[str, Any]:
        data = self.trade(pair, **kwargs)
        self.send(pair, data)
        return data

    def request_reconnect(self) -> int:
        return self.send_raw(encode({"event": "bts:request_reconnect", "channel": "", "data": ""}))

    # -- internals -----------------------------------------------------------------------

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        conn.requests.append(msg)
        event = msg.get("event") if isinstance(msg, dict) else None
        if event == "bts:heartbeat":
            conn.heartbeats += 1
            if self.answer_heartbeats:
                self._reply(conn, {"event": "bts:heartbeat", "channel": "",
                                   "data": {"status": "success"}})  # fmt: skip
        elif event in ("bts:subscribe", "bts:unsubscribe"):
            channel = msg.get("data", {}).get("channel", "")
            if not channel.startswith("live_trades_") or channel[12:] not in self.history:
                self._reply(conn, {"event": "bts:error", "channel": "", "data": {
                    "code": None, "message": "Bad subscription string."}})  # fmt: skip
                return
            if event == "bts:subscribe":
                conn.channels.add(channel)
                reply = "bts:subscription_succeeded"
            else:
                conn.channels.discard(channel)
                reply = "bts:unsubscription_succeeded"
            self._reply(conn, {"event": reply, "channel": channel, "data": {}})
        else:
            self._reply(conn, {"event": "bts:error", "channel": "", "data": {
                "code": None, "message": "Incorrect JSON format."}})  # fmt: skip

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [
            ("/api/v2/transactions/{pair}/", self._transactions),
            ("/api/v2/trading-pairs-info/", self._pairs_info),
        ]

    async def _transactions(self, request: web.Request) -> web.Response:
        pair = request.match_info["pair"]
        self.rest_requests.append((request.path, dict(request.query)))
        rejected = self._rest_refusal()
        if rejected is not None:
            return rejected
        if pair not in self.history:
            return web.json_response({"status": "error", "reason": "Invalid pair"}, status=404)
        since = time.time() - WINDOWS[request.query.get("time", "hour")]
        rows = [
            {"date": t["timestamp"], "tid": str(t["id"]), "amount": t["amount_str"],
             "type": str(t["type"]), "price": t["price_str"]}
            for t in reversed(self.history[pair])
            if int(t["timestamp"]) >= since
        ]  # fmt: skip
        return web.json_response(rows)

    async def _pairs_info(self, request: web.Request) -> web.Response:
        self.rest_requests.append((request.path, dict(request.query)))
        rejected = self._rest_refusal()
        if rejected is not None:
            return rejected
        rows = [
            {"name": f"{p[:-3].upper()}/{p[-3:].upper()}", "url_symbol": p, "base_decimals": 8,
             "counter_decimals": 2, "minimum_order": "10.0 USD", "trading": "Enabled",
             "instant_and_market_orders": "Enabled", "description": p}
            for p in self.pairs
        ]  # fmt: skip
        return web.json_response(rows)
