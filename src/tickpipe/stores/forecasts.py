"""Where forecasts are kept: the forecasts made (the band on the chart) and each forecaster's
score sums (the scoreboard), in two small tables beside the candles.

A store that keeps them is a `ForecastStore`: DuckDB (`DuckDBForecasts`, mixed into its store)
and PostgreSQL (the same reads, `SqlForecastReads`; its writes and tables, migration 3, in
`postgresql.py`). Cassandra and MongoDB do not yet: with them the pipeline says that forecasts
need DuckDB or PostgreSQL, and the API answers 404 on /api/forecasts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import duckdb
import msgspec
import pyarrow as pa

from tickpipe.forecast.scores import ForecastPoint, Score

if TYPE_CHECKING:
    import threading

FORECAST_SCHEMA = """
CREATE TABLE IF NOT EXISTS forecasts (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    interval VARCHAR NOT NULL,
    start BIGINT NOT NULL,  -- of the candle forecast
    based_on BIGINT NOT NULL,  -- start of the candle that had closed
    close DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    made_at BIGINT NOT NULL,
    PRIMARY KEY (exchange, symbol, interval, start)
);
CREATE TABLE IF NOT EXISTS forecast_scores (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    interval VARCHAR NOT NULL,
    forecaster VARCHAR NOT NULL,
    n BIGINT NOT NULL,
    abs_err DOUBLE NOT NULL,
    sq_err DOUBLE NOT NULL,
    calls BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    band_n BIGINT NOT NULL,
    band_in BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (exchange, symbol, interval, forecaster)
);
"""
POINT_FIELDS: tuple[str, ...] = ForecastPoint.__struct_fields__
SCORE_FIELDS: tuple[str, ...] = Score.__struct_fields__
POINT_KEY = ("exchange", "symbol", "interval", "start")
SCORE_KEY = ("exchange", "symbol", "interval", "forecaster")


@runtime_checkable
class ForecastStore(Protocol):
    """A store that keeps forecasts and their scores."""

    def write_forecasts(self, points: Sequence[ForecastPoint], scores: Sequence[Score]) -> None:
        """In one transaction: the forecasts upserted on (exchange, symbol, interval, start),
        the scores on (exchange, symbol, interval, forecaster), the last write winning."""
        ...

    def forecast_points(
        self, exchange: str, symbol: str, interval: str, start: int, end: int
    ) -> list[ForecastPoint]:
        """The forecasts of candles starting in [start, end), oldest first."""
        ...

    def forecast_scores(
        self, exchange: str | None = None, symbol: str | None = None
    ) -> list[Score]:
        """The kept scores (of one exchange and symbol), by instrument, interval, forecaster."""
        ...


def _arrow(structs: Sequence[ForecastPoint] | Sequence[Score], fields: tuple[str, ...]) -> pa.Table:
    """The records as one Arrow table, a column per field in the table's order."""
    rows = [msgspec.structs.astuple(s) for s in structs]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    return pa.table({f: list(col) for f, col in zip(fields, columns, strict=True)})


class SqlForecastReads:
    """The reads of `ForecastStore` in SQL, on the store's read path (`_rows`: DuckDB's read
    cursors, PostgreSQL's read connections)."""

    def _rows(self, sql: str, params: list | None = None) -> list[tuple]:
        raise NotImplementedError

    def forecast_points(
        self, exchange: str, symbol: str, interval: str, start: int, end: int
    ) -> list[ForecastPoint]:
        rows = self._kept(
            f"SELECT {', '.join(POINT_FIELDS)} FROM forecasts WHERE exchange = ? AND symbol = ? "
            "AND interval = ? AND start >= ? AND start < ? ORDER BY start",
            [exchange, symbol, interval, start, end],
        )
        return [ForecastPoint(**dict(zip(POINT_FIELDS, row, strict=True))) for row in rows]

    def forecast_scores(
        self, exchange: str | None = None, symbol: str | None = None
    ) -> list[Score]:
        where, params = "", []
        if exchange is not None and symbol is not None:
            where, params = " WHERE exchange = ? AND symbol = ?", [exchange, symbol]
        rows = self._kept(
            f"SELECT {', '.join(SCORE_FIELDS)} FROM forecast_scores{where} "
            "ORDER BY exchange, symbol, interval, forecaster",
            params,
        )
        return [Score(**dict(zip(SCORE_FIELDS, row, strict=True))) for row in rows]

    def _kept(self, sql: str, params: list) -> list[tuple]:
        """The rows, or none from a DuckDB file written before forecasts were kept (opened
        read-only: the tables were never created)."""
        try:
            return self._rows(sql, params)
        except duckdb.CatalogException:
            return []


class DuckDBForecasts(SqlForecastReads):
    """`ForecastStore` for the DuckDB store: writes on its writer's connection under its lock,
    reads on read cursors like every other read."""

    _lock: threading.Lock
    _con: duckdb.DuckDBPyConnection

    def write_forecasts(self, points: Sequence[ForecastPoint], scores: Sequence[Score]) -> None:
        # As Arrow tables, like the candles: DuckDB's executemany costs ~10 ms a row, and the
        # writer's lock is held meanwhile (measured: 500 rows took 4-6 s).
        point_table = _arrow(points, POINT_FIELDS)  # noqa: F841 (read by DuckDB by name)
        score_table = _arrow(scores, SCORE_FIELDS)  # noqa: F841
        if not points and not scores:
            return
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                if points:
                    con.execute("INSERT OR REPLACE INTO forecasts SELECT * FROM point_table")
                if scores:
                    con.execute("INSERT OR REPLACE INTO forecast_scores SELECT * FROM score_table")
                con.execute("COMMIT")
            except Exception:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
