"""Do both paths end with the same candles? The check that makes the comparison fair.

Prices, counts and sequence numbers must be equal. Sums (volumes, vwap, mean price) are
compared with a relative tolerance: tickpipe adds per batch with numpy and then merges the
partial sums, the naive loop adds trade by trade, and float addition depends on the order.
`final`, `revision` and `updated_at` are left out: they say when a candle was written, and
the naive path cannot revise a candle at all.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

KEY = ("exchange", "symbol", "interval", "start")
EXACT = ("open", "high", "low", "close", "trades", "first_seq", "last_seq")
SUMS = ("volume", "quote_volume", "vwap", "mean_price", "buy_volume", "sell_volume")
COMPARED = KEY + EXACT + SUMS

Candles = dict[tuple, dict[str, float]]


def duckdb_candles(path: Path) -> Candles:
    """The candles of a tickpipe DuckDB file (opened read-only)."""
    from tickpipe.stores.duckdb import DuckDBStore

    store = DuckDBStore(path, read_only=True)
    try:
        rows = [
            tuple(getattr(c, f) for f in COMPARED)
            for interval in store.intervals()
            for c in store.stored_candles(interval)
        ]
    finally:
        store.close()
    return _index(rows)


def sqlite_candles(path: Path) -> Candles:
    """The candles of the naive baseline's SQLite file."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute(f"SELECT {', '.join(COMPARED)} FROM candles").fetchall()
    finally:
        con.close()
    return _index(rows)


def _index(rows: list[tuple]) -> Candles:
    n = len(KEY)
    return {row[:n]: dict(zip(COMPARED[n:], row[n:], strict=True)) for row in rows}


def diff_candles(a: Candles, b: Candles, rel: float = 1e-9, limit: int = 10) -> list[str]:
    """Readable differences between two candle sets; empty when they match."""
    problems = []
    for key in sorted(a.keys() - b.keys())[:limit]:
        problems.append(f"{key}: only in the first")
    for key in sorted(b.keys() - a.keys())[:limit]:
        problems.append(f"{key}: only in the second")
    for key in sorted(a.keys() & b.keys()):
        x, y = a[key], b[key]
        for name in EXACT:
            if x[name] != y[name]:
                problems.append(f"{key} {name}: {x[name]!r} != {y[name]!r}")
        for name in SUMS:
            if not math.isclose(x[name], y[name], rel_tol=rel, abs_tol=1e-12):
                problems.append(f"{key} {name}: {x[name]!r} != {y[name]!r}")
        if len(problems) >= limit:
            break
    return problems[:limit]
