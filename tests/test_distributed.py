"""The distributed mode end to end: `tickpipe process` replicas against a real Kafka broker and a
real PostgreSQL, with crashes (SIGKILL), a broker restart, a database restart and a malformed
message. The oracle is the plain-Python batch recomputation (tests/engine/reference.py) over
every trade the test published, and the count of distinct published trade ids.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.transport.kafka import TradePublisher
from tickpipe.transport.schema import encode_heartbeat
from tickpipe.transport.settings import KafkaConfig

sys.path.insert(0, str(Path(__file__).parent))
from engine.reference import assert_candles_equal, batch_candles
from servers.process import stop_process

pytestmark = pytest.mark.slow

WINDOWS = [("1s", 1_000_000, 1_000_000), ("5s", 5_000_000, 5_000_000)]
CONFIG = """
intervals = ["1s", "5s"]
allowed_lateness = "300ms"
idle_timeout = "500ms"
provisional_every = "100ms"
flush_every = "50ms"
"""
SETTLE_TIMEOUT = 90.0


class Stream:
    """Trades of a simulated market, published in steps with event times near now."""

    def __init__(self, bootstrap: str, topic: str, symbols: int = 6, rate: float = 4000.0):
        self.sim = MarketSimulator(symbols, rate, seed=7, exchange="sim", source="sim")
        self.publisher = TradePublisher(
            KafkaConfig(bootstrap=bootstrap, trades_topic=topic, message_trades=200)
        )
        self.published: list[TradeBatch] = []
        self.clock = time.time_ns() // 1000

    def step(self, seconds: float) -> int:
        """Publish the next `seconds` of trades (event time), then wait that long."""
        end = self.clock + int(seconds * 1e6)
        batch = self.sim.span(self.clock, end)
        self.clock = end
        self.publisher.publish(batch)
        self.published.append(batch)
        assert self.publisher.flush(60) == 0, "the broker did not take the trades"
        time.sleep(seconds)
        return len(batch)

    def run(self, seconds: float, step: float = 0.25) -> None:
        for _ in range(round(seconds / step)):
            self.step(step)

    def trades(self) -> list[Trade]:
        return [t for b in self.published for t in b.to_trades()]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tickpipe.toml"
    path.write_text(CONFIG)
    return path


def start_processor(
    tmp: Path, bootstrap: str, topic: str, dsn: str, group: str, name: str, *more: str,
    env: dict[str, str] | None = None, file_limit_bytes: int | None = None,
):  # fmt: skip
    """`tickpipe process` logging to tmp/NAME.log; `file_limit_bytes`: no file it writes may
    grow beyond that (a full disk, as tests/test_faults.py makes one)."""
    log = (tmp / f"{name}.log").open("ab")

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit_bytes, file_limit_bytes))

    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "process", "--config", str(write_config(tmp)),
         "--kafka", bootstrap, "--topic", topic, "--store", dsn, "--group", group,
         "--candles-topic", f"{topic}.candles", "--data-dir", str(tmp / name), "--name", name,
         *more],
        env={**os.environ, "TICKPIPE_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dead", **(env or {})},
        stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=limit_files if file_limit_bytes else None,
    )  # fmt: skip


# A short session: a killed processor is noticed after 3 s rather than 10 s (lean wall time).
SHORT_SESSION = {"TICKPIPE_KAFKA_PROPERTIES": "session.timeout.ms=3000,heartbeat.interval.ms=500"}


def stored(dsn: str) -> tuple[int, int, int]:
    """(trades, distinct trade ids, candles not yet final) in the database."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=3) as con:
        trades, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)) FROM trades"
        ).fetchone()
        open_ = con.execute("SELECT count(*) FROM candles WHERE NOT final").fetchone()[0]
    return trades, distinct, open_


def stored_candles(dsn: str) -> dict[tuple[str, str, str, int], Candle]:
    import psycopg
    from psycopg.rows import dict_row

    fields = ", ".join(Candle.__struct_fields__)
    with psycopg.connect(dsn, row_factory=dict_row) as con:
        rows = con.execute(f"SELECT {fields} FROM candles").fetchall()
    return {(r["exchange"], r["symbol"], r["interval"], r["start"]): Candle(**r) for r in rows}


def settle(dsn: str, expected_trades: int, procs: list[subprocess.Popen], tmp: Path) -> None:
    """Wait until every published trade is stored and every candle is final."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"a processor exited: {logs(tmp)}"
        try:
            last = stored(dsn)
        except Exception as exc:  # the database may be restarting
            last = exc
        if isinstance(last, tuple) and last[1] >= expected_trades and last[2] == 0:
            return
        time.sleep(0.1)  # a look is a few ms: settled is seen within 0.1 s, not 0.5 s
    pytest.fail(f"not settled: stored {last}, expected {expected_trades} trades; {logs(tmp)}")


def wait_assigned(tmp: Path, names: list[str], timeout: float = 60.0) -> None:
    """Until each named processor's latest assignment holds a partition (the group is stable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = {}
        for name in names:
            path = tmp / f"{name}.log"
            found = re.findall(rf"{name}: assigned partitions \[([\d, ]*)\]", path.read_text())
            latest[name] = found[-1] if found else ""
        if all(latest.values()):
            return
        time.sleep(0.2)
    pytest.fail(f"the group did not settle: {logs(tmp)}")


def total_published(ingest_output: str) -> int:
    found = re.search(r"published ([\d,]+) trades", ingest_output)
    assert found, ingest_output
    return int(found.group(1).replace(",", ""))


def logs(tmp: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp.glob("*.log"))


def check_exactly_once(dsn: str, stream: Stream) -> None:
    trades = stream.trades()
    ids = {(t.exchange, t.symbol, t.trade_id) for t in trades}
    count, distinct, _ = stored(dsn)
    assert count == distinct == len(ids), "each published trade must be stored exactly once"
    assert_candles_equal(stored_candles(dsn), batch_candles(trades, WINDOWS))


def trades_and_candles_topics(broker, prefix: str, partitions: int) -> str:
    """A fresh trades topic and its compacted candles topic (NAME.candles); returns NAME."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    broker.create_topic(name, partitions)
    broker.create_topic(f"{name}.candles", partitions, **{"cleanup.policy": "compact"})
    return name


@pytest.fixture
def topic(kafka) -> str:
    return trades_and_candles_topics(kafka, "trades", 3)


def test_sigkilled_processor_restarted_later_changes_nothing_in_final_candles(
    kafka, postgres_dsn, topic, tmp_path
):
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    run = (kafka.bootstrap, topic, postgres_dsn, group)
    a = start_processor(tmp_path, *run, "a", env=SHORT_SESSION)
    b = start_processor(tmp_path, *run, "b", env=SHORT_SESSION)
    try:
        wait_assigned(tmp_path, ["a", "b"])  # both own partitions: a's death moves some
        stream.run(3.0)
        a.send_signal(signal.SIGKILL)  # mid-stream, no chance to flush or commit
        a.wait()
        stream.run(3.0)  # b takes over a's partitions after the session timeout
        a = start_processor(tmp_path, *run, "a2", env=SHORT_SESSION)
        stream.run(3.0)
        total = sum(len(x) for x in stream.published)
        settle(postgres_dsn, total, [a, b], tmp_path)
    finally:
        stop_process(a)
        stop_process(b)
    check_exactly_once(postgres_dsn, stream)
    verify = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--store", postgres_dsn],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0 and "verify: OK" in verify.stdout, verify.stderr
    # The takeovers rebuilt windows by replay (else this test would not test the design).
    replayed = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) replayed", logs(tmp_path))]
    assert len(replayed) == 2 and sum(replayed) > 0, logs(tmp_path)


def test_a_joining_processor_moves_and_replays_only_the_partitions_it_takes(
    kafka, postgres_dsn, topic, tmp_path
):
    # Cooperative rebalancing: "a" keeps the partitions that stay with it and goes on with
    # them, without a replay; only the partition "b" takes is replayed, by "b".
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    a = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, group, "a")
    b = None
    try:
        wait_assigned(tmp_path, ["a"])
        stream.run(2.5)
        b = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, group, "b")
        wait_assigned(tmp_path, ["b"])
        stream.run(2.5)
        settle(postgres_dsn, sum(len(x) for x in stream.published), [a, b], tmp_path)
        b_log = (tmp_path / "b.log").read_text()  # before a leaves and b takes the rest
    finally:
        stop_process(a)
        if b is not None:
            stop_process(b)
    check_exactly_once(postgres_dsn, stream)
    a_log = (tmp_path / "a.log").read_text()
    revoked = [set(_numbers(m)) for m in re.findall(r"a: partitions revoked: \[([\d, ]*)\]",
                                                      a_log)]  # fmt: skip
    moved = revoked[0] if revoked else set()
    assert moved and moved != {0, 1, 2}, a_log  # some partitions moved, not all
    assert re.findall(r"a: assigned partitions \[[\d, ]*\] \(replaying \[([\d, ]*)\]\)",
                      a_log) == [""], a_log  # fmt: skip
    assert re.search(r"a: [\d,]+ trades stored, 0 replayed", a_log), a_log
    b_replays = re.findall(r"b: assigned partitions \[([\d, ]*)\] \(replaying \[([\d, ]*)\]\)",
                           b_log)  # fmt: skip
    assert [set(_numbers(got)) for got, _ in b_replays] == [moved], b_log
    assert set(_numbers(b_replays[0][1])) == moved, b_log  # what moved is rebuilt by replay


def _numbers(text: str) -> list[int]:
    return [int(n) for n in text.replace(",", " ").split()]


def test_processors_with_a_lake_write_every_trade_to_it_once_through_a_kill_and_takeovers(
    kafka, postgres_dsn, topic, tmp_path, monkeypatch
):
    monkeypatch.setenv("TICKPIPE_LAKE_ROLL_EVERY", "1s")
    lake = tmp_path / "lake"
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    run = (kafka.bootstrap, topic, postgres_dsn, group)
    a = start_processor(tmp_path, *run, "a", "--lake", lake.as_uri(), env=SHORT_SESSION)
    b = start_processor(tmp_path, *run, "b", "--lake", lake.as_uri(), env=SHORT_SESSION)
    try:
        wait_assigned(tmp_path, ["a", "b"])
        stream.run(3.0)
        a.send_signal(signal.SIGKILL)  # its lake buffers and uncommitted offsets are lost
        a.wait()
        stream.run(3.0)  # b takes a's partitions over: catches their lake up, then goes on
        a = start_processor(tmp_path, *run, "a2", "--lake", lake.as_uri(), env=SHORT_SESSION)
        stream.run(3.0)
        settle(postgres_dsn, sum(len(x) for x in stream.published), [a, b], tmp_path)
    finally:
        stop_process(a)
        stop_process(b)
    check_lake(lake, stream, tmp_path)


def check_lake(lake: Path, stream: Stream, tmp: Path) -> None:
    """Every published trade in the lake exactly once, and `tickpipe verify --lake` passes."""
    ids = {(t.exchange, t.symbol, t.trade_id) for t in stream.trades()}
    in_lake = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)) FROM read_parquet("
        f"'{lake}/trades/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    assert in_lake == (len(ids), len(ids)), "each published trade in the lake exactly once"
    verify = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--lake", lake.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0 and "0 mismatches, 0 duplicate trades" in verify.stdout, (
        verify.stdout + verify.stderr + logs(tmp)
    )


def rewind_commits(bootstrap: str, group: str, topic: str, messages: int) -> None:
    """As if the group's processor had died after storing its last `messages` of each
    partition but before committing them: the committed offsets moved back (with a replay
    point at the start, so the windows are rebuilt by replay)."""
    from confluent_kafka import Consumer, TopicPartition

    from tickpipe.transport.offsets import encode_metadata

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
        back = [TopicPartition(topic, tp.partition, tp.offset - messages, encode_metadata(0))
                for tp in committed if tp.offset > messages]  # fmt: skip
        assert back, "nothing was committed"
        consumer.commit(offsets=back, asynchronous=False)
    finally:
        consumer.close()


def test_a_processor_restarted_behind_what_it_stored_writes_nothing_twice_to_the_lake(
    kafka, postgres_dsn, topic, tmp_path
):
    lake = tmp_path / "lake"
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    run = (kafka.bootstrap, topic, postgres_dsn, group)
    p = start_processor(tmp_path, *run, "p", "--lake", lake.as_uri())
    try:
        stream.run(2.0)
        settle(postgres_dsn, sum(len(x) for x in stream.published), [p], tmp_path)
    finally:
        stop_process(p)
    rewind_commits(kafka.bootstrap, group, topic, 5)
    p = start_processor(tmp_path, *run, "p2", "--lake", lake.as_uri())
    try:
        stream.run(2.0)  # after the 5 messages of each partition stored (and in the lake) again
        settle(postgres_dsn, sum(len(x) for x in stream.published), [p], tmp_path)
    finally:
        stop_process(p)
    check_exactly_once(postgres_dsn, stream)
    check_lake(lake, stream, tmp_path)
    # PostgreSQL kept the offsets with the rows: the restart went on from those, not from
    # Kafka's rewound commits (the 5 messages were replayed, not stored again).
    behind = re.findall(r"p2: partition \d+: offset (\d+) stored, (\d+) committed",
                        (tmp_path / "p2.log").read_text())  # fmt: skip
    assert behind and all(int(s) - int(c) == 5 for s, c in behind), logs(tmp_path)


def test_broker_restart_mid_stream_loses_nothing(kafka, postgres_dsn, topic, tmp_path):
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    proc = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, group, "p")
    try:
        stream.run(2.5)
        kafka.stop()
        time.sleep(2)
        kafka.start()
        stream.run(2.5)
        total = sum(len(x) for x in stream.published)
        settle(postgres_dsn, total, [proc], tmp_path)
    finally:
        stop_process(proc)
    check_exactly_once(postgres_dsn, stream)


def test_a_quiet_input_is_stored_and_committed_to_the_end_without_waiting_for_the_cadence(
    kafka, postgres_dsn, topic, tmp_path
):
    from confluent_kafka import Producer

    # The writer's cadence is an hour and its bound far above this stream: only the flush the
    # processor asks for when nothing more has arrived stores the trades and closes candles.
    group = f"g-{topic}"
    proc = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, group, "p",
                           env={"TICKPIPE_FLUSH_EVERY": "1h"})  # fmt: skip
    stream = Stream(kafka.bootstrap, topic)
    try:
        stream.run(1.5)
        settle(postgres_dsn, sum(len(x) for x in stream.published), [proc], tmp_path)
        # Quiet now: ingest's watermark heartbeats are all the topic receives, and a poll of
        # the processor holds nothing else. They too must be committed, or the group's lag
        # never reads zero.
        beats = Producer(kafka.client_settings())
        for partition in range(3):
            beats.produce(topic, encode_heartbeat(stream.clock, "sim"), partition=partition)
        assert beats.flush(30) == 0
        deadline = time.monotonic() + 30
        while not kafka.committed_to_end(group, topic):
            assert time.monotonic() < deadline, f"offsets never reached the end: {logs(tmp_path)}"
            time.sleep(0.3)
    finally:
        stop_process(proc)
    check_exactly_once(postgres_dsn, stream)


def test_postgres_restart_mid_stream_writes_retry_and_lose_nothing(
    kafka, postgres_server, postgres_dsn, topic, tmp_path
):
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    proc = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, group, "p")
    try:
        stream.run(2.0)
        postgres_server.stop()
        stream.run(2.0)  # published while the database is down
        postgres_server.start()
        stream.run(2.0)
        total = sum(len(x) for x in stream.published)
        settle(postgres_dsn, total, [proc], tmp_path)
    finally:
        stop_process(proc)
    check_exactly_once(postgres_dsn, stream)


def test_malformed_message_is_dead_lettered_and_processing_goes_on(
    kafka, postgres_dsn, topic, tmp_path
):
    from confluent_kafka import Producer

    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    proc = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, group, "p")
    try:
        stream.run(1.0)
        bad = Producer({"bootstrap.servers": kafka.bootstrap})
        for i in range(3):
            bad.produce(topic, b'{"v": 1, "source": "sim", "price": "not a trade"}',
                        key=b"sim:SYM0-USD", partition=i)  # fmt: skip
        bad.produce(topic, b"\x00\x01garbage", key=b"sim:SYM1-USD", partition=0)
        assert bad.flush(30) == 0
        stream.run(1.5)
        total = sum(len(x) for x in stream.published)
        settle(postgres_dsn, total, [proc], tmp_path)
    finally:
        stop_process(proc)
    check_exactly_once(postgres_dsn, stream)
    letters = (tmp_path / "p" / "dead-letters.jsonl").read_text().splitlines()
    assert len(letters) == 4
    assert all("malformed" in line for line in letters)
    assert any("not a trade" in line for line in letters)
    # ... and on the dead-letter topic, as they were, with why and where from
    kept = read_topic(kafka.bootstrap, f"{topic}.dead", expected=4)
    assert sorted(m.value() for m in kept) == sorted(
        [b'{"v": 1, "source": "sim", "price": "not a trade"}'] * 3 + [b"\x00\x01garbage"]
    )
    for m in kept:
        headers = dict(m.headers())
        assert headers["tickpipe-reason"].startswith(b"malformed")
        assert headers["tickpipe-origin"].startswith(f"{topic}/".encode())


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(m for m in consumer.consume(100, 0.5) if m.error() is None)
    finally:
        consumer.close()
    return out


def test_kcat_reads_both_topics(kafka, postgres_dsn, tmp_path):
    """Interoperability: a plain Kafka tool reads trades and candles as JSON. The candles topic
    is not created beforehand: the processor creates it, compacted."""
    import json
    import shutil

    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = kafka.create_topic(f"kcat-{uuid.uuid4().hex[:8]}", 2)

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        from servers.require import server_missing

        server_missing("kcat is not installed (scripts/setup/kafka.sh installs it)")
    ingest = subprocess.run(
        [sys.executable, "-m", "tickpipe", "ingest", "--kafka", kafka.bootstrap, "--topic", topic,
         "--simulated", "--symbols", "3", "--rate", "2000", "--duration", "2",
         "--data-dir", str(tmp_path / "ingest")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    proc = start_processor(tmp_path, kafka.bootstrap, topic, postgres_dsn, f"g-{topic}", "p")
    try:
        settle(postgres_dsn, total_published(ingest.stdout), [proc], tmp_path)
    finally:
        stop_process(proc)

    def read(name: str) -> list[tuple[str, dict]]:
        out = subprocess.run(
            [kcat, "-C", "-b", kafka.bootstrap, "-t", name, "-e", "-q", "-f", "%k\t%s\n"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        rows = [line.split("\t", 1) for line in out.stdout.splitlines() if line]
        return [(k, json.loads(v)) for k, v in rows]

    messages = read(topic)
    # ingest's watermark heartbeats (docs/schema/heartbeat.v1.json) ride on the trades topic
    trades = [(key, msg) for key, msg in messages if msg.get("kind") != "heartbeat"]
    assert trades and len(trades) < len(messages), "trades, and heartbeats beside them"
    total = 0
    for key, msg in trades:
        assert key == f"{msg['exchange']}:{msg['symbol']}"
        assert len(msg["price"]) == len(msg["ts"]) == len(msg["seq"])
        total += len(msg["price"])
    assert total == total_published(ingest.stdout)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"{topic}.candles")
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    assert described["cleanup.policy"].value == "compact"
    assert len(admin.list_topics(f"{topic}.candles", timeout=10).topics[f"{topic}.candles"]
               .partitions) == 2  # fmt: skip
    candles = read(f"{topic}.candles")
    assert candles
    for key, c in candles:
        assert key == f"{c['exchange']}:{c['symbol']}:{c['interval']}:{c['start']}"
    assert {c["interval"] for _, c in candles} == {"1s", "5s"}
    stored_keys = set(stored_candles(postgres_dsn))
    assert {(c["exchange"], c["symbol"], c["interval"], c["start"]) for _, c in candles} <= (
        stored_keys
    )


def duckdb_trades(path: Path) -> tuple[int, int]:
    """(trades, distinct trade ids) in a DuckDB store no process has open."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)) FROM trades"
        ).fetchone()


def metrics_stored(port: int) -> int:
    """Trades a running processor says it stored (`tickpipe_trades_stored_total`, summed)."""
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1
    lines = (line for line in text.splitlines() if line.startswith("tickpipe_trades_stored_total{"))
    return sum(int(float(line.split()[-1])) for line in lines)


def test_a_full_disk_stops_the_processor_with_one_line_and_a_restart_stores_every_trade_once(
    kafka, topic, tmp_path
):
    from servers.process import free_port

    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic)
    path = tmp_path / "p" / "tickpipe.duckdb"
    full = start_processor(tmp_path, kafka.bootstrap, topic, "", group, "p",
                           file_limit_bytes=2_000_000)  # fmt: skip
    deadline = time.monotonic() + 60
    while full.poll() is None and time.monotonic() < deadline:
        stream.step(0.25)
    assert full.poll() == 1, f"the processor did not stop on the full disk: {logs(tmp_path)}"
    log = (tmp_path / "p.log").read_text()
    assert "Traceback" not in log, log
    assert log.strip().splitlines()[-1].startswith(f"tickpipe: error: disk full: {path}"), log
    before, distinct = duckdb_trades(path)
    assert before == distinct, "a trade was stored twice before the disk filled"

    stream.run(1.0)  # more trades while no processor runs
    total = sum(len(b) for b in stream.published)
    port = free_port()
    again = start_processor(tmp_path, kafka.bootstrap, topic, "", group, "p",
                            env={"TICKPIPE_MONITOR_METRICS_PORT": str(port)})  # fmt: skip
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while metrics_stored(port) < total - before and time.monotonic() < deadline:
            assert again.poll() is None, logs(tmp_path)
            time.sleep(0.1)
    finally:
        stop_process(again)
    count, distinct = duckdb_trades(path)
    ids = {(t.exchange, t.symbol, t.trade_id) for t in stream.trades()}
    assert count == distinct == len(ids), "each published trade must be stored exactly once"
    verify = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--data-dir", str(path.parent)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def ownership_events(log: str, name: str) -> list[tuple[str, set[int], set[int]]]:
    """A processor's assignments and revocations, in order: ("assigned", all it owns now,
    what it replays) or ("revoked", what it gave away, set())."""
    pattern = (rf"{name}: (?:assigned partitions \[([\d, ]*)\] \(replaying \[([\d, ]*)\]\)"
               rf"|partitions revoked: \[([\d, ]*)\]|partitions lost: \[([\d, ]*)\])")  # fmt: skip
    events: list[tuple[str, set[int], set[int]]] = []
    for owned, replaying, revoked, lost in re.findall(pattern, log):
        if revoked or lost:
            events.append(("revoked", set(_numbers(revoked or lost)), set()))
        elif owned or replaying:
            events.append(("assigned", set(_numbers(owned)), set(_numbers(replaying))))
    return events


def takeovers(log: str, name: str) -> list[tuple[set[int], set[int]]]:
    """Per assignment of a processor: (the partitions new to it, those it replayed); fails if
    it replayed a partition it already owned."""
    owned: set[int] = set()
    out: list[tuple[set[int], set[int]]] = []
    for kind, parts, replaying in ownership_events(log, name):
        if kind == "revoked":
            owned -= parts
            continue
        new = parts - owned
        assert replaying <= new, f"{name} replayed partitions it kept {replaying - new}: {log}"
        out.append((new, replaying))
        owned = parts
    return out


def test_a_third_processor_joins_then_one_is_killed_and_only_moved_partitions_replay(
    kafka, postgres_dsn, tmp_path
):
    # Six partitions: two processors own three each, a third joins and takes two (one of
    # each), then one is killed mid-stream and its partitions move to the two others. Only
    # what changes owner replays; the final candles equal the batch recomputation.
    topic = trades_and_candles_topics(kafka, "trades3", 6)
    group = f"g-{topic}"
    stream = Stream(kafka.bootstrap, topic, symbols=24)  # every partition has a few
    run = (kafka.bootstrap, topic, postgres_dsn, group)
    procs = {n: start_processor(tmp_path, *run, n, env=SHORT_SESSION) for n in ("a", "b")}
    try:
        wait_assigned(tmp_path, ["a", "b"])
        stream.run(1.5)
        procs["c"] = start_processor(tmp_path, *run, "c", env=SHORT_SESSION)
        wait_assigned(tmp_path, ["c"])
        stream.run(1.5)
        before_kill = {n: (tmp_path / f"{n}.log").read_text() for n in "abc"}
        killed = "a"
        procs[killed].send_signal(signal.SIGKILL)  # mid-stream: no flush, no commit
        procs[killed].wait()
        stream.run(1.5)
        alive = [p for n, p in procs.items() if n != killed]
        settle(postgres_dsn, sum(len(x) for x in stream.published), alive, tmp_path)
        # before the first stop moves the rest
        logs_ = {n: (tmp_path / f"{n}.log").read_text() for n in "abc"}
    finally:
        for p in procs.values():
            stop_process(p)
    check_exactly_once(postgres_dsn, stream)
    # Before the kill: c's join moved some of a's and b's partitions to c, and c alone replayed.
    # (A partition whose first message came after it moved has nothing stored to replay.)
    ((c_taken, c_replayed),) = takeovers(before_kill["c"], "c")
    assert c_taken and len(c_taken) < 6 and c_replayed and c_replayed <= c_taken, before_kill["c"]
    for n in ("a", "b"):
        replayed = [r for _, r in takeovers(before_kill[n], n) if r]
        assert not replayed, f"{n} replayed before any partition moved to it: {before_kill[n]}"
    # After the kill: a's partitions went to b and c, who replayed those and only those
    # (takeovers fails on a replay of a partition kept).
    a_held = owned_at_end(before_kill["a"], "a")
    taken_after: set[int] = set()
    replayed_after: set[int] = set()
    for n in ("b", "c"):
        for taken, replayed in takeovers(logs_[n], n)[len(takeovers(before_kill[n], n)) :]:
            taken_after |= taken
            replayed_after |= replayed
    assert a_held and taken_after == a_held, logs(tmp_path)
    assert replayed_after and replayed_after <= a_held, logs(tmp_path)
    # The offsets stored with the rows say exactly what is stored: every message of the topic.
    assert stored_offsets(postgres_dsn, group) == topic_ends(kafka.bootstrap, topic, 6)


def stored_offsets(dsn: str, group: str) -> dict[int, int]:
    import psycopg

    with psycopg.connect(dsn) as con:
        rows = con.execute(
            "SELECT partition, next_offset FROM stream_offsets WHERE consumer_group = %s", [group]
        ).fetchall()
    return dict(rows)


def topic_ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Each partition's end offset (those with messages)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4().hex}"})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)}  # fmt: skip
    finally:
        consumer.close()
    return {p: end for p, end in ends.items() if end > 0}


def owned_at_end(log: str, name: str) -> set[int]:
    owned: set[int] = set()
    for kind, parts, _ in ownership_events(log, name):
        owned = owned - parts if kind == "revoked" else parts
    return owned
