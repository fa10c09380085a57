"""A local stand-in for OKX's v5 public WebSocket and REST market data, with scripted faults.

It speaks the documented protocol on 127.0.0.1: `/ws/v5/business` (channel `trades-all`, one
trade per push) and `/ws/v5/public` (channel `trades`, one row per taker order and price with
`count`), `{"op": "subscribe", "args": [...]}` answered per argument with
`{"event": "subscribe", "arg": ..., "connId": ...}` or `{"event": "error", "code", "msg"}`, the
text `ping` answered with the text `pong`, and a disconnect after `idle_close` seconds in which
the client sent nothing. REST: `GET /api/v5/market/history-trades` (newest first, `after` =
older than, `before` = newer than the given tradeId, or with `type=2` the given time in ms,
`limit` at most 100) and
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

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web
from picows import WSUpgradeRequest

from .base import FakeExchange, RestHandler, encode
from .base import ServerConnection as BaseConnection

CHANNELS = {"/ws/v5/business": "trades-all", "/ws/v5/public": "trades"}


@dataclass
class ServerConnection(BaseConnection):
    """What the server knows about one client connection."""

    subscriptions: set[tuple[str, str]] = field(default_factory=set)  # (channel, instId)
    pings: int = 0  # text pings

    @property
    def conn_id(self) -> str:
        return f"{self.id:08x}"


class FakeOkx(FakeExchange):
    """OKX spot market data on 127.0.0.1, scripted by the test that owns it."""

    name = "okx"
    connection_type = ServerConnection
    ws_path = ""  # `url` is the base: a source adds `/ws/v5/<business|public>`
    upgrade_refusal = b'{"code":"50011","msg":"Too Many Requests"}'
    rest_refusal = {"code": "50011", "msg": "Too Many Requests", "data": []}

    def __init__(
        self,
        instruments: Iterable[str] = ("BTC-USDT", "ETH-USDT"),
        *,
        idle_close: float = 30.0,
        seed: int = 1,
    ) -> None:
        self.instruments = list(instruments)
        super().__init__(self.instruments, seed=seed)
        self.idle_close = idle_close
        self.answer_pings = True  # the text `ping`
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self._next_id = {i: 500_000 for i in self.instruments}
        self._price = {i: 100.0 * (n + 1) for n, i in enumerate(self.instruments)}

    # -- what tests inspect --------------------------------------------------------------

    async def wait_subscribed(self, count: int, timeout: float = 5.0) -> None:
        """Wait until open connections hold `count` subscriptions in all."""
        await self.wait_for(
            lambda: sum(len(c.subscriptions) for c in self.open_connections()) >= count, timeout
        )

    # -- the exchange --------------------------------------------------------------------

    def trade(
        self,
        inst_id: str,
        *,
        side: str | None = None,
        price: float | None = None,
        ts_ms: int | None = None,
    ) -> dict[str, str]:
        """Make the next trade of `inst_id` (a REST / trades-all row) without sending it;
        `ts_ms` dates it (history), else it happens now."""
        if price is None:
            price = self._price[inst_id] = self._walk(self._price[inst_id])
        trade_id = self._next_id[inst_id]
        self._next_id[inst_id] += 1
        row = {
            "instId": inst_id,
            "tradeId": str(trade_id),
            "px": f"{price:.2f}",
            "sz": f"{round(self._rng.uniform(0.0001, 2.0), 8):.8f}",
            "side": side or self._rng.choice(["buy", "sell"]),
            "source": "0",
            "ts": str(time.time_ns() // 1_000_000 if ts_ms is None else ts_ms),
        }
        self.history[inst_id].append(row)
        return row

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

    def notice(self) -> int:
        """OKX's warning that the connection closes soon for a service upgrade."""
        return sum(
            self._write(c, encode({"event": "notice", "code": "64008", "msg": "The connection "
                                   "will soon be closed for a service upgrade. Please "
                                   "reconnect.", "connId": c.conn_id}))
            for c in self.open_connections()
        )  # fmt: skip

    async def feed(self, rate: float, count: int) -> None:
        """Publish `count` trades round-robin over the instruments at `rate` per second."""
        await self._pace(
            rate, count, lambda n: self.publish(self.instruments[n % len(self.instruments)])
        )

    # -- internals -----------------------------------------------------------------------

    def _connect(self, request: WSUpgradeRequest, path: str) -> ServerConnection | None:
        return super()._connect(request, path) if path in CHANNELS else None

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        if payload == b"ping":
            conn.pings += 1
            if self.answer_pings:
                self._reply(conn, b"pong")
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
        frame = encode({"arg": {"channel": channel, "instId": inst_id}, "data": data})
        return sum(
            self._write(c, frame)
            for c in self.open_connections()
            if (channel, inst_id) in c.subscriptions
        )

    def _tick(self) -> float:
        return min(1.0, self.idle_close / 4)

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        """OKX closes a connection that sent nothing for 30 s (no subscribe, no ping)."""
        if now - conn.last_rx > self.idle_close:
            self._drop(conn, "idle")

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [
            ("/api/v5/market/history-trades", self._history_trades),
            ("/api/v5/public/instruments", self._instruments),
        ]

    async def _history_trades(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.rest_requests.append((request.path, query))
        rejected = self._rest_refusal()
        if rejected is not None:
            return rejected
        inst_id = query.get("instId", "")
        if inst_id not in self.history:
            return web.json_response({"code": "51001", "msg": "Instrument ID does not exist",
                                      "data": []})  # fmt: skip
        limit = min(int(query.get("limit", "100")), 100)
        rows = self.history[inst_id]
        if query.get("type") == "2":  # pagination by time: `after` = older than this ms
            if "after" in query:
                rows = [r for r in rows if int(r["ts"]) < int(query["after"])]
            if "before" in query:
                rows = [r for r in rows if int(r["ts"]) > int(query["before"])]
            return web.json_response({"code": "0", "msg": "", "data": rows[-limit:][::-1]})
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
        rejected = self._rest_refusal()
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
