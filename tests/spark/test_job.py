"""The Spark job against a real Kafka broker, real PostgreSQL and real Spark (local[2]).

The same published trades (out of order, duplicated, late within the lateness, a symbol that
goes quiet, a malformed message, watermark heartbeats) go through `tickpipe process` and the
Spark job into two databases: the final candle tables must be identical, and both equal the
plain-Python batch recomputation (tests/engine/reference.py). Then `kill -9` of a driver
started by the README's `spark-submit` command mid-stream and a restart from its checkpoint:
every trade stored once, `tickpipe verify` passes, the candles equal the recomputation.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyarrow import fs

from tickpipe.deadletter import DeadLetters
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.runtime.clock import ManualClock
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.lake.location import LakeSettings
from tickpipe.transport.kafka import Heartbeats, TradePublisher
from tickpipe.transport.settings import KafkaConfig

sys.path.insert(0, str(Path(__file__).parents[1]))
from engine.reference import APPROX, EXACT, assert_candles_equal, batch_candles, dedupe
from servers.process import stop_process

from spark.conftest import PARTITIONS, S3_ENV, s3_settings

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(1200)]

# A tumbling and a hopping window, in one final and one provisional query of the job.
WINDOWS = [("1s", 1_000_000, 1_000_000), ("4s/2s", 4_000_000, 2_000_000)]
LATENESS_US = 500_000
CONFIG = """
intervals = ["1s"]
hopping = ["4s/2s"]
allowed_lateness = "500ms"
idle_timeout = "20s"
provisional_every = "200ms"
flush_every = "50ms"
"""
T0 = 1_700_000_000_000_000
MALFORMED = b'{"v":1,"exchange":"sim","price":"NaN"'  # cut short, and a price that is text
SETTLE_S = 600.0


class Market:
    """Trades of three symbols published in two phases, the third going quiet after 2.5 s:
    each 200 ms step in shuffled order, every third step twice (duplicates), the last 80 ms
    of every fourth step held back and published after the next (late, within the 500 ms
    lateness). Heartbeats go through the ingest's own `Heartbeats` on a manual clock."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.clock = ManualClock(monotonic_s=1000.0)
        kafka = KafkaConfig(
            bootstrap=bootstrap,
            trades_topic=topic,
            message_trades=60,
            properties={"log_level": "0"},
        )  # quiet once the broker is gone
        self.publisher = TradePublisher(kafka, clock=self.clock)
        self.heartbeats = Heartbeats(self.publisher, every_s=0.5, idle_s=2.0)
        sim = MarketSimulator(3, 1500, seed=11, exchange="sim", source="sim")
        batch = sim.span(T0, T0 + 6_000_000)
        quiet = (batch.instrument == 2) & (batch.ts >= T0 + 2_500_000)
        self.batch = batch.take(np.flatnonzero(~quiet))
        self.quiet_symbol = batch.instruments[2].symbol
        self.rng = np.random.default_rng(5)
        self.held: TradeBatch | None = None
        self.published: list[TradeBatch] = []

    def _send(self, batch: TradeBatch) -> None:
        if len(batch):
            self.publisher.publish(batch)
            self.published.append(batch)

    def phase(self, start_s: float, end_s: float) -> None:
        """Publish the trades of [start_s, end_s) (event time after T0)."""
        for k, lo in enumerate(np.arange(start_s, end_s, 0.2)):
            a, b = T0 + round(lo * 1e6), T0 + round((lo + 0.2) * 1e6)
            step = self.batch.take(np.flatnonzero((self.batch.ts >= a) & (self.batch.ts < b)))
            order = self.rng.permutation(len(step))
            step = step.take(order)
            if k % 4 == 1:
                late = step.ts >= b - 80_000
                self._send(step.take(np.flatnonzero(~late)))
                held = step.take(np.flatnonzero(late))
            else:
                self._send(step)
                held = None
            if self.held is not None:
                self._send(self.held)
            self.held = held
            if k % 3 == 0:
                self._send(step.take(np.arange(0, len(step), 2)))  # duplicates
        if self.held is not None:
            self._send(self.held)
            self.held = None
        assert self.publisher.flush(60) == 0, "the broker did not take the trades"

    def quiet(self, seconds: float) -> None:
        """Every symbol quiet for `seconds` (the manual clock): heartbeats move event time."""
        self.clock.advance(seconds)
        assert self.heartbeats.step(), "a heartbeat is due"
        assert self.publisher.flush(60) == 0

    def trades(self) -> list[Trade]:
        return dedupe(t for b in self.published for t in b.to_trades())


def new_topic(broker: Any) -> str:
    return broker.create_topic(f"spark-{uuid.uuid4().hex[:8]}", PARTITIONS)


def stored(dsn: str) -> tuple[int, int, int, int]:
    """(trades, distinct trade ids, candles, candles not final) in the database."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=3) as con:
        trades, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)) FROM trades"
        ).fetchone()
        candles, open_ = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT final) FROM candles"
        ).fetchone()
    return trades, distinct, candles, open_


def stored_candles(dsn: str) -> dict[tuple[str, str, str, int], Candle]:
    import psycopg
    from psycopg.rows import dict_row

    fields = ", ".join(Candle.__struct_fields__)
    with psycopg.connect(dsn, row_factory=dict_row) as con:
        rows = con.execute(f"SELECT {fields} FROM candles").fetchall()
    return {(r["exchange"], r["symbol"], r["interval"], r["start"]): Candle(**r) for r in rows}


def settle(dsn: str, trades: int, candles: int, alive: Any = None) -> None:
    """Until every trade and every candle is stored and every candle is final."""
    deadline = time.monotonic() + SETTLE_S
    last: Any = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            last = stored(dsn)
        except Exception as exc:  # the schema may not exist yet
            last = exc
        if last == (trades, trades, candles, 0):
            return
        time.sleep(1.0)
    pytest.fail(f"not settled: stored {last}, expected {trades} trades and {candles} candles")


def wait_for(what: str, check: Any, alive: Any = None) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not check():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1.0)


def job_for(
    spark: Any, dsn: str, topic: str, bootstrap: str, tmp: Path, checkpoint: str,
    s3: LakeSettings | None = None,
):  # fmt: skip
    """The Spark job on the shared session, writing to `dsn` (candles to TOPIC.candles);
    `checkpoint` a directory, or on S3 (`s3`: the endpoint)."""
    from confluent_kafka import Producer

    from tickpipe.spark.job import JobSettings, SparkJob, checkpoint_run
    from tickpipe.spark.sink import BatchLedger, Sinks
    from tickpipe.stores.postgresql import PostgresStore
    from tickpipe.transport.kafka import CandlePublisher

    store = PostgresStore(dsn)
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    sinks = Sinks(
        store, BatchLedger(dsn, checkpoint_run(checkpoint, s3, S3_ENV)),
        DeadLetters(tmp / "spark-dead-letters.jsonl"), topic,
        CandlePublisher(f"{topic}.candles", producer),
    )  # fmt: skip
    windows = tuple(parse_window(name) for name, _, _ in WINDOWS)
    settings = JobSettings(windows, LATENESS_US, checkpoint, trigger_ms=300)
    kafka = KafkaConfig(bootstrap=bootstrap, trades_topic=topic)
    return SparkJob(spark, kafka, settings, sinks), store, producer


def spark_submit() -> list[str]:
    """The README's `spark-submit` command line up to the job's own options."""
    import pyspark

    import tickpipe.spark.submit as submit
    from tickpipe.spark.jars import connector_jars

    jars = ",".join(str(j) for j in connector_jars())
    return [str(Path(pyspark.__file__).parent / "bin" / "spark-submit"), "--master", "local[2]",
            "--driver-memory", "512m", "--conf", "spark.ui.enabled=false", "--jars", jars,
            submit.__file__]  # fmt: skip


def start_process(tmp: Path, bootstrap: str, topic: str, dsn: str) -> subprocess.Popen:
    config = tmp / "process.toml"
    config.write_text(CONFIG)
    log = (tmp / "process.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "process", "--config", str(config), "--kafka",
         bootstrap, "--topic", topic, "--store", dsn, "--group", f"g-{topic}",
         "--candles-topic", "", "--data-dir", str(tmp / "process"), "--name", "p1"],
        env={**os.environ, "TICKPIPE_KAFKA_DEAD_LETTER_TOPIC": ""},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def topic_candles(bootstrap: str, topic: str) -> dict[tuple[str, str, str, int], Candle]:
    """The latest message of each candle on a candles topic, read to its end."""
    from confluent_kafka import Consumer, TopicPartition

    from tickpipe.transport.schema import decode_candle

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    latest: dict[tuple[str, str, str, int], Candle] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}  # fmt: skip
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        done = {p: 0 for p in partitions}
        deadline = time.monotonic() + 60
        while any(done[p] < ends[p] for p in partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    c = decode_candle(msg.value())
                    latest[(c.exchange, c.symbol, c.interval, c.start)] = c
                    done[msg.partition()] = msg.offset() + 1
    finally:
        consumer.close()
    return latest


def same_candles(spark: dict, engine: dict) -> list[str]:
    """Every field of every candle, floats to 1e-9 relative (updated_at aside)."""
    problems = []
    if set(spark) != set(engine):
        return [f"keys differ: {sorted(set(spark) ^ set(engine))[:5]}"]
    for key, ours in spark.items():
        theirs = engine[key]
        for f in (*EXACT, "final", "revision"):
            if getattr(ours, f) != getattr(theirs, f):
                problems.append(f"{key} {f}: {getattr(ours, f)!r} != {getattr(theirs, f)!r}")
        for f in APPROX:
            if not math.isclose(getattr(ours, f), getattr(theirs, f), rel_tol=1e-9):
                problems.append(f"{key} {f}: {getattr(ours, f)!r} != {getattr(theirs, f)!r}")
    return problems


def test_spark_and_process_store_identical_final_candles_from_the_same_trades(
    kafka, postgres_server, spark_session, s3_server, s3_bucket, tmp_path
):
    from servers.postgres import fresh_database

    topic = new_topic(kafka)
    kafka.create_topic(f"{topic}.candles", PARTITIONS, **{"cleanup.policy": "compact"})
    market = Market(kafka.bootstrap, topic)
    market.publisher.producer.produce(topic, MALFORMED, b"x")
    market.phase(0.0, 3.0)
    with fresh_database(postgres_server) as spark_dsn, fresh_database(postgres_server) as dsn:
        # The checkpoint on S3 (the lake's endpoint), as a deployment without a shared disk
        # keeps it: Spark writes its offsets, commits and state there through S3A.
        checkpoint = f"s3://{s3_bucket}/spark"
        job, store, producer = job_for(spark_session, spark_dsn, topic, kafka.bootstrap,
                                       tmp_path, checkpoint, s3_settings(s3_server))  # fmt: skip
        process = None
        try:
            job.start()

            def alive() -> None:
                assert job.failed() is None, job.failed()
                if process is not None:
                    assert process.poll() is None, (tmp_path / "process.log").read_text()[-3000:]

            first = len(market.trades())
            wait_for("Spark to store phase 1", lambda: job.sinks.stats.trades >= first, alive)
            market.phase(3.0, 6.0)
            market.quiet(10.0)  # the last windows of every symbol close on the heartbeat
            # The engine's idle timer runs on the wall clock: it starts once all is published.
            process = start_process(tmp_path, kafka.bootstrap, topic, dsn)
            trades = market.trades()
            expected = batch_candles(trades, WINDOWS)
            settle(spark_dsn, len(trades), len(expected), alive)
            settle(dsn, len(trades), len(expected), alive)
        finally:
            job.close()
            producer.flush(10)
            store.close()
            if process is not None:
                stop_process(process, timeout_s=60)
        ours, theirs = stored_candles(spark_dsn), stored_candles(dsn)
    assert_candles_equal(ours, expected)
    assert not (problems := same_candles(ours, theirs)), problems[:5]
    # What `tickpipe serve --kafka` shows live: the same final candles, on the candles topic.
    live = topic_candles(kafka.bootstrap, f"{topic}.candles")
    assert not (problems := same_candles(live, ours)), problems[:5]
    last = max(t.ts for t in trades if t.symbol == market.quiet_symbol)
    quiet_last = ours[("sim", market.quiet_symbol, "1s", last - last % 1_000_000)]
    assert quiet_last.final, "the quiet symbol's last window is final"
    # The malformed message: counted and dead-lettered by both, never fatal.
    assert job.sinks.stats.malformed == 1
    letters = (tmp_path / "spark-dead-letters.jsonl").read_text().splitlines()
    assert [json.loads(line)["payload"] for line in letters] == [MALFORMED.decode()]
    assert " 1 malformed" in (tmp_path / "process.log").read_text(), "heartbeats are skipped"
    # Spark's checkpoint is on S3: each query's offsets and commits, and the candles' state.
    keys = [f.path for f in s3_server.filesystem().get_file_info(
        fs.FileSelector(f"{s3_bucket}/spark", recursive=True))]  # fmt: skip
    for query in ("trades", "final", "provisional"):
        assert any(k.startswith(f"{s3_bucket}/spark/{query}/commits/") for k in keys), query
    assert any("/final/state/" in k for k in keys), "the windows' state"
    assert f"{s3_bucket}/spark/tickpipe-run" in keys


def test_spark_driver_killed_mid_stream_and_restarted_counts_each_trade_once(
    kafka, postgres_dsn, spark_session, tmp_path
):
    topic = new_topic(kafka)
    market = Market(kafka.bootstrap, topic)
    market.phase(0.0, 3.0)
    config = tmp_path / "spark.toml"
    config.write_text(CONFIG)
    checkpoint = tmp_path / "checkpoint"
    log = (tmp_path / "spark.log").open("ab")
    # The driver is the README's spark-submit equivalent (pyspark's own spark-submit, the
    # master and the jars given to it), which runs `tickpipe spark` (tickpipe.spark.submit).
    driver = subprocess.Popen(
        [*spark_submit(), "--config", str(config), "--kafka",
         kafka.bootstrap, "--topic", topic, "--store", postgres_dsn, "--candles-topic", "",
         "--checkpoint", str(checkpoint), "--data-dir", str(tmp_path / "data"),
         "--trigger", "300", "--no-provisional"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable,
             "PYSPARK_DRIVER_PYTHON": sys.executable},
    )  # fmt: skip
    try:

        def alive() -> None:
            assert driver.poll() is None, (tmp_path / "spark.log").read_text()[-3000:]

        def some_finals() -> bool:
            try:
                trades, _, candles, open_ = stored(postgres_dsn)
            except Exception:
                return False
            return trades > 0 and candles - open_ > 0

        wait_for("the driver to store final candles", some_finals, alive)
        market.phase(3.0, 4.6)  # in flight when the driver dies
        os.killpg(driver.pid, signal.SIGKILL)  # the Python driver and its JVM
        driver.wait(30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(30)
    market.phase(4.6, 6.0)
    market.quiet(10.0)
    # The restart: the same checkpoint, on the tests' shared session (spark_session).
    job, store, producer = job_for(
        spark_session, postgres_dsn, topic, kafka.bootstrap, tmp_path, str(checkpoint)
    )
    trades = market.trades()
    expected = batch_candles(trades, WINDOWS)
    try:
        job.start()

        def alive() -> None:
            assert job.failed() is None, job.failed()

        settle(postgres_dsn, len(trades), len(expected), alive)
    finally:
        job.close()
        producer.flush(10)
        store.close()
    assert_candles_equal(stored_candles(postgres_dsn), expected)
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--store", postgres_dsn, "--config",
         str(config)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
