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
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

QUOTES = ("USDT", "USDC", "BTC", "EUR")


def split_symbol(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(symbol)


@dataclass
class ServerConnection:
    id: int
    topics: set[str] = field(default_factory=set)
    transport: WSTransport | None = None
    requests: list[Any] = field(default_factory=list)
    last_ping: float = 0.0
    app_pings: int = 0
    closed: bool = False
    close_reason: str = ""

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed

    @property
    def conn_id(self) -> str:
        return f"cejreassvfrsfvb9v1a0-{self.id}m"


class _Listener(WSListener):
    def __init__(self, server: FakeBybit, conn: ServerConnection) -> None:
        super().__init__()
        self.server = server
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport
        self.conn.last_ping = time.monotonic()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            self.conn.close_reason = self.conn.close_reason or "client closed"
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is WSMsgType.TEXT:
            self.server._on_request(self.conn, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.closed = True


class FakeBybit:
    """Bybit spot v5 public WebSocket and REST on 127.0.0.1, scripted by the test."""

    def __init__(
        self,
        symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
        *,
        ping_deadline: float = 600.0,
        seed: int = 1,
    ) -> None:
        self.symbols = list(symbols)
        self.ping_deadline = ping_deadline
        self.silent = False
        self.connections: list[ServerConnection] = []
        self.history: dict[str, list[dict[str, Any]]] = {s: [] for s in self.symbols}
        self.published: list[dict[str, Any]] = []
        self.rest_requests: list[dict[str, str]] = []
        self._next_id = 2_290_000_000_036_455_162
        self._price = {s: 100.0 * (n + 1) for n, s in enumerate(self.symbols)}
        self._rng = random.Random(seed)
        self._seq = 1_783_284_617
        self._drop_countdown: int | None = None
        self._rejects: list[tuple[int, str | None]] = []
        self._rest_rejects: list[tuple[int, str | None]] = []
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.rest_port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v5/public/spot"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    async def start(self) -> FakeBybit:
        self._server = await ws_create_server(
            self._route, "127.0.0.1", 0, enable_auto_pong=False, logger_name="fake-bybit"
        )
        self.port = self._server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/v5/market/recent-trade", self._rest_recent_trades)
        app.router.add_get("/v5/market/instruments-info", self._rest_instruments)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.rest_port = self._runner.addresses[0][1]
        task = asyncio.get_running_loop().create_task(self._ping_watch())
        self._tasks.add(task)
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.drop_all("server stopped")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.sleep(0)

    async def __aenter__(self) -> FakeBybit:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- what tests inspect --------------------------------------------------------------

    def open_connections(self) -> list[ServerConnection]:
        return [c for c in self.connections if c.open]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)

    async def wait_subscribed(self, count: int, timeout: float = 5.0) -> ServerConnection:
        """Wait until `count` connections have subscribed in total; return the latest."""

        def subscribed() -> list[ServerConnection]:
            return [c for c in self.connections if c.topics]

        await self.wait_for(lambda: len(subscribed()) >= count, timeout)
        return subscribed()[count - 1]

    # -- the exchange --------------------------------------------------------------------

    def trade(self, symbol: str, *, side: str | None = None) -> dict[str, Any]:
        """Make the next trade of `symbol` (a `publicTrade` data object) without sending it."""
        self._price[symbol] = round(self._price[symbol] * (1 + self._rng.uniform(-1e-3, 1e-3)), 2)
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

    def skip(self, symbol: str, count: int = 1) -> list[dict[str, Any]]:
        return [self.trade(symbol) for _ in range(count)]

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
                    if self._write(conn, message):
                        self.published.extend(mine)
                        sent += 1
                        self._count_down(conn)
        return sent

    def publish(self, symbol: str, **trade: Any) -> dict[str, Any]:
        event = self.trade(symbol, **trade)
        self.send(event)
        return event

    def send_raw(self, payload: bytes | str) -> int:
        data = payload.encode() if isinstance(payload, str) else payload
        for conn in self.open_connections():
            assert conn.transport is not None
            conn.transport.send(WSMsgType.TEXT, data)
        return len(self.open_connections())

    async def feed(self, rate: float, count: int) -> None:
        start = time.monotonic()
        done = 0
        while done < count:
            due = min(int((time.monotonic() - start) * rate) + 1 - done, count - done)
            for _ in range(max(due, 0)):
                self.publish(self.symbols[done % len(self.symbols)])
                done += 1
            await asyncio.sleep(min(0.01, 1 / rate))

    # -- faults --------------------------------------------------------------------------

    def drop_after(self, messages: int) -> None:
        self._drop_countdown = messages

    def drop_all(self, reason: str = "dropped") -> None:
        for conn in self.open_connections():
            self._drop(conn, reason)

    def reject_next(self, status: int = 429, retry_after: str | None = None) -> None:
        self._rejects.append((status, retry_after))

    def rest_reject_next(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        self._rest_rejects.extend([(status, retry_after)] * count)

    # -- internals: WebSocket ------------------------------------------------------------

    def _route(
        self, request: WSUpgradeRequest
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        if self._rejects:
            status, retry_after = self._rejects.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            response = WSUpgradeResponse.create_error_response(status, b"Too many visits", headers)
            return WSUpgradeResponseWithListener(response, None)
        if request.path.decode().rstrip("/") != "/v5/public/spot":
            return None
        conn = ServerConnection(len(self.connections))
        self.connections.append(conn)
        return _Listener(self, conn)

    def _write(self, conn: ServerConnection, message: Any) -> bool:
        if not conn.open:
            return False
        assert conn.transport is not None
        conn.transport.send(WSMsgType.TEXT, json.dumps(message, separators=(",", ":")).encode())
        return True

    def _count_down(self, conn: ServerConnection) -> None:
        if self._drop_countdown is not None:
            self._drop_countdown -= 1
            if self._drop_countdown <= 0:
                self._drop_countdown = None
                self._drop(conn, "dropped after scripted message count")

    def _drop(self, conn: ServerConnection, reason: str) -> None:
        conn.close_reason = conn.close_reason or reason
        conn.closed = True
        if conn.transport is not None:
            conn.transport.disconnect(graceful=True)

    def _on_request(self, conn: ServerConnection, payload: bytes) -> None:
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
            self._write(conn, {**reply, "ret_msg": "pong", "op": "ping"})
        elif op == "subscribe":
            args = msg.get("args") or []
            if len(args) > 10:
                self._write(conn, {**reply, "success": False, "ret_msg": "args size >10", "op": op})
                return
            unknown = [a for a in args if a.split(".", 1)[-1] not in self.history]
            if unknown:
                text = f"Invalid symbol :[{','.join(unknown)}]"
                self._write(conn, {**reply, "success": False, "ret_msg": text, "op": op})
                args = [a for a in args if a not in unknown]
            conn.topics.update(args)
            if not unknown:
                self._write(conn, {**reply, "ret_msg": "subscribe", "op": op})
        else:
            self._write(conn, {**reply, "success": False, "ret_msg": f"unknown op {op}"})

    async def _ping_watch(self) -> None:
        """Cut connections that stopped pinging (Bybit's rule, at a scripted deadline)."""
        while True:
            await asyncio.sleep(min(self.ping_deadline / 4, 1.0))
            now = time.monotonic()
            for conn in self.open_connections():
                if now - conn.last_ping > self.ping_deadline:
                    self._drop(conn, "no ping")

    # -- internals: REST -----------------------------------------------------------------

    def _refusal(self) -> web.Response | None:
        if not self._rest_rejects:
            return None
        status, retry_after = self._rest_rejects.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}
        return web.json_response(body, status=status, headers=headers)

    async def _rest_recent_trades(self, request: web.Request) -> web.Response:
        self.rest_requests.append(dict(request.query))
        refusal = self._refusal()
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
        return web.json_response(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": {"category": "spot", "list": rows},
                "retExtInfo": {},
                "time": time.time_ns() // 1_000_000,
            }
        )

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        self.rest_requests.append(dict(request.query))
        refusal = self._refusal()
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
        return web.json_response(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": {"category": "spot", "list": rows},
                "retExtInfo": {},
                "time": time.time_ns() // 1_000_000,
            }
        )
