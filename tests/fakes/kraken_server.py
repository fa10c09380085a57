"""A local stand-in for Kraken spot: the public WebSocket v2 and the REST market data, with faults.

WebSocket (`ws://127.0.0.1:<port>/v2`), as Kraken's v2 docs describe it: a `status` update on
connect; `subscribe` requests for the `trade` channel answered with one ack per symbol
(`{"method": "subscribe", "result": {...}, "success": true, "time_in", "time_out"}`, or
`success: false` with an `error` for an unknown pair), then the last 50 trades as a `snapshot`
when asked; trades as `{"channel": "trade", "type": "update", "data": [...]}` with numeric
`price`/`qty`, integer `trade_id` (consecutive per pair) and RFC 3339 `timestamp`; a
`{"channel": "heartbeat"}` after each quiet second (`heartbeat_interval`); `{"method": "ping"}`
answered with a `pong`; protocol pings answered with pongs.

REST (`http://127.0.0.1:<rest_port>`): `GET /0/public/Trades?pair=&since=&count=` (entries
`[price, volume, time, "b"|"s", "m"|"l", misc, trade_id]`, keyed by the internal pair name, with
`last` as the next nanosecond cursor) and `GET /0/public/AssetPairs`.

It remembers every trade: `history` holds each trade the exchange made (sent or not), and
`published` each trade written to a client (snapshots included), in order, repeats included.

Faults: `drop_after(n)`, `drop_all()`, `silent` (no trades; heartbeats and pongs go on),
`send(...)` in any order and any number of times, `skip(symbol, n)` (a gap), `send_raw`,
`reject_next(429, retry_after=...)` on upgrades, `rest_reject_next(429, retry_after=...)` on
REST, `rest_history_from` (older trades are gone from REST).
"""

from __future__ import annotations

import asyncio
import datetime as dt
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

LEGACY = {"BTC": "XBT", "DOGE": "XDG"}


def rfc3339(micros: int) -> str:
    """Kraken's v2 timestamp form, `2023-09-25T07:48:36.925533Z`."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pair_names(wsname: str) -> tuple[str, str, str]:
    """(internal key, altname, legacy wsname) of a v2 pair: BTC/USD -> XXBTZUSD, XBTUSD, XBT/USD."""
    base, quote = wsname.split("/")
    base, quote = LEGACY.get(base, base), LEGACY.get(quote, quote)
    key = (f"X{base}" if len(base) == 3 else base) + (f"Z{quote}" if len(quote) == 3 else quote)
    return key, base + quote, f"{base}/{quote}"


@dataclass
class ServerConnection:
    id: int
    symbols: set[str] = field(default_factory=set)
    transport: WSTransport | None = None
    requests: list[Any] = field(default_factory=list)
    trades_sent: list[dict[str, Any]] = field(default_factory=list)
    frames_sent: int = 0
    last_sent: float = 0.0
    app_pings: int = 0
    pings_received: int = 0
    closed: bool = False
    close_reason: str = ""

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed


class _Listener(WSListener):
    def __init__(self, server: FakeKraken, conn: ServerConnection) -> None:
        super().__init__()
        self.server = server
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport
        status = {
            "channel": "status",
            "data": [
                {
                    "api_version": "v2",
                    "connection_id": 13834774380200032777 + self.conn.id,
                    "system": "online",
                    "version": "2.0.0",
                }
            ],
            "type": "update",
        }
        self.server._write(self.conn, status)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.PING:
            self.conn.pings_received += 1
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            self.conn.close_reason = self.conn.close_reason or "client closed"
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is WSMsgType.TEXT:
            self.server._on_request(self.conn, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.closed = True


class FakeKraken:
    """Kraken spot v2 WebSocket and REST on 127.0.0.1, scripted by the test that owns it."""

    def __init__(
        self,
        symbols: Iterable[str] = ("BTC/USD", "ETH/USD"),
        *,
        heartbeat_interval: float = 1.0,
        snapshot_size: int = 50,
        seed: int = 1,
    ) -> None:
        self.symbols = list(symbols)
        self.heartbeat_interval = heartbeat_interval
        self.snapshot_size = snapshot_size
        self.silent = False
        self.connections: list[ServerConnection] = []
        self.history: dict[str, list[dict[str, Any]]] = {s: [] for s in self.symbols}
        self.published: list[dict[str, Any]] = []
        self.rest_requests: list[dict[str, str]] = []
        self.rest_history_from: dict[str, int] = {}  # symbol -> oldest trade id REST still has
        self.rest_page_limit = 1000
        self._next_id = {s: 4_665_846 + 1000 * n for n, s in enumerate(self.symbols)}
        self._last_us = {s: 0 for s in self.symbols}
        self._price = {s: 100.0 * (n + 1) for n, s in enumerate(self.symbols)}
        self._rng = random.Random(seed)
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
        return f"ws://127.0.0.1:{self.port}/v2"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    async def start(self) -> FakeKraken:
        self._server = await ws_create_server(
            self._route, "127.0.0.1", 0, enable_auto_pong=False, logger_name="fake-kraken"
        )
        self.port = self._server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/0/public/Trades", self._rest_trades)
        app.router.add_get("/0/public/AssetPairs", self._rest_asset_pairs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.rest_port = self._runner.addresses[0][1]
        task = asyncio.get_running_loop().create_task(self._heartbeat_loop())
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

    async def __aenter__(self) -> FakeKraken:
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
            return [c for c in self.connections if c.symbols]

        await self.wait_for(lambda: len(subscribed()) >= count, timeout)
        return subscribed()[count - 1]

    # -- the exchange --------------------------------------------------------------------

    def trade(
        self,
        symbol: str,
        *,
        side: str | None = None,
        price: float | None = None,
        qty: float | None = None,
    ) -> dict[str, Any]:
        """Make the next trade of `symbol` (a v2 trade object) without sending it."""
        if price is None:
            price = self._price[symbol] = round(
                self._price[symbol] * (1 + self._rng.uniform(-0.001, 0.001)), 2
            )
        micros = max(time.time_ns() // 1000, self._last_us[symbol] + 1)
        self._last_us[symbol] = micros
        trade_id = self._next_id[symbol]
        self._next_id[symbol] += 1
        event = {
            "symbol": symbol,
            "side": side or self._rng.choice(["buy", "sell"]),
            "price": price,
            "qty": qty if qty is not None else round(self._rng.uniform(0.0001, 2.0), 8),
            "ord_type": self._rng.choice(["limit", "market"]),
            "trade_id": trade_id,
            "timestamp": rfc3339(micros),
            "_us": micros,  # not sent: the REST answer's time
        }
        self.history[symbol].append(event)
        return event

    def skip(self, symbol: str, count: int = 1) -> list[dict[str, Any]]:
        """Trades that happen but never reach a client: the gap a source must notice."""
        return [self.trade(symbol) for _ in range(count)]

    def send(self, *trades: dict[str, Any], per_message: int = 1) -> int:
        """Write trades to every subscribed connection, `per_message` to a message, in the
        order given (repeats are duplicates, disorder is reordering); returns messages sent."""
        if self.silent:
            return 0
        sent = 0
        for i in range(0, len(trades), per_message):
            chunk = trades[i : i + per_message]
            for conn in self.open_connections():
                mine = [t for t in chunk if t["symbol"] in conn.symbols]
                if mine and self._send_trades(conn, "update", mine):
                    sent += 1
        return sent

    def publish(self, symbol: str, **trade: Any) -> dict[str, Any]:
        event = self.trade(symbol, **trade)
        self.send(event)
        return event

    def send_raw(self, payload: bytes | str) -> int:
        data = payload.encode() if isinstance(payload, str) else payload
        sent = 0
        for conn in self.open_connections():
            assert conn.transport is not None
            conn.transport.send(WSMsgType.TEXT, data)
            conn.frames_sent += 1
            sent += 1
        return sent

    async def feed(self, rate: float, count: int) -> None:
        """Publish `count` trades round-robin over `symbols` at `rate` per second."""
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
        """Cut the connection (no close frame) once `messages` more trade messages are out."""
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
            response = WSUpgradeResponse.create_error_response(
                status, b"Too many requests", headers
            )
            return WSUpgradeResponseWithListener(response, None)
        if request.path.decode().rstrip("/") != "/v2":
            return None
        conn = ServerConnection(len(self.connections))
        self.connections.append(conn)
        return _Listener(self, conn)

    def _write(self, conn: ServerConnection, message: Any) -> bool:
        if not conn.open:
            return False
        assert conn.transport is not None
        conn.transport.send(WSMsgType.TEXT, json.dumps(message, separators=(",", ":")).encode())
        conn.frames_sent += 1
        conn.last_sent = time.monotonic()
        return True

    def _send_trades(self, conn: ServerConnection, kind: str, trades: list[dict]) -> bool:
        data = [{k: v for k, v in t.items() if k != "_us"} for t in trades]
        if not self._write(conn, {"channel": "trade", "type": kind, "data": data}):
            return False
        conn.trades_sent.extend(trades)
        self.published.extend(trades)
        if self._drop_countdown is not None:
            self._drop_countdown -= 1
            if self._drop_countdown <= 0:
                self._drop_countdown = None
                self._drop(conn, "dropped after scripted message count")
        return True

    def _drop(self, conn: ServerConnection, reason: str) -> None:
        conn.close_reason = conn.close_reason or reason
        conn.closed = True
        if conn.transport is not None:
            conn.transport.disconnect(graceful=True)

    def _on_request(self, conn: ServerConnection, payload: bytes) -> None:
        time_in = rfc3339(time.time_ns() // 1000)
        try:
            msg = json.loads(payload)
        except ValueError:
            conn.requests.append(payload)
            self._write(conn, {"error": "Malformed request", "success": False})
            return
        conn.requests.append(msg)
        method = msg.get("method") if isinstance(msg, dict) else None
        reply: dict[str, Any] = {"method": method, "time_in": time_in}
        if isinstance(msg, dict) and "req_id" in msg:
            reply["req_id"] = msg["req_id"]
        if method == "ping":
            conn.app_pings += 1
            reply["method"] = "pong"
            self._write(conn, {**reply, "time_out": rfc3339(time.time_ns() // 1000)})
        elif method == "subscribe":
            params = msg.get("params") or {}
            snapshot = bool(params.get("snapshot", False))
            for symbol in params.get("symbol") or []:
                out = {**reply, "time_out": rfc3339(time.time_ns() // 1000)}
                if params.get("channel") != "trade" or symbol not in self.history:
                    out.update(error=f"Currency pair not supported {symbol}", success=False)
                    out["symbol"] = symbol
                    self._write(conn, out)
                    continue
                conn.symbols.add(symbol)
                result = {"channel": "trade", "snapshot": snapshot, "symbol": symbol}
                self._write(conn, {**out, "result": result, "success": True})
                recent = self.history[symbol][-self.snapshot_size :]
                if snapshot and not self.silent:
                    self._send_trades(conn, "snapshot", recent)
        else:
            out = {**reply, "error": f"Method not found {method}", "success": False}
            self._write(conn, {**out, "time_out": rfc3339(time.time_ns() // 1000)})

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval / 4)
            now = time.monotonic()
            for conn in self.open_connections():
                if conn.symbols and now - conn.last_sent >= self.heartbeat_interval:
                    self._write(conn, {"channel": "heartbeat"})

    # -- internals: REST -----------------------------------------------------------------

    def _rest_refusal(self) -> web.Response | None:
        if not self._rest_rejects:
            return None
        status, retry_after = self._rest_rejects.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return web.json_response(
            {"error": ["EGeneral:Too many requests"]}, status=status, headers=headers
        )

    def _symbol_of(self, pair: str) -> str | None:
        for symbol in self.symbols:
            if pair in (symbol, *pair_names(symbol)):
                return symbol
        return None

    async def _rest_trades(self, request: web.Request) -> web.Response:
        self.rest_requests.append(dict(request.query))
        refusal = self._rest_refusal()
        if refusal is not None:
            return refusal
        symbol = self._symbol_of(request.query.get("pair", ""))
        if symbol is None:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        since = int(request.query.get("since", "0"))
        count = min(int(request.query.get("count", "1000")), self.rest_page_limit)
        oldest = self.rest_history_from.get(symbol, 0)
        rows = [
            t for t in self.history[symbol] if t["_us"] * 1000 > since and t["trade_id"] >= oldest
        ][:count]
        entries = [
            [
                f"{t['price']:.5f}",
                f"{t['qty']:.8f}",
                t["_us"] / 1_000_000,
                t["side"][0],
                t["ord_type"][0],
                "",
                t["trade_id"],
            ]
            for t in rows
        ]
        last = str(rows[-1]["_us"] * 1000) if rows else str(since)
        key = pair_names(symbol)[0]
        return web.json_response({"error": [], "result": {key: entries, "last": last}})

    async def _rest_asset_pairs(self, request: web.Request) -> web.Response:
        self.rest_requests.append(dict(request.query))
        refusal = self._rest_refusal()
        if refusal is not None:
            return refusal
        result = {}
        for symbol in self.symbols:
            key, altname, wsname = pair_names(symbol)
            base, quote = wsname.split("/")
            result[key] = {
                "altname": altname,
                "wsname": wsname,
                "aclass_base": "currency",
                "base": f"X{base}" if len(base) == 3 else base,
                "aclass_quote": "currency",
                "quote": f"Z{quote}" if len(quote) == 3 else quote,
                "pair_decimals": 1,
                "lot_decimals": 8,
                "status": "online",
            }
        return web.json_response({"error": [], "result": result})
