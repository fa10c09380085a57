"""The naive baseline: the per-message pipeline that tickpipe is measured against.

Written the way the classic market-data-to-candles pipelines of this kind do it, and not
made slow on purpose: `json.loads` per message, a dict of open candles keyed
(symbol, interval, start) updated per trade, one INSERT per trade into SQLite (WAL mode,
`synchronous=NORMAL`, a commit every 1,000 rows) and a candle upserted when it closes, which
is when its symbol's next trade falls in a later window. Whatever is still open at the end is
upserted too, so both paths end with the same candles in their stores (the tests check it).

It stores the same trade and candle columns as tickpipe's DuckDB store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tickpipe.engine.windows import Window
from tickpipe.symbols import normalize_symbol

COMMIT_EVERY = 1_000
_CREATE = """
CREATE TABLE IF NOT EXISTS trades (
    source TEXT, exchange TEXT, symbol TEXT, raw_symbol TEXT, trade_id TEXT, seq INTEGER,
    price REAL, size REAL, side TEXT, ts INTEGER, recv_ts INTEGER
);
CREATE TABLE IF NOT EXISTS candles (
    exchange TEXT, symbol TEXT, interval TEXT, start INTEGER, open REAL, high REAL, low REAL,
    close REAL, volume REAL, quote_volume REAL, vwap REAL, mean_price REAL, trades INTEGER,
    buy_volume REAL, sell_volume REAL, first_seq INTEGER, last_seq INTEGER, final INTEGER,
    revision INTEGER, updated_at INTEGER,
    PRIMARY KEY (exchange, symbol, interval, start)
);
"""
_INSERT_TRADE = "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_CANDLE = (
    "INSERT OR REPLACE INTO candles VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A SQLite file set up the usual way for an ingest loop: WAL, no fsync per commit."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(_CREATE)
    return con


def run_naive(
    chunks: Iterable[list[bytes]],
    db_path: Path,
    windows: tuple[Window, ...],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Feed every frame through the naive pipeline into `db_path`; returns the trade count."""
    con = open_sqlite(db_path)
    cur = con.cursor()
    sizes = [(w.name, w.size) for w in windows]
    names: dict[str, str] = {}  # BTCUSDT -> BTC-USDT
    candles: dict[tuple[str, str, int], dict] = {}  # open candles
    current: dict[tuple[str, str], int] = {}  # (symbol, interval) -> start of its open candle
    rows = 0

    def upsert(key: tuple[str, str, int], c: dict, final: bool) -> None:
        symbol, interval, start = key
        cur.execute(_UPSERT_CANDLE, (
            "binance", symbol, interval, start, c["open"], c["high"], c["low"], c["close"],
            c["volume"], c["quote_volume"], c["quote_volume"] / c["volume"] if c["volume"]
            else c["close"], c["price_sum"] / c["trades"], c["trades"], c["buy_volume"],
            c["sell_volume"], c["first_seq"], c["last_seq"], final, 0, time.time_ns() // 1000,
        ))  # fmt: skip

    for chunk in chunks:
        for frame in chunk:
            msg = json.loads(frame)
            data = msg.get("data")
            if not data or data.get("e") != "trade":
                continue
            raw = data["s"]
            symbol = names.get(raw)
            if symbol is None:
                symbol = names[raw] = normalize_symbol(raw)
            price = float(data["p"])
            qty = float(data["q"])
            seq = data["t"]
            ts = data["T"] * 1000
            sell = data["m"]  # the buyer was the maker: the taker sold
            cur.execute(_INSERT_TRADE, (
                "binance", "binance", symbol, raw, str(seq), seq, price, qty,
                "sell" if sell else "buy", ts, time.time_ns() // 1000,
            ))  # fmt: skip
            for interval, size in sizes:
                start = ts - ts % size
                key = (symbol, interval, start)
                c = candles.get(key)
                if c is None:
                    previous = current.get((symbol, interval))
                    if previous is not None:
                        old = (symbol, interval, previous)
                        upsert(old, candles.pop(old), True)
                    current[(symbol, interval)] = start
                    candles[key] = {
                        "open": price, "high": price, "low": price, "close": price,
                        "volume": qty, "quote_volume": price * qty, "price_sum": price,
                        "trades": 1, "buy_volume": 0.0 if sell else qty,
                        "sell_volume": qty if sell else 0.0, "first_seq": seq, "last_seq": seq,
                    }  # fmt: skip
                    continue
                if price > c["high"]:
                    c["high"] = price
                if price < c["low"]:
                    c["low"] = price
                c["close"] = price
                c["volume"] += qty
                c["quote_volume"] += price * qty
                c["price_sum"] += price
                c["trades"] += 1
                if sell:
                    c["sell_volume"] += qty
                else:
                    c["buy_volume"] += qty
                c["last_seq"] = seq
            rows += 1
            if rows % COMMIT_EVERY == 0:
                con.commit()
        if progress is not None:
            progress(rows)
    for key, c in candles.items():
        upsert(key, c, False)
    con.commit()
    con.close()
    return rows
