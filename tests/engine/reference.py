"""Plain-Python references the engine tests compare against: no numpy, no engine code.

`batch_candles` is the batch recomputation of the semantics ("streaming equals batch"):
de-duplicated trades grouped by window, open and close by (ts, seq).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from tickpipe.records import Candle, Trade

EXACT = ("open", "high", "low", "close", "trades", "first_seq", "last_seq")
APPROX = ("volume", "quote_volume", "vwap", "mean_price", "buy_volume", "sell_volume")

Key = tuple[str, str, str, int]  # exchange, symbol, interval, start


def window_starts(ts: int, size: int, slide: int) -> list[int]:
    """Every slide-aligned start s with s <= ts < s + size, newest first."""
    starts = []
    s = ts - ts % slide
    while s + size > ts:
        starts.append(s)
        s -= slide
    return starts


def dedupe(trades: Iterable[Trade]) -> list[Trade]:
    """The first of each (exchange, symbol, trade_id), in the given order."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for t in trades:
        key = (t.exchange, t.symbol, t.trade_id)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def candle_of(trades: list[Trade]) -> dict:
    """The candle fields of one window's trades."""
    ordered = sorted(trades, key=lambda t: (t.ts, t.seq))
    volume = sum(t.size for t in ordered)
    quote = sum(t.price * t.size for t in ordered)
    return {
        "open": ordered[0].price,
        "high": max(t.price for t in ordered),
        "low": min(t.price for t in ordered),
        "close": ordered[-1].price,
        "volume": volume,
        "quote_volume": quote,
        "vwap": quote / volume if volume else ordered[-1].price,
        "mean_price": sum(t.price for t in ordered) / len(ordered),
        "trades": len(ordered),
        "buy_volume": sum(t.size for t in ordered if t.side == "buy"),
        "sell_volume": sum(t.size for t in ordered if t.side == "sell"),
        "first_seq": ordered[0].seq,
        "last_seq": ordered[-1].seq,
    }


def batch_candles(trades: Iterable[Trade], windows: Iterable[tuple[str, int, int]]) -> dict:
    """Candle fields by key for de-duplicated `trades` and windows given as (name, size, slide)."""
    windows = list(windows)
    groups: dict[Key, list[Trade]] = defaultdict(list)
    for t in trades:
        for name, size, slide in windows:
            for start in window_starts(t.ts, size, slide):
                groups[(t.exchange, t.symbol, name, start)].append(t)
    return {key: candle_of(group) for key, group in groups.items()}


def latest(candles: Iterable[Candle]) -> dict[Key, Candle]:
    """The last emitted version of each candle."""
    out: dict[Key, Candle] = {}
    for c in candles:
        out[(c.exchange, c.symbol, c.interval, c.start)] = c
    return out


def differences(candle: Candle, expected: dict) -> list[str]:
    """Fields of `candle` that differ from `expected` (exact, or within 1e-9 for sums)."""
    wrong = [f for f in EXACT if getattr(candle, f) != expected[f]]
    wrong += [f for f in APPROX if not math.isclose(getattr(candle, f), expected[f], rel_tol=1e-9)]
    return [f"{f}: got {getattr(candle, f)!r}, expected {expected[f]!r}" for f in wrong]


def assert_candles_equal(got: dict[Key, Candle], expected: dict[Key, dict]) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    problems = {key: d for key in expected if (d := differences(got[key], expected[key]))}
    assert not problems, f"{len(problems)} candles differ, e.g. {next(iter(problems.items()))}"
