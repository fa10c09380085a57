"""The reads both stores answer, written once, in SQL that DuckDB and PostgreSQL both speak.

Every read here is said once with `?` placeholders; a store supplies only how it runs SQL
(`_rows`, `_dicts`: its connection and how its cursor hands back rows) and its `Dialect`: the
placeholder style and the few spellings in which the two databases part (the value of the
first/last row by an order). So both stores answer the API, a restart (finals, revisions,
the restore cut-off) and re-bucketed candle queries with the same numbers. Ties in event time
are broken by `seq`, so "last price" does not depend on the order rows happen to be scanned
in. The analytics are summed from candles (`analytics.py`: this class supplies
`candle_totals`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from tickpipe.durations import format_duration
from tickpipe.engine.windows import restore_cutoff
from tickpipe.records import (
    CANDLE_FIELDS,
    METRIC_FIELDS,
    TRADE_SCHEMA,
    Candle,
    PipelineMetric,
    TradeBatch,
)
from tickpipe.stores.analytics import CandleAnalytics, CandleTotals
from tickpipe.stores.base import Key, time_range

CANDLE_COLUMNS = ", ".join(CANDLE_FIELDS)
TRADE_COLUMNS = ", ".join(TRADE_SCHEMA.names)
_CANDLE_RANGE = "exchange = ? AND symbol = ? AND interval = ? AND start >= ? AND start < ?"


class Dialect:
    """DuckDB's spellings; another database overrides the ones it says differently."""

    def first(self, value: str, *order: str) -> str:
        """SQL for the `value` of the row that comes first by the columns `order`."""
        return f"arg_min({value}, {_tuple(order)})"

    def last(self, value: str, *order: str) -> str:
        """SQL for the `value` of the row that comes last by the columns `order`."""
        return f"arg_max({value}, {_tuple(order)})"

    def bind(self, sql: str) -> str:
        """`sql`, written with `?` placeholders, in this database's placeholder style."""
        return sql

    def binary(self, column: str) -> str:
        """`column` as ORDER BY sorts it in code-point order (Python's, whatever the locale)."""
        return column


def _tuple(columns: tuple[str, ...]) -> str:
    return columns[0] if len(columns) == 1 else f"({', '.join(columns)})"


class SqlReads(CandleAnalytics):
    """Mixin: the store provides `dialect`, `_rows`, `_dicts` and `_stream` (SQL with `?`
    placeholders)."""

    dialect = Dialect()

    def _rows(self, sql: str, params: list | None = None) -> list[tuple]:
        raise NotImplementedError

    def _dicts(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _stream(self, sql: str, params: list, rows: int) -> Iterator[pa.Table]:
        """The result of `sql` in tables of at most `rows` rows, on a connection of its own
        (a stream may stay open while other reads run)."""
        raise NotImplementedError

    def ping(self) -> None:
        self._rows("SELECT 1")

    # -- restart -------------------------------------------------------------------------

    def restore_cutoff(self, horizon: int, lateness: int, align: int) -> dict[tuple[str, str], int]:
        """Per (exchange, symbol), the window-aligned time before which nothing can change."""
        rows = self._rows("SELECT exchange, symbol, max(ts) FROM trades GROUP BY exchange, symbol")
        return {(e, s): restore_cutoff(ts, lateness, horizon, align) for e, s, ts in rows}

    def finals(self, since: int) -> set[Key]:
        """Keys of the final candles starting at or after `since` (a restart keeps them final)."""
        rows = self._rows(
            "SELECT exchange, symbol, interval, start FROM candles WHERE start >= ? AND final",
            [since],
        )
        return {(e, s, i, st) for e, s, i, st in rows}

    def revisions(self, since: int) -> dict[Key, int]:
        """Revision of each corrected candle starting at or after `since` (a restart goes on
        counting from there)."""
        rows = self._rows(
            "SELECT exchange, symbol, interval, start, revision FROM candles "
            "WHERE start >= ? AND revision > 0",
            [since],
        )
        return {(e, s, i, st): r for e, s, i, st, r in rows}

    # -- the API -------------------------------------------------------------------------

    def intervals(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT interval FROM candles ORDER BY 1")]

    def candles(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        start: int | None = None,
        end: int | None = None,
        bucket: int | None = None,
        interval_size: int | None = None,
    ) -> list[Candle]:
        """Candles of one symbol with `start` in [start, end), optionally re-bucketed.

        `bucket` (microseconds) must be a whole multiple of the stored interval's
        `interval_size`; the result then rolls the stored candles up into candles of that size.
        """
        lo = -(2**62) if start is None else start
        hi = 2**62 if end is None else end
        params: list[Any] = [exchange, symbol, interval, lo, hi]
        if bucket is None or bucket == interval_size:
            sql = f"SELECT {CANDLE_COLUMNS} FROM candles WHERE {_CANDLE_RANGE} ORDER BY start"
            rows = self._rows(sql, params)
        elif not interval_size or bucket % interval_size:
            raise ValueError("bucket must be a whole multiple of the stored interval")
        else:
            rows = self._rows(self._rebucket_sql(), [format_duration(bucket), bucket, *params])
        return [Candle(**dict(zip(CANDLE_FIELDS, r, strict=True))) for r in rows]

    def _rebucket_sql(self) -> str:
        first, last = self.dialect.first, self.dialect.last
        return f"""
            SELECT exchange, symbol, ? AS interval, start - start % ? AS bucket,
                {first("open", "start")}, max(high), min(low), {last("close", "start")},
                sum(volume), sum(quote_volume),
                CASE WHEN sum(volume) > 0 THEN sum(quote_volume) / sum(volume)
                     ELSE {last("close", "start")} END,
                sum(mean_price * trades) / sum(trades), CAST(sum(trades) AS BIGINT),
                sum(buy_volume), sum(sell_volume),
                {first("first_seq", "start")}, {last("last_seq", "start")},
                bool_and(final), max(revision), max(updated_at)
            FROM candles WHERE {_CANDLE_RANGE}
            GROUP BY exchange, symbol, bucket ORDER BY bucket
        """

    def has_instrument(self, exchange: str, symbol: str) -> bool:
        rows = self._rows(
            "SELECT 1 FROM candles WHERE exchange = ? AND symbol = ? LIMIT 1", [exchange, symbol]
        )
        return bool(rows)

    def has_exchange(self, exchange: str) -> bool:
        return bool(self._rows("SELECT 1 FROM candles WHERE exchange = ? LIMIT 1", [exchange]))

    def instrument_summary(self) -> list[tuple[str, str, int, int, int]]:
        return self._rows(
            "SELECT exchange, symbol, count(*), min(ts), max(ts) FROM trades "
            "GROUP BY exchange, symbol ORDER BY exchange, symbol"
        )

    def recent_trades(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        return self._dicts(
            f"SELECT {TRADE_COLUMNS} FROM trades WHERE exchange = ? AND symbol = ? "
            "ORDER BY ts DESC, seq DESC LIMIT ?",
            [exchange, symbol, limit],
        )

    def rolling_history(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT exchange, symbol, ts, avg_close_30m, min_price_5m, max_price_5m, "
            "avg_price_5m FROM rolling_stats WHERE exchange = ? AND symbol = ? "
            "ORDER BY ts DESC LIMIT ?",
            [exchange, symbol, limit],
        )

    def totals(self) -> dict[str, Any]:
        ((trades, last_ts, last_recv),) = self._rows(
            "SELECT count(*), max(ts), max(recv_ts) FROM trades"
        )
        ((candles,),) = self._rows("SELECT count(*) FROM candles")
        events = self._rows("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
        return {
            "stored_trades": trades, "stored_candles": candles, "last_trade_ts": last_ts,
            "last_recv_ts": last_recv, "events": dict(events),
        }  # fmt: skip

    def candle_totals(
        self, interval: str, start: int, end: int, exchange: str | None = None
    ) -> list[CandleTotals]:
        first, last = self.dialect.first, self.dialect.last
        where = "interval = ? AND start >= ? AND start < ?"
        params: list[Any] = [interval, start, end]
        if exchange is not None:
            where += " AND exchange = ?"
            params.append(exchange)
        rows = self._rows(
            f"SELECT exchange, symbol, min(start), {first('open', 'start')}, max(start), "
            f"{last('close', 'start')}, min(low), max(high), sum(volume), sum(quote_volume), "
            "CAST(sum(trades) AS BIGINT), sum(buy_volume), sum(sell_volume) "
            f"FROM candles WHERE {where} GROUP BY exchange, symbol",
            params,
        )
        return [CandleTotals(*r) for r in rows]

    # -- whole history, in bounded chunks (verify, export, tools) -------------------------

    def trade_batches(
        self, rows: int = 500_000, since: int | None = None, until: int | None = None
    ) -> Iterator[TradeBatch]:
        """Every stored trade with ts in [since, until) in batches of at most `rows`, by
        (exchange, symbol) in code-point order, then (ts, seq): one sorted read (PostgreSQL
        sorts beyond `work_mem` on disk)."""
        for table in self.trade_tables(rows, since, until):
            yield TradeBatch.from_arrow(table, source="store")

    def trade_tables(
        self, rows: int = 500_000, since: int | None = None, until: int | None = None
    ) -> Iterator[pa.Table]:
        """`trade_batches` as Arrow tables with every stored column, `source` included (a
        batch has one source; export writes each trade's own)."""
        order = self.dialect.binary
        sql = (
            f"SELECT {TRADE_COLUMNS} FROM trades WHERE ts >= ? AND ts < ? "
            f"ORDER BY {order('exchange')}, {order('symbol')}, ts, seq"
        )
        yield from self._stream(sql, list(time_range(since, until)), rows)

    def stored_candles(
        self, interval: str, rows: int = 100_000, since: int | None = None, until: int | None = None
    ) -> Iterator[Candle]:
        """Every stored candle of `interval` with start in [since, until), by (exchange,
        symbol) in code-point order, then start; read `rows` at a time."""
        order = self.dialect.binary
        sql = (
            f"SELECT {CANDLE_COLUMNS} FROM candles WHERE interval = ? AND start >= ? "
            f"AND start < ? ORDER BY {order('exchange')}, {order('symbol')}, start"
        )
        for table in self._stream(sql, [interval, *time_range(since, until)], rows):
            yield from candles_of(table)

    def duplicate_trades(self, since: int | None = None, until: int | None = None) -> int:
        """How many stored trades with ts in [since, until) repeat an (exchange, symbol,
        trade_id) stored before (PostgreSQL groups beyond `work_mem` on disk)."""
        ((n,),) = self._rows(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM trades "
            "WHERE ts >= ? AND ts < ? GROUP BY exchange, symbol, trade_id "
            "HAVING count(*) > 1) AS d",
            list(time_range(since, until)),
        )
        return int(n)  # PostgreSQL sums bigints as numeric

    def events(self, kind: str, limit: int) -> list[tuple[int, str, str, str]]:
        """The newest `limit` events of `kind` as (ts, kind, source, detail), newest first."""
        rows = self._rows(
            "SELECT ts, kind, source, detail FROM events WHERE kind = ? ORDER BY ts DESC LIMIT ?",
            [kind, limit],
        )
        return [(ts, k, source, detail) for ts, k, source, detail in rows]

    def metrics_since(
        self, since: int, limit: int, process: str | None = None
    ) -> list[PipelineMetric]:
        """The newest `limit` KPI rows with ts >= `since` (of one `process`), newest first
        (processes of one ts by name)."""
        where = "ts >= ?" if process is None else "ts >= ? AND process = ?"
        params = [since, limit] if process is None else [since, process, limit]
        rows = self._rows(
            f"SELECT {', '.join(METRIC_FIELDS)} FROM pipeline_metrics WHERE {where} "
            f"ORDER BY ts DESC, {self.dialect.binary('process')} LIMIT ?",
            params,
        )
        return [PipelineMetric(**dict(zip(METRIC_FIELDS, r, strict=True))) for r in rows]


def candles_of(table: pa.Table, rows: int = 4096) -> Iterator[Candle]:
    """The candle rows of `table` as candles, `rows` made at a time (a chunk of 100,000 as
    Python dicts at once would take 150 MB)."""
    for batch in table.to_batches(max_chunksize=rows):
        for row in batch.to_pylist():
            yield Candle(**row)
