"""`tickpipe verify`: recompute every candle from the stored trades in one batch query and diff.

This is the proof that streaming equals batch: whatever order, duplication or lateness the
trades arrived with, the candles the engine streamed must equal a plain GROUP BY over the
de-duplicated trades. Prices, counts and sequence numbers must match exactly; sums of floats
(volumes, VWAP, mean) may differ in the last bits because they were added in another order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickpipe.engine.windows import parse_window
from tickpipe.stores.base import Store

EXACT = ("open", "high", "low", "close", "trades", "first_seq", "last_seq")
APPROX = ("volume", "quote_volume", "vwap", "mean_price", "buy_volume", "sell_volume")
REL_TOL = 1e-9


@dataclass
class Mismatch:
    exchange: str
    symbol: str
    interval: str
    start: int
    problem: str  # "missing", "extra", or the names of the fields that differ
    stored: dict = field(default_factory=dict)
    recomputed: dict = field(default_factory=dict)


@dataclass
class VerifyReport:
    trades: int
    duplicate_trades: int
    candles: int
    intervals: list[str]
    mismatches: list[Mismatch]
    mismatch_count: int

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0 and self.duplicate_trades == 0


def _recompute_sql(store: Store, interval: str) -> str:
    """Candles of one window kind straight from the trades table, in SQL that DuckDB and
    PostgreSQL share (the store spells "first/last by (ts, seq)" its own way)."""
    window = parse_window(interval)
    copies = window.size // window.slide
    dialect = store.dialect

    def first(value: str) -> str:
        return dialect.first(value, "ts", "seq")

    def last(value: str) -> str:
        return dialect.last(value, "ts", "seq")

    return f"""
        SELECT exchange, symbol, start,
            {first("price")} AS open, max(price) AS high, min(price) AS low,
            {last("price")} AS close, sum(size) AS volume,
            sum(price * size) AS quote_volume,
            CASE WHEN sum(size) > 0 THEN sum(price * size) / sum(size)
                 ELSE {last("price")} END AS vwap,
            avg(price) AS mean_price, count(*) AS trades,
            coalesce(sum(size) FILTER (WHERE side = 'buy'), 0) AS buy_volume,
            coalesce(sum(size) FILTER (WHERE side = 'sell'), 0) AS sell_volume,
            {first("seq")} AS first_seq, {last("seq")} AS last_seq
        FROM (
            SELECT trades.*, ts - ts % {window.slide} - g.j * {window.slide} AS start
            FROM trades CROSS JOIN generate_series(0, {copies - 1}) AS g(j)
        ) AS copies
        GROUP BY exchange, symbol, start
    """


def verify(
    store: Store,
    intervals: list[str] | None = None,
    show: int = 20,
    through_newest_stored: bool = False,
) -> VerifyReport:
    """Diff the stored candles of every interval against the batch recomputation.

    `through_newest_stored`: for a copy holding final candles only (the lake), a recomputed
    candle after an instrument's newest stored one was still open, not missing.
    """
    intervals = intervals or store.intervals()
    trades = store.query("SELECT count(*) FROM trades")[0][0]
    duplicates = store.query(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM trades "
        "GROUP BY exchange, symbol, trade_id HAVING count(*) > 1) AS d"
    )[0][0]
    duplicates = int(duplicates)  # PostgreSQL sums bigints as numeric
    candles = 0
    mismatches: list[Mismatch] = []
    count = 0
    fields = (*EXACT, *APPROX)
    differs = " OR ".join(
        [f"s.{f} IS DISTINCT FROM r.{f}" for f in EXACT]
        + [f"abs(s.{f} - r.{f}) > {REL_TOL} * greatest(abs(r.{f}), 1e-12)" for f in APPROX]
    )
    open_windows = (
        " AND NOT (s.start IS NULL AND r.start > coalesce((SELECT max(n.start) FROM s AS n "
        "WHERE n.exchange = r.exchange AND n.symbol = r.symbol), -1))"
        if through_newest_stored
        else ""
    )
    for interval in intervals:
        candles += store.query("SELECT count(*) FROM candles WHERE interval = ?", [interval])[0][0]
        select = ", ".join(f"s.{f}, r.{f}" for f in fields)
        rows = store.query(
            f"""
            WITH r AS ({_recompute_sql(store, interval)}),
                 s AS (SELECT * FROM candles WHERE interval = ?)
            SELECT coalesce(s.exchange, r.exchange), coalesce(s.symbol, r.symbol),
                   coalesce(s.start, r.start), s.start IS NULL, r.start IS NULL, {select}
            FROM s FULL OUTER JOIN r USING (exchange, symbol, start)
            WHERE (s.start IS NULL OR r.start IS NULL OR {differs}){open_windows}
            ORDER BY 1, 2, 3
            """,
            [interval],
        )
        count += len(rows)
        for row in rows[: max(0, show - len(mismatches))]:
            exchange, symbol, start, missing, extra, *values = row
            stored = dict(zip(fields, values[0::2], strict=True))
            recomputed = dict(zip(fields, values[1::2], strict=True))
            if missing:
                problem = "missing: the trades make this candle but the store has none"
            elif extra:
                problem = "extra: the store has this candle but no stored trade makes it"
            else:
                problem = ", ".join(f for f in fields if not _same(f, stored[f], recomputed[f]))
            mismatches.append(
                Mismatch(exchange, symbol, interval, start, problem, stored, recomputed)
            )
    return VerifyReport(trades, duplicates, candles, intervals, mismatches, count)


def _same(name: str, a, b) -> bool:
    if a is None or b is None:
        return a is b
    if name in APPROX:
        return abs(a - b) <= REL_TOL * max(abs(b), 1e-12)
    return a == b
