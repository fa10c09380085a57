"""The one interface every store offers: what the pipeline writes and what the API reads.

The pipeline, `tickpipe serve`, `tickpipe verify` and `tickpipe bench` depend on this `Store`
protocol, never on one database, so the stores are interchangeable (`open_store`). No caller
hands a store SQL: every need is a named method, so a store that speaks no SQL answers it too.
The SQL stores (DuckDB, PostgreSQL) write each read once (`stores/reads.py`), each filling in
its own `Dialect`; `query` stays on them for tools and tests, outside the protocol.

A new store implements every method below, natively (its own queries; aggregation in Python
only where the database cannot), with these rules:

- `write`: one call is all or nothing. Trades are unique on (exchange, symbol, trade_id): a
  duplicate is ignored (DuckDB alone leaves that to the engine; `duplicate_trades` reports a
  copy). Candles are whole-row upserts keyed (exchange, symbol, interval, start) where a newer
  revision wins and an older one is ignored (same revision: final beats provisional);
  rolling statistics (exchange, symbol, ts) and KPIs (process, ts) are upserts, the last write
  of a key winning; events are kept.
- restart: `restore_cutoff`, `restore_batches` (in ts order, at most `rows` per batch),
  `finals`, `revisions`, so a new engine rebuilds its open windows exactly.
- reads for the API: as the docstrings say, with the same numbers as DuckDB (ties in event
  time broken by seq); `candles` re-buckets to any whole multiple of the stored interval.
  The analytics come from `candle_totals` (the `CandleAnalytics` mixin, `analytics.py`),
  never from a scan of trades. `read_budget`: the API's reads run on their own connections
  (never behind the writer's lock) and stop with `OverBudget` past their time budget.
- whole history: `trade_batches` and `stored_candles` stream in bounded chunks, ordered by
  (exchange, symbol) in code-point order, so `tickpipe verify` walks them side by side; they
  and `duplicate_trades` take an optional time range and hold bounded memory at any size.
- bad settings and an unreachable server: one line (`StoreError`); writes retried until
  `store_retry_for_s`, as the PostgreSQL store does.

Then it gets one row (and one fixture) in tests/stores/contract/conftest.py: the contract
suite runs every test above over it, and every API route against DuckDB's answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa

from tickpipe.records import Candle, PipelineMetric, RollingStat, TradeBatch
from tickpipe.stores.flush import Flush

if TYPE_CHECKING:
    from tickpipe.stores.analytics import CandleTotals

Key = tuple[str, str, str, int]  # (exchange, symbol, interval, start) of a candle


class StoreError(RuntimeError):
    """The store cannot be opened or written."""


class OverBudget(StoreError):
    """A read cut off by its time or memory budget; the message says which (the API answers
    503 with it)."""


# A restart reads the stored trades in batches of this many rows. Each batch costs about
# 200 bytes a row while it is converted and aggregated (Arrow, numpy columns, sort keys):
# 500,000 rows put a snapshot restart's peak RSS ~100 MB higher for no measurable speed.
RESTORE_BATCH_ROWS = 100_000


@runtime_checkable
class Store(Protocol):
    """A writer and a reader of trades, candles, rolling statistics, events and KPIs."""

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
        self, cutoff: dict[tuple[str, str], int], rows: int = RESTORE_BATCH_ROWS
    ) -> Iterator[TradeBatch]: ...

    def finals(self, since: int) -> set[Key]: ...

    def revisions(self, since: int) -> dict[Key, int]: ...

    # -- reading (the API) ---------------------------------------------------------------

    def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        ...

    def read_budget(self, timeout_s: float) -> AbstractContextManager[None]:
        """Reads the calling thread makes inside take `timeout_s` seconds at most, and
        never hold up the writer; past it they stop and raise `OverBudget`."""
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

    def candle_totals(
        self, interval: str, start: int, end: int, exchange: str | None = None
    ) -> list[CandleTotals]:
        """Per instrument (of one `exchange`), its candles of `interval` starting in
        [start, end) summed up: what the analytics are computed from."""
        ...

    def analytics_range(self, start: int, end: int) -> tuple[int, int]:
        """[start, end) widened to whole candles: the range the analytics cover."""
        ...

    def top_exchanges(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]:
        """Exchanges ranked `by` trades or quote volume over `analytics_range(start, end)`."""
        ...

    def top_tickers(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]:
        """Symbols across exchanges ranked `by` trades or quote volume, likewise."""
        ...

    def exchange_breakdown(
        self, exchange: str, start: int, end: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Trade statistics of one exchange over `analytics_range(start, end)`, and one row
        per ticker."""
        ...

    def events(self, kind: str, limit: int) -> list[tuple[int, str, str, str]]:
        """The newest `limit` events of `kind` as (ts, kind, source, detail), newest first
        (events of one ts by source, then detail, in code-point order)."""
        ...

    def metrics_since(
        self, since: int, limit: int, process: str | None = None
    ) -> list[PipelineMetric]:
        """The newest `limit` KPI rows with ts >= `since` (of one `process`), newest first
        (processes of one ts by name, in code-point order)."""
        ...

    # -- whole history, in bounded chunks (verify, export, tools) --------------------------

    def trade_batches(
        self, rows: int = RESTORE_BATCH_ROWS, since: int | None = None, until: int | None = None
    ) -> Iterator[TradeBatch]:
        """Every stored trade with ts in [since, until) in batches of at most `rows`, by
        (exchange, symbol) in code-point order (Python's `str` order), then (ts, seq). Memory
        stays bounded whatever the store's size (no sort of the whole history at once)."""
        ...

    def stored_candles(
        self, interval: str, rows: int = 100_000, since: int | None = None, until: int | None = None
    ) -> Iterator[Candle]:
        """Every stored candle of `interval` with start in [since, until), by (exchange,
        symbol) in code-point order, then start, read at most `rows` at a time."""
        ...

    def duplicate_trades(self, since: int | None = None, until: int | None = None) -> int:
        """How many stored trades with ts in [since, until) repeat an (exchange, symbol,
        trade_id) stored before (0 when the store keeps trades unique; `tickpipe verify`
        checks it), in bounded memory."""
        ...


ALL_TIME = (-(2**62), 2**62)  # [since, until) when a read is not limited in time


def time_range(since: int | None, until: int | None) -> tuple[int, int]:
    """[since, until) in µs, an open end given as None taken as no bound."""
    return (ALL_TIME[0] if since is None else since, ALL_TIME[1] if until is None else until)


@runtime_checkable
class SnapshotStore(Store, Protocol):
    """A store whose `write` is one transaction (DuckDB, PostgreSQL) keeps the engine snapshot
    (`engine/snapshot.py`) with the rows it matches, so a restart loads it instead of
    replaying the correction horizon. Cassandra and MongoDB have no multi-row transaction: a
    snapshot could get ahead of or behind the rows, so they restart by the replay.
    """

    def write_flush(self, flush: Flush) -> None:
        """As `write`, given as one `Flush`, and in the same transaction each part of its
        `snapshot` replaced (a part given None: deleted)."""
        ...

    def load_snapshot(self) -> dict[str, bytes]:
        """The stored snapshot parts ({} when none)."""
        ...


class FencedWrite(StoreError):
    """A write whose consumer-group offsets another processor moved since this one read them
    (it lost the partition): nothing of the write is stored."""


@runtime_checkable
class OffsetStore(SnapshotStore, Protocol):
    """A store that keeps a Kafka consumer group's offsets in the same transaction as the rows
    (PostgreSQL): a processor takes them as the truth of what is stored. `stream_offsets`
    claims the partitions; a `write_flush` with `offsets` moves each partition's stored offset
    only from the one this store last read or wrote, under its claim, so a processor that lost
    a partition cannot write for it once another claimed it (`FencedWrite`), and a retried
    write that had committed is not stored again."""

    def stream_offsets(
        self, group: str, topic: str, partitions: list[int]
    ) -> dict[int, tuple[int, str]]:
        """Claim the partitions; the stored (next offset, metadata) of those that have one."""
        ...


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def is_mongodb_url(url: str) -> bool:
    return url.startswith(("mongodb://", "mongodb+srv://"))


def open_store(
    url: str | None,
    duckdb_path: Any,
    read_only: bool = False,
    retry_for: float = 60.0,
    duckdb_memory_limit: str = "128MB",
) -> Store:
    """The store a `store` setting names: a PostgreSQL, Cassandra or MongoDB URL, or else the
    DuckDB file.

    PostgreSQL has no read-only mode here: the schema is created or migrated on open.
    """
    if url and is_postgres_url(url):
        from tickpipe.stores.postgresql import PostgresStore

        return PostgresStore(url, retry_for=retry_for)
    if url and url.startswith("cassandra://"):
        try:
            from tickpipe.stores.cassandra import CassandraStore
        except ImportError as exc:
            raise StoreError(str(exc)) from None
        return CassandraStore(url, retry_for=retry_for)
    if url and is_mongodb_url(url):
        from tickpipe.stores.mongodb import MongoStore  # says how to install pymongo if missing

        return MongoStore(url, retry_for=retry_for)
    from tickpipe.stores.duckdb import DuckDBStore

    return DuckDBStore(duckdb_path, read_only=read_only, memory_limit=duckdb_memory_limit)
