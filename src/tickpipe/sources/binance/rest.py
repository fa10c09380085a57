"""Binance spot REST: the symbol list, trades for gap backfill, and the price ticker.

Endpoints (public, no API key; weights from Binance's docs, out of 6000 per minute per IP):
`GET /api/v3/exchangeInfo` (20) lists symbols with `baseAsset`/`quoteAsset`/`status`;
`GET /api/v3/historicalTrades?symbol=&fromId=&limit=1000` (25) pages trades by id from the
database, so it reaches back far; `GET /api/v3/aggTrades?fromId=` (4) does the same for
aggregate trades; `GET /api/v3/trades?limit=1000` (25) only knows the most recent trades and
is the fallback when `historicalTrades` asks for a key; `GET /api/v3/ticker/price` (4 for
many symbols) gives the last price. Rows are decoded into Structs with the same checks as the
stream parser, so a nonsense row is rejected rather than passed on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN, TradeBatch
from tickpipe.sources.binance.parse import InstrumentIndex
from tickpipe.sources.parsing import trade_batch
from tickpipe.sources.rest import RestClient, read_rows
from tickpipe.symbols import SymbolError, normalize_symbol

PAGE_LIMIT = 1000  # the `limit` maximum of every trades endpoint
HISTORICAL_TRADES = "/api/v3/historicalTrades"
AGG_TRADES = "/api/v3/aggTrades"
TRADES = "/api/v3/trades"

_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Millis = Annotated[int, msgspec.Meta(ge=0, le=(2**63 - 1) // 1000)]
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]


class _Trade(msgspec.Struct, gc=False):
    """A row of `/api/v3/trades` and `/api/v3/historicalTrades`."""

    id: _Id
    price: _Positive
    qty: _Positive
    time: _Millis
    isBuyerMaker: bool


class _AggTrade(msgspec.Struct, gc=False):
    """A row of `/api/v3/aggTrades`."""

    a: _Id
    p: _Positive
    q: _Positive
    T: _Millis
    m: bool


class _AggStart(msgspec.Struct, gc=False):
    """What `first_id_at` reads of an aggregate trade: its id and its first trade's id."""

    a: _Id
    f: _Id


class _Symbol(msgspec.Struct):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_Symbol]


class _Price(msgspec.Struct, gc=False):
    symbol: str
    price: _Positive


class Row(NamedTuple):
    """One fetched trade in the stream's terms: `id` is `t` for trades, `a` for aggregates."""

    id: int
    price: float
    qty: float
    time_ms: int
    buyer_is_maker: bool


class Page(NamedTuple):
    rows: list[Row]  # in id order
    bad: list[Any]  # rows that could not be read (dead letters)


async def fetch_symbols(rest: RestClient) -> dict[str, str]:
    """Every symbol Binance trades now: normalized (`BTC-USDT`) -> Binance's (`BTCUSDT`).

    Built from `baseAsset`/`quoteAsset`, not by splitting the glued name, so assets with
    unusual quote currencies normalize correctly; symbols not in status TRADING are left out.
    """
    answer = await rest.get_json(
        "/api/v3/exchangeInfo", {"symbolStatus": "TRADING", "showPermissionSets": "false"}
    )
    info = msgspec.convert(answer, _ExchangeInfo, strict=False)
    out: dict[str, str] = {}
    for s in info.symbols:
        if s.status != "TRADING":
            continue
        try:
            out[normalize_symbol(f"{s.baseAsset}-{s.quoteAsset}")] = s.symbol
        except SymbolError:
            continue
    return out


async def fetch_page(
    rest: RestClient, path: str, raw_symbol: str, from_id: int | None, limit: int = PAGE_LIMIT
) -> Page:
    """One page of trades of `raw_symbol` from `from_id` on (the most recent without one).

    `path` is `/api/v3/historicalTrades`, `/api/v3/aggTrades` or `/api/v3/trades` (the last
    takes no `fromId`).
    """
    params: dict[str, Any] = {"symbol": raw_symbol, "limit": limit}
    if from_id is not None and path != TRADES:
        params["fromId"] = from_id
    answer = await rest.get_json(path, params)
    if not isinstance(answer, list):
        return Page([], [answer])
    if path == AGG_TRADES:
        aggs, bad = read_rows(answer, _AggTrade)
        rows = [Row(a.a, a.p, a.q, a.T, a.m) for a in aggs]
    else:
        trades, bad = read_rows(answer, _Trade)
        rows = [Row(t.id, t.price, t.qty, t.time, t.isBuyerMaker) for t in trades]
    rows.sort()
    return Page(rows, bad)


async def first_id_at(
    rest: RestClient, path: str, raw_symbol: str, start_ms: int, end_ms: int
) -> int | None:
    """The id of the first trade of `raw_symbol` in [start_ms, end_ms] (at most an hour
    apart, Binance's limit), or None when none traded then: where a backfill by time starts
    paging by id. `/api/v3/aggTrades` is the only endpoint that searches by time; its `f` is
    the first plain trade id of an aggregate, `a` its own (`path` says which is wanted)."""
    params = {"symbol": raw_symbol, "startTime": start_ms, "endTime": end_ms, "limit": 1}
    answer = await rest.get_json(AGG_TRADES, params)
    rows, _ = read_rows(answer if isinstance(answer, list) else [], _AggStart)
    if not rows:
        return None
    return rows[0].a if path == AGG_TRADES else rows[0].f


async def fetch_prices(
    rest: RestClient, raw_symbols: Sequence[str]
) -> tuple[dict[str, float], list[Any]]:
    """Last price of each symbol (one request for all), and the rows that could not be read."""
    names = "[" + ",".join(f'"{s}"' for s in raw_symbols) + "]"
    answer = await rest.get_json("/api/v3/ticker/price", {"symbols": names})
    if isinstance(answer, dict):
        answer = [answer]
    if not isinstance(answer, list):
        return {}, [answer]
    rows, bad = read_rows(answer, _Price)
    return {row.symbol: row.price for row in rows}, bad


def rows_to_batch(
    rows: Iterable[Row], code: int, index: InstrumentIndex, source: str, recv_ts: int
) -> TradeBatch:
    """Fetched trades of one instrument as a batch, exactly as the stream would have given them."""
    rows = list(rows)
    n = len(rows)
    maker = np.fromiter((r.buyer_is_maker for r in rows), np.bool_, n)
    side = np.where(maker, np.int8(SIDE_SELL), np.int8(SIDE_BUY))
    ids, prices = [r.id for r in rows], [r.price for r in rows]
    sizes, ts = [r.qty for r in rows], [r.time_ms * 1000 for r in rows]
    return trade_batch(source, index.instruments, code, ids, prices, sizes, side, ts, recv_ts)


def prices_to_batch(
    prices: dict[str, float], index: InstrumentIndex, source: str, seq: int, now_us: int
) -> TradeBatch:
    """One price sample per symbol as a trade: size 0, side unknown, id = the poll's `seq`."""
    codes = [index.codes[s] for s in prices if s in index.codes]
    values = [p for s, p in prices.items() if s in index.codes]
    n = len(codes)
    return TradeBatch(
        source=source,
        instruments=index.instruments,
        instrument=np.array(codes, np.int32),
        seq=np.full(n, seq, np.int64),
        price=np.array(values, np.float64),
        size=np.zeros(n, np.float64),
        side=np.full(n, SIDE_UNKNOWN, np.int8),
        ts=np.full(n, now_us, np.int64),
        recv_ts=np.full(n, now_us, np.int64),
    )
