"""The MongoDB store (`store = mongodb://host:port/db`): the same data and answers as DuckDB.

One collection per table (`trades`, `candles`, `rolling_stats`, `pipeline_metrics`, `events`;
and `intervals`, the stored candle intervals, so listing them reads no candle),
each unique on its key (trades and events by a unique index; candles, rolling statistics and
KPIs by `_id`, their key as one string), so a retried or replayed write stores nothing twice:
- trades go in by unordered bulk inserts (`insert_many(ordered=False)`); a trade already
  stored fails alone with error 11000 (duplicate key), which is counted and ignored;
- candles carry `precedence` = 2 * revision + final: a stored candle is replaced unless its
  precedence is higher (a higher revision, or the same one final where the incoming candle is
  provisional), the rule of the SQL stores. A candle's `_id` is its key spelled as one string
  (exchange, symbol, interval, start joined by U+001F), so the key is unique by `_id` itself.
  A write reads the stored precedences of its candles (`find({_id: {$in}})`), then replaces
  those it outranks by unordered bulk `update_one({_id, precedence: {$lte: p}}, {$set})`
  (the revision rule in the update filter, so a newer candle another writer stored meanwhile
  is kept) and inserts the ones not stored yet by `insert_many(ordered=False)` (a candle
  stored meanwhile fails with 11000, ignored). Not upserts: an unordered bulk of upserts that
  meets a newer candle breaks pymongo on FerretDB. On FerretDB 1.x (detected at open by its
  `buildInfo`) the update filter is the `_id` alone: it scans the whole collection for any
  other filter (measured: 5 times slower on 3 simulated minutes, and slower with every stored
  candle); there the read check keeps the rule, given one writer per instrument, which the
  pipeline has (one engine, or Kafka partitions by instrument);
- rolling statistics and KPIs are replaced whole on their keys in the same two steps; events
  are inserted once.
There are no multi-document transactions: a write that fails because the server went away,
or that a server shutting down cut short, is retried whole (every step above is idempotent)
until `retry_for` seconds have passed.

Reads: `find` with filters, sorts and limits on the indexes, `count_documents`,
and `aggregate` with `$match`, `$sort`, `$group` (`$sum`; on MongoDB also `$min`, `$max`,
`$first`, `$last`), `$subtract`, `$mod` and `$multiply`. Each of these is MongoDB's own; the
tests run against FerretDB 1.x (a MongoDB wire-protocol server over SQLite), whose `$group`
has only `$sum` and `$count`. So candles are re-bucketed by an aggregation pipeline when the
server runs it (tried once, at open, on an empty match) and otherwise streamed in chunks and
rolled up here (the log says which). The analytics' candle totals are streamed in chunks by
one `find` for all the pieces of a period (an `$or`) and summed here on any server. The whole
history (`trade_batches`, `stored_candles`) is one `find` per call, sorted as an index is and
hinted to it, so MongoDB walks the index and sorts nothing. FerretDB 1.x over SQLite runs a
filter in SQL only when it is `_id` alone and decodes the whole collection for any other, so
the number of requests, not their size, is what costs there. Inside a read budget, reads run
under `pymongo.timeout` with what is left of it (the server is sent `maxTimeMS`).

Client settings (credentials, `authSource`, `tls`, `tlsCAFile`, `w`, `journal`,
`wtimeoutMS`, `replicaSet`, ...) are the URL's own query options, checked at config load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import msgspec
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
from tickpipe.stores.analytics import (
    TOTALS_FIELDS,
    CandleAnalytics,
    CandleTotals,
    Piece,
    totals_of,
)
from tickpipe.stores.base import RESTORE_BATCH_ROWS, Key, OverBudget, StoreError, time_range
from tickpipe.stores.budget import MEMORY_REASON, ReadBudget
from tickpipe.stores.flush import TRADE_FIELDS, Flush, trade_columns
from tickpipe.stores.refusals import login_refused, tls_refused, tls_required
from tickpipe.stores.retry import Backoff

try:
    import pymongo
    from bson.int64 import Int64
    from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne, uri_parser
    from pymongo.collection import Collection
    from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError
except ImportError:  # an optional driver: the store says how to get it
    raise StoreError("the MongoDB store needs pymongo: pip install 'tickpipe[mongodb]'") from None

log = logging.getLogger("tickpipe")
T = TypeVar("T")

DUPLICATE_KEY = 11000
# FerretDB 1.24 never answers an unordered bulk of 100 or more updates (it holds the database
# until restarted); 99 work. Fewer per request costs MongoDB nothing worth measuring.
UPDATE_BATCH = 50
AUTHENTICATION_FAILED = 18
NOT_IMPLEMENTED = 238  # FerretDB: an operator or accumulator it does not have
OUT_OF_MEMORY = 292  # QueryExceededMemoryLimitNoDiskUseAllowed
# Answers of a server that is shutting down or stepping down: the request was cut short, not
# refused, so it is retried like a lost connection (every write here is safe to repeat).
INTERRUPTED_CODES = frozenset({
    91,  # InterruptedAtShutdown
    189,  # PrimarySteppedDown
    10107,  # NotWritablePrimary
    11600,  # ShutdownInProgress
    11601,  # Interrupted
    11602,  # InterruptedDueToReplStateChange
    13435,  # NotPrimaryNoSecondaryOk
})  # fmt: skip
INTERNAL_ERROR = 1  # FerretDB 1.x answers a request its shutdown cut with "context canceled"
ROLLING_FIELDS: tuple[str, ...] = RollingStat.__struct_fields__
CANDLE_KEY = ("exchange", "symbol", "interval", "start")
INDEXES: dict[str, list[tuple[str, tuple[str, ...], bool]]] = {
    # collection: (index name, fields, unique)
    "trades": [
        ("trades_key", ("exchange", "symbol", "trade_id"), True),
        ("trades_instrument_time", ("exchange", "symbol", "ts", "seq"), False),
        ("trades_time", ("ts",), False),
    ],
    "candles": [
        ("candles_instrument_start", CANDLE_KEY, False),  # unique: `_id` is the key
        ("candles_start", ("start",), False),
    ],
    "rolling_stats": [("rolling_instrument_ts", ("exchange", "symbol", "ts"), False)],
    "pipeline_metrics": [],  # unique by `_id`: (process, ts)
    "events": [("events_key", ("ts", "kind", "source", "detail"), True)],
    "intervals": [],  # one document per stored candle interval, `_id` its name
}
_NO_ID = {"_id": 0}
_TRADE_PROJECTION = {**_NO_ID, **{f: 1 for f in TRADE_FIELDS}}
_CANDLE_PROJECTION = {**_NO_ID, **{f: 1 for f in CANDLE_FIELDS}}
_ROLLING_PROJECTION = {**_NO_ID, **{f: 1 for f in ROLLING_FIELDS}}


def redact(url: str) -> str:
    """The URL without its password or options, for logs and /api/health."""
    parts = urlsplit(url)
    user = parts.username
    host = (parts.netloc.rsplit("@", 1)[-1]) or "(no host)"
    return f"{parts.scheme}://{f'{user}@' if user else ''}{host}{parts.path}"


def check_url(url: str) -> str | None:
    """Why `url` cannot be used (None when it can): no database named, or a client option
    pymongo refuses (the option is named)."""
    try:
        parsed = uri_parser.parse_uri(url, warn=False, connect_timeout=1)
    except (PyMongoError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        query = urlsplit(url).query
        for key, value in parse_qsl(query, keep_blank_values=True):  # name the one refused
            try:
                uri_parser.parse_uri(f"mongodb://h/db?{key}={value}", warn=False)
            except (PyMongoError, ValueError) as bad:
                return f"client option {key}={value!r} refused: {' '.join(str(bad).split())}"
        return f"not a valid MongoDB URL: {reason}"
    if not parsed.get("database"):
        return "name the database: mongodb://host:port/dbname"
    return None


def _precedence(candle: Candle) -> int:
    """Which of two versions of a candle wins: the higher revision, then final over provisional."""
    return 2 * candle.revision + int(candle.final)


class MongoStore(CandleAnalytics):
    """Reader and writer over one MongoDB database (pymongo's client is thread-safe; writes
    take one lock, so a retried flush never interleaves with the next).

    `retry_for`: how long a write keeps retrying after the server went away before it fails.
    """

    def __init__(
        self,
        url: str,
        retry_for: float = 60.0,
        connect_timeout: float = 5.0,
        read_retry_for: float = 5.0,
        chunk_docs: int = 10_000,
    ) -> None:
        reason = check_url(url)
        if reason:
            raise StoreError(f"store = {redact(url)}: {reason}")
        self.url = url
        self.retry_for = retry_for
        self.read_retry_for = read_retry_for
        self.chunk_docs = chunk_docs
        self.refused_trades = 0  # trades refused as already stored (error 11000)
        self._lock = threading.Lock()
        self._budget = ReadBudget()
        parsed = uri_parser.parse_uri(url, warn=False)
        options = parsed["options"]
        self._user: str | None = parsed["username"]
        self._tls = bool(options.get("tls") or options.get("tlsCAFile"))
        self._tls_ca: str | None = options.get("tlsCAFile")
        timeout_ms = int(connect_timeout * 1000)
        defaults: dict[str, Any] = {
            "serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms,
            "appname": "tickpipe",
        }  # fmt: skip
        given = {k.lower() for k in options}  # URL options win over these defaults
        kwargs = {k: v for k, v in defaults.items() if k.lower() not in given}
        self._client: MongoClient[dict[str, Any]] = MongoClient(url, **kwargs)
        self._db = self._client.get_default_database()
        try:
            for name, indexes in INDEXES.items():
                for index, fields, unique in indexes:
                    self._db[name].create_index(
                        [(f, ASCENDING) for f in fields], name=index, unique=unique
                    )
            self.pipeline = self._runs_rebucket_pipeline()
            self._intervals_written: set[str] = set()
            self._list_intervals_once()
            # FerretDB 1.x finds by `_id` alone without a scan of the whole collection
            self.rule_in_filter = "ferretdbVersion" not in self._client.admin.command("buildInfo")
        except PyMongoError as exc:
            self._client.close()
            reason = self._refusal(exc) or self._plain_against_tls(exc) or _reason(exc)
            raise StoreError(f"cannot use MongoDB at {self.describe()}: {reason}") from None
        log.info(
            "mongodb: %s; candles re-bucketed %s",
            self.describe(),
            "by aggregation pipeline"
            if self.pipeline
            else "in Python (the server's $group lacks $min/$max/$first/$last: FerretDB)",
        )
        if not self.rule_in_filter:
            log.info("mongodb: FerretDB: candle updates filtered by _id alone (one writer "
                     "per instrument keeps the revision rule)")  # fmt: skip

    def describe(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        self._client.close()

    def ping(self) -> None:
        self._client.admin.command("ping")

    def _runs_rebucket_pipeline(self) -> bool:
        """Whether the server runs the re-bucketing pipeline (MongoDB does; FerretDB 1.x says
        error 238, not implemented)."""
        try:
            list(self._db.candles.aggregate(_rebucket_pipeline({"exchange": {"$in": []}}, 60)))
        except OperationFailure as exc:
            if exc.code == NOT_IMPLEMENTED:
                return False
            raise
        return True

    def _with_retry(self, fn: Callable[[], T], deadline_s: float, what: str) -> T:
        """Run `fn`; when the server is unreachable or cut the request short, run it again
        (capped, growing pauses) until `deadline_s` has passed. `fn` must be safe to repeat."""
        backoff = Backoff("MongoDB", self.describe(), what, deadline_s)
        while True:
            try:
                return fn()
            except (ConnectionFailure, OperationFailure) as exc:
                refused = self._refusal(exc)
                if refused:  # no retry makes a wrong password right or a certificate trusted
                    raise StoreError(f"MongoDB at {self.describe()}: {refused}") from None
                if isinstance(exc, ConnectionFailure):
                    backoff.wait(exc, _reason(exc), "server unreachable")
                elif _interrupted(exc):
                    backoff.wait(exc, _reason(exc), "server interrupted the request")
                else:
                    raise

    def _refusal(self, exc: PyMongoError) -> str | None:
        """Why the server turned this store away for good (`stores/refusals.py`), or None."""
        if isinstance(exc, OperationFailure) and exc.code == AUTHENTICATION_FAILED:
            return login_refused(self._user, "mongodb://user@host:port/dbname")
        return tls_refused(str(exc), "tlsCAFile", self._tls_ca)

    def _plain_against_tls(self, exc: PyMongoError) -> str | None:
        """A hint when a client without TLS is cut off at once: the server likely requires it."""
        cut_off = ("connection closed", "Connection reset by peer")
        if self._tls or not any(words in str(exc) for words in cut_off):
            return None
        return tls_required("tls=true&tlsCAFile=FILE")

    def _read(self, fn: Callable[[], T]) -> T:
        """`fn()`, retried while the server is away; inside a read budget, once, stopped
        when the budget is spent."""
        left_s = self._budget.remaining_s()
        if left_s is None:
            return self._with_retry(fn, self.read_retry_for, "read")
        try:
            with pymongo.timeout(left_s):
                return fn()
        except PyMongoError as exc:
            if exc.timeout:
                raise self._budget.over() from None
            if isinstance(exc, OperationFailure) and exc.code == OUT_OF_MEMORY:
                raise OverBudget(MEMORY_REASON) from None
            raise

    def read_budget(self, timeout_s: float) -> AbstractContextManager[None]:
        return self._budget.within(timeout_s)

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
    ) -> None:
        """Store one flush: trades inserted once, candles, rolling statistics and KPIs
        replaced unless newer ones are stored, events stored once; retried whole while the
        server is unreachable."""
        flush = Flush.of(trades, candles, rolling, events, metrics)
        columns = trade_columns(flush.trades)
        n_trades = len(columns[0]) if columns else 0
        if not (n_trades or flush.candles or flush.rolling or flush.events or flush.metrics):
            return

        def attempt() -> None:
            for lo in range(0, n_trades, self.chunk_docs):
                rows = zip(*(c[lo : lo + self.chunk_docs] for c in columns), strict=True)
                docs = [dict(zip(TRADE_FIELDS, row, strict=True)) for row in rows]
                self.refused_trades += _insert_new(self._db.trades, docs)
            if flush.candles:
                self._note_intervals({c.interval for c in flush.candles})
                _upsert(self._db.candles, [_doc(c, CANDLE_KEY, precedence=_precedence(c))
                                           for c in flush.candles],
                        rule_in_filter=self.rule_in_filter)  # fmt: skip
            if flush.rolling:
                _upsert(self._db.rolling_stats, [_doc(s, ("exchange", "symbol", "ts"))
                                                 for s in flush.rolling])  # fmt: skip
            if flush.metrics:
                _upsert(self._db.pipeline_metrics, [_doc(m, ("process", "ts"))
                                                    for m in flush.metrics])  # fmt: skip
            if flush.events:
                docs = [
                    {"ts": ts, "kind": kind, "source": source, "detail": detail}
                    for ts, kind, source, detail in flush.events
                ]
                _insert_new(self._db.events, docs)

        with self._lock:
            self._with_retry(attempt, self.retry_for, "write")

    # -- restart -------------------------------------------------------------------------

    def _instrument_spans(self) -> list[tuple[str, str, int, int, int]]:
        """(exchange, symbol, trade count, first ts, last ts) per instrument, in code-point
        order: one `$group` on MongoDB; on FerretDB (no `$min`/`$max` in `$group`, and a scan
        for every sorted `find`) one streamed pass over the trades' times, summed here."""
        if self.pipeline:
            groups = self._db.trades.aggregate(
                [{"$group": {"_id": {"exchange": "$exchange", "symbol": "$symbol"},
                             "n": {"$sum": 1}, "first": {"$min": "$ts"},
                             "last": {"$max": "$ts"}}}]
            )  # fmt: skip
            return sorted(
                (g["_id"]["exchange"], g["_id"]["symbol"], int(g["n"]), int(g["first"]),
                 int(g["last"]))
                for g in groups
            )  # fmt: skip
        spans: dict[tuple[str, str], list[int]] = {}
        cursor = self._db.trades.find({}, {**_NO_ID, "exchange": 1, "symbol": 1, "ts": 1})
        for d in cursor.batch_size(self.chunk_docs):
            ts = int(d["ts"])
            span = spans.get((d["exchange"], d["symbol"]))
            if span is None:
                spans[(d["exchange"], d["symbol"])] = [1, ts, ts]
            else:
                span[0] += 1
                span[1] = min(span[1], ts)
                span[2] = max(span[2], ts)
        return sorted((e, s, n, lo, hi) for (e, s), (n, lo, hi) in spans.items())

    def _edge_ts(self, flt: dict[str, Any], field: str, direction: int) -> Any:
        """The lowest (1) or highest (-1) `field` among the documents matching `flt`."""
        doc = self._db.trades.find_one(flt, {**_NO_ID, field: 1}, sort=[(field, direction)])
        return None if doc is None else _plain(doc[field])

    def restore_cutoff(self, horizon: int, lateness: int, align: int) -> dict[tuple[str, str], int]:
        """Per (exchange, symbol), the window-aligned time before which nothing can change."""

        def run() -> dict[tuple[str, str], int]:
            return {
                (e, s): restore_cutoff(last, lateness, horizon, align)
                for e, s, _, _, last in self._instrument_spans()
            }

        return self._read(run)

    def restore_batches(
        self, cutoff: dict[tuple[str, str], int], rows: int = RESTORE_BATCH_ROWS
    ) -> Iterator[TradeBatch]:
        """The stored trades at or after each instrument's cutoff, in event-time order, in
        batches of at most `rows` (a cursor: the horizon is never held at once)."""
        if not cutoff:
            return
        flt = {"$or": [{"exchange": e, "symbol": s, "ts": {"$gte": c}}
                       for (e, s), c in cutoff.items()]}  # fmt: skip
        cursor = (
            self._db.trades.find(flt, _TRADE_PROJECTION)
            .sort([("ts", ASCENDING), ("seq", ASCENDING)])
            .batch_size(min(rows, self.chunk_docs))
        )
        for chunk in _chunks(cursor, rows):
            yield _trade_batch(chunk, "restore")

    def finals(self, since: int) -> set[Key]:
        """Keys of the final candles starting at or after `since`."""
        docs = self._read(
            lambda: list(self._db.candles.find({"start": {"$gte": since}, "final": True},
                                               {**_NO_ID, **{f: 1 for f in CANDLE_KEY}}))
        )  # fmt: skip
        return {(d["exchange"], d["symbol"], d["interval"], d["start"]) for d in docs}

    def revisions(self, since: int) -> dict[Key, int]:
        """Revision of each corrected candle starting at or after `since`."""
        docs = self._read(
            lambda: list(self._db.candles.find(
                {"start": {"$gte": since}, "revision": {"$gt": 0}},
                {**_NO_ID, "revision": 1, **{f: 1 for f in CANDLE_KEY}},
            ))
        )  # fmt: skip
        return {
            (d["exchange"], d["symbol"], d["interval"], d["start"]): d["revision"] for d in docs
        }

    # -- the API -------------------------------------------------------------------------

    def intervals(self) -> list[str]:
        """The stored candle intervals, from the `intervals` collection (a few documents, not
        a `$group` over every candle: that is a scan of the whole collection on MongoDB too,
        and the API asks on every candle request)."""
        return sorted(self._read(lambda: [d["_id"] for d in self._db.intervals.find({})]))

    def _note_intervals(self, intervals: set[str]) -> None:
        """Record the intervals of a flush's candles before the candles themselves (so a
        reader that sees a candle sees its interval), once per store object."""
        new = intervals - self._intervals_written
        if new:
            _insert_new(self._db.intervals, [{"_id": i} for i in sorted(new)])
            self._intervals_written |= new

    def _list_intervals_once(self) -> None:
        """Fill the `intervals` collection of a database written before it existed (by a
        `$group` over the candles, once; `$group`, not `distinct`: FerretDB's `distinct`
        refuses the `maxTimeMS` of a budget)."""
        if self._db.intervals.find_one({}) is not None:
            return
        group = [{"$group": {"_id": "$interval"}}]
        _insert_new(
            self._db.intervals, [{"_id": d["_id"]} for d in self._db.candles.aggregate(group)]
        )

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
        """Candles of one symbol with `start` in [start, end), optionally re-bucketed into
        candles of `bucket` µs (a whole multiple of the stored `interval_size`)."""
        flt = {
            "exchange": exchange, "symbol": symbol, "interval": interval,
            "start": {"$gte": -(2**62) if start is None else start,
                      "$lt": 2**62 if end is None else end},
        }  # fmt: skip
        if bucket is None or bucket == interval_size:
            return self._read(
                lambda: [
                    Candle(**_plain(d))
                    for d in self._db.candles.find(flt, _CANDLE_PROJECTION).sort("start", 1)
                ]
            )
        if not interval_size or bucket % interval_size:
            raise ValueError("bucket must be a whole multiple of the stored interval")
        name = format_duration(bucket)
        if self.pipeline:
            parts = self._read(
                lambda: list(self._db.candles.aggregate(_rebucket_pipeline(flt, bucket)))
            )
        else:
            parts = self._read(lambda: list(_roll_up(self._stream_candles(flt), bucket)))
        return [_bucket_candle(_plain(p), exchange, symbol, name) for p in parts]

    def _stream_candles(self, flt: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = self._db.candles.find(flt, _CANDLE_PROJECTION).sort("start", 1)
        return map(_plain, cursor.batch_size(self.chunk_docs))

    def has_instrument(self, exchange: str, symbol: str) -> bool:
        flt = {"exchange": exchange, "symbol": symbol}
        return self._read(lambda: self._db.candles.find_one(flt, _NO_ID) is not None)

    def has_exchange(self, exchange: str) -> bool:
        return self._read(lambda: self._db.candles.find_one({"exchange": exchange}, _NO_ID)
                          is not None)  # fmt: skip

    def instrument_summary(self) -> list[tuple[str, str, int, int, int]]:
        """(exchange, symbol, trade count, first ts, last ts) per stored instrument."""
        return self._read(self._instrument_spans)

    def recent_trades(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The newest trades of one instrument, newest first (ts, then seq)."""
        return self._read(
            lambda: [
                {f: _plain(d[f]) for f in TRADE_FIELDS}
                for d in self._db.trades.find({"exchange": exchange, "symbol": symbol},
                                              _TRADE_PROJECTION)
                .sort([("ts", DESCENDING), ("seq", DESCENDING)]).limit(limit)
            ]
        )  # fmt: skip

    def rolling_history(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The newest rolling statistics of one instrument, newest first."""
        return self._read(
            lambda: [
                {f: _plain(d[f]) for f in ROLLING_FIELDS}
                for d in self._db.rolling_stats.find({"exchange": exchange, "symbol": symbol},
                                                     _ROLLING_PROJECTION)
                .sort("ts", DESCENDING).limit(limit)
            ]
        )  # fmt: skip

    def totals(self) -> dict[str, Any]:
        """stored_trades, stored_candles, last_trade_ts, last_recv_ts and events by kind."""

        def run() -> dict[str, Any]:
            events = self._db.events.aggregate([{"$group": {"_id": "$kind", "n": {"$sum": 1}}}])
            return {
                **self._trade_totals(),
                "stored_candles": int(self._db.candles.count_documents({})),
                "events": dict(sorted((e["_id"], int(e["n"])) for e in events)),
            }

        return self._read(run)

    def _trade_totals(self) -> dict[str, Any]:
        """stored_trades, last_trade_ts and last_recv_ts: a count and two index-sorted finds
        on MongoDB; on FerretDB, where each of those scans the whole collection, one streamed
        pass over two fields."""
        if self.pipeline:
            return {
                "stored_trades": int(self._db.trades.count_documents({})),
                "last_trade_ts": self._edge_ts({}, "ts", DESCENDING),
                "last_recv_ts": self._edge_ts({}, "recv_ts", DESCENDING),
            }
        n, last_ts, last_recv_ts = 0, None, None
        cursor = self._db.trades.find({}, {**_NO_ID, "ts": 1, "recv_ts": 1})
        for d in cursor.batch_size(self.chunk_docs):
            n += 1
            ts, recv_ts = int(d["ts"]), int(d["recv_ts"])
            last_ts = ts if last_ts is None else max(last_ts, ts)
            last_recv_ts = recv_ts if last_recv_ts is None else max(last_recv_ts, recv_ts)
        return {"stored_trades": n, "last_trade_ts": last_ts, "last_recv_ts": last_recv_ts}

    def candle_totals(
        self, interval: str, start: int, end: int, exchange: str | None = None
    ) -> list[CandleTotals]:
        """Per instrument, its candles of `interval` in [start, end), summed."""
        return self.pieces_totals([(interval, start, end)], exchange)

    def pieces_totals(self, pieces: list[Piece], exchange: str | None = None) -> list[CandleTotals]:
        """Per instrument, its candles over all `pieces` (which do not overlap), streamed in
        chunks by one `find` (an `$or` of the pieces) and summed here (FerretDB's `$group` has
        no `$min`, `$max`, `$first`, `$last`; and it scans the whole collection for each
        request, which one request per piece paid as often as there were pieces)."""
        if not pieces:
            return []
        flt: dict[str, Any] = {"$or": [{"interval": i, "start": {"$gte": lo, "$lt": hi}}
                                       for i, lo, hi in pieces]}  # fmt: skip
        if exchange is not None:
            flt["exchange"] = exchange
        projection = {**_NO_ID, **{f: 1 for f in TOTALS_FIELDS}}

        def run() -> list[CandleTotals]:
            cursor = self._db.candles.find(flt, projection).batch_size(self.chunk_docs)
            return totals_of(tuple(doc[f] for f in TOTALS_FIELDS) for doc in cursor)

        return self._read(run)

    def events(self, kind: str, limit: int) -> list[tuple[int, str, str, str]]:
        """The newest `limit` events of `kind` as (ts, kind, source, detail), newest first
        (strings sort by their bytes: code-point order)."""
        order = [("ts", DESCENDING), ("source", ASCENDING), ("detail", ASCENDING)]
        return self._read(
            lambda: [
                (int(d["ts"]), d["kind"], d["source"], d["detail"])
                for d in self._db.events.find({"kind": kind}, _NO_ID).sort(order).limit(limit)
            ]
        )

    def metrics_since(
        self, since: int, limit: int, process: str | None = None
    ) -> list[PipelineMetric]:
        """The newest `limit` KPI rows with ts >= `since` (of one `process`), newest first."""
        flt: dict[str, Any] = {"ts": {"$gte": since}}
        if process is not None:
            flt["process"] = process
        order = [("ts", DESCENDING), ("process", ASCENDING)]
        return self._read(
            lambda: [
                PipelineMetric(**{f: _plain(d[f]) for f in METRIC_FIELDS})
                for d in self._db.pipeline_metrics.find(flt, _NO_ID).sort(order).limit(limit)
            ]
        )

    # -- whole history, in bounded chunks ------------------------------------------------

    def trade_batches(
        self, rows: int = RESTORE_BATCH_ROWS, since: int | None = None, until: int | None = None
    ) -> Iterator[TradeBatch]:
        """Every stored trade with ts in [since, until) in batches of at most `rows`, by
        (exchange, symbol) in code-point order, then (ts, seq): one `find` sorted as the index
        `trades_instrument_time` is, and hinted to it, so MongoDB walks that index and sorts
        nothing (FerretDB 1.x, which scans for any filter, sorts the range it found)."""
        lo, hi = time_range(since, until)
        cursor = (
            self._db.trades.find({"ts": {"$gte": lo, "$lt": hi}}, _TRADE_PROJECTION)
            .sort(_index_order("trades", "trades_instrument_time"))
            .hint("trades_instrument_time")
            .batch_size(min(rows, self.chunk_docs))
        )
        for chunk in _chunks(cursor, rows):
            yield _trade_batch(chunk, "store")

    def stored_candles(
        self, interval: str, rows: int = 100_000, since: int | None = None, until: int | None = None
    ) -> Iterator[Candle]:
        """Every stored candle of `interval` with start in [since, until), by (exchange,
        symbol) in code-point order, then start, read `rows` at a time: one `find` sorted as
        the index `candles_instrument_start` (exchange, symbol, interval, start) is, and hinted
        to it; one interval, so that is (exchange, symbol, start) order and MongoDB sorts
        nothing."""
        lo, hi = time_range(since, until)
        cursor = (
            self._db.candles.find(
                {"interval": interval, "start": {"$gte": lo, "$lt": hi}}, _CANDLE_PROJECTION
            )
            .sort(_index_order("candles", "candles_instrument_start"))
            .hint("candles_instrument_start")
            .batch_size(min(rows, self.chunk_docs))
        )
        for doc in cursor:
            yield Candle(**_plain(doc))

    def duplicate_trades(self, since: int | None = None, until: int | None = None) -> int:
        """0: the unique index `trades_key` (created at open) refuses a second trade of one
        (exchange, symbol, trade_id)."""
        return 0


# -- candles ---------------------------------------------------------------------------------

_SUMS = ("volume", "quote_volume", "trades", "buy_volume", "sell_volume")


def _interrupted(exc: OperationFailure) -> bool:
    """Whether the server cut the request short (shutting down, stepping down) rather than
    refused it: then the same request may succeed once it is back."""
    if exc.code in INTERRUPTED_CODES or exc.has_error_label("RetryableWriteError"):
        return True
    return exc.code == INTERNAL_ERROR and "context canceled" in str(exc)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _rebucket_pipeline(flt: dict[str, Any], bucket: int) -> list[dict[str, Any]]:
    """MongoDB's roll-up of the candles matching `flt` into buckets of `bucket` µs: one
    document per bucket with the same fields as `_roll_up` yields."""
    group: dict[str, Any] = {
        "_id": {"$subtract": ["$start", {"$mod": ["$start", bucket]}]},
        "open": {"$first": "$open"}, "high": {"$max": "$high"}, "low": {"$min": "$low"},
        "close": {"$last": "$close"}, "price_trades": {"$sum": {"$multiply": ["$mean_price",
                                                                              "$trades"]}},
        "first_seq": {"$first": "$first_seq"}, "last_seq": {"$last": "$last_seq"},
        "final": {"$min": "$final"}, "revision": {"$max": "$revision"},
        "updated_at": {"$max": "$updated_at"},
        **{f: {"$sum": f"${f}"} for f in _SUMS},
    }  # fmt: skip
    return [{"$match": flt}, {"$sort": {"start": 1}}, {"$group": group}, {"$sort": {"_id": 1}}]


def _roll_up(candles: Iterator[dict[str, Any]], bucket: int) -> Iterator[dict[str, Any]]:
    """What `_rebucket_pipeline` yields, from candles streamed in `start` order (one bucket
    held at a time)."""
    part: dict[str, Any] | None = None
    for c in candles:
        b = c["start"] - c["start"] % bucket
        if part is not None and part["_id"] != b:
            yield part
            part = None
        if part is None:
            part = {"_id": b, "open": c["open"], "high": c["high"], "low": c["low"],
                    "first_seq": c["first_seq"], "final": True, "revision": c["revision"],
                    "updated_at": c["updated_at"], "price_trades": 0.0,
                    **{f: 0 for f in _SUMS}}  # fmt: skip
        part["high"] = max(part["high"], c["high"])
        part["low"] = min(part["low"], c["low"])
        part["close"], part["last_seq"] = c["close"], c["last_seq"]
        part["final"] = part["final"] and c["final"]
        part["revision"] = max(part["revision"], c["revision"])
        part["updated_at"] = max(part["updated_at"], c["updated_at"])
        part["price_trades"] += c["mean_price"] * c["trades"]
        for f in _SUMS:
            part[f] += c[f]
    if part is not None:
        yield part


def _bucket_candle(part: dict[str, Any], exchange: str, symbol: str, interval: str) -> Candle:
    """A rolled-up candle from its bucket's sums, as the SQL stores compute it."""
    volume, trades = part["volume"], part["trades"]
    return Candle(
        exchange=exchange, symbol=symbol, interval=interval, start=part["_id"],
        open=part["open"], high=part["high"], low=part["low"], close=part["close"],
        volume=volume, quote_volume=part["quote_volume"],
        vwap=part["quote_volume"] / volume if volume > 0 else part["close"],
        mean_price=part["price_trades"] / trades, trades=int(trades),
        buy_volume=part["buy_volume"], sell_volume=part["sell_volume"],
        first_seq=part["first_seq"], last_seq=part["last_seq"], final=bool(part["final"]),
        revision=part["revision"], updated_at=part["updated_at"],
    )  # fmt: skip


# -- helpers ---------------------------------------------------------------------------------


def _index_order(collection: str, index: str) -> list[tuple[str, int]]:
    """The sort that walking `index` of `collection` (in `INDEXES`) gives."""
    fields = next(f for name, f, _ in INDEXES[collection] if name == index)
    return [(f, ASCENDING) for f in fields]


def _plain(value: Any) -> Any:
    """`value` with pymongo's `Int64` (what BSON's 64-bit integers decode to, an `int`
    subclass that JSON encoders refuse) made a plain `int`, also inside a document."""
    if isinstance(value, dict):
        return {k: int(v) if type(v) is Int64 else v for k, v in value.items()}
    return int(value) if type(value) is Int64 else value


def _doc(record: Any, key: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """The record as a document whose `_id` is its key fields' values joined by U+001F."""
    doc = msgspec.structs.asdict(record)
    return {"_id": "\x1f".join(str(doc[f]) for f in key), **doc, **extra}


def _insert_new(collection: Collection, docs: list[dict[str, Any]]) -> int:
    """Insert `docs` unordered; how many were already stored (error 11000, ignored)."""
    if not docs:
        return 0
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        other += exc.details.get("writeConcernErrors", [])
        if other:
            reason = " ".join(str(other[0].get("errmsg", other[0])).split())[:300]
            raise StoreError(
                f"MongoDB refused {len(other)} writes to {collection.name}: {reason}"
            ) from None
        return len(errors)
    return 0


def _update_filter(doc: dict[str, Any], rule_in_filter: bool) -> dict[str, Any]:
    """The document to replace: the same `_id`, and (the revision rule, kept by the server
    even if another writer got there first) a `precedence` no higher than `doc`'s."""
    if "precedence" not in doc or not rule_in_filter:
        return {"_id": doc["_id"]}
    return {"_id": doc["_id"], "precedence": {"$lte": doc["precedence"]}}


def _upsert(
    collection: Collection, docs: list[dict[str, Any]], rule_in_filter: bool = False
) -> None:
    """Replace each stored document of the same `_id` unless the stored one has a higher
    `precedence` (when documents carry one; checked again in the update filter when
    `rule_in_filter`), and insert the others."""
    stored: dict[str, int] = {}
    for lo in range(0, len(docs), 1000):
        ids = [d["_id"] for d in docs[lo : lo + 1000]]
        for d in collection.find({"_id": {"$in": ids}}, {"precedence": 1}):
            stored[d["_id"]] = d.get("precedence", 0)
    updates = [
        UpdateOne(
            _update_filter(d, rule_in_filter), {"$set": {k: v for k, v in d.items() if k != "_id"}}
        )
        for d in docs
        if d["_id"] in stored and stored[d["_id"]] <= d.get("precedence", 0)
    ]
    for lo in range(0, len(updates), UPDATE_BATCH):
        collection.bulk_write(updates[lo : lo + UPDATE_BATCH], ordered=False)
    _insert_new(collection, [d for d in docs if d["_id"] not in stored])


def _trade_batch(docs: list[dict[str, Any]], source: str) -> TradeBatch:
    columns = [pa.array([d[f.name] for d in docs], f.type) for f in TRADE_SCHEMA]
    return TradeBatch.from_arrow(pa.table(columns, schema=TRADE_SCHEMA), source=source)


def _chunks(docs: Iterable[dict[str, Any]], rows: int) -> Iterator[list[dict[str, Any]]]:
    """`docs` in lists of at most `rows`."""
    chunk: list[dict[str, Any]] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) >= rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
