"""A local stand-in for Bybit spot: the v5 public WebSocket and REST market data, with faults.

WebSocket (`ws://127.0.0.1:<port>/v5/public/spot`), as Bybit's v5 docs describe it:
`{"op": "subscribe", "args": [...]}` with at most 10 args a request (more is refused), answered
`{"success": true, "ret_msg": "subscribe", "conn_id": ..., "req_id": ..., "op": "subscribe"}`
(or `success: false` for an unknown topic); `{"op": "ping"}` answered
`{"success": true, "ret_msg": "pong", "conn_id": ..., "op": "ping"}`; a connection that sent no
ping within `ping_deadline` seconds is cut; trades as `{"topic": "publicTrade.BTCUSDT",
"type": "snapshot", "ts": ..., "data": [{"T", "s", "S", "v", "p", "i", "BT", "RPI", "seq"}]}`
with ids from one counter shared by all symbols (so not consecutive per symbol), as on spot.

REST (`http://127.0.0.1:<rest_port>`): `GET /v5/market/recent-trade?category=spot&symbol=&limit=`
(the newest `limit` trades, at most 60, newest first) and `GET /v5/market/instruments-info`.

`history` holds each trade the exchange made (sent or not), `published` each trade written to a
client. Faults: `drop_after(n)`, `drop_all()`, `silent`, `send(...)` in any order and any number
of times, `skip(symbol, n)`, `send_raw`, `reject_next(429, ...)` on upgrades,
`rest_reject_next(429, retry_after=...)` on REST.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from picows import WSUpgradeRequest

from .base import FakeExchange, RestHandler, encode
from .base import ServerConnection as BaseConnection

QUOTES = ("USDT", "USDC", "BTC", "EUR")


def split_symbol(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(symbol)


@dataclass
class ServerConnection(BaseConnection):
    topics: set[str] = field(default_factory=set)
    last_ping: float = 0.0
    app_pings: int = 0

    @property
    def conn_id(self) -> str:
        return f"cejreassvfrsfvb9v1a0-{self.id}m"


class FakeBybit(FakeExchange):
    """Bybit spot v5 public WebSocket and REST on 127.0.0.1, scripted by the test."""

    name = "bybit"
    connection_type = ServerConnection
    ws_path = "/v5/public/spot"
    upgrade_refusal = b"Too many visits"
    rest_refusal = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}
    raw_frames_count = False  # `drop_after` counts trade messages

    def __init__(
        self,
        symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
        *,
        ping_deadline: float = 600.0,
        seed: int = 1,
    ) -> None:
        self.symbols = list(symbols)
        super().__init__(self.symbols, seed=seed)
        self.ping_deadline = ping_deadline
        self.rest_requests: list[dict[str, str]] = []
        self._next_id = 2_290_000_000_036_455_162
        self._price = {s: 100.0 * (n + 1) for n, s in enumerate(self.symbols)}
        self._seq = 1_783_284_617

    # -- what tests inspect --------------------------------------------------------------

    async def wait_subscribed(self, count: int, timeout: float = 5.0) -> ServerConnection:
        """Wait until `count` connections have subscribed in total; return the latest."""
        return await self.wait_connections(count, timeout, where=lambda c: bool(c.topics))

    # -- the exchange --------------------------------------------------------------------

    def trade(self, symbol: str, *, side: str | None = None) -> dict[str, Any]:
        """Make the next trade of `symbol` (a `publicTrade` data object) without sending it."""
        self._price[symbol] = self._walk(self._price[symbol])
        # Ids come from one counter for all symbols, with holes, as on Bybit spot.
        self._next_id += self._rng.randint(1, 3)
        self._seq += 1
        event = {
            "T": time.time_ns() // 1_000_000,
            "s": symbol,
            "S": side or self._rng.choice(["Buy", "Sell"]),
            "v": f"{self._rng.uniform(0.0001, 2.0):.6f}",
            "p": f"{self._price[symbol]:.2f}",
            "i": str(self._next_id),
            "BT": False,
            "RPI": False,
            "seq": self._seq,
        }
        self.history[symbol].append(event)
        return event

    def send(self, *trades: dict[str, Any], per_message: int = 1) -> int:
        """Write trades, `per_message` to a message per topic, to every subscribed connection."""
        if self.silent:
            return 0
        sent = 0
        for i in range(0, len(trades), per_message):
            chunk = trades[i : i + per_message]
            for conn in self.open_connections():
                by_topic: dict[str, list[dict[str, Any]]] = {}
                for t in chunk:
                    topic = f"publicTrade.{t['s']}"
                    if topic in conn.topics:
                        by_topic.setdefault(topic, []).append(t)
                for topic, mine in by_topic.items():
                    message = {
                        "topic": topic,
                        "type": "snapshot",
                        "ts": time.time_ns() // 1_000_000,
                        "data": mine,
                    }
                    if self._put(conn, message):
                        self.published.extend(mine)
                        sent += 1
                        self._count_down(conn, "message")
        return sent

    async def feed(self, rate: float, count: int) -> None:
        await self._pace(rate, count, lambda n: self.publish(self.symbols[n % len(self.symbols)]))

    # -- internals: WebSocket ------------------------------------------------------------

    def _connect(self, request: WSUpgradeRequest, path: str) -> ServerConnection | None:
        return super()._connect(request, path) if path.rstrip("/") == self.ws_path else None

    def _on_connected(self, conn: ServerConnection) -> None:
        conn.last_ping = time.monotonic()

    def _put(self, conn: ServerConnection, message: Any) -> bool:
        """Any message (not a step of `drop_after`, which counts trade messages)."""
        return self._write(conn, encode(message), count=False)

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            conn.requests.append(payload)
            return
        conn.requests.append(msg)
        op = msg.get("op") if isinstance(msg, dict) else None
        reply: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": conn.conn_id}
        if isinstance(msg, dict) and "req_id" in msg:
            reply["req_id"] = msg["req_id"]
        if op == "ping":
            conn.app_pings += 1
            conn.last_ping = time.monotonic()
            self._put(conn, {**reply, "ret_msg": "pong", "op": "ping"})
        elif op == "subscribe":
            args = msg.get("args") or []
            if len(args) > 10:
                self._put(conn, {**reply, "success": False, "ret_msg": "args size >10", "op": op})
                return
            unknown = [a for a in args if a.split(".", 1)[-1] not in self.history]
            if unknown:
                text = f"Invalid symbol :[{','.join(unknown)}]"
                self._put(conn, {**reply, "success": False, "ret_msg": text, "op": op})
                args = [a for a in args if a not in unknown]
            conn.topics.update(args)
            if not unknown:
                self._put(conn, {**reply, "ret_msg": "subscribe", "op": op})
        else:
            self._put(conn, {**reply, "success": False, "ret_msg": f"unknown op {op}"})

    def _tick(self) -> float:
        return min(self.ping_deadline / 4, 1.0)

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        """Cut connections that stopped pinging (Bybit's rule, at a scripted deadline)."""
        if now - conn.last_ping > self.ping_deadline:
            self._drop(conn, "no ping")

    # -- internals: REST -----------------------------------------------------------------

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [
            ("/v5/market/recent-trade", self._rest_recent_trades),
            ("/v5/market/instruments-info", self._rest_instruments),
        ]

    async def _rest_recent_trades(self, request: web.Request) -> web.Response:
        self.rest_requests.append(dict(request.query))
        refusal = self._rest_refusal()
        if refusal is not None:
            return refusal
        symbol = request.query.get("symbol", "")
        if request.query.get("category") != "spot" or symbol not in self.history:
            return web.json_response(
                {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}}
            )
        limit = min(int(request.query.get("limit", "60")), 60)
        newest = list(reversed(self.history[symbol][-limit:]))
        rows = [
            {
                "execId": t["i"],
                "symbol": t["s"],
                "price": t["p"],
                "size": t["v"],
                "side": t["S"],
                "time": str(t["T"]),
                "isBlockTrade": False,
                "isRPITrade": False,
                "seq": str(t["seq"]),
            }
            for t in newest
        ]
        return _listing(rows)

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        self.rest_requests.append(dict(request.query))
        refusal = self._rest_refusal()
        if refusal is not None:
            return refusal
        rows = []
        for symbol in self.symbols:
            base, quote = split_symbol(symbol)
            rows.append(
                {
                    "symbol": symbol,
                    "baseCoin": base,
                    "quoteCoin": quote,
                    "innovation": "0",
                    "status": "Trading",
                    "marginTrading": "both",
                }
            )
        return _listing(rows)


def _listing(rows: list[dict[str, Any]]) -> web.Response:
    """Bybit's v5 envelope around a spot `list`."""
    return web.json_response(
        {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": "spot", "list": rows},
            "retExtInfo": {},
            "time": time.time_ns() // 1_000_000,
        }
    )
