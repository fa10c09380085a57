"""The distributed mode's throughput and latency, against a real Kafka broker and PostgreSQL.

    python benchmarks/kafka.py                      # all three measurements (~2 minutes)
    python benchmarks/kafka.py --trades 2000000 --encoding binary

Needs a source checkout (it starts the broker and the database with the test fixtures'
classes, tests/servers/) and scripts/setup/kafka.sh + postgresql.sh having run.

1. Throughput, one processor: `tickpipe process` (a subprocess, as users run it) joins its
   group, then N simulated trades (200 symbols) are published to a 4-partition topic as fast
   as the publisher goes, and the processor consumes, aggregates and stores them in
   PostgreSQL. Rate = trades stored / time, from the first stored transaction to the last
   (process start-up and group join not counted).
2. Throughput, two processors: the same on a fresh database and group, two replicas.
   And, to tell the processor's own cost from the store's: one processor in this process with
   a store that keeps nothing (consume, decode, engine, offset commits; no PostgreSQL).
3. Latency at a steady rate (default 10,000 trades/s, 20 symbols): a publisher subprocess stamps
   each trade's `recv_ts` with the wall clock just before handing it to Kafka (so this is
   ingest -> stored candle, not the simulated exchange latency); a processor runs in this
   process with a store wrapper that notes, per trade, the wall clock right after the
   PostgreSQL transaction holding the trade and the candle updates it caused committed.
   Candle updates are not throttled here (provisional_every = 1ms); the writer keeps the
   config's cadence (`--flush-every-ms` to set one) and flushes whenever the processor's input
   goes quiet.

Each throughput run also gives the cost that scaling keeps flat: CPU seconds per million trades
of every process (each processor, the broker, PostgreSQL with all its backends), read from
/proc between the first and the last stored transaction.

4. Encodings side by side (`encodings`): the same trades (200 symbols, 1,000 per message) as
   JSON, binary and Avro (Confluent wire format, schema in the local registry of
   tests/fakes/schema_registry.py): bytes per trade, CPU microseconds per trade to encode and to
   decode (process CPU time, not wall), and a round trip through the broker (publish, consume,
   decode) in trades per wall second.

The machine is shared by everything on it (broker, database, processors): on a 2-core box the
two-processor figure is bounded by the cores, not by tickpipe. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.kafka import KafkaBroker  # noqa: E402
from servers.postgres import PostgresServer  # noqa: E402
from throwaway import broker_and_postgres, create_db  # noqa: E402

from tickpipe.config import KafkaConfig, load_config  # noqa: E402
from tickpipe.sources.simulated import MarketSimulator  # noqa: E402
from tickpipe.transport.kafka import TradePublisher  # noqa: E402

BASE_TS = 1_750_000_000_000_000


def publish_all(bootstrap: str, topic: str, n: int, symbols: int, encoding: str) -> float:
    """Publish `n` trades as fast as possible; returns trades/s of the publishing itself."""
    sim = MarketSimulator(symbols, 100_000.0, seed=11, exchange="sim", source="sim")
    publisher = TradePublisher(
        KafkaConfig(bootstrap=bootstrap, trades_topic=topic, encoding=encoding)
    )
    start = time.perf_counter()
    done = 0
    clock = BASE_TS
    while done < n:
        step = min(100_000, n - done)
        batch = sim.trades(step, clock, 1_000_000)
        clock += 1_000_000
        while True:
            try:
                publisher.publish(batch)
                break
            except BufferError:
                publisher.producer.poll(0.1)
        done += len(batch)
    assert publisher.flush(120) == 0 and publisher.error is None
    return n / (time.perf_counter() - start)


def _cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and of its children it has waited for (user + system), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (a broker's JVM, PostgreSQL's backends)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def cpu_by_process(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree (exited backends included: PostgreSQL's
    postmaster has waited for them)."""
    return {name: sum(_cpu_s(p) for p in _descendants(pid)) for name, pid in roots.items()}


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def stored_count(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as con:
        return con.execute("SELECT count(*) FROM trades").fetchone()[0]


def throughput(
    broker: KafkaBroker, pg: PostgresServer, tmp: Path, n: int, replicas: int, encoding: str
) -> dict:
    topic = broker.create_topic(f"bench-{uuid.uuid4().hex[:6]}", 4)
    dsn = create_db(pg)
    logs = [tmp / f"{topic}-{i}.log" for i in range(replicas)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tickpipe",
                "process",
                "--kafka",
                broker.bootstrap,
                "--topic",
                topic,
                "--store",
                dsn,
                "--group",
                f"g-{topic}",
                "--candles-topic",
                "",
                "--data-dir",
                str(tmp / f"{topic}-{i}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs[i].open("wb"),
        )
        for i in range(replicas)
    ]
    # Every replica owns partitions before the trades come: the rate is of N processors, not
    # of the first one to join (a cooperative rebalance gives the second its share later).
    settle_by = time.monotonic() + 120
    while time.monotonic() < settle_by and not all(
        re.search(r"assigned partitions \[\d", log.read_text()) for log in logs
    ):
        time.sleep(0.2)
    publish_rate = publish_all(broker.bootstrap, topic, n, 200, encoding)
    roots = {f"processor_{i}": p.pid for i, p in enumerate(procs)}
    assert broker.proc is not None
    roots.update(broker=broker.proc.pid, postgresql=postmaster_pid(pg))
    try:
        first = None
        count = 0
        deadline = time.monotonic() + 600
        while count < n and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                count = stored_count(dsn)
            except Exception:
                continue  # schema not created yet
            if count and first is None:
                first = (time.monotonic(), count)
                cpu_first = cpu_by_process(roots)
        end = time.monotonic()
        cpu_end = cpu_by_process(roots)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    assert first is not None and count == n, f"stored {count} of {n}"
    rate = (n - first[1]) / (end - first[0])
    per_million = {name: round((cpu_end[name] - cpu_first[name]) / (n - first[1]) * 1e6, 2)
                   for name in roots}  # fmt: skip
    return {
        "processors": replicas, "trades": n, "trades_per_s": round(rate),
        "per_processor": round(rate / replicas), "publish_trades_per_s": round(publish_rate),
        "cpu_s_per_million_trades": per_million,
        "cpu_s_per_million_total": round(sum(per_million.values()), 2),
        "loadavg": round(os.getloadavg()[0], 2),
    }  # fmt: skip


class DiscardStore:
    """Accepts writes and keeps nothing: only for the "without PostgreSQL" ceiling below."""

    written = 0

    def write(self, trades=(), candles=(), *args, **kwargs) -> None:
        self.written += sum(len(t) for t in trades)

    def revisions(self, since: int) -> dict:
        return {}

    def finals(self, since: int) -> set:
        return set()

    def close(self) -> None:
        pass


def ceiling(broker: KafkaBroker, tmp: Path, n: int, encoding: str) -> dict:
    """The processor's own rate (consume, decode, engine, commit) with the store taken out."""
    from tickpipe.runners.kafka_processor import Processor

    topic = broker.create_topic(f"ceil-{uuid.uuid4().hex[:6]}", 4)
    publish_all(broker.bootstrap, topic, n, 200, encoding)
    config = load_config(env={}, overrides={
        "kafka.bootstrap": broker.bootstrap, "kafka.trades_topic": topic,
        "kafka.group": f"g-{topic}", "kafka.candles_topic": "", "data_dir": str(tmp / "ceil"),
    })  # fmt: skip
    store = DiscardStore()
    processor = Processor(config, store, "ceiling")
    runner = threading.Thread(target=processor.run, daemon=True)
    runner.start()
    first = None
    deadline = time.monotonic() + 600
    while processor.stats.trades < n and time.monotonic() < deadline:
        time.sleep(0.01)
        if first is None and processor.stats.trades:
            first = (time.monotonic(), processor.stats.trades)
    end = time.monotonic()
    processor.stop()
    runner.join(60)
    assert first is not None and processor.stats.trades == n
    return {"trades": n, "trades_per_s": round((n - first[1]) / (end - first[0]))}


class TimedStore:
    """Wraps a store: per written trade, the time from its recv_ts to the commit (µs)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.samples: list[np.ndarray] = []
        self.recording = False

    def write(self, trades=(), candles=(), *args, **kwargs):
        self.inner.write(trades, candles, *args, **kwargs)
        now = time.time_ns() // 1000
        if self.recording:
            for batch in trades:
                self.samples.append(now - batch.recv_ts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def paced_publisher(bootstrap: str, topic: str, rate: float, symbols: int, seconds: float) -> None:
    """(subprocess) Publish `rate` trades/s for `seconds`, recv_ts = wall clock at hand-over."""
    sim = MarketSimulator(symbols, rate, seed=5, exchange="sim", source="sim")
    publisher = TradePublisher(KafkaConfig(bootstrap=bootstrap, trades_topic=topic))
    step = 0.002
    start = time.time()
    prev = int(start * 1e6)
    wake = time.monotonic()
    while time.time() - start < seconds:
        wake += step
        delay = wake - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time_ns() // 1000
        batch = sim.span(prev, now)
        prev = now
        if len(batch):
            batch.recv_ts[:] = time.time_ns() // 1000
            publisher.publish(batch)
    publisher.flush(30)


def latency(
    broker: KafkaBroker,
    pg: PostgresServer,
    tmp: Path,
    rate: float,
    seconds: float,
    flush_every_ms: float | None = None,
):
    from tickpipe.runners.kafka_processor import Processor
    from tickpipe.stores.postgresql import PostgresStore

    topic = broker.create_topic(f"lat-{uuid.uuid4().hex[:6]}", 4)
    dsn = create_db(pg)
    path = tmp / "latency.toml"
    flush = f'flush_every = "{flush_every_ms}ms"\n' if flush_every_ms is not None else ""
    path.write_text(f'{flush}provisional_every = "1ms"\n')
    config = load_config(path, env={}, overrides={
        "kafka.bootstrap": broker.bootstrap, "kafka.trades_topic": topic,
        "kafka.group": f"g-{topic}", "kafka.candles_topic": "", "data_dir": str(tmp / "lat"),
    })  # fmt: skip
    store = TimedStore(PostgresStore(dsn))
    processor = Processor(config, store, "latency")
    runner = threading.Thread(target=processor.run, daemon=True)
    runner.start()
    warmup = 3.0
    pub = subprocess.Popen(
        [sys.executable, __file__, "--publish", broker.bootstrap, topic, str(rate),
         str(seconds + warmup)]
    )  # fmt: skip
    time.sleep(warmup)
    store.recording = True
    pub.wait(seconds + 120)
    time.sleep(1.0)
    store.recording = False
    processor.stop()
    runner.join(60)
    store.inner.close()
    lag = np.concatenate(store.samples) / 1000.0
    return {"rate": rate, "seconds": seconds, "trades_measured": len(lag),
            "p50_ms": round(float(np.percentile(lag, 50)), 2),
            "p99_ms": round(float(np.percentile(lag, 99)), 2),
            "max_ms": round(float(lag.max()), 2), "flush_every_ms": flush_every_ms,
            "loadavg": round(os.getloadavg()[0], 2)}  # fmt: skip


def encodings(broker: KafkaBroker, n: int) -> dict:
    """JSON vs binary vs Avro on the same trades: size, encode/decode CPU, broker round trip."""
    from confluent_kafka import Consumer, Producer
    from fakes.schema_registry import FakeSchemaRegistry

    from tickpipe.transport.codecs import trade_decoder, trade_encoder
    from tickpipe.transport.schema import split_by_instrument

    sim = MarketSimulator(200, 100_000.0, seed=11, exchange="sim", source="sim")
    parts = list(split_by_instrument(sim.trades(n, BASE_TS, 1_000_000), 1000))
    out: dict = {"trades": n, "messages": len(parts), "uptime": os.getloadavg()}
    with FakeSchemaRegistry() as registry:
        for encoding in ("json", "binary", "avro"):
            topic = broker.create_topic(f"enc-{encoding}-{uuid.uuid4().hex[:8]}", 4)
            kafka = KafkaConfig(bootstrap=broker.bootstrap, trades_topic=topic,
                                encoding=encoding, schema_registry=registry.url)  # fmt: skip
            encode, decode = trade_encoder(kafka), trade_decoder(kafka)
            cpu = time.process_time()
            values = [encode(p) for p in parts]
            encode_cpu = time.process_time() - cpu
            cpu = time.process_time()
            decoded = sum(len(decode(v).seq) for v in values)
            decode_cpu = time.process_time() - cpu
            assert decoded == n
            wall = time.perf_counter()
            producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                                 "compression.type": "lz4"})  # fmt: skip
            for p, v in zip(parts, values, strict=True):
                producer.produce(topic, v, f"{p.instruments[0].symbol}".encode())
                producer.poll(0)
            assert producer.flush(60) == 0
            consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic,
                                 "auto.offset.reset": "earliest"})  # fmt: skip
            consumer.subscribe([topic])
            got = 0
            while got < n:
                got += sum(len(decode(m.value()).seq) for m in consumer.consume(500, 1.0)
                           if m.error() is None)  # fmt: skip
            consumer.close()
            out[encoding] = {
                "bytes_per_trade": round(sum(map(len, values)) / n, 1),
                "encode_cpu_us_per_trade": round(encode_cpu / n * 1e6, 3),
                "decode_cpu_us_per_trade": round(decode_cpu / n * 1e6, 3),
                "round_trip_trades_per_s": round(n / (time.perf_counter() - wall)),
            }
            print(json.dumps({encoding: out[encoding]}), file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--encoding", choices=["json", "binary"], default="json")
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--flush-every-ms", type=float, default=None,
                        help="the writer's cadence in the latency run (default: the config's; "
                        "the processor flushes when its input goes quiet anyway)")  # fmt: skip
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["one", "two", "latency", "ceiling", "encodings"])  # fmt: skip
    parser.add_argument("--encoding-trades", type=int, default=200_000,
                        help="trades of the encodings comparison")  # fmt: skip
    parser.add_argument("--publish", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        bootstrap, topic, rate, seconds = args.publish
        paced_publisher(bootstrap, topic, float(rate), 20, float(seconds))
        return
    with broker_and_postgres("tickpipe-bench-kafka-") as (tmp, broker, pg):
        results: dict = {"cpus": os.cpu_count(), "encoding": args.encoding}
        if "one" not in args.skip:
            results["one_processor"] = throughput(broker, pg, tmp, args.trades, 1,
                                                  args.encoding)  # fmt: skip
            print(json.dumps(results["one_processor"]), file=sys.stderr)
        if "two" not in args.skip:
            results["two_processors"] = throughput(broker, pg, tmp, args.trades, 2,
                                                   args.encoding)  # fmt: skip
            print(json.dumps(results["two_processors"]), file=sys.stderr)
        if "ceiling" not in args.skip:
            results["processor_without_store"] = ceiling(broker, tmp, args.trades,
                                                         args.encoding)  # fmt: skip
            print(json.dumps(results["processor_without_store"]), file=sys.stderr)
        if "latency" not in args.skip:
            results["latency"] = latency(broker, pg, tmp, args.rate, args.seconds,
                                         args.flush_every_ms)  # fmt: skip
        if "encodings" not in args.skip:
            results["encodings"] = encodings(broker, args.encoding_trades)
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
