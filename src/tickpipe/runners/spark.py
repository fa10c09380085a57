"""`tickpipe spark`: the Spark Structured Streaming job's launcher, a short assembly.

The broker is checked and the topics made as for `tickpipe process`; one Spark session gets
the topic's partition count as its shuffle partitions; the job's three queries write through
the PostgreSQL store (`spark/sink.py`) until SIGTERM/SIGINT, `duration`, or a failed query.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.faults import Fault
from tickpipe.spark.sink import BatchLedger, Sinks, SinkStats
from tickpipe.stores.base import is_postgres_url
from tickpipe.transport.kafka import CandlePublisher, ensure_topic, producer_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("tickpipe.spark")


@dataclass(frozen=True)
class SparkOptions:
    """The launcher's own settings (the rest is the config: windows, lateness, Kafka)."""

    checkpoint: str  # a local directory or s3://bucket/prefix (on the lake's endpoint)
    master: str = "local[2]"
    driver_memory: str = "1g"
    trigger_ms: int = 500
    # Trades per micro-batch, at most (as Kafka messages: this / kafka.message_trades): a
    # bound by messages alone let 2M trades of 1,000-trade messages into one micro-batch, and
    # a 1 GB driver ran out of heap on them (benchmarks/spark.py).
    batch_trades: int = 200_000
    provisional: bool = True


def max_offsets_per_trigger(options: SparkOptions, config: Config) -> int:
    """The Kafka messages a micro-batch may take: `batch_trades` in messages as ingest packs
    them (kafka.message_trades, the same config)."""
    return max(1, options.batch_trades // config.kafka.message_trades)


def topic_partitions(config: Config) -> int:
    """The trades topic's partitions (made first when missing): Spark's shuffle partitions."""
    from tickpipe.transport.kafka import _admin

    kafka = config.kafka
    warning = ensure_topic(kafka, kafka.trades_topic, {}, kafka.partitions)
    if warning:
        log.warning("%s", warning)
    if kafka.candles_topic:
        warning = ensure_topic(kafka, kafka.candles_topic, {"cleanup.policy": "compact"})
        if warning:
            log.warning("%s", warning)
    topic = _admin(kafka).list_topics(kafka.trades_topic, timeout=10).topics[kafka.trades_topic]
    return max(1, len(topic.partitions))


def run_spark(
    config: Config,
    options: SparkOptions,
    duration_s: float | None = None,
    spark: SparkSession | None = None,
) -> SinkStats:
    """Run the job until a signal, `duration_s` or a failed query (raised as a `Fault`).
    `spark`: a session to use (tests share one); else one is started and stopped here."""
    from confluent_kafka import Producer

    from tickpipe.spark.job import (
        JobSettings,
        SparkJob,
        checkpoint_run,
        is_s3,
        session,
        stop_session,
    )

    if not is_postgres_url(config.store):
        raise Fault(
            f"tickpipe spark writes to PostgreSQL: give --store postgresql://... "
            f"(store = {config.store or 'the DuckDB file'})"
        )
    partitions = topic_partitions(config)
    s3 = config.lake_settings(options.checkpoint) if is_s3(options.checkpoint) else None
    store = config.open_store()
    own_session = spark is None
    dead_letters = DeadLetters(config.dead_letter_path)
    producer = Producer(producer_settings(config.kafka)) if config.kafka.candles_topic else None
    try:
        from tickpipe.stores.postgresql import PostgresStore

        assert isinstance(store, PostgresStore)  # a postgresql:// URL opens one
        ledger = BatchLedger(store.dsn, checkpoint_run(options.checkpoint, s3))
        candles = (
            CandlePublisher(config.kafka.candles_topic, producer) if producer is not None else None
        )
        sinks = Sinks(store, ledger, dead_letters, config.kafka.trades_topic, candles)
        if spark is None:
            spark = session(options.master, partitions, options.driver_memory, s3=s3)
        settings = JobSettings(
            config.windows(), config.allowed_lateness_us, options.checkpoint, options.trigger_ms,
            max_offsets_per_trigger(options, config), options.provisional,
        )  # fmt: skip
        job = SparkJob(spark, config.kafka, settings, sinks)
        previous = {
            sig: signal.signal(sig, lambda *_: job.stop())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }  # run_spark runs in the main thread (the CLI)
        try:
            job.start()
            problem = job.wait(duration_s)
        finally:
            job.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if problem is not None:
            raise Fault(problem)
        return sinks.stats
    finally:
        if producer is not None:
            producer.flush(30)
        dead_letters.close()
        store.close()
        if own_session and spark is not None:
            stop_session(spark)
