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

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class ServerConnection:
    id: int
    transport: WSTransport | None = None
    channels: set[str] = field(default_factory=set)
    requests: list[Any] = field(default_factory=list)
    heartbeats: int = 0
    closed: bool = False

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed


class _Listener(WSListener):
    def __init__(self, server: FakeBitstamp, conn: ServerConnection) -> None:
        super().__init__()
        self.server = server
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.server._on_text(self.conn, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.closed = True


class FakeBitstamp:
    """Bitstamp on 127.0.0.1, scripted by the test that owns it."""

    def __init__(self, pairs: Iterable[str] = ("btcusd", "ethusd"), seed: int = 1) -> None:
        self.pairs = list(pairs)
        self.silent = False
        self.answer_heartbeats = True
        self.connections: list[ServerConnection] = []
        self.history: dict[str, list[dict[str, Any]]] = {p: [] for p in self.pairs}
        self.published: list[dict[str, Any]] = []  # trade `data` objects that reached a client
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self._next_id = 300_000_000
        self._price = {p: 1000.0 * (n + 1) for n, p in enumerate(self.pairs)}
        self._rng = random.Random(seed)
        self._rest_rejects: list[tuple[int, str | None]] = []
        self._ws_server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.rest_port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    async def start(self) -> FakeBitstamp:
        self._ws_server = await ws_create_server(
            self._route, "127.0.0.1", 0, enable_auto_pong=False, logger_name="fake-bitstamp"
        )
        self.port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/api/v2/transactions/{pair}/", self._transactions)
        app.router.add_get("/api/v2/trading-pairs-info/", self._pairs_info)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.rest_port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.drop_all()
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeBitstamp:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- inspection ----------------------------------------------------------------------

    def open_connections(self) -> list[ServerConnection]:
        return [c for c in self.connections if c.open]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)

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

    def skip(self, pair: str, count: int = 1) -> list[dict[str, Any]]:
        return [self.trade(pair) for _ in range(count)]

    def send(self, pair: str, *trades: dict[str, Any]) -> int:
        if self.silent:
            return 0
        channel = f"live_trades_{pair}"
        sent = 0
        for data in trades:
            frame = _encode({"data": data, "channel": channel, "event": "trade"})
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

    def send_raw(self, payload: bytes | str) -> int:
        data = payload.encode() if isinstance(payload, str) else payload
        return sum(self._write(c, data) for c in self.open_connections())

    def request_reconnect(self) -> int:
        return self.send_raw(_encode({"event": "bts:request_reconnect", "channel": "", "data": ""}))

    def drop_all(self) -> None:
        for conn in self.open_connections():
            conn.closed = True
            assert conn.transport is not None
            conn.transport.disconnect(graceful=True)

    def rest_reject_next(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        self._rest_rejects.extend([(status, retry_after)] * count)

    # -- internals -----------------------------------------------------------------------

    def _route(self, request: WSUpgradeRequest) -> WSListener | None:
        conn = ServerConnection(len(self.connections))
        self.connections.append(conn)
        return _Listener(self, conn)

    def _write(self, conn: ServerConnection, data: bytes) -> bool:
        if not conn.open:
            return False
        assert conn.transport is not None
        conn.transport.send(WSMsgType.TEXT, data)
        return True

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
                self._write(conn, _encode({"event": "bts:heartbeat", "channel": "",
                                           "data": {"status": "success"}}))  # fmt: skip
        elif event in ("bts:subscribe", "bts:unsubscribe"):
            channel = msg.get("data", {}).get("channel", "")
            if not channel.startswith("live_trades_") or channel[12:] not in self.history:
                self._write(conn, _encode({"event": "bts:error", "channel": "", "data": {
                    "code": None, "message": "Bad subscription string."}}))  # fmt: skip
                return
            if event == "bts:subscribe":
                conn.channels.add(channel)
                reply = "bts:subscription_succeeded"
            else:
                conn.channels.discard(channel)
                reply = "bts:unsubscription_succeeded"
            self._write(conn, _encode({"event": reply, "channel": channel, "data": {}}))
        else:
            self._write(conn, _encode({"event": "bts:error", "channel": "", "data": {
                "code": None, "message": "Incorrect JSON format."}}))  # fmt: skip

    def _rejected(self) -> web.Response | None:
        if not self._rest_rejects:
            return None
        status, retry_after = self._rest_rejects.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return web.json_response({"status": "error", "reason": "Rate limit exceeded"},
                                 status=status, headers=headers)  # fmt: skip

    async def _transactions(self, request: web.Request) -> web.Response:
        pair = request.match_info["pair"]
        self.rest_requests.append((request.path, dict(request.query)))
        rejected = self._rejected()
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
        rejected = self._rejected()
        if rejected is not None:
            return rejected
        rows = [
            {"name": f"{p[:-3].upper()}/{p[-3:].upper()}", "url_symbol": p, "base_decimals": 8,
             "counter_decimals": 2, "minimum_order": "10.0 USD", "trading": "Enabled",
             "instant_and_market_orders": "Enabled", "description": p}
            for p in self.pairs
        ]  # fmt: skip
        return web.json_response(rows)


def _encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
