"""The live push hub: the engine publishes candle updates and trades, subscribers get them.

`publish` runs inside the engine loop, so it never awaits and never blocks: each subscriber has
a bounded queue, and a subscriber that reads too slowly loses its oldest updates (counted in
`dropped`, and told so) instead of slowing the pipeline. Messages are encoded once per update,
whatever the number of subscribers, and only for keys someone subscribed to.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

import msgspec
import numpy as np

from tickpipe.records import SIDE_NAMES, Candle, TradeBatch

DEFAULT_QUEUE = 10_000  # messages per subscriber


class Subscriber:
    """One live client: what it subscribed to, and its bounded queue of encoded messages."""

    def __init__(self, max_queue: int = DEFAULT_QUEUE) -> None:
        self.queue: deque[bytes] = deque(maxlen=max_queue)
        self.dropped = 0  # messages lost because the client read too slowly
        self.sent = 0
        self.refused = 0  # subscriptions refused: they count against the connection's limit
        self.candle_keys: set[tuple[str, str, str]] = set()
        self.trade_keys: set[tuple[str, str]] = set()
        self._ready = asyncio.Event()

    def put(self, message: bytes) -> None:
        """Queue one message; when full, the oldest goes (never the pipeline's time)."""
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(message)
        self._ready.set()

    async def get_all(self) -> list[bytes]:
        """Wait for at least one message, then take everything queued."""
        while not self.queue:
            self._ready.clear()
            await self._ready.wait()
        out = list(self.queue)
        self.queue.clear()
        return out


class Hub:
    """Fans candle updates and trades out to subscribers; one per process, no global state."""

    def __init__(self, max_queue: int = DEFAULT_QUEUE) -> None:
        self.max_queue = max_queue
        self.subscribers: set[Subscriber] = set()
        self._candles: dict[tuple[str, str, str], set[Subscriber]] = {}
        self._trades: dict[tuple[str, str], set[Subscriber]] = {}
        self.published_candles = 0
        self.published_trades = 0
        self.dropped_gone = 0  # drops of subscribers that have left since

    @property
    def dropped(self) -> int:
        return self.dropped_gone + sum(s.dropped for s in self.subscribers)

    def connect(self) -> Subscriber:
        sub = Subscriber(self.max_queue)
        self.subscribers.add(sub)
        return sub

    def disconnect(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self.dropped_gone += sub.dropped
        for key in sub.candle_keys:
            self._forget(self._candles, key, sub)
        for pair in sub.trade_keys:
            self._forget(self._trades, pair, sub)

    def subscribe(
        self, sub: Subscriber, exchange: str, symbol: str, interval: str, trades: bool = True
    ) -> None:
        """Candle updates of (exchange, symbol, interval), and every trade of (exchange, symbol)
        unless `trades` is False.

        The newest subscription of an instrument decides whether its trades are pushed: a page
        whose trades tape is hidden asks again with `trades` False and stops paying for them
        (at 1,000 trades/s they are most of the bytes pushed).
        """
        sub.candle_keys.add((exchange, symbol, interval))
        self._candles.setdefault((exchange, symbol, interval), set()).add(sub)
        pair = (exchange, symbol)
        if trades:
            sub.trade_keys.add(pair)
            self._trades.setdefault(pair, set()).add(sub)
        elif pair in sub.trade_keys:
            sub.trade_keys.discard(pair)
            self._forget(self._trades, pair, sub)

    @staticmethod
    def _forget(index: dict, key: tuple, sub: Subscriber) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    def publish(self, candles: Iterable[Candle], trades: TradeBatch | None = None) -> None:
        """Hand updates to every interested subscriber. Called from the engine loop: no await."""
        if not self.subscribers:
            return
        # Trades first: a client then always holds the trades a candle update counts.
        if trades is not None and len(trades) and self._trades:
            self._publish_trades(trades)
        encode = msgspec.json.encode
        for candle in candles:
            subs = self._candles.get((candle.exchange, candle.symbol, candle.interval))
            if subs:
                message = encode({"type": "candle", **msgspec.structs.asdict(candle)})
                for sub in subs:
                    sub.put(message)
                self.published_candles += 1

    def _publish_trades(self, trades: TradeBatch) -> None:
        """One `trades` message per instrument and engine step, in event-time order.

        One message per trade would cost a WebSocket send each (10,000 a second in a busy
        market); one per step keeps the push cheap and the latency low. The step's trades
        are ordered and turned into Python values once, whatever the number of instruments.
        """
        wanted = {
            code: subs
            for code, inst in enumerate(trades.instruments)
            if (subs := self._trades.get((inst.exchange, inst.symbol)))
        }
        if not wanted:
            return
        codes = trades.instrument
        pick = (
            np.arange(len(codes))
            if len(wanted) == len(trades.instruments)
            else np.flatnonzero(np.isin(codes, np.fromiter(wanted, np.int64)))
        )
        if not len(pick):
            return
        # By instrument, then event time; arrival order among equal times (a stable sort).
        order = pick[np.lexsort((trades.ts[pick], codes[pick]))]
        ordered = codes[order]
        cuts = (np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist()
        columns = (
            (trades.trade_id[order] if trades.trade_id is not None else trades.seq[order]).tolist(),
            trades.seq[order].tolist(), trades.price[order].tolist(), trades.size[order].tolist(),
            [SIDE_NAMES[d] for d in trades.side[order].tolist()], trades.ts[order].tolist(),
            trades.recv_ts[order].tolist(),
        )  # fmt: skip
        if trades.trade_id is None:  # ids derived from `seq`, as `TradeBatch.trade_ids` does
            columns = ([str(i) for i in columns[0]], *columns[1:])
        encode = msgspec.json.encode
        for lo, hi in zip([0, *cuts], [*cuts, len(order)], strict=True):
            inst = trades.instruments[int(ordered[lo])]
            rows = [
                {"trade_id": i, "seq": q, "price": p, "size": z, "side": d, "ts": t,
                 "recv_ts": r}
                for i, q, p, z, d, t, r in zip(*(c[lo:hi] for c in columns), strict=True)
            ]  # fmt: skip
            message = encode(
                {"type": "trades", "source": trades.source, "exchange": inst.exchange,
                 "symbol": inst.symbol, "raw_symbol": inst.raw_symbol, "trades": rows}
            )  # fmt: skip
            for sub in wanted[int(ordered[lo])]:
                sub.put(message)
            self.published_trades += len(rows)
