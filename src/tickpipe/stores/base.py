"""The one interface every store offers: what the pipeline writes and what the API reads.

The pipeline, `tickpipe serve` and `tickpipe verify` depend on this `Store` protocol, never on
one database, so the embedded DuckDB file and PostgreSQL are interchangeable (`open_store`).
Reads the API needs are store methods, not SQL handed in from outside: they are written once
(`stores/reads.py`) and each database fills in its own `Dialect`, so the answers are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa

from tickpipe.records import Candle, PipelineMetric, RollingStat, TradeBatch

if TYPE_CHECKING:
    from tickpipe.stores.reads import Dialect

Key = tuple[str, str, str, int]  # (exchange, symbol, interval, start) of a candle


class StoreError(RuntimeError):
    """The store cannot be opened or written."""


@runtime_checkable
class Store(Protocol):
    """A writer and a reader of trades, candles, rolling statistics, events and KPIs."""

    @property
    def dialect(self) -> Dialect:
        """How the store spells the SQL the databases part on (first/last by an order, ...)."""
        ...

    def describe(self) -> str:
        """Where the data is, for logs and /api/health (never a password)."""
        ...

    def close(self) -> None: ...

    # -- writing (one transaction per call) ------------------------------------------------

    def write(
        self,
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
    ) -> None: ...

    # -- restart -------------------------------------------------------------------------

    def restore_cutoff(
        self, horizon: int, lateness: int, align: int
    ) -> dict[tuple[str, str], int]: ...

    def restore_batches(
        self, cutoff: dict[tuple[str, str], int], rows: int = 500_000
    ) -> Iterator[TradeBatch]: ...

    def finals(self, since: int) -> set[Key]: ...

    def revisions(self, since: int) -> dict[Key, int]: ...

    # -- reading (the API) ---------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Rows of `sql` (`?` placeholders) in the SQL both databases speak: tools, tests."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        ...

    def intervals(self) -> list[str]: ...

    def candles(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        start: int | None = None,
        end: int | None = None,
        bucket: int | None = None,
        interval_size: int | None = None,
    ) -> list[Candle]: ...

    def has_instrument(self, exchange: str, symbol: str) -> bool:
        """Whether any candle of (exchange, symbol) is stored."""
        ...

    def has_exchange(self, exchange: str) -> bool: ...

    def instrument_summary(self) -> list[tuple[str, str, int, int, int]]:
        """(exchange, symbol, trade count, first ts, last ts) per stored instrument."""
        ...

    def recent_trades(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The newest trades of one instrument, newest first (ts, then seq)."""
        ...

    def rolling_history(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The newest rolling statistics of one instrument, newest first."""
        ...

    def totals(self) -> dict[str, Any]:
        """stored_trades, stored_candles, last_trade_ts, last_recv_ts and events by kind."""
        ...

    def top_exchanges(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]: ...

    def top_tickers(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]: ...

    def exchange_breakdown(
        self, exchange: str, start: int, end: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Trade statistics of one exchange over [start, end), and one row per ticker."""
        ...


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def is_mongodb_url(url: str) -> bool:
    return url.startswith(("mongodb://", "mongodb+srv://"))


def open_store(
    url: str | None, duckdb_path: Any, read_only: bool = False, retry_for: float = 60.0
) -> Store:
    """The store a `store` setting names: a PostgreSQL or MongoDB URL, or else the DuckDB file.

    PostgreSQL has no read-only mode here: the schema is created or migrated on open.
    """
    if url and is_postgres_url(url):
        from tickpipe.stores.postgresql import PostgresStore

        return PostgresStore(url, retry_for=retry_for)
    if url and is_mongodb_url(url):
        from tickpipe.stores.mongodb import MongoStore  # says how to install pymongo if missing

        # The contract drops `query` and `dialect` from `Store` (issue 12); until then:
        return MongoStore(url, retry_for=retry_for)  # type: ignore[return-value]
    from tickpipe.stores.duckdb import DuckDBStore

    return DuckDBStore(duckdb_path, read_only=read_only)
