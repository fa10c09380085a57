"""Trades from any exchange ccxt.pro streams, as tickpipe trade batches.

ccxt owns the connection (subscriptions, pings, reconnects inside one `watch_*` call), so this
source is not a `feed.ShardedFeed`: there is no WebSocket of tickpipe's own to shard or
resubscribe. It shares the scaffold's other pieces: the converter returns the one
`parsing.Parsed`, each watch loop keeps its own `Link` in `SourceStats` (the source is
connected only while every loop is), and the refill after a reconnect is a
`fetch_since(Refill) -> Refilled` handed on like every connector's (`feed.delivered`).

This module owns what ccxt leaves to its caller: retrying forever with tickpipe's jittered,
capped backoff, saying so with `Disconnect` events, emitting each trade once although ccxt
hands back a cache of recent trades, and after a reconnect refilling the trades missed
meanwhile with ccxt's REST `fetch_trades` (a `Gap` event says how many came back). ccxt is
imported here only, never at tickpipe's start-up.

A refill is exact only when the REST trades carry the same ids as the streamed ones, so the
converter recognises the trades it already emitted. That holds for ccxt's unified trades on
most exchanges; Binance's default `fetch_trades` reads aggregate trades (other ids), so for
the Binance family the refill asks for `/api/v3/trades` instead (REFILL_PARAMS).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, TypeGuard

import numpy as np

from tickpipe.records import (
    SIDE_BUY,
    SIDE_SELL,
    SIDE_UNKNOWN,
    Disconnect,
    Instrument,
    TradeBatch,
)
from tickpipe.sources import Link, SourceContext
from tickpipe.sources.ccxt import INSTALL_HINT
from tickpipe.sources.feed import Refill, Refilled, delivered, gap_event, hand_on
from tickpipe.sources.parsing import Parsed, Reject
from tickpipe.sources.ws import WsConfig, backoff_delay
from tickpipe.symbols import SymbolError, normalize_symbol

SOURCE = "ccxt"
SYMBOLS_PER_CALL = 100  # watch_trades_for_symbols chunk; Binance, for one, allows 200 at most
REMEMBERED = 10_000  # trade keys kept per symbol to recognise ccxt's cached trades
MAX_SEQ = 2**63 - 1
RETRY = WsConfig(backoff_initial=0.5, backoff_max=30.0, stable_after=60.0)
REFILL_PAGE = 1000  # trades per fetch_trades call
REFILL_PAGES = 10  # a longer outage is refilled as far as this reaches; the Gap event says so
REFILL_PARAMS = {"binance": {"fetchTradesMethod": "publicGetTrades"},
                 "binanceus": {"fetchTradesMethod": "publicGetTrades"}}  # fmt: skip
_SIDES = {"buy": SIDE_BUY, "sell": SIDE_SELL}


class CcxtMissing(ImportError):
    """The optional ccxt extra is not installed."""


def import_ccxt_pro() -> ModuleType:
    """`ccxt.pro`, or CcxtMissing with the pip command that installs it."""
    try:
        import ccxt.pro
    except ImportError as exc:
        raise CcxtMissing(INSTALL_HINT) from exc
    return ccxt.pro


def create_exchange(exchange_id: str, config: Mapping[str, Any] | None = None) -> Any:
    """A ccxt.pro exchange object; `config` is ccxt's own (deep-merged over its defaults, e.g.
    `urls` to point it at a test server). Unknown ids fail with close matches."""
    pro = import_ccxt_pro()
    cls = getattr(pro, exchange_id, None)
    if exchange_id not in pro.exchanges or cls is None:
        close = difflib.get_close_matches(exchange_id, pro.exchanges, n=3)
        hint = f" (close matches: {', '.join(close)})" if close else ""
        raise ValueError(f"ccxt has no WebSocket exchange {exchange_id!r}{hint}")
    return cls(dict(config or {}))


def to_ccxt_symbol(symbol: str) -> str:
    """`BTC-USDT` (or any spelling normalize_symbol reads) becomes ccxt's unified `BTC/USDT`."""
    return normalize_symbol(symbol).replace("-", "/")


async def fetch_spot_symbols(
    exchange_id: str, config: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Spot markets of a ccxt exchange: normalized symbol -> the exchange's own market id."""
    exchange = create_exchange(exchange_id, config)
    try:
        markets = await exchange.load_markets()
        out: dict[str, str] = {}
        for market in markets.values():
            if not market.get("spot") or not market.get("base") or not market.get("quote"):
                continue
            try:
                symbol = normalize_symbol(f"{market['base']}-{market['quote']}")
            except SymbolError:
                continue
            out.setdefault(symbol, str(market.get("id") or market["symbol"]))
        return out
    finally:
        await exchange.close()


class TradeConverter:
    """ccxt unified trade dicts -> TradeBatch, each trade once.

    ccxt returns its cache of recent trades, and after a reconnect it may return trades it
    returned before, so every trade's key (its id, else its content) is remembered per symbol.
    ccxt's `side` is the taker side of a public trade (its Binance parser, for one, turns
    `m` = buyer is maker into `sell`).
    """

    def __init__(
        self,
        exchange_id: str,
        symbols: Sequence[str],
        source: str = SOURCE,
        memory: int = REMEMBERED,
    ) -> None:
        self.exchange_id = exchange_id
        self.source = source
        self.memory = memory
        self.codes: dict[str, int] = {}  # ccxt unified symbol -> instrument code
        self.instruments: list[Instrument] = []
        for symbol in symbols:
            unified = to_ccxt_symbol(symbol)
            if unified not in self.codes:
                self.codes[unified] = len(self.instruments)
                self.instruments.append(Instrument(exchange_id, normalize_symbol(symbol), unified))
        self.unified = list(self.codes)  # by instrument code
        self.seen: dict[str, dict[Any, None]] = {s: {} for s in self.codes}
        self.last_ms: dict[str, int] = {}  # newest trade time emitted, per ccxt symbol
        self.arrivals = 0

    def learn_market_ids(self, markets: Mapping[str, Any] | None) -> None:
        """Use the exchange's own spelling (e.g. `BTCUSDT`) as raw_symbol once markets loaded."""
        if not markets:
            return
        for unified, code in self.codes.items():
            market = markets.get(unified)
            if isinstance(market, Mapping) and market.get("id"):
                inst = self.instruments[code]
                self.instruments[code] = Instrument(inst.exchange, inst.symbol, str(market["id"]))

    def unseen_tail(self, symbol: str, cache: Sequence[Any] | None) -> list[Any]:
        """The trades at the end of ccxt's cache for `symbol` not emitted yet, oldest first:
        a quiet symbol's trades that arrived while a call returned another symbol's."""
        seen = self.seen.get(symbol)
        if seen is None or not cache:
            return []
        tail = []
        for trade in reversed(cache):
            if not isinstance(trade, Mapping) or _key(trade) in seen:
                break
            tail.append(trade)
        tail.reverse()
        return tail

    def convert(self, trades: Iterable[Any], recv_ts: int) -> Parsed:
        """The batch of trades not emitted before, and each malformed one as a reject."""
        rejects: list[Reject] = []
        codes: list[int] = []
        ids: list[str] = []
        seqs: list[int] = []
        prices: list[float] = []
        sizes: list[float] = []
        sides: list[int] = []
        stamps: list[int] = []
        for trade in trades:
            if not isinstance(trade, Mapping):
                rejects.append(_reject("not a ccxt trade", trade))
                continue
            symbol = trade.get("symbol")
            seen = self.seen.get(symbol)  # type: ignore[arg-type]
            if seen is None:
                rejects.append(_reject(f"unexpected symbol {symbol!r}", trade))
                continue
            key = _key(trade)
            if key in seen:
                continue
            seen[key] = None
            if len(seen) > self.memory:
                del seen[next(iter(seen))]
            price, amount, ts = trade.get("price"), trade.get("amount"), trade.get("timestamp")
            if not (_number(price) and price > 0 and _number(amount) and amount >= 0):
                rejects.append(_reject("price or amount missing or not positive", trade))
                continue
            if not (isinstance(ts, int) and not isinstance(ts, bool) and ts > 0):
                rejects.append(_reject("timestamp missing", trade))
                continue
            trade_id = trade.get("id")
            trade_id = _content_id(trade) if trade_id is None else str(trade_id)
            if trade_id.isdigit() and int(trade_id) <= MAX_SEQ:
                seq = int(trade_id)
            else:
                self.arrivals += 1
                seq = self.arrivals
            if ts > self.last_ms.get(symbol, 0):  # type: ignore[arg-type]
                self.last_ms[symbol] = ts  # type: ignore[index]
            codes.append(self.codes[symbol])  # type: ignore[index]
            ids.append(trade_id)
            seqs.append(seq)
            prices.append(float(price))
            sizes.append(float(amount))
            sides.append(_SIDES.get(trade.get("side"), SIDE_UNKNOWN))  # type: ignore[arg-type]
            stamps.append(ts * 1000)
        if not codes:
            return Parsed(TradeBatch.empty(self.source), rejects)
        numeric = all(i == str(s) for i, s in zip(ids, seqs, strict=True))
        batch = TradeBatch(
            source=self.source,
            instruments=list(self.instruments),
            instrument=np.array(codes, np.int32),
            seq=np.array(seqs, np.int64),
            price=np.array(prices, np.float64),
            size=np.array(sizes, np.float64),
            side=np.array(sides, np.int8),
            ts=np.array(stamps, np.int64),
            recv_ts=np.full(len(codes), recv_ts, np.int64),
            trade_id=None if numeric else np.array(ids, object),
        )
        return Parsed(batch, rejects)


def _reject(reason: str, trade: Any) -> Reject:
    return Reject(json.dumps(trade, default=str).encode(), reason)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _timestamp(trade: Any) -> int:
    """A trade's time in ms; one without a usable time counts as new, for convert to reject."""
    ts = trade.get("timestamp") if isinstance(trade, Mapping) else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else MAX_SEQ


def _key(trade: Mapping[str, Any]) -> Any:
    trade_id = trade.get("id")
    if trade_id is not None:
        return str(trade_id)
    return (trade.get("timestamp"), trade.get("price"), trade.get("amount"), trade.get("side"))


def _content_id(trade: Mapping[str, Any]) -> str:
    """An id for an exchange that gives none, stable across replays of the same trade."""
    return (
        f"{trade.get('timestamp')}:{trade.get('price')}:{trade.get('amount')}:{trade.get('side')}"
    )


class CcxtSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`) on the ccxt exchange `exchange_id`.

    One `watch_trades_for_symbols` loop per chunk of symbols where the exchange has it, else
    one `watch_trades` loop per symbol. Each loop retries forever on any ccxt error; the
    backoff starts over after `retry.stable_after` seconds without an error.
    """

    def __init__(
        self,
        exchange_id: str,
        symbols: Sequence[str],
        *,
        name: str = SOURCE,
        config: Mapping[str, Any] | None = None,
        retry: WsConfig | None = None,
        symbols_per_call: int = SYMBOLS_PER_CALL,
        refill: bool = True,
    ) -> None:
        if not symbols:
            raise ValueError("ccxt needs at least one symbol")
        self.name = name
        self.exchange_id = exchange_id
        self.config = dict(config or {})
        self.retry = retry or RETRY
        self.symbols_per_call = symbols_per_call
        self.refill = refill
        self.converter = TradeConverter(exchange_id, symbols, name)
        self.exchange: Any = None  # the ccxt.pro object while running
        self._rng = random.Random()

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled; the exchange is always closed."""
        exchange = create_exchange(self.exchange_id, self.config)
        self.exchange = exchange
        try:
            symbols = list(self.converter.codes)
            if exchange.has.get("watchTradesForSymbols"):
                step = self.symbols_per_call
                groups = [symbols[i : i + step] for i in range(0, len(symbols), step)]
                calls = [(g, _bind(exchange.watch_trades_for_symbols, g)) for g in groups]
            elif exchange.has.get("watchTrades"):
                calls = [([s], _bind(exchange.watch_trades, s)) for s in symbols]
            else:
                raise ValueError(f"ccxt exchange {self.exchange_id!r} cannot stream trades")
            async with asyncio.TaskGroup() as group:
                for group_symbols, call in calls:
                    group.create_task(self._watch(ctx, group_symbols, call))
        finally:
            with contextlib.suppress(Exception):  # closing must not hide why the source stopped
                await exchange.close()
            self.exchange = None

    async def _watch(
        self, ctx: SourceContext, symbols: list[str], call: Callable[[], Awaitable[Any]]
    ) -> None:
        loop = asyncio.get_running_loop()
        link = ctx.stats.link()  # this loop's own connection state
        attempt = 0
        up_since: float | None = None
        markets_known = False
        missed: dict[str, int] | None = None  # at the first failure: newest trade (ms) per symbol
        while True:
            try:
                trades = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ccxt NetworkError, ExchangeError, ...: retry forever
                if up_since is not None and loop.time() - up_since >= self.retry.stable_after:
                    attempt = 0
                delay = backoff_delay(self.retry, attempt, self._rng)
                attempt += 1
                up_since = None
                self._down(ctx, link, exc, delay)
                if missed is None:
                    missed = {
                        s: self.converter.last_ms[s] for s in symbols if s in self.converter.last_ms
                    }
                await asyncio.sleep(delay)
                continue
            recv_ts = time.time_ns() // 1000
            if up_since is None:
                up_since = loop.time()
                link.up = True
            if not markets_known and self.exchange is not None and self.exchange.markets:
                self.converter.learn_market_ids(self.exchange.markets)
                markets_known = True
            ctx.stats.frames += 1
            parsed = self.converter.convert(self._candidates(trades, symbols), recv_ts)
            await hand_on(ctx, self.name, [parsed.batch], parsed.rejects)
            if missed is not None:
                if self._can_refill():
                    for symbol, since_ms in missed.items():
                        code = self.converter.codes[symbol]
                        refill = Refill(code, 0, -1, after_ts=since_ms * 1000)
                        await delivered(ctx, self.name, await self.fetch_since(refill))
                missed = None

    def _down(self, ctx: SourceContext, link: Link, exc: Exception, delay: float) -> None:
        """A watch call failed: the loop's link is down, and a `Disconnect` says so."""
        link.up = False
        ctx.stats.reconnects += 1
        reason = f"{type(exc).__name__}: {exc}"[:300]
        fate = "refilled over REST" if self._can_refill() else "not refilled"
        ctx.event(
            Disconnect(
                source=self.name,
                ts=time.time_ns() // 1000,
                reason=f"{reason}; trades missed meanwhile are {fate}",
                reconnect_in=delay,
            )
        )

    def _can_refill(self) -> bool:
        return self.refill and bool(
            self.exchange is not None and self.exchange.has.get("fetchTrades")
        )

    async def fetch_since(self, refill: Refill) -> Refilled:
        """The trades of instrument `refill.code` from `refill.after_ts` (the newest emitted
        before the outage) over ccxt's REST `fetch_trades`, those not seen yet; the `Gap` says
        how many came back (or why none could). How many were lost is unknown."""
        params = REFILL_PARAMS.get(self.exchange_id, {})
        inst = self.converter.instruments[refill.code]
        symbol = self.converter.unified[refill.code]
        since = refill.after_ts // 1000  # ms, ccxt's unit
        batches: list[TradeBatch] = []
        rejects: list[Reject] = []
        detail = ""
        cursor = since
        try:
            for _ in range(REFILL_PAGES):
                page = await self.exchange.fetch_trades(symbol, cursor, REFILL_PAGE, params)
                page = [
                    t for t in page if isinstance(t, Mapping) and t.get("timestamp", 0) >= since
                ]
                parsed = self.converter.convert(page, time.time_ns() // 1000)
                rejects += parsed.rejects
                if len(parsed.batch):
                    batches.append(parsed.batch)
                newest = max((t for t in map(_timestamp, page) if t != MAX_SEQ), default=cursor)
                if len(page) < REFILL_PAGE or newest <= cursor:
                    break
                cursor = newest
            else:
                detail = f"; stopped after {REFILL_PAGES} pages, older trades may be missing"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the refill is best effort; the stream goes on
            detail = f"; refill failed: {type(exc).__name__}: {exc}"[:300]
        count = sum(len(b) for b in batches)
        seqs = [int(s) for b in batches for s in b.seq]
        gap = gap_event(
            self.name,
            inst,
            min(seqs, default=0),
            max(seqs, default=0),
            count,
            f"refilled {count} trades since {since} ms over REST fetch_trades{detail}",
        )
        return Refilled(batches, gap, rejects)

    def _candidates(self, trades: Any, symbols: list[str]) -> list[Any]:
        """What a call returned plus the unseen tails of its other symbols' caches: ccxt wakes
        a call for one symbol, so a quiet symbol's trades would otherwise wait for its next."""
        out = list(trades) if isinstance(trades, Iterable) else [trades]
        if len(symbols) > 1 and self.exchange is not None:
            caches = getattr(self.exchange, "trades", None)
            returned = {t.get("symbol") for t in out if isinstance(t, Mapping)}
            if isinstance(caches, Mapping):
                for symbol in symbols:
                    if symbol in returned:
                        continue
                    out.extend(self.converter.unseen_tail(symbol, caches.get(symbol)))
        return out


def _bind(method: Callable[[Any], Awaitable[Any]], arg: Any) -> Callable[[], Awaitable[Any]]:
    def call() -> Awaitable[Any]:
        return method(arg)

    return call
