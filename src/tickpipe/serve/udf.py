"""TradingView's UDF datafeed under `/udf`, so a chart built on TradingView's charting library
(its `UDFCompatibleDatafeed`, base URL `http://HOST:PORT/udf`) can draw tickpipe's candles.

The routes read the same store methods as `/api` through the same `ReadGate` and limits; only
the shapes differ. UDF clients read errors as `{"s": "error", "errmsg": ...}`, so these routes
get that shape from the app's error handlers (`app.py`), with the status `/api` would give
(400, 404, 503).

Resolutions are stored tumbling intervals of whole seconds, in TradingView's spelling: seconds
as `1S`, minutes as `1`, hours as minutes (`60`), days as `1D`. Hopping and sub-second
intervals have no UDF resolution and are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle
from tickpipe.runtime.clock import now_us
from tickpipe.serve.params import MAX_CANDLES, BadRequest, check_span, parse_int, required
from tickpipe.stores.base import ALL_TIME
from tickpipe.symbols import SymbolError, normalize_symbol

if TYPE_CHECKING:
    from tickpipe.serve.app import ApiContext

PREFIX = "/udf"
S = 1_000_000  # µs in a second
DAY_S = 86_400
MAX_UNIX_S = 10**11  # `from`/`to` beyond ±3,000 years are no times anyone charts
SEARCH_LIMIT = 30  # TradingView's own default
MAX_SEARCH = 100  # a larger `limit` is capped to this
GROWTH = 16  # each look further back for older bars reads this many times more candles
TYPE = "crypto"
_RESOLUTION = re.compile(r"(\d*)([SD]?)")


@dataclass(frozen=True, slots=True)
class Resolution:
    """A UDF resolution and the stored interval it reads."""

    name: str  # TradingView's spelling: "1S", "5", "60", "1D"
    interval: str  # the stored interval, e.g. "1h"
    size_s: int


def resolution_name(interval: str) -> str | None:
    """TradingView's spelling of a stored interval; None when it has none (hopping windows,
    fractions of a second, or not an interval)."""
    try:
        window = parse_window(interval)
    except ValueError:
        return None
    if window.hopping or window.size % S:
        return None
    seconds = window.size // S
    if seconds % DAY_S == 0:
        return f"{seconds // DAY_S}D"
    if seconds % 60 == 0:
        return str(seconds // 60)
    return f"{seconds}S"


def resolutions(intervals: Iterable[str]) -> list[Resolution]:
    """The UDF resolutions of `intervals`, shortest first."""
    out = []
    for interval in intervals:
        name = resolution_name(interval)
        if name is not None:
            out.append(Resolution(name, interval, resolution_seconds(name) or 0))
    return sorted(out, key=lambda r: r.size_s)


def resolution_seconds(text: str) -> int | None:
    """A UDF resolution in seconds: `30S`, `5` (minutes), `D` or `1D`. None for anything else
    (weeks and months do not line up with tickpipe's epoch-aligned windows)."""
    match = _RESOLUTION.fullmatch(text.strip().upper())
    if match is None or not (match[1] or match[2]):
        return None
    count = int(match[1] or 1)
    return count * {"S": 1, "": 60, "D": DAY_S}[match[2]] or None


def pick_resolution(text: str, stored: list[str]) -> Resolution:
    """The stored interval that answers resolution `text`; 400 naming the stored ones if none."""
    size_s = resolution_seconds(text)
    known = resolutions(stored)
    for resolution in known:
        if resolution.size_s == size_s:
            return resolution
    allowed = ", ".join(r.name for r in known) or "none stored yet"
    raise BadRequest(f"resolution={text!r}: not stored (stored: {allowed})")


# -- answers ----------------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status, headers, "application/json")


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


async def _instruments(ctx: ApiContext) -> list[tuple[str, str]]:
    """Every (exchange, symbol) with stored trades or in the running pipeline."""
    rows = await ctx.heavy(ctx.store.instrument_summary)
    found = {(exchange, symbol) for exchange, symbol, *_ in rows}
    if ctx.live_instruments is not None:
        found |= ctx.live_instruments()
    return sorted(found)


async def _resolve(ctx: ApiContext, text: str) -> tuple[str, str]:
    """`EXCHANGE:SYMBOL`, or a bare symbol only one exchange has; 404 if unknown."""
    exchange, colon, symbol = text.rpartition(":")
    if colon:
        return await ctx.instrument(exchange, symbol)
    try:
        symbol = normalize_symbol(text)
    except SymbolError:
        symbol = text.strip().upper()
    matches = [(e, s) for e, s in await _instruments(ctx) if s == symbol]
    if not matches:
        raise BadRequest(f"unknown symbol {text!r}", 404)
    if len(matches) > 1:
        names = ", ".join(f"{e}:{s}" for e, s in matches)
        raise BadRequest(f"symbol={text!r} is on several exchanges: give one of {names}")
    return matches[0]


def _search_item(exchange: str, symbol: str) -> dict[str, str]:
    full_name = f"{exchange}:{symbol}"
    return {
        "symbol": symbol, "full_name": full_name, "description": f"{symbol} on {exchange}",
        "exchange": exchange, "ticker": full_name, "type": TYPE,
    }  # fmt: skip


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


# -- routes -----------------------------------------------------------------------------------


async def config(request: Request) -> Response:
    """What the datafeed offers: the stored resolutions, the exchanges, search and time."""
    ctx = _ctx(request)
    names = [r.name for r in resolutions(await ctx.stored_intervals())]
    exchanges = sorted({exchange for exchange, _ in await _instruments(ctx)})
    return _json({
        "supports_search": True, "supports_group_request": False, "supports_marks": False,
        "supports_timescale_marks": False, "supports_time": True,
        "supported_resolutions": names,
        "exchanges": [
            {"value": "", "name": "All Exchanges", "desc": ""},
            *({"value": e, "name": e, "desc": e} for e in exchanges),
        ],
        "symbols_types": [{"name": "All types", "value": ""}, {"name": TYPE, "value": TYPE}],
    })  # fmt: skip


async def symbols(request: Request) -> Response:
    """One symbol's information: its precision (from its newest trades) and resolutions."""
    ctx = _ctx(request)
    exchange, symbol = await _resolve(ctx, required(request.query_params, "symbol"))
    known = resolutions(await ctx.stored_intervals())
    precision = await ctx.precision(exchange, symbol)
    seconds = [r.name for r in known if r.size_s < 60]
    minutes = [r.name for r in known if 60 <= r.size_s < DAY_S]
    days = [r.name for r in known if r.size_s >= DAY_S]
    full_name = f"{exchange}:{symbol}"
    return _json({
        "name": symbol, "ticker": full_name, "full_name": full_name,
        "description": f"{symbol} on {exchange}", "type": TYPE, "session": "24x7",
        "timezone": "Etc/UTC", "exchange": exchange, "listed_exchange": exchange,
        "format": "price", "minmov": 1, "pricescale": 10**precision.price_decimals,
        "has_intraday": True, "has_seconds": bool(seconds),
        "seconds_multipliers": [n.removesuffix("S") for n in seconds],
        "intraday_multipliers": minutes, "has_daily": bool(days),
        "daily_multipliers": [n.removesuffix("D") for n in days],
        "has_weekly_and_monthly": False, "supported_resolutions": [r.name for r in known],
        "volume_precision": precision.size_decimals, "data_status": "streaming",
    })  # fmt: skip


async def search(request: Request) -> Response:
    """Instruments whose `EXCHANGE:SYMBOL` holds `query` (any case; `btcusdt` finds BTC-USDT)."""
    q = request.query_params
    limit = min(parse_int(q, "limit", SEARCH_LIMIT, 1, 2**31), MAX_SEARCH)
    wanted_type = q.get("type", "").strip().lower()
    if wanted_type and wanted_type != TYPE:
        return _json([])
    exchange = q.get("exchange", "").strip().lower()
    needle = q.get("query", "").strip().lower()
    found = []
    for e, s in await _instruments(_ctx(request)):
        name = f"{e}:{s}".lower()
        if exchange and e != exchange:
            continue
        if needle in name or _compact(needle) in _compact(s):
            found.append(_search_item(e, s))
        if len(found) == limit:
            break
    return _json(found)


async def history(request: Request) -> Response:
    """Bars `[from, to)` (UNIX seconds), or the `countback` bars before `to`, as UDF columns.

    Without bars: `no_data`, with `nextTime` the newest bar before the range when there is one
    within `MAX_CANDLES` bars of it, so the chart can skip a gap instead of stopping there.
    """
    ctx = _ctx(request)
    q = request.query_params
    exchange, symbol = await _resolve(ctx, required(q, "symbol"))
    resolution = pick_resolution(required(q, "resolution"), await ctx.stored_intervals())
    step = resolution.size_s * S
    to_us = _unix_s(q, "to") * S
    countback = parse_int(q, "countback", 0, 0, MAX_CANDLES)  # 0: not given
    key = (exchange, symbol, resolution.interval, step)
    if countback:
        bars = await bars_before(ctx, key, to_us, countback)
        before_us = None  # bars_before looked as far back as a range may reach
    else:
        from_us = _unix_s(q, "from") * S
        if from_us >= to_us:
            raise BadRequest("from must be before to")
        check_span(from_us, to_us, step)
        bars = await ctx.read(ctx.store.candles, exchange, symbol, resolution.interval,
                              from_us, to_us)  # fmt: skip
        before_us = from_us
    if bars:
        return _json(udf_bars(bars))
    body: dict[str, Any] = {"s": "no_data"}
    older = await bars_before(ctx, key, before_us, 1) if before_us is not None else []
    if older:
        body["nextTime"] = older[-1].start // S
    return _json(body)


def _unix_s(query: Any, name: str) -> int:
    required(query, name)
    return parse_int(query, name, 0, -MAX_UNIX_S, MAX_UNIX_S)


async def bars_before(
    ctx: ApiContext, key: tuple[str, str, str, int], end_us: int, count: int
) -> list[Candle]:
    """The newest `count` candles of `key` (exchange, symbol, interval, step µs) starting
    before `end_us`, looking back at most `MAX_CANDLES` steps.

    Read through the same bounded candle read as /api/candles: `count` steps first (one read
    where there are no gaps), then spans `GROWTH` times longer, so a long gap costs a few
    reads and never more than `MAX_CANDLES` steps in all.
    """
    exchange, symbol, interval, step = key
    found: list[Candle] = []
    hi, span, looked = end_us, count, 0
    while len(found) < count and looked < MAX_CANDLES and hi > ALL_TIME[0]:
        span = min(span, MAX_CANDLES - looked)
        lo = max(hi - span * step, ALL_TIME[0])
        rows = await ctx.read(ctx.store.candles, exchange, symbol, interval, lo, hi)
        found = (rows + found)[-count:]
        hi, looked, span = lo, looked + span, span * GROWTH
    return found


def udf_bars(bars: list[Candle]) -> dict[str, Any]:
    """Candles as UDF's columns: `t` (bar start, UNIX seconds), `o`, `h`, `l`, `c`, `v`."""
    return {
        "s": "ok", "t": [b.start // S for b in bars], "o": [b.open for b in bars],
        "h": [b.high for b in bars], "l": [b.low for b in bars],
        "c": [b.close for b in bars], "v": [b.volume for b in bars],
    }  # fmt: skip


async def server_time(request: Request) -> Response:
    """The server's clock in UNIX seconds, as plain text (the chart's countdown uses it)."""
    return PlainTextResponse(str(now_us() // S))


ROUTES = [
    Route(f"{PREFIX}/config", config),
    Route(f"{PREFIX}/symbols", symbols),
    Route(f"{PREFIX}/search", search),
    Route(f"{PREFIX}/history", history),
    Route(f"{PREFIX}/time", server_time),
]
