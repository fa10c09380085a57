"""The PostgreSQL store: the state of record of the distributed mode (and usable by `run`).

Same tables, keys and answers as the DuckDB store: the reads are the shared ones
(`stores/reads.py`) in PostgreSQL's `Dialect`, and `write` shares its front (`stores/sql.py`).
What is its own: connections with retry, the schema's migrations and the bulk write path.
Every write is one transaction:
- trades go by binary COPY straight into `trades` (partitioned by day, migration 4), under a
  savepoint; its one btree, the unique key (exchange, symbol, ts, trade_id), refuses a trade
  stored before, and only then is the flush staged and inserted with `ON CONFLICT DO NOTHING`,
  so replaying a flush after a crash stores nothing twice (the Kafka processor relies on this)
  while a flush of new trades (the usual one) pays no staging, sort or conflict lookups;
- candles are staged the same way and upserted as whole rows, but never over a newer one: a
  stored candle is replaced unless its revision is higher, or the revision is equal and the
  stored candle is final while the incoming one is still provisional;
- rolling statistics and KPIs are whole-row upserts on their keys; events are stored once.

A write that fails because the server went away is retried on a new connection with capped
backoff until `retry_for` seconds have passed: the transaction is all-or-nothing, so a retry
is safe. A connection the server refuses for a reason a retry cannot mend (a wrong password, an
untrusted certificate, no TLS where `sslmode` requires it: `postgresql_refusals.py`) fails at
once with one line naming the cause. tickpipe creates and migrates its own schema
(`schema_version`, ordered migrations, under an advisory lock so two processes starting
together do not collide). With TimescaleDB available, trades and candles become hypertables
with compression; without it, trades are partitioned by day (declarative partitioning; the
writer creates a day's partition when it first writes there, and retention drops whole
partitions) and the other tables are plain.

Reads run on a small pool of connections of their own (`read_connections`), never on the
writer's; inside a read budget each runs in a transaction whose `statement_timeout` is what is
left of the budget, so the server itself cancels a read over it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import msgspec
import numpy as np
import psycopg
import pyarrow as pa
from psycopg import conninfo

from tickpipe.forecast.scores import ForecastPoint, Score
from tickpipe.records import (
    CANDLE_FIELDS,
    METRIC_FIELDS,
    TRADE_SCHEMA,
    RollingStat,
    TradeBatch,
)
from tickpipe.stores.base import RESTORE_BATCH_ROWS, FencedWrite, OverBudget, StoreError
from tickpipe.stores.budget import MEMORY_REASON, ReadBudget
from tickpipe.stores.flush import Flush, StreamOffsets, trade_columns
from tickpipe.stores.forecasts import (
    POINT_FIELDS,
    POINT_KEY,
    SCORE_FIELDS,
    SCORE_KEY,
    SqlForecastReads,
)
from tickpipe.stores.postgresql_refusals import refusal
from tickpipe.stores.reads import Dialect
from tickpipe.stores.retry import Backoff
from tickpipe.stores.sql import SqlStore, candle_upsert, upsert_sql

log = logging.getLogger("tickpipe")
T = TypeVar("T")

MIGRATION_LOCK = 0x7469636B  # advisory lock key ("tick"): one migrating process at a time
PARTITION_LOCK = 0x74696370  # ("ticp"): one process at a time creates trades partitions
DAY_US = 86_400_000_000
TRADE_FIELDS = tuple(TRADE_SCHEMA.names)
ROLLING_FIELDS: tuple[str, ...] = RollingStat.__struct_fields__

TRADE_TYPES = ["text"] * 4 + ["text", "int8", "float8", "float8", "text", "int8", "int8"]
_CANDLE_TYPES = {
    "exchange": "text", "symbol": "text", "interval": "text", "start": "int8", "trades": "int8",
    "first_seq": "int8", "last_seq": "int8", "final": "bool", "revision": "int4",
    "updated_at": "int8",
}  # fmt: skip
CANDLE_TYPES = [_CANDLE_TYPES.get(f, "float8") for f in CANDLE_FIELDS]
ROLLING_TYPES = ["text", "text", "int8", "float8", "float8", "float8", "float8"]
METRIC_TYPES = ["int8", "text", "float8", "int8", "float8", "int8", "float8", "float8", "int8"]
EVENT_TYPES = ["int8", "text", "text", "text"]
POINT_TYPES = ["text", "text", "text", "int8", "int8", "float8", "float8", "float8", "int8"]
SCORE_TYPES = ["text"] * 4 + ["int8", "float8", "float8"] + ["int8"] * 5

# Ordered migrations: (version, statements). Append only; never edit one that has shipped.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE trades (
            source text NOT NULL,
            exchange text NOT NULL,
            symbol text NOT NULL,
            raw_symbol text NOT NULL,
            trade_id text NOT NULL,
            seq bigint NOT NULL,
            price double precision NOT NULL,
            size double precision NOT NULL,
            side text NOT NULL,
            ts bigint NOT NULL,
            recv_ts bigint NOT NULL
        );
        CREATE TABLE candles (
            exchange text NOT NULL,
            symbol text NOT NULL,
            interval text NOT NULL,
            start bigint NOT NULL,
            open double precision NOT NULL,
            high double precision NOT NULL,
            low double precision NOT NULL,
            close double precision NOT NULL,
            volume double precision NOT NULL,
            quote_volume double precision NOT NULL,
            vwap double precision NOT NULL,
            mean_price double precision NOT NULL,
            trades bigint NOT NULL,
            buy_volume double precision NOT NULL,
            sell_volume double precision NOT NULL,
            first_seq bigint NOT NULL,
            last_seq bigint NOT NULL,
            final boolean NOT NULL,
            revision integer NOT NULL,
            updated_at bigint NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, start)
        );
        CREATE TABLE rolling_stats (
            exchange text NOT NULL,
            symbol text NOT NULL,
            ts bigint NOT NULL,
            avg_close_30m double precision NOT NULL,
            min_price_5m double precision NOT NULL,
            max_price_5m double precision NOT NULL,
            avg_price_5m double precision NOT NULL,
            PRIMARY KEY (exchange, symbol, ts)
        );
        CREATE TABLE pipeline_metrics (
            ts bigint NOT NULL,
            process text NOT NULL,
            period_s double precision NOT NULL,
            trades bigint NOT NULL,
            trades_per_s double precision NOT NULL,
            candles bigint NOT NULL,
            lag_p50_ms double precision NOT NULL,
            lag_p99_ms double precision NOT NULL,
            queue_depth bigint NOT NULL,
            PRIMARY KEY (process, ts)
        );
        CREATE TABLE events (
            ts bigint NOT NULL,
            kind text NOT NULL,
            source text NOT NULL,
            detail text NOT NULL
        );
        -- Events have no natural key; this one makes a retried or replayed write store each
        -- event once (md5: a detail may be longer than an index entry allows).
        CREATE UNIQUE INDEX events_key ON events (ts, kind, source, md5(detail));
        CREATE INDEX candles_interval ON candles (interval, start);
        -- BRIN: trades arrive nearly in time order, so a range index costs next to nothing
        -- to keep up, unlike a btree on every insert.
        CREATE INDEX trades_time ON trades USING brin (ts);
        CREATE INDEX trades_instrument_time ON trades (exchange, symbol, ts);
        """,
    ),
    (
        2,
        """
        -- The engine snapshot, written in the same transaction as the rows it matches.
        CREATE TABLE engine_snapshot (part text PRIMARY KEY, data bytea NOT NULL);
        """,
    ),
    (
        3,
        """
        -- Next-candle forecasts and their score sums (stores/forecasts.py).
        CREATE TABLE forecasts (
            exchange text NOT NULL,
            symbol text NOT NULL,
            interval text NOT NULL,
            start bigint NOT NULL,
            based_on bigint NOT NULL,
            close double precision NOT NULL,
            low double precision NOT NULL,
            high double precision NOT NULL,
            made_at bigint NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, start)
        );
        CREATE TABLE forecast_scores (
            exchange text NOT NULL,
            symbol text NOT NULL,
            interval text NOT NULL,
            forecaster text NOT NULL,
            n bigint NOT NULL,
            abs_err double precision NOT NULL,
            sq_err double precision NOT NULL,
            calls bigint NOT NULL,
            hits bigint NOT NULL,
            band_n bigint NOT NULL,
            band_in bigint NOT NULL,
            updated_at bigint NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, forecaster)
        );
        """,
    ),
    (
        4,
        f"""
        -- The write path, measured (benchmarks/pg_write.py): the heap takes a binary COPY at
        -- ~500k rows/s; the cost was the btrees on text, (exchange, symbol, trade_id) and
        -- (exchange, symbol, ts), and the staging sort and conflict check. Trades become
        -- partitioned by day (retention drops whole partitions) with one btree: the unique
        -- key (exchange, symbol, ts, trade_id). A partition's unique key must hold its time
        -- column; a trade's time never changes, so the key is as strict as before, and in
        -- this order it also serves every per-instrument read by time (recent trades, the
        -- restore) that trades_instrument_time served.
        CREATE FUNCTION tickpipe_trades_partition(day bigint) RETURNS void LANGUAGE plpgsql
        AS $$
        DECLARE
            name text := 'trades_d' || CASE WHEN day < 0 THEN 'm' ELSE '' END || abs(day);
        BEGIN
            IF to_regclass(name) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF trades FOR VALUES FROM (%s) TO (%s)',
                    name, day * {DAY_US}::bigint, (day + 1) * {DAY_US}::bigint);
            END IF;
        END $$;
        ALTER TABLE trades RENAME TO trades_v3;
        CREATE TABLE trades (LIKE trades_v3) PARTITION BY RANGE (ts);
        SELECT tickpipe_trades_partition(day) FROM (
            SELECT DISTINCT floor(ts / {DAY_US}.0)::bigint AS day FROM trades_v3) AS days;
        INSERT INTO trades SELECT * FROM trades_v3;
        DROP TABLE trades_v3;
        CREATE UNIQUE INDEX trades_key ON trades (exchange, symbol, ts, trade_id);
        CREATE INDEX trades_time ON trades USING brin (ts);
        """,
    ),
    (
        5,
        """
        -- A Kafka consumer group's offsets, written in the transaction of the rows they
        -- produced: what is stored is exactly what came before them (`stream_offsets`).
        -- next_offset -1: none yet. claim: bumped by each processor taking the partition; a
        -- write with an older claim is refused (the processor lost the partition).
        CREATE TABLE stream_offsets (
            consumer_group text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL,
            metadata text NOT NULL,
            claim bigint NOT NULL,
            PRIMARY KEY (consumer_group, topic, partition)
        );
        """,
    ),
]

# TimescaleDB's hypertables are time-partitioned already: there the migrations above that
# reshape plain tables are replaced by these (none needed).
TIMESCALE_MIGRATIONS: dict[int, str] = {4: "SELECT 1"}

# TimescaleDB wants the partitioning column in every unique index, hence `ts` in the trades
# key there (a trade's time never changes, so the key is as strict). Chunks of one day;
# compression after a week, long past any correction horizon, segmented per instrument.
TIMESCALE = f"""
    CREATE UNIQUE INDEX trades_key ON trades (exchange, symbol, trade_id, ts);
    SELECT create_hypertable('trades', 'ts', chunk_time_interval => {DAY_US}::bigint);
    SELECT create_hypertable('candles', 'start', chunk_time_interval => {DAY_US}::bigint);
    CREATE FUNCTION tickpipe_now_us() RETURNS bigint LANGUAGE sql STABLE
        AS $$ SELECT (extract(epoch FROM now()) * 1000000)::bigint $$;
    SELECT set_integer_now_func('trades', 'tickpipe_now_us');
    SELECT set_integer_now_func('candles', 'tickpipe_now_us');
    ALTER TABLE trades SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'exchange, symbol', timescaledb.compress_orderby = 'ts');
    ALTER TABLE candles SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'exchange, symbol, interval',
        timescaledb.compress_orderby = 'start');
    SELECT add_compression_policy('trades', {7 * DAY_US}::bigint);
    SELECT add_compression_policy('candles', {7 * DAY_US}::bigint);
"""
PLAIN_TRADES_KEY = "CREATE UNIQUE INDEX trades_key ON trades (exchange, symbol, trade_id);"

# A flush of 100k+ trades outgrows the default 8MB of session memory for temporary tables and
# the 4MB for sorting it into key order.
STAGING = """
    SET temp_buffers = '64MB';
    SET work_mem = '64MB';
    CREATE TEMP TABLE IF NOT EXISTS stage_trades (LIKE trades) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS stage_candles (LIKE candles) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS stage_events (LIKE events) ON COMMIT DELETE ROWS;
"""


CANDLE_UPSERT = candle_upsert("stage_candles")
EVENT_FIELDS = ("ts", "kind", "source", "detail")
EVENT_INSERT = (
    "INSERT INTO events (ts, kind, source, detail) SELECT ts, kind, source, detail "
    "FROM stage_events ORDER BY ts, kind, source, md5(detail) ON CONFLICT DO NOTHING"
)
TRADE_INSERT = (
    f"INSERT INTO trades ({', '.join(TRADE_FIELDS)}) SELECT {', '.join(TRADE_FIELDS)} "
    "FROM stage_trades ORDER BY exchange, symbol, ts, trade_id ON CONFLICT DO NOTHING"
)


def _params(dsn: str) -> dict[str, Any]:
    """The DSN's settings, {} when it does not parse."""
    try:
        return conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return {}


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and /api/health."""
    params = _params(dsn)
    if not params:
        return "postgresql://(unparsable URL)"
    host, port, db = params.get("host", ""), params.get("port", ""), params.get("dbname", "")
    user = params.get("user")
    return f"postgresql://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{db}"


def _lost(exc: BaseException, con: psycopg.Connection | None) -> bool:
    """Whether `exc` means the server or the connection went away, or the server rolled the
    transaction back to resolve a conflict with another writer: a retry may succeed."""
    if con is None or con.closed or con.broken:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    if isinstance(exc, psycopg.errors.TransactionRollback):  # deadlock, serialization
        return True
    return isinstance(
        exc,
        psycopg.errors.AdminShutdown
        | psycopg.errors.CannotConnectNow
        | psycopg.errors.CrashShutdown,
    )


class PostgresDialect(Dialect):
    """PostgreSQL's spellings: `%s` placeholders, ordered `array_agg` for first/last (no
    arg_min over a row)."""

    def first(self, value: str, *order: str) -> str:
        return f"(array_agg({value} ORDER BY {', '.join(order)}))[1]"

    def last(self, value: str, *order: str) -> str:
        return f"(array_agg({value} ORDER BY {', '.join(f'{o} DESC' for o in order)}))[1]"

    def bind(self, sql: str) -> str:
        """`?` placeholders as psycopg's `%s`, a literal `%` doubled; SQL that has no `?`
        (tools and tests may write `%s` themselves) is left as it is."""
        return sql.replace("%", "%%").replace("?", "%s") if "?" in sql else sql

    def binary(self, column: str) -> str:
        return f'{column} COLLATE "C"'


class PostgresStore(SqlForecastReads, SqlStore):
    """Reader and writer over one PostgreSQL database. Thread-safe: one connection for writes
    and a pool of `read_connections` for reads, each under its own lock.

    `retry_for`: how long a write keeps retrying after the server went away before it fails.
    """

    dialect = PostgresDialect()

    def __init__(
        self,
        dsn: str,
        retry_for: float = 60.0,
        connect_timeout: float = 5.0,
        read_retry_for: float = 5.0,
        read_connections: int = 8,
    ) -> None:
        self.dsn = dsn
        # What a refusal's line names (never the password, which is in the DSN too).
        self._tls_settings = {
            k: v for k, v in _params(dsn).items() if k in ("sslmode", "sslrootcert") and v
        }
        self.retry_for = retry_for
        self.read_retry_for = read_retry_for
        self.connect_timeout = connect_timeout
        self.timescale = False
        # Days of trades known to have their partition (see `_add_partitions`).
        self._partitions: set[int] = set()
        # Writes whose trades met stored ones and went the slow way (`_write_trades`).
        self.conflicted_writes = 0
        # (group, topic, partition) -> (this store's claim, the stored offset it last read or
        # wrote): a write moves an offset only from there, under that claim (`_write_offsets`).
        self._offsets: dict[tuple[str, str, int], tuple[int, int]] = {}
        # Reads on connections of their own: the API's reads never queue behind a flush of
        # 100k trades, and a slow read holds up only its own connection.
        self._writer = _Link(self._open, STAGING)
        self._reader_links = [_Link(self._open, "") for _ in range(read_connections)]
        self._readers: queue.Queue[_Link] = queue.Queue()
        for link in self._reader_links:
            self._readers.put(link)
        self._budget = ReadBudget()
        with self._writer.lock:
            con = self._connect()
            try:
                self.timescale = migrate(con)
                con.execute(STAGING)
            except psycopg.Error as exc:
                con.close()
                reason = " ".join(str(exc).split())
                raise StoreError(
                    f"PostgreSQL at {self.describe()}: cannot create or migrate tickpipe's "
                    f"schema: {reason}"
                ) from None
            except BaseException:
                con.close()
                raise
            self._writer.con = con

    def describe(self) -> str:
        return redact(self.dsn)

    def close(self) -> None:
        self._writer.close()
        for link in self._reader_links:
            link.close()

    # -- connection ----------------------------------------------------------------------

    def _open(self) -> psycopg.Connection:
        return psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, round(self.connect_timeout)),
            application_name="tickpipe",
        )  # fmt: skip

    def _connect(self) -> psycopg.Connection:
        """A connection, or a one-line StoreError (start-up: a bad URL or server stops here)."""
        try:
            return self._open()
        except psycopg.Error as exc:
            raise self._cannot_connect(exc) from None

    def _cannot_connect(self, exc: psycopg.Error) -> StoreError:
        message = str(exc)
        reason = refusal(message, self._tls_settings) or " ".join(message.split())
        reason = reason or type(exc).__name__
        return StoreError(f"cannot connect to PostgreSQL at {self.describe()}: {reason}")

    def _with_retry(
        self, link: _Link, fn: Callable[[psycopg.Connection], T], deadline_s: float, what: str
    ) -> T:
        """Run `fn` on the link's connection; when the server went away, reconnect and run it
        again (with capped, growing pauses) until `deadline_s` has passed."""
        backoff = Backoff("PostgreSQL", self.describe(), what, deadline_s)
        with link.lock:
            while True:
                con = link.con
                try:
                    con = link.connection()
                    return fn(con)
                except psycopg.Error as exc:
                    if link.con is None and refusal(str(exc), self._tls_settings):
                        raise self._cannot_connect(exc) from None  # a setting to fix: no retry
                    if not _lost(exc, con):
                        raise
                    link.drop()
                    why = (
                        "rolled back by the server"
                        if isinstance(exc, psycopg.errors.TransactionRollback)
                        else "server unreachable"
                    )
                    backoff.wait(exc, " ".join(str(exc).split())[:300], why)

    # -- writing -------------------------------------------------------------------------

    def _write(self, flush: Flush) -> None:
        """Binary COPY into staging tables, then upserts (retried whole if the server goes
        away)."""
        trade_values = trade_columns(flush.trades)
        candle_rows = [msgspec.structs.astuple(c) for c in flush.candles]
        rolling_rows = [msgspec.structs.astuple(s) for s in flush.rolling]
        metric_rows = [msgspec.structs.astuple(m) for m in flush.metrics]
        event_rows = flush.events
        snapshot = flush.snapshot
        offsets = flush.offsets
        if not (trade_values or candle_rows or rolling_rows or metric_rows or event_rows
                or snapshot or offsets):  # fmt: skip
            return

        days = self._days(trade_values)

        def transaction(con: psycopg.Connection) -> None:
            try:
                self._add_partitions(con, days)
                write(con)
            except psycopg.errors.CheckViolation:
                if not days:
                    raise
                # No partition for a row: retention in another process dropped one this
                # store still took for there. Look again, and write once more.
                self._partitions.clear()
                self._add_partitions(con, days)
                write(con)

        def write(con: psycopg.Connection) -> None:
            # _WrittenBefore: an earlier try of this write committed, its answer was lost
            with contextlib.suppress(_WrittenBefore):
                write_all(con)

        def write_all(con: psycopg.Connection) -> None:
            with con.transaction(), con.cursor() as cur:
                if offsets is not None and offsets.positions:  # first: the rows are locked
                    self._write_offsets(cur, offsets)
                if trade_values:
                    self._write_trades(con, cur, trade_values)
                if candle_rows:
                    _copy(cur, "stage_candles", CANDLE_FIELDS, CANDLE_TYPES, candle_rows)
                    cur.execute(CANDLE_UPSERT)
                if rolling_rows:
                    _upsert_rows(cur, "rolling_stats", ROLLING_FIELDS, ROLLING_TYPES,
                                 ("exchange", "symbol", "ts"), rolling_rows)  # fmt: skip
                if metric_rows:
                    _upsert_rows(cur, "pipeline_metrics", METRIC_FIELDS, METRIC_TYPES,
                                 ("process", "ts"), metric_rows)  # fmt: skip
                if event_rows:
                    _copy(cur, "stage_events", EVENT_FIELDS, EVENT_TYPES, event_rows)
                    cur.execute(EVENT_INSERT)
                for part, data in snapshot.items():
                    cur.execute("DELETE FROM engine_snapshot WHERE part = %s", [part])
                    if data is not None:
                        cur.execute("INSERT INTO engine_snapshot VALUES (%s, %s)", [part, data])

        self._with_retry(self._writer, transaction, self.retry_for, "write")
        if offsets is not None:
            for p, (offset, _) in offsets.positions.items():
                key = (offsets.group, offsets.topic, p)
                self._offsets[key] = (self._offsets[key][0], offset)

    def stream_offsets(
        self, group: str, topic: str, partitions: list[int]
    ) -> dict[int, tuple[int, str]]:
        """Claim the partitions for this store's writes and return the stored (next offset,
        metadata) of those that have one. A write of this store moves them only from here on;
        a write of a store that claimed them before is refused from now on (`FencedWrite`)."""

        def claim(con: psycopg.Connection) -> list[tuple]:
            with con.transaction():  # in partition order: two claims never deadlock
                return con.execute(
                    "INSERT INTO stream_offsets SELECT %s, %s, p, -1, '', 1 "
                    "FROM unnest(%s::integer[]) AS p ORDER BY p "
                    "ON CONFLICT (consumer_group, topic, partition) "
                    "DO UPDATE SET claim = stream_offsets.claim + 1 "
                    "RETURNING partition, next_offset, metadata, claim",
                    [group, topic, sorted(partitions)],
                ).fetchall()

        # On the writer's connection: after what it wrote, and in its order.
        rows = self._with_retry(self._writer, claim, self.retry_for, "claim offsets")
        found = {}
        for p, offset, metadata, claimed in rows:
            self._offsets[(group, topic, int(p))] = (int(claimed), int(offset))
            if offset >= 0:
                found[int(p)] = (int(offset), str(metadata))
        return found

    def _write_offsets(self, cur: psycopg.Cursor, offsets: StreamOffsets) -> None:
        """Move each partition's stored offset from the one this store knows to the new one,
        under this store's claim. Moved or claimed by someone else since: by an earlier try
        of this same write that committed (raise `_WrittenBefore`: nothing to do), or by
        another processor (`FencedWrite`)."""
        group, topic = offsets.group, offsets.topic
        for p, (offset, metadata) in sorted(offsets.positions.items()):
            known = self._offsets.get((group, topic, p))
            if known is None:
                raise FencedWrite(f"offsets of {topic}[{p}] written before they were claimed")
            claim, before = known
            cur.execute(
                "UPDATE stream_offsets SET next_offset = %s, metadata = %s "
                "WHERE consumer_group = %s AND topic = %s AND partition = %s "
                "AND claim = %s AND next_offset = %s",
                [offset, metadata, group, topic, p, claim, before],
            )  # fmt: skip
            if cur.rowcount == 1:
                continue
            row = cur.execute(
                "SELECT next_offset, claim FROM stream_offsets WHERE consumer_group = %s "
                "AND topic = %s AND partition = %s", [group, topic, p],
            ).fetchone()  # fmt: skip
            if row is not None and tuple(row) == (offset, claim):
                self._check_written_before(cur, offsets)
            raise FencedWrite(
                f"group {group} topic {topic} partition {p} was taken by another processor "
                f"(stored offset {row[0] if row else None}, claim {row[1] if row else None}; "
                f"this one's: {before}, {claim}): nothing of this write is stored"
            )

    def _check_written_before(self, cur: psycopg.Cursor, offsets: StreamOffsets) -> None:
        """Whether every partition of `offsets` is stored as this write would leave it, under
        this store's claim (an earlier try committed): then raise `_WrittenBefore`."""
        rows = cur.execute(
            "SELECT partition, next_offset, claim FROM stream_offsets "
            "WHERE consumer_group = %s AND topic = %s AND partition = ANY(%s)",
            [offsets.group, offsets.topic, list(offsets.positions)],
        ).fetchall()  # fmt: skip
        want = {p: (o, self._offsets[(offsets.group, offsets.topic, p)][0])
                for p, (o, _) in offsets.positions.items()}  # fmt: skip
        if {int(p): (int(o), int(c)) for p, o, c in rows} == want:
            raise _WrittenBefore

    def _write_trades(
        self, con: psycopg.Connection, cur: psycopg.Cursor, values: list[list[Any]]
    ) -> None:
        """Trades by binary COPY straight into the table, under a savepoint: the unique key
        refuses a trade stored before, and only then (a replay, a retried transaction that had
        committed, a backfill over stored history) does the flush go the slow way, staged and
        inserted with ON CONFLICT DO NOTHING. A Kafka processor's flushes hold no stored trade
        (its restore marks them seen), so they take the fast way."""
        try:
            with con.transaction():
                _copy(cur, "trades", TRADE_FIELDS, TRADE_TYPES, zip(*values, strict=True))
            return
        except psycopg.errors.UniqueViolation:
            self.conflicted_writes += 1
        _copy(cur, "stage_trades", TRADE_FIELDS, TRADE_TYPES, zip(*values, strict=True))
        cur.execute(TRADE_INSERT)

    def _days(self, trade_values: list[list[Any]]) -> list[int]:
        """The days (ts // one day) of the trades, each a partition of `trades`."""
        if not trade_values or self.timescale:
            return []
        ts = np.asarray(trade_values[TRADE_FIELDS.index("ts")], np.int64)
        return np.unique(ts // DAY_US).tolist()

    def _add_partitions(self, con: psycopg.Connection, days: list[int]) -> None:
        """Create the day partitions of `trades` that `days` need and this store has not seen,
        in a short transaction of their own (creating one locks the whole table), one process
        at a time (two creating the same day would collide)."""
        missing = [d for d in days if d not in self._partitions]
        if not missing:
            return
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
            con.execute(
                "SELECT tickpipe_trades_partition(d) FROM unnest(%s::bigint[]) AS d", [missing]
            )
        self._partitions.update(missing)

    def drop_before(
        self, trades_before: int | None, candles_before: dict[str, int]
    ) -> tuple[int, int]:
        """Retention: drop the trades older than `trades_before` (µs) and the candles of each
        interval starting before its cut-off, in one transaction (retried whole if the server
        goes away); (trades, candles) dropped. Whole day partitions of trades are dropped (no
        row by row delete, nothing left to vacuum); only the day the cut-off falls in loses
        rows. Candles are rows, over their time index (on TimescaleDB the DELETEs reach the
        chunks, which it does not drop; not tried here, where TimescaleDB is not installed)."""

        def transaction(con: psycopg.Connection) -> tuple[int, int]:
            with con.transaction(), con.cursor() as cur:
                trades = candles = 0
                if trades_before is not None:
                    if not self.timescale:
                        trades += self._drop_partitions(cur, trades_before)
                    cur.execute("DELETE FROM trades WHERE ts < %s", [trades_before])
                    trades += max(cur.rowcount, 0)
                for interval, before in candles_before.items():
                    cur.execute(
                        "DELETE FROM candles WHERE interval = %s AND start < %s",
                        [interval, before],
                    )
                    candles += max(cur.rowcount, 0)
                return trades, candles

        return self._with_retry(self._writer, transaction, self.retry_for, "retention")

    def _drop_partitions(self, cur: psycopg.Cursor, before: int) -> int:
        """Drop the day partitions of trades that end at or before `before`; rows dropped."""
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'trades'::regclass"
        )
        dropped = 0
        for (name,) in cur.fetchall():
            day = _partition_day(name)
            if day is None or (day + 1) * DAY_US > before:
                continue
            cur.execute(f'SELECT count(*) FROM "{name}"')
            row = cur.fetchone()
            dropped += row[0] if row else 0
            cur.execute(f'DROP TABLE "{name}"')
            self._partitions.discard(day)
        return dropped

    def write_forecasts(self, points: Sequence[ForecastPoint], scores: Sequence[Score]) -> None:
        """Forecasts and score sums upserted in one transaction (`ForecastStore`)."""
        point_rows = [msgspec.structs.astuple(p) for p in points]
        score_rows = [msgspec.structs.astuple(s) for s in scores]
        if not point_rows and not score_rows:
            return

        def transaction(con: psycopg.Connection) -> None:
            with con.transaction(), con.cursor() as cur:
                if point_rows:
                    _upsert_rows(cur, "forecasts", POINT_FIELDS, POINT_TYPES, POINT_KEY,
                                 point_rows)  # fmt: skip
                if score_rows:
                    _upsert_rows(cur, "forecast_scores", SCORE_FIELDS, SCORE_TYPES, SCORE_KEY,
                                 score_rows)  # fmt: skip

        self._with_retry(self._writer, transaction, self.retry_for, "write")

    # -- reading -------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Rows of `sql` (`?` or `%s` placeholders), for tools and tests."""
        return self._rows(sql, params)

    def read_budget(self, timeout_s: float) -> AbstractContextManager[None]:
        return self._budget.within(timeout_s)

    def _execute(self, sql: str, params: list | None, fetch: Callable[[Any], T]) -> T:
        """`sql` on a free read connection; inside a read budget, cancelled by the server
        once the budget is spent."""
        sql = self.dialect.bind(sql)
        left_s = self._budget.remaining_s()

        def run(con: psycopg.Connection) -> T:
            with con.cursor() as cur:
                if left_s is None:
                    cur.execute(sql, params or None)
                    return fetch(cur)
                with con.transaction():
                    timeout_ms = str(math.ceil(left_s * 1000))
                    cur.execute("SELECT set_config('statement_timeout', %s, true)", [timeout_ms])
                    cur.execute(sql, params or None)
                    return fetch(cur)

        try:
            link = self._readers.get(timeout=left_s)
        except queue.Empty:
            raise self._budget.over() from None
        try:
            return self._with_retry(link, run, self.read_retry_for, "read")
        except psycopg.errors.QueryCanceled:
            if left_s is None:
                raise
            raise self._budget.over() from None
        except psycopg.errors.OutOfMemory:
            if left_s is None:
                raise
            raise OverBudget(MEMORY_REASON) from None
        finally:
            self._readers.put(link)

    def _rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._execute(sql, params, lambda cur: cur.fetchall())

    def _dicts(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        def fetch(cur: Any) -> list[dict[str, Any]]:
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        return self._execute(sql, params, fetch)

    def _stream(self, sql: str, params: list, rows: int) -> Iterator[pa.Table]:
        """A server-side cursor on a connection of its own, closed when the stream ends."""
        con = self._connect()
        try:
            with con.transaction(), con.cursor(name="tickpipe_stream") as cur:
                cur.execute(self.dialect.bind(sql), params or None)
                names = [d.name for d in cur.description or ()]
                while chunk := cur.fetchmany(rows):
                    yield pa.table(list(zip(*chunk, strict=True)), names=names)
        finally:
            con.close()

    # -- restart -------------------------------------------------------------------------

    def restore_batches(
        self, cutoff: dict[tuple[str, str], int], rows: int = RESTORE_BATCH_ROWS
    ) -> Iterator[TradeBatch]:
        """The stored trades at or after each instrument's cutoff, in event-time order, in
        batches of at most `rows` (a server-side cursor: the horizon is never held at once)."""
        if not cutoff:
            return
        cols = ", ".join(f"t.{f}" for f in TRADE_FIELDS)
        sql = (
            f"SELECT {cols} FROM trades t JOIN unnest(%s::text[], %s::text[], %s::bigint[]) "
            "AS l(exchange, symbol, cutoff) ON t.exchange = l.exchange AND t.symbol = l.symbol "
            "WHERE t.ts >= l.cutoff ORDER BY t.ts, t.seq"
        )
        params = [[k[0] for k in cutoff], [k[1] for k in cutoff], list(cutoff.values())]
        with self._writer.lock:
            con = self._writer.connection()
            with con.transaction(), con.cursor(name="tickpipe_restore") as cur:
                cur.execute(sql, params)
                while chunk := cur.fetchmany(rows):
                    columns = list(zip(*chunk, strict=True))
                    table = pa.table(
                        [pa.array(c, f.type) for c, f in zip(columns, TRADE_SCHEMA, strict=True)],
                        schema=TRADE_SCHEMA,
                    )
                    yield TradeBatch.from_arrow(table, source="restore")


class _WrittenBefore(Exception):
    """An earlier try of this write committed (its answer was lost): roll this one back."""


class _Link:
    """One connection, reopened on demand, used under its own lock."""

    def __init__(self, connect: Callable[[], psycopg.Connection], setup: str) -> None:
        self.connect = connect
        self.setup = setup
        self.lock = threading.Lock()
        self.con: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        """The open connection, or a new one (the caller holds `lock`)."""
        if self.con is None or self.con.closed:
            self.con = None
            con = self.connect()
            try:
                if self.setup:
                    con.execute(self.setup)
            except BaseException:
                con.close()
                raise
            self.con = con
        return self.con

    def drop(self) -> None:
        if self.con is not None and not self.con.closed:
            self.con.close()
        self.con = None

    def close(self) -> None:
        with self.lock:
            self.drop()


# -- helpers ---------------------------------------------------------------------------------


def _partition_day(name: str) -> int | None:
    """The day of a trades partition from its name (`trades_d20250`, `trades_dm3`)."""
    digits = name.removeprefix("trades_d")
    if digits == name:
        return None
    sign = -1 if digits.startswith("m") else 1
    digits = digits.removeprefix("m")
    return sign * int(digits) if digits.isdigit() else None


def _copy(
    cur: psycopg.Cursor,
    table: str,
    fields: tuple[str, ...],
    types: list[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    with cur.copy(f"COPY {table} ({', '.join(fields)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _upsert_rows(
    cur: psycopg.Cursor,
    table: str,
    fields: tuple[str, ...],
    types: list[str],
    key: tuple[str, ...],
    rows: list[tuple],
) -> None:
    """Whole-row upsert of a few rows through a temporary table (dropped at commit)."""
    stage = f"stage_{table}"
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DROP")
    _copy(cur, stage, fields, types, rows)
    cur.execute(upsert_sql(table, fields, key, "").format(source=stage))


# -- schema ----------------------------------------------------------------------------------


def migrate(con: psycopg.Connection) -> bool:
    """Bring the schema up to the newest migration; whether TimescaleDB is in use.

    Runs under a transaction-scoped advisory lock, so a second process starting at the same
    moment waits, then finds the schema current and changes nothing.
    """
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now(), timescale boolean NOT NULL)"
        )
        row = con.execute("SELECT max(version), bool_or(timescale) FROM schema_version").fetchone()
        current = row[0] or 0 if row else 0
        timescale = bool(row and row[1])
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            con.execute(TIMESCALE_MIGRATIONS.get(version, statements) if timescale
                        else statements)  # fmt: skip
            if version == 1:
                timescale = _try_timescale(con)
            con.execute(
                "INSERT INTO schema_version (version, timescale) VALUES (%s, %s)",
                [version, timescale],
            )
            log.info("postgresql: schema migrated to version %d", version)
    return timescale


def _try_timescale(con: psycopg.Connection) -> bool:
    """Hypertables and compression if the TimescaleDB extension can be had, else plain tables."""
    available = con.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if available:
        try:
            with con.transaction():  # a savepoint: a failure leaves the plain tables intact
                con.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                con.execute(TIMESCALE)
            return True
        except psycopg.Error as exc:
            log.warning("postgresql: TimescaleDB present but not usable (%s); plain tables", exc)
    con.execute(PLAIN_TRADES_KEY)
    return False
