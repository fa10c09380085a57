"""The Cassandra store (`--store cassandra://host:port/keyspace`): the Store protocol in CQL.

Tables are laid out for time series, so no partition grows without bound: trades are
partitioned by (exchange, symbol, day) and clustered by (ts, seq, trade_id); candles by
(exchange, symbol, interval, day), clustered by start; rolling statistics by (exchange, symbol,
day); KPIs by (process, day); events by day. `day` is the event time's UTC day number. Two
small tables say which partitions exist, so a read never scans the cluster: `series` (one row
per (kind, exchange, symbol, interval): the instruments, and for KPIs the process in
`exchange`) and `series_days` (one row per day a series has data). Both are written before
the rows they point to.

Trades unique on (exchange, symbol, trade_id): the row key is a function of the trade. A venue
gives a trade its id, number (`seq`) and time once; a replayed flush, a reconnect's overlap or
a Kafka redelivery carries the same three, so the duplicate lands on the same row
((exchange, symbol, day(ts)), ts, seq, trade_id) and overwrites it with the same values: stored
once, with plain idempotent inserts. The alternatives cost more and are no stricter: a lookup
table keyed (exchange, symbol, trade_id) written `IF NOT EXISTS` is a Paxos round (four round
trips) per trade, and cannot be made atomic with the trade row (a lightweight transaction
spans one partition), so a crash between the two would lose the trade or need a repair pass.
What the key does not catch, a venue re-sending an id with another time, the engine's
de-duplication drops within its horizon (as for DuckDB) and `duplicate_trades` (so
`tickpipe verify`) reports.

The revision rule (a newer candle wins, an older is ignored) is kept by write time: every
candle is written `USING TIMESTAMP` (rank << 52) + updated_at, rank = 2 * revision + final.
Cassandra keeps, per cell, the write with the highest timestamp, whatever the order writes
arrive in, so a higher revision beats a lower one, a final candle beats a provisional one of
the same revision, and among equals the later update wins: PostgreSQL's rule, with no
read-before-write. Lightweight transactions (`IF rank <= ?`) would say the same at four round
trips per candle, plus an `IF NOT EXISTS` first for a new one. `updated_at` (µs since 1970)
fits in 52 bits until 2112; revisions up to 1023 fit above it.

Writes go out as prepared statements, many in flight at once (`execute_concurrent*`, bounded
by `concurrency`); the rows of one partition (trades, candles) as one unlogged batch of up to
`BATCH_ROWS`, one request and one mutation instead of one each. All are idempotent, so a write
that fails because the node went away is retried whole, with capped backoff, until `retry_for`
seconds have passed (the PostgreSQL store's rule): nothing is lost and nothing doubled. CQL
does not aggregate across partitions: the API's reads and a restart's read partitions one at a
time (the driver pages them) and aggregate in Python, with the SQL stores' numbers. Inside a
read budget each request gets what is left of it as the driver's timeout.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import re
import ssl
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import msgspec
import numpy as np
import pyarrow as pa

from tickpipe.durations import format_duration
from tickpipe.engine.windows import restore_cutoff
from tickpipe.records import (
    CANDLE_FIELDS,
    METRIC_FIELDS,
    TRADE_SCHEMA,
    Candle,
    PipelineMetric,
    RollingStat,
    TradeBatch,
)
from tickpipe.stores.analytics import TOTALS_FIELDS, CandleAnalytics, CandleTotals, totals_of
from tickpipe.stores.base import ALL_TIME, RESTORE_BATCH_ROWS, Key, StoreError, time_range
from tickpipe.stores.budget import ReadBudget
from tickpipe.stores.cassandra_settings import CassandraSettings, CassandraUrlError, parse
from tickpipe.stores.flush import Flush, trade_columns
from tickpipe.stores.refusals import login_refused, tls_refused, tls_required
from tickpipe.stores.retry import Backoff

try:
    from cassandra import (
        AuthenticationFailed,
        ConsistencyLevel,
        CoordinationFailure,
        OperationTimedOut,
        ReadTimeout,
        Unavailable,
        WriteTimeout,
    )
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
    from cassandra.connection import ConnectionException
    from cassandra.policies import (
        ConstantReconnectionPolicy,
        DCAwareRoundRobinPolicy,
        RoundRobinPolicy,
        TokenAwarePolicy,
    )
    from cassandra.query import (
        BatchStatement,
        BatchType,
        PreparedStatement,
        SimpleStatement,
        tuple_factory,
    )
except ImportError:  # pragma: no cover - the extra is missing
    raise ImportError(
        "the Cassandra store needs cassandra-driver: pip install 'tickpipe[cassandra]'"
    ) from None

log = logging.getLogger("tickpipe")
T = TypeVar("T")

DAY_US = 86_400_000_000
# Rows of one partition (trades, candles) go as one unlogged batch: one request, one
# mutation, instead of one each (4 to 5 times the trades/s here); a batch of one partition is
# atomic and isolated, and far under Cassandra's 50 KiB batch limit.
BATCH_ROWS = 100
TIME_BITS = 52  # updated_at below, the candle's rank above, in a write timestamp
MAX_REVISION = ((2**63 - 1 >> TIME_BITS) - 1) // 2  # 1023: rank 2047 is the top
TRADE_FIELDS = tuple(TRADE_SCHEMA.names)
ROLLING_FIELDS: tuple[str, ...] = RollingStat.__struct_fields__
# Failures after which the same write may succeed: the node is away, or too busy to answer.
LOST = (
    NoHostAvailable, OperationTimedOut, Unavailable, WriteTimeout, ReadTimeout,
    CoordinationFailure, ConnectionException,
)  # fmt: skip

_TRADE_TYPES = dict(zip(TRADE_FIELDS, ["text"] * 5 + ["bigint", "double", "double", "text",
                                                     "bigint", "bigint"], strict=True))  # fmt: skip
_CANDLE_TYPES = {
    "exchange": "text", "symbol": "text", "interval": "text", "start": "bigint",
    "trades": "bigint", "first_seq": "bigint", "last_seq": "bigint", "final": "boolean",
    "revision": "int", "updated_at": "bigint",
}  # fmt: skip
_METRIC_TYPES = {"ts": "bigint", "process": "text", "trades": "bigint", "candles": "bigint",
                 "queue_depth": "bigint"}  # fmt: skip


def _columns(fields: Sequence[str], types: dict[str, str], default: str = "double") -> str:
    return ", ".join(f"{f} {types.get(f, default)}" for f in fields)


SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS trades ({_columns(TRADE_FIELDS, _TRADE_TYPES)}, day int,
        PRIMARY KEY ((exchange, symbol, day), ts, seq, trade_id))""",
    f"""CREATE TABLE IF NOT EXISTS candles ({_columns(CANDLE_FIELDS, _CANDLE_TYPES)}, day int,
        PRIMARY KEY ((exchange, symbol, interval, day), start))""",
    f"""CREATE TABLE IF NOT EXISTS rolling_stats (
        {_columns(ROLLING_FIELDS, {"exchange": "text", "symbol": "text", "ts": "bigint"})},
        day int, PRIMARY KEY ((exchange, symbol, day), ts))""",
    f"""CREATE TABLE IF NOT EXISTS pipeline_metrics ({_columns(METRIC_FIELDS, _METRIC_TYPES)},
        day int, PRIMARY KEY ((process, day), ts))""",
    # Events have no natural key: the detail's digest makes a replayed event one row.
    """CREATE TABLE IF NOT EXISTS events (day int, ts bigint, kind text, source text,
        digest text, detail text, PRIMARY KEY ((day), ts, kind, source, digest))""",
    """CREATE TABLE IF NOT EXISTS series (kind text, exchange text, symbol text, interval text,
        PRIMARY KEY ((kind), exchange, symbol, interval))""",
    """CREATE TABLE IF NOT EXISTS series_days (kind text, exchange text, symbol text,
        interval text, day int, PRIMARY KEY ((kind, exchange, symbol, interval), day))""",
]

TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", " ".join(SCHEMA)))

Series = tuple[str, str, str]  # (exchange, symbol, interval); interval "" but for candles


def _insert(table: str, fields: Sequence[str], suffix: str = "") -> str:
    marks = ", ".join("?" for _ in fields)
    return f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({marks}){suffix}"


def _partition(table: str, fields: str, where: str = "", order: str = "") -> str:
    key = "interval = ? AND " if table == "candles" else ""
    return (
        f"SELECT {fields} FROM {table} WHERE exchange = ? AND symbol = ? AND {key}day = ?"
        f"{where}{order}"
    )


READS = {
    "series": "SELECT exchange, symbol, interval FROM series WHERE kind = ?",
    "series_of": "SELECT interval FROM series WHERE kind = ? AND exchange = ? AND symbol = ? "
    "LIMIT 1",
    "series_of_exchange": "SELECT symbol FROM series WHERE kind = ? AND exchange = ? LIMIT 1",
    "days": "SELECT day FROM series_days WHERE kind = ? AND exchange = ? AND symbol = ? "
    "AND interval = ? AND day >= ? AND day <= ?",
    "days_desc": "SELECT day FROM series_days WHERE kind = ? AND exchange = ? AND symbol = ? "
    "AND interval = ? ORDER BY day DESC",
    "candles": _partition("candles", ", ".join(CANDLE_FIELDS), " AND start >= ? AND start < ?"),
    "candle_marks": _partition("candles", "start, final, revision", " AND start >= ?"),
    "candle_count": _partition("candles", "count(*)"),
    "trade_stats": _partition("trades", "count(*), min(ts), max(ts), max(recv_ts)"),
    "restore": _partition("trades", ", ".join(TRADE_FIELDS), " AND ts >= ?"),
    "recent": _partition(
        "trades", ", ".join(TRADE_FIELDS), order=" ORDER BY ts DESC, seq DESC LIMIT ?"
    ),
    "rolling": _partition(
        "rolling_stats", ", ".join(ROLLING_FIELDS), order=" ORDER BY ts DESC LIMIT ?"
    ),
    "event_kinds": "SELECT kind FROM events WHERE day = ?",
    "events": "SELECT ts, kind, source, detail FROM events WHERE day = ? ORDER BY ts DESC",
    "metrics": f"SELECT {', '.join(METRIC_FIELDS)} FROM pipeline_metrics WHERE process = ? "
    "AND day = ? AND ts >= ? ORDER BY ts DESC",
    "history": _partition("trades", ", ".join(TRADE_FIELDS), " AND ts >= ? AND ts < ?"),
    "trade_ids": _partition("trades", "trade_id", " AND ts >= ? AND ts < ?"),
}
WRITES = {
    "trades": _insert("trades", (*TRADE_FIELDS, "day")),
    "candles": _insert("candles", (*CANDLE_FIELDS, "day"), " USING TIMESTAMP ?"),
    "rolling": _insert("rolling_stats", (*ROLLING_FIELDS, "day")),
    "metrics": _insert("pipeline_metrics", (*METRIC_FIELDS, "day")),
    "events": _insert("events", ("day", "ts", "kind", "source", "digest", "detail")),
    "series": _insert("series", ("kind", "exchange", "symbol", "interval")),
    "series_days": _insert("series_days", ("kind", "exchange", "symbol", "interval", "day")),
}
# The partition key of a trade row and a candle row as `_statements` builds them.
PARTITIONS: dict[str, Callable[[Sequence[Any]], tuple]] = {
    "trades": lambda r: (r[1], r[2], r[-1]),
    "candles": lambda r: (r[0], r[1], r[2], r[-2]),
}
_LOW, _HIGH = ALL_TIME


def candle_write_time(candle: Candle) -> int:
    """The write timestamp that makes Cassandra keep the newest version of a candle."""
    if not 0 <= candle.revision <= MAX_REVISION:
        raise ValueError(f"candle revision {candle.revision}: 0 to {MAX_REVISION} fit")
    rank = 2 * candle.revision + int(candle.final)
    return (rank << TIME_BITS) + min(max(candle.updated_at, 0), (1 << TIME_BITS) - 1)


class CassandraStore(CandleAnalytics):
    """Reader and writer over one keyspace; thread-safe (the driver's session is).

    `retry_for`: how long a write keeps retrying after the node went away before it fails.
    `concurrency`: requests in flight at once during a write.
    """

    def __init__(
        self,
        url: str,
        retry_for: float = 60.0,
        read_retry_for: float = 5.0,
        connect_timeout_s: float = 5.0,
        concurrency: int = 64,
    ) -> None:
        try:
            self.settings: CassandraSettings = parse(url)
        except CassandraUrlError as exc:
            raise StoreError(f"store: cassandra URL: {exc}") from None
        self.retry_for = retry_for
        self.read_retry_for = read_retry_for
        self.concurrency = concurrency
        self.connect_timeout_s = connect_timeout_s
        self._known: set[tuple[str, str, str, str, int]] = set()  # series days written
        self._budget = ReadBudget()
        self._cluster = _cluster(self.settings, connect_timeout_s)
        try:
            self._session = self._cluster.connect()
        except Exception as exc:
            self._cluster.shutdown()
            why = _refusal(exc, self.settings) or _plain_against_tls(exc, self.settings)
            raise StoreError(
                f"cannot connect to Cassandra at {self.describe()}: {why or _reason(exc)}"
            ) from None
        try:
            self._create_schema()
            ks = self.settings.keyspace
            self._reads = {k: self._session.prepare(_in(ks, q)) for k, q in READS.items()}
            self._writes = {k: self._session.prepare(_in(ks, q)) for k, q in WRITES.items()}
        except Exception as exc:
            self._cluster.shutdown()
            raise StoreError(
                f"Cassandra at {self.describe()}: cannot create tickpipe's keyspace and "
                f"tables: {_reason(exc)}"
            ) from None

    def _create_schema(self) -> None:
        """The keyspace and tables, unless all are there: one read of the schema, not eight
        DDL statements, when a store opens on the keyspace again (the usual case)."""
        s = self.settings
        # The schema tables are each node's own: ONE, whatever consistency the URL asks.
        tables = SimpleStatement(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            consistency_level=ConsistencyLevel.ONE,
        )
        present = self._session.execute(tables, [s.keyspace])
        if {row[0] for row in present} >= TABLES:
            return
        if s.datacenter:
            replication = f"'class': 'NetworkTopologyStrategy', '{s.datacenter}': "
        else:
            replication = "'class': 'SimpleStrategy', 'replication_factor': "
        self._session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {s.keyspace} WITH replication = "
            f"{{{replication}{s.replication_factor}}}"
        )
        for statement in SCHEMA:
            self._session.execute(_in(s.keyspace, statement))

    def describe(self) -> str:
        return self.settings.describe()

    def close(self) -> None:
        self._cluster.shutdown()

    def ping(self) -> None:
        self._retrying(
            lambda: self._session.execute("SELECT release_version FROM system.local"),
            self.read_retry_for, "ping",
        )  # fmt: skip

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
    ) -> None:
        """Store one flush: idempotent inserts, retried whole while the node is away.

        Not one transaction as in the SQL stores: a failed write may leave part of itself,
        which its retry (or the replay after a restart) completes to the same rows.
        """
        flush = Flush.of(trades, candles, rolling, events, metrics)
        work = self._statements(flush)
        if not any(params for _, params in work):
            return
        series = self._series_rows(flush, work)

        def run() -> None:
            if series:
                self._concurrently("series", [s[:4] for s in series])
                self._concurrently("series_days", series)
            for name, params in work:
                self._concurrently(name, params)

        self._retrying(run, self.retry_for, "write")
        self._known.update(series)

    def _concurrently(self, name: str, params: Sequence[Sequence[Any]]) -> None:
        if not params:
            return
        partition = PARTITIONS.get(name)
        if partition is None:
            execute_concurrent_with_args(
                self._session, self._writes[name], params, concurrency=self.concurrency,
                raise_on_first_error=True,
            )  # fmt: skip
            return
        batches = []
        for rows in _per_partition(params, partition, BATCH_ROWS):
            batch = BatchStatement(BatchType.UNLOGGED)
            for row in rows:
                batch.add(self._writes[name], row)
            batches.append((batch, None))
        execute_concurrent(
            self._session, batches, concurrency=self.concurrency, raise_on_first_error=True
        )

    def _statements(self, flush: Flush) -> list[tuple[str, list[tuple]]]:
        """Each prepared write's parameter rows, in the order they are sent."""
        columns = trade_columns(flush.trades)
        trade_rows: list[tuple] = []
        if columns:
            days = (np.asarray(columns[9], np.int64) // DAY_US).tolist()
            trade_rows = list(zip(*columns, days, strict=True))
        candle_rows = [
            (*msgspec.structs.astuple(c), c.start // DAY_US, candle_write_time(c))
            for c in flush.candles
        ]
        rolling_rows = [(*msgspec.structs.astuple(s), s.ts // DAY_US) for s in flush.rolling]
        metric_rows = [(*msgspec.structs.astuple(m), m.ts // DAY_US) for m in flush.metrics]
        event_rows = [
            (ts // DAY_US, ts, kind, source, hashlib.md5(detail.encode()).hexdigest(), detail)
            for ts, kind, source, detail in flush.events
        ]
        return [("trades", trade_rows), ("candles", candle_rows), ("rolling", rolling_rows),
                ("metrics", metric_rows), ("events", event_rows)]  # fmt: skip

    def _series_rows(
        self, flush: Flush, work: list[tuple[str, list[tuple]]]
    ) -> list[tuple[str, str, str, str, int]]:
        """The (kind, exchange, symbol, interval, day) rows this write adds to `series_days`."""
        rows = dict(work)
        wanted = {("trades", r[1], r[2], "", r[-1]) for r in rows["trades"]}
        wanted |= {("candles", c.exchange, c.symbol, c.interval, c.start // DAY_US)
                   for c in flush.candles}  # fmt: skip
        wanted |= {("rolling", s.exchange, s.symbol, "", s.ts // DAY_US) for s in flush.rolling}
        wanted |= {("events", "", "", "", r[0]) for r in rows["events"]}
        wanted |= {("metrics", m.process, "", "", m.ts // DAY_US) for m in flush.metrics}
        return sorted(wanted - self._known)

    # -- retry ---------------------------------------------------------------------------

    def _retrying(self, fn: Callable[[], T], deadline_s: float, what: str) -> T:
        """`fn()`, run again with capped, growing pauses while the node is away, until
        `deadline_s` has passed; then one StoreError line."""
        backoff = Backoff("Cassandra", self.describe(), what, deadline_s)
        while True:
            try:
                return fn()
            except LOST as exc:
                refused = self._refused(exc)
                if refused:  # no retry makes a wrong password right or a certificate trusted
                    raise StoreError(f"Cassandra at {self.describe()}: {refused}") from None
                backoff.wait(exc, _reason(exc)[:300], "node unreachable")

    def _refused(self, exc: BaseException) -> str | None:
        """Why the nodes turn this store away for good (see `_refusal`), or None. With every
        node marked down the driver keeps the reason to itself (its reconnections failed in
        the background), so a fresh connection is tried once to learn it."""
        refused = _refusal(exc, self.settings)
        if refused or not (isinstance(exc, NoHostAvailable) and not exc.errors):
            return refused
        probe = _cluster(self.settings, self.connect_timeout_s)
        try:
            probe.connect()
        except Exception as failed:
            return _refusal(failed, self.settings)
        finally:
            probe.shutdown()
        return None

    def read_budget(self, timeout_s: float) -> AbstractContextManager[None]:
        return self._budget.within(timeout_s)

    def _execute(self, name: str, params: Sequence[Any]) -> Any:
        """One prepared read; inside a read budget, with what is left of it as its timeout."""
        statement: PreparedStatement = self._reads[name]
        left_s = self._budget.remaining_s()
        if left_s is None:
            return self._session.execute(statement, params)
        try:
            return self._session.execute(statement, params, timeout=left_s)
        except OperationTimedOut:
            raise self._budget.over() from None

    def _read(self, name: str, params: Sequence[Any]) -> list[tuple]:
        """All rows of one prepared read (one partition or less: bounded)."""
        return self._retrying(
            lambda: list(self._execute(name, params)), self.read_retry_for, "read"
        )

    def _stream(self, name: str, params: Sequence[Any]) -> Iterator[tuple]:
        """The rows of one prepared read page by page (the driver fetches the next page as
        the iteration reaches it)."""
        yield from self._retrying(lambda: self._execute(name, params), self.read_retry_for, "read")

    # -- where the data is ---------------------------------------------------------------

    def _series(self, kind: str) -> list[Series]:
        return [(e, s, i) for e, s, i in self._read("series", [kind])]

    def _days(self, kind: str, series: Series, lo: int = _LOW, hi: int = _HIGH) -> list[int]:
        """The days holding `series` data with a time in [lo, hi), in order."""
        first, last = _day(lo), _day(hi - 1)
        return [r[0] for r in self._read("days", [kind, *series, first, last])]

    def _days_desc(self, kind: str, series: Series) -> Iterator[int]:
        for (day,) in self._stream("days_desc", [kind, *series]):
            yield day

    # -- restart -------------------------------------------------------------------------

    def restore_cutoff(self, horizon: int, lateness: int, align: int) -> dict[tuple[str, str], int]:
        """Per (exchange, symbol), the window-aligned time before which nothing can change."""
        out: dict[tuple[str, str], int] = {}
        for series in self._series("trades"):
            for day in self._days_desc("trades", series):
                ((count, _, max_ts, _),) = self._read("trade_stats", [*series[:2], day])
                if count:
                    out[series[:2]] = restore_cutoff(max_ts, lateness, horizon, align)
                    break
        return out

    def restore_batches(
        self, cutoff: dict[tuple[str, str], int], rows: int = RESTORE_BATCH_ROWS
    ) -> Iterator[TradeBatch]:
        """The stored trades at or after each instrument's cutoff, in event-time order, in
        batches of at most `rows`: day by day, the instruments' partitions merged as the
        driver pages through them (never the whole horizon at once)."""
        by_day: dict[int, list[tuple[str, str, int]]] = {}
        for (exchange, symbol), since in cutoff.items():
            for day in self._days("trades", (exchange, symbol, ""), since):
                by_day.setdefault(day, []).append((exchange, symbol, since))

        def in_time_order() -> Iterator[tuple]:
            for day in sorted(by_day):
                parts = [self._stream("restore", [e, s, day, since]) for e, s, since in by_day[day]]
                yield from heapq.merge(*parts, key=lambda r: (r[9], r[5]))

        return _batches(in_time_order(), rows, "restore")

    def _candle_marks(self, since: int) -> Iterator[tuple[Key, bool, int]]:
        for series in self._series("candles"):
            for day in self._days("candles", series, since):
                for start, final, revision in self._read("candle_marks", [*series, day, since]):
                    yield (*series, start), final, revision

    def finals(self, since: int) -> set[Key]:
        """Keys of the final candles starting at or after `since`."""
        return {key for key, final, _ in self._candle_marks(since) if final}

    def revisions(self, since: int) -> dict[Key, int]:
        """Revision of each corrected candle starting at or after `since`."""
        return {key: rev for key, _, rev in self._candle_marks(since) if rev > 0}

    # -- the API -------------------------------------------------------------------------

    def intervals(self) -> list[str]:
        return sorted({interval for _, _, interval in self._series("candles")})

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
        """Candles of one symbol with `start` in [start, end), optionally re-bucketed to
        `bucket` µs, a whole multiple of the stored interval's `interval_size`."""
        rebucket = bucket is not None and bucket != interval_size
        if bucket is not None and rebucket and (not interval_size or bucket % interval_size):
            raise ValueError("bucket must be a whole multiple of the stored interval")
        lo = _LOW if start is None else start
        hi = _HIGH if end is None else end
        series = (exchange, symbol, interval)
        stored = [
            Candle(**dict(zip(CANDLE_FIELDS, row, strict=True)))
            for day in self._days("candles", series, lo, hi)
            for row in self._read("candles", [*series, day, lo, hi])
        ]
        if bucket is None or not rebucket:
            return stored
        return [_rolled_up(group, first, bucket) for first, group in
                itertools.groupby(stored, key=lambda c: c.start - c.start % bucket)]  # fmt: skip

    def has_instrument(self, exchange: str, symbol: str) -> bool:
        return bool(self._read("series_of", ["candles", exchange, symbol]))

    def has_exchange(self, exchange: str) -> bool:
        return bool(self._read("series_of_exchange", ["candles", exchange]))

    def instrument_summary(self) -> list[tuple[str, str, int, int, int]]:
        out: list[tuple[str, str, int, int, int]] = []
        for series in sorted(self._series("trades")):
            count, first, last = 0, 2**63, -(2**63)
            for day in self._days("trades", series):
                ((n, lo, hi, _),) = self._read("trade_stats", [*series[:2], day])
                if n:
                    count += n
                    first, last = min(first, lo), max(last, hi)
            if count:
                out.append((series[0], series[1], count, first, last))
        return out

    def recent_trades(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The newest trades of one instrument, newest first (ts, then seq)."""
        return self._newest("trades", "recent", exchange, symbol, TRADE_FIELDS, limit)

    def rolling_history(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        return self._newest("rolling", "rolling", exchange, symbol, ROLLING_FIELDS, limit)

    def _newest(
        self, kind: str, read: str, exchange: str, symbol: str, fields: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        """Up to `limit` rows of one instrument, newest first, from its newest days back."""
        out: list[dict[str, Any]] = []
        for day in self._days_desc(kind, (exchange, symbol, "")):
            if len(out) >= limit:
                break
            for row in self._read(read, [exchange, symbol, day, limit - len(out)]):
                out.append(dict(zip(fields, row, strict=True)))
        return out

    def totals(self) -> dict[str, Any]:
        """stored_trades, stored_candles, last_trade_ts, last_recv_ts and events by kind."""
        trades, last_ts, last_recv = 0, None, None
        for series in self._series("trades"):
            for day in self._days("trades", series):
                ((n, _, hi, recv),) = self._read("trade_stats", [*series[:2], day])
                if n:
                    trades += n
                    last_ts = hi if last_ts is None else max(last_ts, hi)
                    last_recv = recv if last_recv is None else max(last_recv, recv)
        candles = sum(
            self._read("candle_count", [*series, day])[0][0]
            for series in self._series("candles")
            for day in self._days("candles", series)
        )
        kinds: Counter[str] = Counter()
        for day in self._days("events", ("", "", "")):
            kinds.update(kind for (kind,) in self._stream("event_kinds", [day]))
        return {
            "stored_trades": trades, "stored_candles": candles, "last_trade_ts": last_ts,
            "last_recv_ts": last_recv, "events": dict(sorted(kinds.items())),
        }  # fmt: skip

    def candle_totals(
        self, interval: str, start: int, end: int, exchange: str | None = None
    ) -> list[CandleTotals]:
        """Per instrument, its candles of `interval` in [start, end) summed in Python, one
        partition at a time."""
        picked = [CANDLE_FIELDS.index(f) for f in TOTALS_FIELDS]
        return totals_of(
            tuple(row[i] for i in picked)
            for series in self._series("candles")
            if series[2] == interval and exchange in (None, series[0])
            for day in self._days("candles", series, start, end)
            for row in self._read("candles", [*series, day, start, end])
        )

    def events(self, kind: str, limit: int) -> list[tuple[int, str, str, str]]:
        """The newest `limit` events of `kind`, newest first (one ts by source, then detail):
        day partitions from the newest back, each read newest first, the kind kept in Python
        (it is a clustering column after ts, so CQL cannot select on it alone)."""
        out: list[tuple[int, str, str, str]] = []
        for day in self._days_desc("events", ("", "", "")):
            rows = (r for r in self._stream("events", [day]) if r[1] == kind)
            for _, same_ts in itertools.groupby(rows, key=lambda r: r[0]):
                out.extend(sorted(same_ts, key=lambda r: (r[2], r[3])))
                if len(out) >= limit:
                    return out[:limit]
        return out

    def metrics_since(
        self, since: int, limit: int, process: str | None = None
    ) -> list[PipelineMetric]:
        """The newest `limit` KPI rows with ts >= `since`, newest first, a tie in ts by
        process: each process's days read newest first, merged."""
        processes = sorted(p for p, _, _ in self._series("metrics"))
        if process is not None:
            processes = [p for p in processes if p == process]
        newest = [self._metrics_of(p, since) for p in processes]
        merged = heapq.merge(*newest, key=lambda m: (-m.ts, m.process))
        return list(itertools.islice(merged, limit))

    def _metrics_of(self, process: str, since: int) -> Iterator[PipelineMetric]:
        first = _day(since)
        for day in self._days_desc("metrics", (process, "", "")):
            if day < first:
                return
            for row in self._stream("metrics", [process, day, since]):
                yield PipelineMetric(**dict(zip(METRIC_FIELDS, row, strict=True)))

    # -- whole history, in bounded chunks ------------------------------------------------

    def trade_batches(
        self, rows: int = RESTORE_BATCH_ROWS, since: int | None = None, until: int | None = None
    ) -> Iterator[TradeBatch]:
        """Every stored trade with ts in [since, until) in batches of at most `rows`, by
        (exchange, symbol) in code-point order, then (ts, seq): the instruments sorted in
        Python, each one's day partitions in order, each paged through by the driver in its
        clustering order."""
        span = time_range(since, until)

        def in_order() -> Iterator[tuple]:
            for series in sorted(self._series("trades")):
                for day in self._days("trades", series, *span):
                    yield from self._stream("history", [*series[:2], day, *span])

        return _batches(in_order(), rows, "store")

    def stored_candles(
        self, interval: str, rows: int = 100_000, since: int | None = None, until: int | None = None
    ) -> Iterator[Candle]:
        """Every stored candle of `interval` with start in [since, until), by (exchange,
        symbol) in code-point order, then start (the driver pages each day partition)."""
        span = time_range(since, until)
        for series in sorted(s for s in self._series("candles") if s[2] == interval):
            for day in self._days("candles", series, *span):
                for row in self._stream("candles", [*series, day, *span]):
                    yield Candle(**dict(zip(CANDLE_FIELDS, row, strict=True)))

    def duplicate_trades(self, since: int | None = None, until: int | None = None) -> int:
        """How many stored trades with ts in [since, until) repeat an (exchange, symbol,
        trade_id) stored before.

        The row key holds the trade id, so a copy is the same id at another time or seq. Per
        instrument, the ids are hashed to 8 bytes each (not kept as text); only ids whose hash
        repeats are read again and counted exactly."""
        lo, hi = time_range(since, until)
        copies = 0
        for series in self._series("trades"):
            hashes = np.fromiter((hash(i) for i in self._trade_ids(series, lo, hi)), np.int64)
            values, counts = np.unique(hashes, return_counts=True)
            repeated = set(values[counts > 1].tolist())
            if repeated:
                seen = Counter(i for i in self._trade_ids(series, lo, hi) if hash(i) in repeated)
                copies += sum(n - 1 for n in seen.values())
        return copies

    def _trade_ids(self, series: Series, lo: int, hi: int) -> Iterator[str]:
        for day in self._days("trades", series, lo, hi):
            for (trade_id,) in self._stream("trade_ids", [*series[:2], day, lo, hi]):
                yield trade_id


# -- helpers ---------------------------------------------------------------------------------


class _QuietDriver(logging.Filter):
    """Drops the driver's warning that it settled on an older protocol version than its own
    newest (expected with any server older than the driver, and said twice per connection),
    and its reports, with a traceback, that a first connection failed: the store says so in
    its own line (a retry's warning, or the one line it fails with)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith((
            "Downgrading core protocol version", "Control connection failed to connect",
            "[control connection] Error connecting to",
        ))  # fmt: skip


def _cluster(settings: CassandraSettings, connect_timeout_s: float) -> Cluster:
    """A driver Cluster with the URL's auth, TLS, consistency and data center."""
    driver_log = logging.getLogger("cassandra.cluster")
    if not any(isinstance(f, _QuietDriver) for f in driver_log.filters):
        driver_log.addFilter(_QuietDriver())
    balance = (
        DCAwareRoundRobinPolicy(local_dc=settings.datacenter)
        if settings.datacenter
        else RoundRobinPolicy()
    )
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(balance),
        consistency_level=ConsistencyLevel.name_to_value[settings.consistency.upper()],
        row_factory=tuple_factory,
    )
    options: dict[str, Any] = {}
    if settings.user:
        options["auth_provider"] = PlainTextAuthProvider(settings.user, settings.password or "")
    if settings.tls:
        options["ssl_context"] = ssl.create_default_context(cafile=settings.tls_ca)
    return Cluster(
        list(settings.hosts), port=settings.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        # A node back after a restart is found within a second, not after minutes of backoff.
        reconnection_policy=ConstantReconnectionPolicy(0.5, None),
        connect_timeout=connect_timeout_s, **options,
    )  # fmt: skip


def _in(keyspace: str, statement: str) -> str:
    """`statement` with its table names qualified by `keyspace` (the session has none: a
    session keyspace with prepared statements is ambiguous, and Cassandra warns about it)."""
    return re.sub(r"\b(FROM|INTO|EXISTS) (\w+)\b", rf"\1 {keyspace}.\2", statement)


def _per_partition(
    rows: Sequence[Sequence[Any]], partition: Callable[[Sequence[Any]], tuple], size: int
) -> Iterator[list[Sequence[Any]]]:
    """`rows` in runs of at most `size` that share a `partition` key."""
    runs: dict[tuple, list[Sequence[Any]]] = {}
    for row in rows:
        key = partition(row)
        run = runs.setdefault(key, [])
        run.append(row)
        if len(run) == size:
            yield run
            runs[key] = []
    yield from (run for run in runs.values() if run)


def _refusal(exc: BaseException, settings: CassandraSettings) -> str | None:
    """Why the node turned the client away for good (`stores/refusals.py`), or None when it may
    only be away."""
    errors = list(exc.errors.values()) if isinstance(exc, NoHostAvailable) else [exc]
    for error in errors:
        if isinstance(error, AuthenticationFailed):
            return login_refused(settings.user, "cassandra://user@host:port/keyspace")
        refused = tls_refused(str(error), "tls_ca", settings.tls_ca)
        if refused:
            return refused
    return None


def _plain_against_tls(exc: BaseException, settings: CassandraSettings) -> str | None:
    """A hint when a client without TLS is cut off at once: the node likely requires TLS."""
    if settings.tls or not isinstance(exc, NoHostAvailable):
        return None
    if any(isinstance(e, ConnectionResetError | ConnectionException) for e in exc.errors.values()):
        return tls_required("tls=true, or tls_ca=FILE,")
    return None


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _day(ts: int) -> int:
    """The UTC day number of `ts` µs, clamped to what CQL's int holds."""
    return max(min(ts // DAY_US, 2**31 - 1), -(2**31))


def _batches(rows: Iterator[tuple], size: int, source: str) -> Iterator[TradeBatch]:
    """Trade rows (in TRADE_SCHEMA's order) as batches of at most `size`."""
    while chunk := list(itertools.islice(rows, size)):
        yield _batch(chunk, source)


def _batch(rows: list[tuple], source: str) -> TradeBatch:
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        [pa.array(c, f.type) for c, f in zip(columns, TRADE_SCHEMA, strict=True)],
        schema=TRADE_SCHEMA,
    )
    return TradeBatch.from_arrow(table, source=source)


def _rolled_up(group: Iterable[Candle], start: int, bucket: int) -> Candle:
    """The candles of one bucket (in start order) as one candle of `bucket` µs."""
    cs = list(group)
    volume = sum(c.volume for c in cs)
    quote_volume = sum(c.quote_volume for c in cs)
    trades = sum(c.trades for c in cs)
    return Candle(
        exchange=cs[0].exchange, symbol=cs[0].symbol, interval=format_duration(bucket),
        start=start, open=cs[0].open, high=max(c.high for c in cs), low=min(c.low for c in cs),
        close=cs[-1].close, volume=volume, quote_volume=quote_volume,
        vwap=quote_volume / volume if volume > 0 else cs[-1].close,
        mean_price=sum(c.mean_price * c.trades for c in cs) / trades if trades else 0.0,
        trades=trades, buy_volume=sum(c.buy_volume for c in cs),
        sell_volume=sum(c.sell_volume for c in cs), first_seq=cs[0].first_seq,
        last_seq=cs[-1].last_seq, final=all(c.final for c in cs),
        revision=max(c.revision for c in cs), updated_at=max(c.updated_at for c in cs),
    )  # fmt: skip
