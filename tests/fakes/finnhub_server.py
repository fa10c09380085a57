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

`FakeFeed` is the part every aggregator fake shares (the Tiingo fake builds on it).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)


@dataclass
class ServerConnection:
    """What the server knows about one client connection."""

    id: int
    path: str
    subscriptions: set[str] = field(default_factory=set)
    transport: WSTransport | None = None
    requests: list[Any] = field(default_factory=list)
    pings_received: int = 0
    heartbeats_sent: int = 0
    closed: bool = False
    authorized: bool = False

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed


class _Listener(WSListener):
    def __init__(self, server: FakeFeed, conn: ServerConnection) -> None:
        super().__init__()
        self.server = server
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.PING:
            self.conn.pings_received += 1
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            try:
                message = json.loads(payload)
            except ValueError:
                message = payload
            self.conn.requests.append(message)
            self.server.on_request(self.conn, message)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.closed = True


class FakeFeed:
    """The WebSocket and REST machinery of an aggregator fake; subclasses add the protocol."""

    name = "fake"

    def __init__(self, token: str, *, heartbeat_interval: float = 10.0, seed: int = 1) -> None:
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.silent = False  # data stops; heartbeats and pongs go on
        self.connections: list[ServerConnection] = []
        self.published: list[list[dict[str, Any]]] = []
        self.rejected: list[int] = []  # statuses of refused upgrades
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self.rng = random.Random(seed)
        self.port = 0
        self.rest_port = 0
        self._drop_countdown: int | None = None
        self._rejects: list[tuple[int, str | None]] = []
        self._rest_rejects: list[tuple[int, str | None]] = []
        self._server: asyncio.Server | None = None
        self._rest: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    ws_path = "/"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    async def start(self) -> FakeFeed:
        self._server = await ws_create_server(
            self._route, "127.0.0.1", 0, enable_auto_pong=False, logger_name=f"fake-{self.name}"
        )
        self.port = self._server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/{path:.*}", self._rest_handler)
        self._rest = web.AppRunner(app, access_log=None)
        await self._rest.setup()
        site = web.TCPSite(self._rest, "127.0.0.1", 0)
        await site.start()
        self.rest_port = self._rest.addresses[0][1]
        self._spawn(self._heartbeat_loop())
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._rest is not None:
            await self._rest.cleanup()
        await asyncio.sleep(0)

    async def __aenter__(self) -> Any:
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

    async def wait_for_subscriptions(
        self, count: int, connection: int = 1, timeout: float = 5.0
    ) -> ServerConnection:
        """Wait until the `connection`-th connection opened (1-based) holds `count`
        subscriptions; return it."""

        def ready() -> bool:
            opened = [c for c in self.connections if c.transport is not None]
            return len(opened) >= connection and len(opened[connection - 1].subscriptions) >= count

        await self.wait_for(ready, timeout)
        return [c for c in self.connections if c.transport is not None][connection - 1]

    # -- faults --------------------------------------------------------------------------

    def drop_after(self, frames: int) -> None:
        """Cut the connection (TCP close, no close frame) once `frames` more frames are out."""
        self._drop_countdown = frames

    def drop_all(self) -> None:
        for conn in self.open_connections():
            self._drop(conn)

    def reject_next(self, status: int = 429, retry_after: str | None = None) -> None:
        self._rejects.append((status, retry_after))

    def reject_rest_next(self, status: int = 429, retry_after: str | None = None) -> None:
        self._rest_rejects.append((status, retry_after))

    def send_raw(self, payload: bytes | str) -> int:
        data = payload.encode() if isinstance(payload, str) else payload
        return sum(self.write(conn, data) for conn in self.open_connections())

    def close_quoting_path(self) -> None:
        """Close every connection with a reason that quotes its request path (and token)."""
        for conn in self.open_connections():
            assert conn.transport is not None
            conn.transport.send_close(WSCloseCode.POLICY_VIOLATION, f"bad {conn.path}".encode())
            self._drop(conn)

    # -- for subclasses ------------------------------------------------------------------

    def accept(self, request: WSUpgradeRequest, path: str) -> int:
        """HTTP status for an upgrade request (200 accepts)."""
        return 200

    def on_request(self, conn: ServerConnection, message: Any) -> None:
        raise NotImplementedError

    def heartbeat(self) -> bytes | None:
        return None

    def rest(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, Any]:
        return 404, {"error": "not found"}

    def write(self, conn: ServerConnection, data: bytes) -> bool:
        if not conn.open:
            return False
        assert conn.transport is not None
        conn.transport.send(WSMsgType.TEXT, data)
        if self._drop_countdown is not None:
            self._drop_countdown -= 1
            if self._drop_countdown <= 0:
                self._drop_countdown = None
                self._drop(conn)
        return True

    def reply(self, conn: ServerConnection, message: Any) -> None:
        if conn.open and conn.transport is not None:
            conn.transport.send(WSMsgType.TEXT, encode(message))

    # -- internals -----------------------------------------------------------------------

    def _drop(self, conn: ServerConnection) -> None:
        conn.closed = True
        if conn.transport is not None:
            conn.transport.disconnect(graceful=True)

    def _route(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        path = request.path.decode()
        status, retry_after = (
            self._rejects.pop(0) if self._rejects else (self.accept(request, path), None)
        )
        if status != 200:
            self.rejected.append(status)
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            body = b'{"error":"refused"}'
            response = WSUpgradeResponse.create_error_response(status, body, headers)
            return WSUpgradeResponseWithListener(response, None)
        conn = ServerConnection(len(self.connections), path)
        self.connections.append(conn)
        return _Listener(self, conn)

    async def _rest_handler(self, request: web.Request) -> web.Response:
        self.rest_requests.append((request.path, dict(request.query)))
        if self._rest_rejects:
            status, retry_after = self._rest_rejects.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response({"error": "rate limited"}, status=status, headers=headers)
        status, body = self.rest(request.path, dict(request.query), request.headers)
        return web.json_response(body, status=status)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            beat = self.heartbeat()
            if beat is None:
                continue
            for conn in self.open_connections():
                if conn.subscriptions and conn.transport is not None:
                    conn.transport.send(WSMsgType.TEXT, beat)
                    conn.heartbeats_sent += 1


def encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


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

    def on_request(self, conn: ServerConnection, message: Any) -> None:
        if not isinstance(message, dict) or message.get("type") not in ("subscribe", "unsubscribe"):
            self.reply(conn, {"type": "error", "msg": "Invalid message"})
            return
        symbol = message.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            self.reply(conn, {"type": "error", "msg": "Invalid symbol"})
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
            price = self._price[symbol] = round(last * (1 + self.rng.uniform(-0.001, 0.001)), 2)
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
            if mine and self.write(conn, encode({"type": "trade", "data": mine})):
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
