"""The Spark Structured Streaming job: its queries over the trades topic, one session.

- `trades`: every Kafka record; trade messages go to the trades table (unique on exchange,
  symbol, trade_id), malformed ones are counted and dead-lettered;
- `final` (append mode): the candles of every configured window (`1s`, `1m/5s`...), each once
  its window has closed, final; and `provisional` (update mode): the candles a micro-batch
  changed, not final. Each is one aggregation over all windows (plan.candles), so the topic
  is read three times whatever the number of windows.

Each query has its own checkpoint under `checkpoint` (offsets, and the windows' and
de-duplication's state), so `kill -9` and a restart resume where the checkpoint stands; the
batch ledger (sink.py) makes a micro-batch Spark runs again change nothing. The checkpoint is a
local directory or an `s3://bucket/prefix` on the lake's S3 endpoint (`lake_endpoint`,
`lake_region`, the lake's credentials), which Spark reaches through Hadoop's S3A file system.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickpipe.engine.windows import Window
from tickpipe.spark import plan
from tickpipe.spark.jars import connector_jars, s3a_jars
from tickpipe.spark.sink import Sinks
from tickpipe.stores.lake.location import ACCESS_KEY_ENV, SECRET_KEY_ENV, LakeSettings, filesystem

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from tickpipe.transport.settings import KafkaConfig

log = logging.getLogger("tickpipe.spark")


@dataclass(frozen=True)
class JobSettings:
    """What the job needs besides the store: its windows, lateness and Spark's knobs."""

    windows: tuple[Window, ...]
    allowed_lateness_us: int
    checkpoint: str  # a local directory or s3://bucket/prefix
    trigger_ms: int = 500  # a micro-batch at most this often
    max_offsets_per_trigger: int = 2000  # Kafka messages per micro-batch (bounds memory)
    provisional: bool = True  # also the update-mode query of provisional candles


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def query_checkpoint(location: str, query: str) -> str:
    """Where one query's checkpoint goes, as Spark names it (S3 through S3A: `s3a://`)."""
    if is_s3(location):
        return f"s3a://{location.removeprefix('s3://').rstrip('/')}/{query}"
    return str(Path(location) / query)


def s3a_settings(lake: LakeSettings) -> dict[str, str]:
    """Spark settings that point Hadoop's S3A file system at the lake's endpoint and region."""
    settings = {"spark.hadoop.fs.s3a.path.style.access": "true"}
    if lake.endpoint:
        scheme, _, host = lake.endpoint.rpartition("://")
        scheme = scheme or "https"
        settings["spark.hadoop.fs.s3a.endpoint"] = f"{scheme}://{host}"
        settings["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(scheme == "https").lower()
    settings["spark.hadoop.fs.s3a.endpoint.region"] = lake.region or "us-east-1"
    return settings


def s3a_credentials(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The lake's credentials as S3A's settings (none: the AWS SDK's own chain). Set in the
    running JVM's Hadoop configuration, never as a `--conf` on the driver's command line,
    where any user of the machine could read them."""
    from tickpipe.credentials import secret_env
    from tickpipe.stores.lake.location import LAKE_SECRETS

    secrets = secret_env(os.environ if env is None else env, LAKE_SECRETS)
    if not (secrets.get(ACCESS_KEY_ENV) and secrets.get(SECRET_KEY_ENV)):
        return {}
    return {"fs.s3a.access.key": secrets[ACCESS_KEY_ENV],
            "fs.s3a.secret.key": secrets[SECRET_KEY_ENV]}  # fmt: skip


def session(
    master: str = "local[2]",
    partitions: int = 6,
    driver_memory: str = "1g",
    app_name: str = "tickpipe-spark",
    s3: LakeSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> SparkSession:
    """A Spark session with the settings that matter on a small machine.

    Under `spark-submit` (which sets PYSPARK_GATEWAY_PORT) the master and the jars are
    spark-submit's; else the connector's jars come from the cache by `spark.jars`, so no ivy
    resolution happens. Shuffle partitions = the topic's partitions, UTC time, and field
    names matched with their case (as the JSON decoder of `tickpipe process` does). `s3`: the
    checkpoint is on S3: the S3A jars go on the driver's class path (the JVM starts here; not
    by `spark.jars`, which would copy the SDK's 690 MB for the executor) and S3A is set up,
    its credentials from `env` (default: the environment).
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        jars = ",".join(str(j) for j in connector_jars())
        builder = (
            builder.master(master)
            .config("spark.jars", jars)
            .config("spark.driver.memory", driver_memory)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
        if s3 is not None:
            path = os.pathsep.join(str(j) for j in s3a_jars())
            builder = builder.config("spark.driver.extraClassPath", path)
    for key, value in (s3a_settings(s3) if s3 is not None else {}).items():
        builder = builder.config(key, value)
    spark = (
        builder.config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.caseSensitive", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    if s3 is not None:
        hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # noqa: SLF001 (no public handle)
        for key, value in s3a_credentials(env).items():
            hadoop.set(key, value)
    return spark


def stop_session(spark: SparkSession) -> None:
    """Stop the session's streaming queries, then the state stores' maintenance thread, then
    the session: stopped the other way round, the maintenance thread outlives SparkEnv and
    prints a Java stack trace ("SparkEnv not active") as the JVM goes down."""
    for query in spark.streams.active:
        try:
            query.stop()
        except Exception as exc:  # a failed query raises its error again here
            log.warning("spark: stopping %s: %s", query.name, exc)
    jvm = spark.sparkContext._jvm  # noqa: SLF001 (pyspark has no public handle on it)
    if jvm is not None:
        jvm.org.apache.spark.sql.execution.streaming.state.StateStore.stop()
    spark.stop()


def checkpoint_run(
    location: str, s3: LakeSettings | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The id of this checkpoint (made on first use): the batch ledger's rows are per
    checkpoint, so a fresh checkpoint, whose batch ids start at 0 again, starts afresh. On S3
    (`s3`: the endpoint and region; the credentials from `env`) it is one object: a PUT is
    atomic."""
    if is_s3(location):
        settings = LakeSettings(location, s3.endpoint if s3 else "", s3.region if s3 else "")
        files, root = filesystem(settings, env)
        key = f"{root}/tickpipe-run"
        if files.get_file_info(key).type.name == "NotFound":
            with files.open_output_stream(key) as out:
                out.write(uuid.uuid4().hex.encode())
        with files.open_input_stream(key) as stream:
            return stream.read().decode().strip()
    checkpoint = Path(location)
    checkpoint.mkdir(parents=True, exist_ok=True)
    path = checkpoint / "tickpipe-run"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(uuid.uuid4().hex)
        tmp.replace(path)
    return path.read_text().strip()


def kafka_options(kafka: KafkaConfig, max_offsets: int) -> dict[str, str]:
    """The Kafka source's options: the trades topic from the start, the librdkafka
    properties that mean the same to the Java client (security settings) passed on."""
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap,
        "subscribe": kafka.trades_topic,
        "startingOffsets": "earliest",
        "maxOffsetsPerTrigger": str(max_offsets),
    }
    for name, value in kafka.properties.items():
        options[f"kafka.{name}"] = value
    return options


class SparkJob:
    """The three queries on one session; `start()`, then `wait()` or `stop()`."""

    def __init__(
        self, spark: SparkSession, kafka: KafkaConfig, settings: JobSettings, sinks: Sinks
    ) -> None:
        self.spark = spark
        self.kafka = kafka
        self.settings = settings
        self.sinks = sinks
        self.queries: list[StreamingQuery] = []
        self._stop = threading.Event()

    def _source(self) -> Any:
        reader = self.spark.readStream.format("kafka")
        options = kafka_options(self.kafka, self.settings.max_offsets_per_trigger)
        return reader.options(**options).load()

    def _candles(self) -> Any:
        rows = plan.trade_rows(plan.parse(self._source()))
        deduplicated = plan.deduplicated(rows, self.settings.allowed_lateness_us)
        return plan.candles(deduplicated, self.settings.windows)

    def start(self) -> None:
        s = self.settings
        trigger = f"{s.trigger_ms} milliseconds"
        where = s.checkpoint
        plans: list[tuple[str, Any, str, Any]] = [
            ("trades", self._source(), "append", self.sinks.trades)
        ]
        plans.append(("final", self._candles(), "append",
                      self.sinks.candle_writer("final", final=True)))  # fmt: skip
        if s.provisional:
            plans.append(("provisional", self._candles(), "update",
                          self.sinks.candle_writer("provisional", final=False)))  # fmt: skip
        for name, frame, mode, sink in plans:
            query = (
                frame.writeStream.queryName(f"tickpipe-{name}")
                .outputMode(mode)
                .option("checkpointLocation", query_checkpoint(where, name))
                .trigger(processingTime=trigger)
                .foreachBatch(sink)
                .start()
            )
            self.queries.append(query)
        log.info("spark: %d queries started, checkpoint %s", len(self.queries), where)

    def failed(self) -> str | None:
        """The first query's error, in one line, once one has stopped with one."""
        for query in self.queries:
            exc = query.exception()
            if exc is not None:
                text = str(getattr(exc, "desc", None) or exc)
                return f"spark query {query.name} failed: {' '.join(text.split())[:500]}"
        return None

    def wait(self, duration_s: float | None = None) -> str | None:
        """Until `stop()`, `duration_s` or a failed query (its one-line error is returned)."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            problem = self.failed()
            if problem is not None:
                return problem
            if not any(q.isActive for q in self.queries):
                break
            self._stop.wait(0.25)
        return None

    def stop(self) -> None:
        """Ask `wait` to return (a signal handler may call it)."""
        self._stop.set()

    def close(self) -> None:
        """Stop the queries (each ends after its current micro-batch)."""
        for query in self.queries:
            try:
                query.stop()
            except Exception as exc:  # a failed query raises its error again here
                log.warning("spark: stopping %s: %s", query.name, exc)
        self.queries = []

    def progress(self) -> dict[str, Any]:
        """The newest progress of each query (rows, rates, watermark), for the log and tests."""
        return {q.name: q.lastProgress for q in self.queries if q.lastProgress}
