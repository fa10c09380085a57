"""What the Spark job's `foreachBatch` does with each micro-batch, on the driver.

Each query's batch is written through the store's own `write` (the same upserts, keys and
revision rule as `tickpipe process`: a provisional candle never replaces a final one of the
same revision), then recorded in the batch ledger. A batch Spark runs again after a crash
(its checkpoint did not record it as committed) is found in the ledger and changes nothing;
were it written twice, the whole-row upserts and the trades' unique key would still hold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from tickpipe.records import TRADE_SCHEMA, Candle
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from tickpipe.deadletter import DeadLetters
    from tickpipe.stores.base import Store
    from tickpipe.transport.kafka import CandlePublisher

log = logging.getLogger("tickpipe.spark")
FINALS_KEPT = 200_000

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS spark_batches (
    run text NOT NULL,
    query text NOT NULL,
    batch_id bigint NOT NULL,
    done_at bigint NOT NULL,
    PRIMARY KEY (run, query)
)"""


class BatchLedger:
    """The newest micro-batch of each query (of one checkpoint: `run`) that is stored."""

    def __init__(self, dsn: str, run: str) -> None:
        self.dsn = dsn
        self.run = run
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(LEDGER_DDL)

    def done(self, query: str, batch_id: int) -> bool:
        with psycopg.connect(self.dsn, autocommit=True) as con:
            row = con.execute(
                "SELECT batch_id FROM spark_batches WHERE run = %s AND query = %s",
                [self.run, query],
            ).fetchone()
        return row is not None and row[0] >= batch_id

    def mark(self, query: str, batch_id: int, now_us: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute(
                "INSERT INTO spark_batches VALUES (%s, %s, %s, %s) ON CONFLICT (run, query) "
                "DO UPDATE SET batch_id = EXCLUDED.batch_id, done_at = EXCLUDED.done_at",
                [self.run, query, batch_id, now_us],
            )


@dataclass
class SinkStats:
    trades: int = 0  # trade rows handed to the store (the store keeps each id once)
    malformed: int = 0
    provisional: int = 0  # candle updates written
    final: int = 0
    batches: int = 0
    skipped_batches: int = 0  # found in the ledger: a retried micro-batch


class Sinks:
    """The `foreachBatch` functions of the job's queries, sharing one store."""

    def __init__(
        self,
        store: Store,
        ledger: BatchLedger,
        dead_letters: DeadLetters,
        topic: str,
        candles: CandlePublisher | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.topic = topic
        self.candles = candles
        self.clock = clock
        self.stats = SinkStats()
        self.on_candles: list[Callable[[list[Candle]], None]] = []
        # Candles written final, so that a provisional query lagging the final one (each runs
        # on its own thread) sends no stale provisional update after them to the candles
        # topic (the store refuses it anyway). Bounded: the oldest half goes at FINALS_KEPT.
        self._finals: dict[tuple[str, str, str, int], int] = {}
        self._lock = threading.Lock()

    def _once(self, query: str, batch_id: int, batch: DataFrame, write: Callable[[], None]) -> None:
        if self.ledger.done(query, batch_id):
            # Still run the batch, writing nothing (the `noop` sink): its stateful operators
            # must commit their state for this batch id, or Spark 4 fails the query
            # (STATE_STORE_COMMIT_VALIDATION_FAILED) and the restart goes no further.
            batch.write.format("noop").mode("overwrite").save()
            self.stats.skipped_batches += 1
            log.info("spark: %s batch %d is stored already; skipped", query, batch_id)
            return
        write()
        self.ledger.mark(query, batch_id, self.clock.now_us())
        self.stats.batches += 1

    def trades(self, batch: DataFrame, batch_id: int) -> None:
        """Kafka records -> the trades table; malformed messages counted and dead-lettered."""
        from tickpipe.spark.plan import MALFORMED, parse, stored_trades, trade_rows

        def write() -> None:
            messages = parse(batch).cache()
            try:
                bad = messages.where(messages.kind == MALFORMED)
                for row in bad.select("value", "partition", "offset").collect():
                    origin = f"kafka:{self.topic}/{row['partition']}@{row['offset']}"
                    self.dead_letters.write(origin, "malformed", bytes(row["value"] or b""))
                    self.stats.malformed += 1
                table = stored_trades(trade_rows(messages)).toArrow()
            finally:
                messages.unpersist()
            if table.num_rows:
                self.store.write(trades=[table.cast(TRADE_SCHEMA)])
                self.stats.trades += table.num_rows

        self._once("trades", batch_id, batch, write)

    def candle_writer(self, query: str, final: bool) -> Callable[[DataFrame, int], None]:
        """The sink of a provisional (update mode) or a final (append mode) query."""

        def sink(batch: DataFrame, batch_id: int) -> None:
            def write() -> None:
                now = self.clock.now_us()
                from tickpipe.spark.plan import real_candles

                rows: list[dict[str, Any]] = real_candles(batch).toArrow().to_pylist()
                candles = [Candle(**r, final=final, revision=0, updated_at=now) for r in rows]
                with self._lock:
                    candles = self._not_stale(candles, final)
                    if candles:
                        self._write_candles(candles, final)

            self._once(query, batch_id, batch, write)

        return sink

    def _not_stale(self, candles: list[Candle], final: bool) -> list[Candle]:
        """`candles` without provisional ones of windows written final already."""
        finals = self._finals
        if final:
            for c in candles:
                finals[(c.exchange, c.symbol, c.interval, c.start)] = c.start
            if len(finals) > FINALS_KEPT:
                cut = sorted(finals.values())[len(finals) // 2]
                self._finals = {k: v for k, v in finals.items() if v >= cut}
            return candles
        return [c for c in candles if (c.exchange, c.symbol, c.interval, c.start) not in finals]

    def _write_candles(self, candles: list[Candle], final: bool) -> None:
        self.store.write(candles=candles)
        if final:
            self.stats.final += len(candles)
        else:
            self.stats.provisional += len(candles)
        if self.candles is not None:
            self.candles.publish(candles)
        for hook in self.on_candles:
            hook(candles)
