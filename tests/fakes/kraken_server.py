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

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from picows import WSUpgradeRequest

from .base import FakeExchange, RestHandler, encode
from .base import ServerConnection as BaseConnection

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
class ServerConnection(BaseConnection):
    symbols: set[str] = field(default_factory=set)
    trades_sent: list[dict[str, Any]] = field(default_factory=list)
    last_sent: float = 0.0
    app_pings: int = 0


class FakeKraken(FakeExchange):
    """Kraken spot v2 WebSocket and REST on 127.0.0.1, scripted by the test that owns it."""

    name = "kraken"
    connection_type = ServerConnection
    ws_path = "/v2"
    rest_refusal = {"error": ["EGeneral:Too many requests"]}
    raw_frames_count = False  # `drop_after` counts trade messages

    def __init__(
        self,
        symbols: Iterable[str] = ("BTC/USD", "ETH/USD"),
        *,
        heartbeat_interval: float = 1.0,
        snapshot_size: int = 50,
        seed: int = 1,
    ) -> None:
        self.symbols = list(symbols)
        super().__init__(self.symbols, seed=seed)
        self.heartbeat_interval = heartbeat_interval
        self.snapshot_size = snapshot_size
        self.rest_requests: list[dict[str, str]] = []
        self.rest_history_from: dict[str, int] = {}  # symbol -> oldest trade id REST still has
        self.rest_page_limit = 1000
        self._next_id = {s: 4_665_846 + 1000 * n for n, s in enumerate(self.symbols)}
        self._last_us = {s: 0 for s in self.symbols}
        self._price = {s: 100.0 * (n + 1) for n, s in enumerate(self.symbols)}

    # -- what tests inspect --------------------------------------------------------------

    async def wait_subscribed(self, count: int, timeout: float = 5.0) -> ServerConnection:
        """Wait until `count` connections have subscribed in total; return the latest."""
        return await self.wait_connections(count, timeout, where=lambda c: bool(c.symbols))

    # -- the exchange --------------------------------------------------------------------

    def trade(
        self,
        symbol: str,
        *,
        side: str | None = None,
        price: float | None = None,
        qty: float | None = None,
        at_us: int | None = None,
    ) -> dict[str, Any]:
        """Make the next trade of `symbol` (a v2 trade object) without sending it; `at_us`
        dates it (history), else it happens now."""
        if price is None:
            price = self._price[symbol] = self._walk(self._price[symbol])
        now_us = time.time_ns() // 1000 if at_us is None else at_us
        micros = max(now_us, self._last_us[symbol] + 1)
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

    async def feed(self, rate: float, count: int) -> None:
        """Publish `count` trades round-robin over `symbols` at `rate` per second."""
        await self._pace(rate, count, lambda n: self.publish(self.symbols[n % len(self.symbols)]))

    # -- internals: WebSocket ------------------------------------------------------------

    def _connect(self, request: WSUpgradeRequest, path: str) -> ServerConnection | None:
        return super()._connect(request, path) if path.rstrip("/") == self.ws_path else None

    def _on_connected(self, conn: ServerConnection) -> None:
        status = {
            "channel": "status",
            "data": [
                {
                    "api_version": "v2",
                    "connection_id": 13834774380200032777 + conn.id,
                    "system": "online",
                    "version": "2.0.0",
                }
            ],
            "type": "update",
        }
        self._put(conn, status)

    def _put(self, conn: ServerConnection, message: Any) -> bool:
        """Any message (not a step of `drop_after`, which counts trade messages)."""
        if not self._write(conn, encode(message), count=False):
            return False
        conn.last_sent = time.monotonic()
        return True

    def _send_trades(self, conn: ServerConnection, kind: str, trades: list[dict]) -> bool:
        data = [{k: v for k, v in t.items() if k != "_us"} for t in trades]
        if not self._put(conn, {"channel": "trade", "type": kind, "data": data}):
            return False
        conn.trades_sent.extend(trades)
        self.published.extend(trades)
        self._count_down(conn, "message")
        return True

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        time_in = rfc3339(time.time_ns() // 1000)
        try:
            msg = json.loads(payload)
        except ValueError:
            conn.requests.append(payload)
            self._put(conn, {"error": "Malformed request", "success": False})
            return
        conn.requests.append(msg)
        method = msg.get("method") if isinstance(msg, dict) else None
        reply: dict[str, Any] = {"method": method, "time_in": time_in}
        if isinstance(msg, dict) and "req_id" in msg:
            reply["req_id"] = msg["req_id"]
        if method == "ping":
            conn.app_pings += 1
            reply["method"] = "pong"
            self._put(conn, {**reply, "time_out": rfc3339(time.time_ns() // 1000)})
        elif method == "subscribe":
            params = msg.get("params") or {}
            snapshot = bool(params.get("snapshot", False))
            for symbol in params.get("symbol") or []:
                out = {**reply, "time_out": rfc3339(time.time_ns() // 1000)}
                if params.get("channel") != "trade" or symbol not in self.history:
                    out.update(error=f"Currency pair not supported {symbol}", success=False)
                    out["symbol"] = symbol
                    self._put(conn, out)
                    continue
                conn.symbols.add(symbol)
                result = {"channel": "trade", "snapshot": snapshot, "symbol": symbol}
                self._put(conn, {**out, "result": result, "success": True})
                recent = self.history[symbol][-self.snapshot_size :]
                if snapshot and not self.silent:
                    self._send_trades(conn, "snapshot", recent)
        else:
            out = {**reply, "error": f"Method not found {method}", "success": False}
            self._put(conn, {**out, "time_out": rfc3339(time.time_ns() // 1000)})

    def _tick(self) -> float:
        return self.heartbeat_interval / 4

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        if conn.symbols and now - conn.last_sent >= self.heartbeat_interval:
            self._put(conn, {"channel": "heartbeat"})

    # -- internals: REST -----------------------------------------------------------------

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [
            ("/0/public/Trades", self._rest_trades),
            ("/0/public/AssetPairs", self._rest_asset_pairs),
        ]

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
