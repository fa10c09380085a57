"""A local stand-in for Coinbase's public market data, WebSocket and REST, with scripted faults.

WebSocket (picows, 127.0.0.1): one endpoint that speaks both documented feeds; a connection
becomes whichever its first subscribe message is written for.

- Advanced Trade: `{"type": "subscribe", "product_ids": [...], "channel": "market_trades"}`
  (one channel per message) and `{"type": "subscribe", "channel": "heartbeats"}`. Each is
  answered by a `subscriptions` message; `market_trades` then sends a `snapshot` event with the
  last `snapshot_size` trades of each product, and `update` events as trades happen; heartbeats
  come every `heartbeat_interval` seconds with a `heartbeat_counter`. Every message carries the
  connection's `sequence_num`. Trade `side` is the maker's side, in capitals.
- Exchange: `{"type": "subscribe", "product_ids": [...], "channels": ["matches", "heartbeat"]}`,
  answered by `{"type": "subscriptions", ...}`, then a `last_match` per product, `match` messages
  and a `heartbeat` per product every interval with its `last_trade_id`. `side` is the maker's.
- Unknown products are refused with `{"type": "error", ...}`; a connection that has not
  subscribed within `subscribe_deadline` seconds is closed, as Coinbase does after 5 s.

REST (aiohttp, 127.0.0.1): `GET /products` and `GET /products/{id}/trades` with `limit`
(at most 1000), `after` (older than that trade id) and `before` (newer) cursors, newest first,
and the `CB-BEFORE` / `CB-AFTER` headers.

It remembers every trade: `history` holds each trade the exchange made (sent or not), and
`published` each trade written to a client (snapshots included), in order, repeats included.

Faults: `drop_after(n)` cuts the connection (no close frame) after n more frames; `silent`
stops trades while heartbeats and pongs go on; `dead` stops every frame but still answers
pings; `send(...)` takes trades in any order and any number of times; `skip(product, n)` loses
trades (a gap); `send_raw` writes any frame; `reject_next(429, retry_after=...)` refuses
WebSocket upgrades; `reject_rest(429, retry_after=...)` refuses REST requests; `hide_from_rest`
keeps trades off the REST list.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import FakeExchange, RestHandler, encode
from .base import ServerConnection as BaseConnection


@dataclass
class ServerConnection(BaseConnection):
    """What the server knows about one client connection."""

    feed: str | None = None  # "advanced" or "exchange", from the first subscribe
    products: set[str] = field(default_factory=set)  # trades subscribed
    heartbeats: set[str] = field(default_factory=set)  # advanced: {"heartbeats"}; exchange: ids
    sequence_num: int = 0
    heartbeat_counter: int = 0


def iso(micros: int) -> str:
    """RFC 3339 with microseconds and Z, as Coinbase writes trade times."""
    moment = dt.datetime.fromtimestamp(micros // 1_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros % 1_000_000:06d}Z"


class FakeCoinbase(FakeExchange):
    """Coinbase market data on 127.0.0.1, scripted by the test that owns it."""

    name = "coinbase"
    connection_type = ServerConnection
    upgrade_refusal = b'{"message":"Too many requests"}'
    rest_refusal = {"message": "Public rate limit exceeded"}

    def __init__(
        self,
        products: Iterable[str] = ("BTC-USD", "ETH-USD"),
        *,
        heartbeat_interval: float = 1.0,
        snapshot_size: int = 0,
        subscribe_deadline: float = 5.0,
        first_trade_id: int = 500_000,
        seed: int = 1,
    ) -> None:
        self.products = list(products)
        super().__init__(self.products, seed=seed)
        self.heartbeat_interval = heartbeat_interval
        self.snapshot_size = snapshot_size
        self.subscribe_deadline = subscribe_deadline
        self.dead = False  # every frame stops; pongs go on
        self.rest_log: list[tuple[str, dict[str, str], int]] = []  # (path, query, status)
        self.delisted = ["OLD-USD"]
        self._first_id = first_trade_id
        self._next_id: dict[str, int] = {p: first_trade_id for p in self.products}
        self._price: dict[str, float] = {p: 100.0 * (n + 1) for n, p in enumerate(self.products)}
        self._hidden: set[tuple[str, int]] = set()
        self._heartbeat_due: dict[int, float] = {}  # connection id -> monotonic time

    # -- what tests inspect --------------------------------------------------------------

    def subscribed(self) -> list[ServerConnection]:
        """Open connections that subscribed to trades of at least one product."""
        return [c for c in self.open_connections() if c.products]

    async def wait_subscribed(self, count: int = 1, timeout: float = 5.0) -> list[ServerConnection]:
        """Wait until `count` open connections have subscribed to trades (and heartbeats)."""

        def ready() -> list[ServerConnection]:
            return [c for c in self.subscribed() if c.heartbeats]

        await self.wait_for(lambda: len(ready()) >= count, timeout)
        return ready()

    # -- the exchange --------------------------------------------------------------------

    def trade(
        self,
        product: str,
        *,
        price: float | None = None,
        size: float | None = None,
        maker_side: str | None = None,
        time_us: int | None = None,
    ) -> dict[str, Any]:
        """Make the next trade of `product` without sending it."""
        if product not in self._next_id:
            self.products.append(product)
            self.history[product] = []
            self._next_id[product] = self._first_id
            self._price[product] = 100.0
        if price is None:
            price = self._price[product] = self._walk(self._price[product])
        if size is None:
            size = round(self._rng.uniform(0.0001, 2.0), 8)
        if maker_side is None:
            maker_side = self._rng.choice(["buy", "sell"])
        trade_id = self._next_id[product]
        self._next_id[product] += 1
        trade = {
            "trade_id": trade_id,
            "product_id": product,
            "price": f"{price:.2f}",
            "size": f"{size:.8f}",
            "side": maker_side,  # the maker order's side, as Coinbase reports it
            "time_us": time_us if time_us is not None else time.time_ns() // 1000,
        }
        self.history[product].append(trade)
        return trade

    def hide_from_rest(self, *trades: dict[str, Any]) -> None:
        """Keep trades off the REST trade list (a backfill that cannot find everything)."""
        self._hidden.update((t["product_id"], t["trade_id"]) for t in trades)

    def send(self, *trades: dict[str, Any], together: bool = False) -> int:
        """Write trades to every connection subscribed to their product, in the order given;
        with `together`, an Advanced connection gets them in one message. Returns frames sent."""
        if self.silent or self.dead:
            return 0
        sent = 0
        for conn in self.open_connections():
            mine = [t for t in trades if t["product_id"] in conn.products]
            if not mine:
                continue
            if conn.feed == "advanced":
                groups = [mine] if together else [[t] for t in mine]
                for group in groups:
                    if self._write(conn, self._advanced_trades(conn, "update", group)):
                        self.published.extend(group)
                        sent += 1
            else:
                for t in mine:
                    if self._write(conn, self._exchange_match(t, "match")):
                        self.published.append(t)
                        sent += 1
        return sent

    async def feed(self, rate: float, count: int, together: int = 1) -> None:
        """Publish `count` trades round-robin over the products at `rate` per second, `together`
        trades per Advanced message."""
        start = time.monotonic()
        done = turn = 0
        while done < count:
            due = min(int((time.monotonic() - start) * rate) + 1 - done, count - done)
            while due > 0:
                n = min(together, due)
                group = []
                for _ in range(n):
                    group.append(self.trade(self.products[turn % len(self.products)]))
                    turn += 1
                self.send(*group, together=True)
                done += n
                due -= n
            await asyncio.sleep(min(0.01, 1 / rate))

    # -- faults --------------------------------------------------------------------------

    def drop_after(self, frames: int) -> None:
        super().drop_after(frames)
        if frames == 0:
            self.drop_all()

    def reject_rest(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        """Refuse the next `count` REST requests with `status` (and `Retry-After`)."""
        self.rest_reject_next(status, retry_after, count)

    # -- messages ------------------------------------------------------------------------

    def _envelope(self, conn: ServerConnection, channel: str, events: list[Any]) -> bytes:
        message = {
            "channel": channel,
            "client_id": "",
            "timestamp": iso(time.time_ns() // 1000),
            "sequence_num": conn.sequence_num,
            "events": events,
        }
        conn.sequence_num += 1
        return encode(message)

    def _advanced_trades(
        self, conn: ServerConnection, kind: str, trades: list[dict[str, Any]]
    ) -> bytes:
        rows = [
            {
                "trade_id": str(t["trade_id"]),
                "product_id": t["product_id"],
                "price": t["price"],
                "size": t["size"],
                "side": t["side"].upper(),
                "time": iso(t["time_us"]),
            }
            for t in trades
        ]
        return self._envelope(conn, "market_trades", [{"type": kind, "trades": rows}])

    @staticmethod
    def _exchange_match(t: dict[str, Any], kind: str) -> bytes:
        return encode(
            {
                "type": kind,
                "trade_id": t["trade_id"],
                "maker_order_id": f"m-{t['trade_id']}",
                "taker_order_id": f"t-{t['trade_id']}",
                "side": t["side"],
                "size": t["size"],
                "price": t["price"],
                "product_id": t["product_id"],
                "sequence": t["trade_id"] * 3,
                "time": iso(t["time_us"]),
            }
        )

    # -- internals -----------------------------------------------------------------------

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            conn.requests.append(payload)
            self._reply(conn, {"type": "error", "message": "Malformed JSON"})
            return
        conn.requests.append(msg)
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            self._reply(conn, {"type": "error", "message": "Failed to subscribe"})
            return
        feed = "exchange" if "channels" in msg else "advanced" if "channel" in msg else None
        if feed is None or conn.feed not in (None, feed):
            self._reply(conn, {"type": "error", "message": "Failed to subscribe"})
            return
        conn.feed = feed
        products = msg.get("product_ids") or []
        unknown = [p for p in products if p not in self.history]
        if unknown:
            reason = f"{unknown[0]} is not a valid product"
            self._reply(conn, {"type": "error", "message": "Failed to subscribe", "reason": reason})
            return
        subscribe = msg["type"] == "subscribe"
        if feed == "advanced":
            self._advanced_subscribe(conn, msg.get("channel"), products, subscribe)
        else:
            self._exchange_subscribe(conn, msg.get("channels"), products, subscribe)

    def _advanced_subscribe(
        self, conn: ServerConnection, channel: Any, products: list[str], subscribe: bool
    ) -> None:
        if channel == "market_trades":
            new = [p for p in products if p not in conn.products]
            if subscribe:
                conn.products.update(products)
            else:
                conn.products.difference_update(products or list(conn.products))
        elif channel == "heartbeats":
            (conn.heartbeats.add if subscribe else conn.heartbeats.discard)("heartbeats")
            new = []
        else:
            self._reply(conn, {"type": "error", "message": f"Unknown channel {channel}"})
            return
        subscriptions: dict[str, list[str]] = {}
        if conn.products:
            subscriptions["market_trades"] = sorted(conn.products)
        if conn.heartbeats:
            subscriptions["heartbeats"] = ["heartbeats"]
        self._reply(conn, self._envelope(conn, "subscriptions", [{"subscriptions": subscriptions}]))
        if subscribe and new and self.snapshot_size and not (self.silent or self.dead):
            recent = [t for p in new for t in self.history[p][-self.snapshot_size :]]
            recent.sort(key=lambda t: t["time_us"], reverse=True)
            if self._write(conn, self._advanced_trades(conn, "snapshot", recent)):
                self.published.extend(recent)

    def _exchange_subscribe(
        self, conn: ServerConnection, channels: Any, products: list[str], subscribe: bool
    ) -> None:
        names: list[tuple[str, list[str]]] = []
        for entry in channels or []:
            if isinstance(entry, str):
                names.append((entry, products))
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                names.append((entry["name"], entry.get("product_ids") or products))
        new: list[str] = []
        for name, ids in names:
            target = {"matches": conn.products, "heartbeat": conn.heartbeats}.get(name)
            if target is None:
                self._reply(conn, {"type": "error", "message": f"{name} is not a valid channel"})
                return
            if subscribe:
                if name == "matches":
                    new += [p for p in ids if p not in target]
                target.update(ids)
            else:
                target.difference_update(ids)
        self._reply(
            conn,
            {
                "type": "subscriptions",
                "channels": [
                    {"name": "matches", "product_ids": sorted(conn.products)},
                    {"name": "heartbeat", "product_ids": sorted(conn.heartbeats)},
                ],
            },
        )
        if self.silent or self.dead:
            return
        for product in new:
            if self.history[product]:
                last = self.history[product][-1]
                if self._write(conn, self._exchange_match(last, "last_match")):
                    self.published.append(last)

    def _tick(self) -> float:
        return min(self.heartbeat_interval, self.subscribe_deadline) / 4

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        """Heartbeats to subscribed connections; close the ones that never subscribed."""
        if conn.feed is None and now - conn.opened_at > self.subscribe_deadline:
            self._drop(conn, "no subscribe in time")
            return
        if self.dead or not conn.heartbeats or now < self._heartbeat_due.get(conn.id, 0.0):
            return
        self._heartbeat_due[conn.id] = now + self.heartbeat_interval
        self._heartbeat(conn)

    def _heartbeat(self, conn: ServerConnection) -> None:
        if conn.feed == "advanced":
            conn.heartbeat_counter += 1
            now = dt.datetime.now(dt.UTC)
            current = now.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC m=+1.000000001")
            event = {"current_time": current, "heartbeat_counter": conn.heartbeat_counter}
            self._write(conn, self._envelope(conn, "heartbeats", [event]))
            return
        for product in sorted(conn.heartbeats):
            history = self.history.get(product) or []
            self._write(
                conn,
                encode(
                    {
                        "type": "heartbeat",
                        "sequence": len(history) * 3,
                        "last_trade_id": history[-1]["trade_id"] if history else 0,
                        "product_id": product,
                        "time": iso(time.time_ns() // 1000),
                    }
                ),
            )

    # -- REST ----------------------------------------------------------------------------

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [
            ("/products", self._rest_products),
            ("/products/{product_id}/trades", self._rest_trades),
        ]

    def _refused(self, request: web.Request) -> web.Response | None:
        refused = self._rest_refusal()
        if refused is not None:
            self.rest_log.append((request.path, dict(request.query), refused.status))
        return refused

    async def _rest_products(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        self.rest_log.append((request.path, dict(request.query), 200))
        rows = [_product(p, "online") for p in self.products]
        rows += [_product(p, "delisted") for p in self.delisted]
        return web.json_response(rows)

    async def _rest_trades(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        product = request.match_info["product_id"]
        query = dict(request.query)
        if product not in self.history:
            self.rest_log.append((request.path, query, 404))
            return web.json_response({"message": "NotFound"}, status=404)
        try:
            limit = int(query.get("limit", "1000"))
            after = int(query["after"]) if "after" in query else None
            before = int(query["before"]) if "before" in query else None
        except ValueError:
            self.rest_log.append((request.path, query, 400))
            return web.json_response({"message": "Invalid cursor or limit"}, status=400)
        if not 1 <= limit <= 1000:
            self.rest_log.append((request.path, query, 400))
            return web.json_response({"message": "limit must be in 1..1000"}, status=400)
        self.rest_log.append((request.path, query, 200))
        visible = [t for t in self.history[product] if (product, t["trade_id"]) not in self._hidden]
        newest_first = sorted(visible, key=lambda t: t["trade_id"], reverse=True)
        if after is not None:
            page = [t for t in newest_first if t["trade_id"] < after][:limit]
        elif before is not None:
            page = [t for t in newest_first if t["trade_id"] > before][-limit:]
        else:
            page = newest_first[:limit]
        rows = [
            {
                "trade_id": t["trade_id"],
                "side": t["side"],
                "size": t["size"],
                "price": t["price"],
                "time": iso(t["time_us"]),
            }
            for t in page
        ]
        headers = {}
        if page:
            headers = {"CB-BEFORE": str(page[0]["trade_id"]), "CB-AFTER": str(page[-1]["trade_id"])}
        return web.json_response(rows, headers=headers)


def _product(product_id: str, status: str) -> dict[str, Any]:
    base, quote = product_id.split("-")
    return {
        "id": product_id,
        "base_currency": base,
        "quote_currency": quote,
        "quote_increment": "0.01",
        "base_increment": "0.00000001",
        "display_name": f"{base}/{quote}",
        "min_market_funds": "1",
        "margin_enabled": False,
        "post_only": False,
        "limit_only": False,
        "cancel_only": False,
        "status": status,
        "status_message": "",
        "trading_disabled": status != "online",
        "fx_stablecoin": False,
        "max_slippage_percentage": "0.02000000",
        "auction_mode": False,
        "high_bid_limit_percentage": "",
    }
