"""A local stand-in for OKX's v5 public WebSocket and REST market data, with scripted faults.

It speaks the documented protocol on 127.0.0.1: `/ws/v5/business` (channel `trades-all`, one
trade per push) and `/ws/v5/public` (channel `trades`, one row per taker order and price with
`count`), `{"op": "subscribe", "args": [...]}` answered per argument with
`{"event": "subscribe", "arg": ..., "connId": ...}` or `{"event": "error", "code", "msg"}`, the
text `ping` answered with the text `pong`, and a disconnect after `idle_close` seconds in which
the client sent nothing. REST: `GET /api/v5/market/history-trades` (newest first, `after` =
older than, `before` = newer than the given tradeId, `limit` at most 100) and
`GET /api/v5/public/instruments?instType=SPOT`, both in OKX's `{"code": "0", "msg": "",
"data": [...]}` envelope.

`history[instId]` holds every trade the exchange made (sent or not); `published` every trade
that reached a client as a single trade, in order, repeats included.

Faults: `drop_after(n)` / `drop_all()` cut connections, `silent` stops data while pongs go on,
`send(...)` takes trades in any order and any number of times, `skip(inst, n)` makes trades no
client sees, `send_raw` writes any frame, `notice()` sends the 64008 upgrade notice,
`reject_next(429, retry_after=...)` refuses WebSocket upgrades and
`rest_reject_next(429, retry_after=...)` REST requests.
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

CHANNELS = {"/ws/v5/business": "trades-all", "/ws/v5/public": "trades"}


@dataclass
class ServerConnection:
    """What the server knows about one client connection."""

    id: int
    path: str
    transport: WSTransport | None = None
    subscriptions: set[tuple[str, str]] = field(default_factory=set)  # (channel, instId)
    requests: list[Any] = field(default_factory=list)
    pings: int = 0
    last_rx: float = 0.0
    closed: bool = False
    close_reason: str = ""

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed

    @property
    def conn_id(self) -> str:
        return f"{self.id:08x}"


class _Listener(WSListener):
    def __init__(self, server: FakeOkx, conn: ServerConnection) -> None:
        super().__init__()
        self.server = server
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport
        self.conn.last_rx = time.monotonic()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.conn.last_rx = time.monotonic()
        if frame.msg_type is WSMsgType.TEXT:
            self.server._on_text(self.conn, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            self.conn.close_reason = self.conn.close_reason or "client closed"
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.closed = True


class FakeOkx:
    """OKX spot market data on 127.0.0.1, scripted by the test that owns it."""

    def __init__(
        self,
        instruments: Iterable[str] = ("BTC-USDT", "ETH-USDT"),
        *,
        idle_close: float = 30.0,
        seed: int = 1,
    ) -> None:
        self.instruments = list(instruments)
        self.idle_close = idle_close
        self.silent = False
        self.answer_pings = True
        self.connections: list[ServerConnection] = []
        self.history: dict[str, list[dict[str, str]]] = {i: [] for i in self.instruments}
        self.published: list[dict[str, str]] = []
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self._next_id = {i: 500_000 for i in self.instruments}
        self._price = {i: 100.0 * (n + 1) for n, i in enumerate(self.instruments)}
        self._rng = random.Random(seed)
        self._drop_countdown: int | None = None
        self._ws_rejects: list[tuple[int, str | None]] = []
        self._rest_rejects: list[tuple[int, str | None]] = []
        self._ws_server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.rest_port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The WebSocket base to give a source; it adds `/ws/v5/<business|public>`."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    async def start(self) -> FakeOkx:
        self._ws_server = await ws_create_server(
            self._route, "127.0.0.1", 0, enable_auto_pong=False, logger_name="fake-okx"
        )
        self.port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/api/v5/market/history-trades", self._history_trades)
        app.router.add_get("/api/v5/public/instruments", self._instruments)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.rest_port = self._runner.addresses[0][1]
        task = asyncio.get_running_loop().create_task(self._idle_loop())
        self._tasks.add(task)
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.drop_all("server stopped")
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.sleep(0)

    async def __aenter__(self) -> FakeOkx:
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

    async def wait_connections(self, count: int, timeout: float = 5.0) -> ServerConnection:
        """Wait until `count` connections have opened in total; return the latest of them."""
        opened = lambda: [c for c in self.connections if c.transport is not None]  # noqa: E731
        await self.wait_for(lambda: len(opened()) >= count, timeout)
        return opened()[count - 1]

    async def wait_subscribed(self, count: int, timeout: float = 5.0) -> None:
        """Wait until open connections hold `count` subscriptions in all."""
        await self.wait_for(
            lambda: sum(len(c.subscriptions) for c in self.open_connections()) >= count, timeout
        )

    # -- the exchange --------------------------------------------------------------------

    def trade(
        self, inst_id: str, *, side: str | None = None, price: float | None = None
    ) -> dict[str, str]:
        """Make the next trade of `inst_id` (a REST / trades-all row) without sending it."""
        if price is None:
            price = self._price[inst_id] = round(
                self._price[inst_id] * (1 + self._rng.uniform(-0.001, 0.001)), 2
            )
        trade_id = self._next_id[inst_id]
        self._next_id[inst_id] += 1
        row = {
            "instId": inst_id,
            "tradeId": str(trade_id),
            "px": f"{price:.2f}",
            "sz": f"{round(self._rng.uniform(0.0001, 2.0), 8):.8f}",
            "side": side or self._rng.choice(["buy", "sell"]),
            "source": "0",
            "ts": str(time.time_ns() // 1_000_000),
        }
        self.history[inst_id].append(row)
        return row

    def skip(self, inst_id: str, count: int = 1) -> list[dict[str, str]]:
        """Trades that happen while no client sees them: the gap a source must notice."""
        return [self.trade(inst_id) for _ in range(count)]

    def send(self, *trades: dict[str, str]) -> int:
        """Push trades one per frame to subscribers of either channel (count 1 on `trades`)."""
        if self.silent:
            return 0
        sent = 0
        for row in trades:
            reached = False
            for channel in ("trades-all", "trades"):
                data = dict(row) if channel == "trades-all" else {**row, "count": "1"}
                reached |= self._push(channel, row["instId"], [data]) > 0
            if reached:
                self.published.append(row)
                sent += 1
        return sent

    def publish(self, inst_id: str, **kwargs: Any) -> dict[str, str]:
        row = self.trade(inst_id, **kwargs)
        self.send(row)
        return row

    def publish_taker_order(self, inst_id: str, fills: int) -> tuple[dict[str, str], list]:
        """One taker order filling `fills` makers at one price: one aggregated `trades` row,
        `fills` single trades on `trades-all` and in the REST history."""
        price = self._price[inst_id]
        side = self._rng.choice(["buy", "sell"])
        rows = [self.trade(inst_id, side=side, price=price) for _ in range(fills)]
        total = sum(float(r["sz"]) for r in rows)
        aggregate = {**rows[-1], "sz": f"{total:.8f}", "count": str(fills)}
        self._push("trades", inst_id, [aggregate])
        for row in rows:
            self._push("trades-all", inst_id, [dict(row)])
        return aggregate, rows

    def send_raw(self, payload: bytes | str) -> int:
        data = payload.encode() if isinstance(payload, str) else payload
        return sum(self._write(c, data) for c in self.open_connections())

    def notice(self) -> int:
        """OKX's warning that the connection closes soon for a service upgrade."""
        return sum(
            self._write(c, _encode({"event": "notice", "code": "64008", "msg": "The connection "
                                    "will soon be closed for a service upgrade. Please "
                                    "reconnect.", "connId": c.conn_id}))
            for c in self.open_connections()
        )  # fmt: skip

    async def feed(self, rate: float, count: int) -> None:
        """Publish `count` trades round-robin over the instruments at `rate` per second."""
        start = time.monotonic()
        done = 0
        while done < count:
            due = min(int((time.monotonic() - start) * rate) + 1, count) - done
            for _ in range(max(due, 0)):
                self.publish(self.instruments[done % len(self.instruments)])
                done += 1
            await asyncio.sleep(min(0.01, 1 / rate))

    # -- faults --------------------------------------------------------------------------

    def drop_after(self, frames: int) -> None:
        self._drop_countdown = frames

    def drop_all(self, reason: str = "dropped") -> None:
        for conn in self.open_connections():
            self._drop(conn, reason)

    def reject_next(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        self._ws_rejects.extend([(status, retry_after)] * count)

    def rest_reject_next(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        self._rest_rejects.extend([(status, retry_after)] * count)

    # -- internals -----------------------------------------------------------------------

    def _route(
        self, request: WSUpgradeRequest
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        path = request.path.decode()
        if self._ws_rejects:
            status, retry_after = self._ws_rejects.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            body = b'{"code":"50011","msg":"Too Many Requests"}'
            response = WSUpgradeResponse.create_error_response(status, body, headers)
            return WSUpgradeResponseWithListener(response, None)
        if path not in CHANNELS:
            return None
        conn = ServerConnection(len(self.connections), path)
        self.connections.append(conn)
        return _Listener(self, conn)

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        if payload == b"ping":
            conn.pings += 1
            if self.answer_pings:
                self._write(conn, b"pong", count=False)
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            conn.requests.append(payload)
            self._reply(conn, {"event": "error", "code": "60012", "msg": "Invalid request"})
            return
        conn.requests.append(msg)
        if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe"):
            self._reply(conn, {"event": "error", "code": "60012", "msg": f"Invalid request: {msg}"})
            return
        for arg in msg.get("args", []):
            channel, inst_id = arg.get("channel"), arg.get("instId")
            if channel != CHANNELS[conn.path]:
                self._reply(conn, {"event": "error", "code": "60018",
                                   "msg": f"Wrong URL or channel:{channel},instId:{inst_id} "
                                   "doesn't exist"})  # fmt: skip
                continue
            if inst_id not in self.history:
                self._reply(conn, {"event": "error", "code": "60018",
                                   "msg": f"Wrong URL or channel:{channel},instId:{inst_id} "
                                   "doesn't exist"})  # fmt: skip
                continue
            if msg["op"] == "subscribe":
                conn.subscriptions.add((channel, inst_id))
            else:
                conn.subscriptions.discard((channel, inst_id))
            self._reply(conn, {"event": msg["op"], "arg": arg, "connId": conn.conn_id})

    def _push(self, channel: str, inst_id: str, data: list[dict[str, str]]) -> int:
        if self.silent:
            return 0
        frame = _encode({"arg": {"channel": channel, "instId": inst_id}, "data": data})
        return sum(
            self._write(c, frame)
            for c in self.open_connections()
            if (channel, inst_id) in c.subscriptions
        )

    def _reply(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        self._write(conn, _encode(message), count=False)

    def _write(self, conn: ServerConnection, data: bytes, count: bool = True) -> bool:
        if not conn.open:
            return False
        assert conn.transport is not None
        conn.transport.send(WSMsgType.TEXT, data)
        if count and self._drop_countdown is not None:
            self._drop_countdown -= 1
            if self._drop_countdown <= 0:
                self._drop_countdown = None
                self._drop(conn, "dropped after scripted frame count")
        return True

    def _drop(self, conn: ServerConnection, reason: str) -> None:
        conn.close_reason = conn.close_reason or reason
        conn.closed = True
        if conn.transport is not None:
            conn.transport.disconnect(graceful=True)

    async def _idle_loop(self) -> None:
        """OKX closes a connection that sent nothing for 30 s (no subscribe, no ping)."""
        while True:
            await asyncio.sleep(min(1.0, self.idle_close / 4))
            now = time.monotonic()
            for conn in self.open_connections():
                if now - conn.last_rx > self.idle_close:
                    self._drop(conn, "idle")

    def _reject_rest(self) -> web.Response | None:
        if not self._rest_rejects:
            return None
        status, retry_after = self._rest_rejects.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"code": "50011", "msg": "Too Many Requests", "data": []}
        return web.json_response(body, status=status, headers=headers)

    async def _history_trades(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.rest_requests.append((request.path, query))
        rejected = self._reject_rest()
        if rejected is not None:
            return rejected
        inst_id = query.get("instId", "")
        if inst_id not in self.history:
            return web.json_response({"code": "51001", "msg": "Instrument ID does not exist",
                                      "data": []})  # fmt: skip
        limit = min(int(query.get("limit", "100")), 100)
        rows = self.history[inst_id]
        if "after" in query:
            rows = [r for r in rows if int(r["tradeId"]) < int(query["after"])]
        if "before" in query and "after" not in query:
            rows = [r for r in rows if int(r["tradeId"]) > int(query["before"])]
            page = rows[-limit:]  # with `before` alone OKX returns the latest trades
        else:
            if "before" in query:
                rows = [r for r in rows if int(r["tradeId"]) > int(query["before"])]
            page = rows[-limit:]
        return web.json_response({"code": "0", "msg": "", "data": page[::-1]})

    async def _instruments(self, request: web.Request) -> web.Response:
        self.rest_requests.append((request.path, dict(request.query)))
        rejected = self._reject_rest()
        if rejected is not None:
            return rejected
        if request.query.get("instType") != "SPOT":
            return web.json_response({"code": "51000", "msg": "Parameter instType error",
                                      "data": []})  # fmt: skip
        data = [
            {"instType": "SPOT", "instId": i, "baseCcy": i.split("-")[0],
             "quoteCcy": i.split("-")[1], "state": "live", "tickSz": "0.01", "lotSz": "0.00000001"}
            for i in self.instruments
        ]  # fmt: skip
        return web.json_response({"code": "0", "msg": "", "data": data})


def _encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
