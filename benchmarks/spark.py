"""`tickpipe process` and `tickpipe spark` side by side on the same topic, in one run.

    python benchmarks/spark.py                       # 200,000 trades, 10 s at 10,000/s
    python benchmarks/spark.py --trades 2000000 --seconds 30

Needs a source checkout (the broker and the database start with the test fixtures' classes,
tests/servers/), scripts/setup/kafka.sh, postgresql.sh and spark.sh having run, and pyspark
(the `spark` extra).

1. Throughput: N simulated trades (20 symbols) are published to a 3-partition topic first
   (not timed), with a watermark heartbeat after them. Then each processor, as a subprocess as
   users run it (the Spark one at local[2]), consumes them into its own database: start-up =
   launch to the first stored trade; trades/s = trades / time from the first stored trade to
   the last; all_final_after_s = from the first stored trade until the candle table holds
   every candle, final (the last windows close on the idle timer, resp. the heartbeat: a
   fixed wait of seconds that weighs heavily on small runs). Peak memory is the
   whole process tree's RSS (the JVM included), sampled every 0.2 s from /proc; CPU seconds
   are the tree's user + system time (on a shared machine they say more than wall time).
2. Latency at a steady rate (default 10,000 trades/s): benchmarks/kafka.py's paced publisher
   stamps each trade's recv_ts with the wall clock at hand-over; every 50 ms this benchmark
   notes per symbol the newest seq a stored 1 s candle holds (provisional ones count: they
   are what a reader sees), and afterwards looks the trades up: latency = when a candle first
   held the trade - recv_ts, so ingest -> candle in PostgreSQL, +-25 ms of polling; the
   trades of a warm-up (3 s; Spark 30 s: it plans each query on its first batches) excluded.
"""

from __future__ import annotations

import argparse
import json
import os
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

from tickpipe.runtime.clock import ManualClock  # noqa: E402
from tickpipe.sources.simulated import MarketSimulator  # noqa: E402
from tickpipe.transport.kafka import Heartbeats, TradePublisher  # noqa: E402
from tickpipe.transport.settings import KafkaConfig  # noqa: E402

BASE_TS = 1_750_000_000_000_000
CONFIG = 'intervals = ["1s", "1m"]\nallowed_lateness = "1s"\nidle_timeout = "2s"\n'
TICK_S = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (the Spark driver's JVM is a child of the Python driver)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def usage(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of the process tree of `pid`."""
    rss, cpu = 0, 0.0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK_S
        except (OSError, IndexError):
            continue
    return rss, cpu


class Watch:
    """Peak RSS and the latest CPU seconds of a process tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            rss, cpu = usage(self.pid)
            self.peak = max(self.peak, rss)
            self.cpu = max(self.cpu, cpu)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def publish_all(bootstrap: str, topic: str, n: int) -> None:
    """`n` trades as fast as possible, then a heartbeat that closes every window."""
    clock = ManualClock()
    publisher = TradePublisher(KafkaConfig(bootstrap=bootstrap, trades_topic=topic), clock=clock)
    sim = MarketSimulator(20, 20_000.0, seed=11, exchange="sim", source="sim")
    done, ts = 0, BASE_TS
    while done < n:
        batch = sim.trades(min(100_000, n - done), ts, 1_000_000)
        ts += 1_000_000
        while True:
            try:
                publisher.publish(batch)
                break
            except BufferError:
                publisher.producer.poll(0.1)
        done += len(batch)
    clock.advance(120.0)
    Heartbeats(publisher, 1.0, 2.0).step()
    assert publisher.flush(120) == 0 and publisher.error is None


def counts(dsn: str) -> tuple[int, int, int]:
    """(trades, candles, candles not final)."""
    import psycopg

    with psycopg.connect(dsn) as con:
        trades = con.execute("SELECT count(*) FROM trades").fetchone()[0]
        candles, open_ = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT final) FROM candles"
        ).fetchone()
    return trades, candles, open_


def command(kind: str, bootstrap: str, topic: str, dsn: str, tmp: Path) -> list[str]:
    config = tmp / "bench.toml"
    config.write_text(CONFIG)
    common = ["--config", str(config), "--kafka", bootstrap, "--topic", topic, "--store", dsn,
              "--candles-topic", "", "--data-dir", str(tmp / f"{kind}-{topic}")]  # fmt: skip
    if kind == "process":
        return [sys.executable, "-m", "tickpipe", "process", *common, "--group", f"g-{topic}"]
    return [sys.executable, "-m", "tickpipe", "spark", *common, "--trigger", "200"]


def throughput(kind: str, broker: KafkaBroker, pg: PostgresServer, tmp: Path, topic: str,
               n: int, candles: int | None) -> dict:  # fmt: skip
    dsn = create_db(pg)
    started = time.monotonic()
    log = tmp / f"{kind}-{topic}.log"
    with log.open("wb") as out:  # the child keeps its own handle
        proc = subprocess.Popen(command(kind, broker.bootstrap, topic, dsn, tmp),
                                stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip
    watch = Watch(proc.pid)
    first = stored = None
    last: tuple = (0, 0, 0)
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                last = counts(dsn)
            except Exception:
                continue  # schema not created yet
            if last[0] and first is None:
                first = time.monotonic()
            if last[0] == n and stored is None:
                stored = time.monotonic()
            settled = last[0] == n and last[2] == 0 and last[1] > 0
            if settled and (candles is None or last[1] >= candles):
                break
        end = time.monotonic()
    finally:
        proc.terminate()
        proc.wait(120)
        watch.stop()
    if first is None or stored is None:
        text = log.read_text(errors="replace")
        lines = text.splitlines()
        at = next((i for i, line in enumerate(lines) if "ERROR" in line), len(lines))
        first_error = "\n".join(lines[at : at + 12])
        raise SystemExit(f"{kind}: stored {last} of {n} trades; its first error: {first_error}\n"
                         f"its log ends:\n{text[-3000:]}")  # fmt: skip
    return {
        "processor": kind, "trades": n, "candles": last[1],
        "start_s": round(first - started, 1),
        # None: every trade landed between two polls (one micro-batch): give more --trades
        "trades_per_s": round(n / (stored - first)) if stored - first >= 0.5 else None,
        "all_final_after_s": round(end - first, 1),
        "peak_rss_mb": round(watch.peak / 2**20), "cpu_s": round(watch.cpu, 1),
    }  # fmt: skip


def latency(kind: str, broker: KafkaBroker, pg: PostgresServer, tmp: Path, rate: float,
            seconds: float) -> dict:  # fmt: skip
    import psycopg

    topic = broker.create_topic(f"lat-{uuid.uuid4().hex[:6]}", 3)
    dsn = create_db(pg)
    log = tmp / f"latency-{kind}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(command(kind, broker.bootstrap, topic, dsn, tmp),
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    seen: dict[str, int] = {}
    marks: list[tuple[int, str, int, int]] = []  # (wall µs, symbol, from seq, to seq)
    ready = "assigned partitions" if kind == "process" else "queries started"
    try:
        deadline = time.monotonic() + 900
        while ready not in log.read_text(errors="replace"):  # the group joined, the queries run
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(5.0)
        # A warm-up first (Spark plans each query on its first micro-batches): only trades
        # handed over after it count.
        warmup_s = 3.0 if kind == "process" else 30.0
        measured_from = time.time_ns() // 1000 + int(warmup_s * 1e6)
        publisher = [sys.executable, str(ROOT / "benchmarks" / "kafka.py"), "--publish",
                     broker.bootstrap, topic, str(rate), str(seconds + warmup_s)]  # fmt: skip
        pub = subprocess.Popen(publisher)
        with psycopg.connect(dsn, autocommit=True) as con:
            start_s = time.monotonic()
            stop_at = start_s + warmup_s + seconds + 30.0
            hard_stop = stop_at + 300.0
            last_mark_s = start_s
            while time.monotonic() < stop_at or (
                time.monotonic() - last_mark_s < 15.0 and time.monotonic() < hard_stop
            ):
                rows = con.execute(
                    "SELECT symbol, max(last_seq) FROM candles WHERE interval = '1s' GROUP BY 1"
                ).fetchall()
                now = time.time_ns() // 1000
                for symbol, top in rows:
                    if top > seen.get(symbol, -1):
                        marks.append((now, symbol, seen.get(symbol, -1), top))
                        seen[symbol] = top
                        last_mark_s = time.monotonic()
                time.sleep(0.05)
            pub.wait(60)
            lags = []
            for now, symbol, lo, hi in marks:
                got = con.execute(
                    "SELECT recv_ts FROM trades WHERE symbol = %s AND seq > %s AND seq <= %s",
                    [symbol, lo, hi],
                ).fetchall()
                lags.extend(now - r[0] for r in got if r[0] >= measured_from)
    finally:
        proc.terminate()
        proc.wait(120)
    lag = np.array(lags, np.float64) / 1000.0
    if not len(lag):  # say why: the processor's own last lines
        tail = log.read_text(errors="replace").splitlines()[-8:]
        return {"processor": kind, "rate": rate, "trades_measured": 0, "log_tail": tail}
    return {"processor": kind, "rate": rate, "seconds": seconds, "trades_measured": len(lag),
            "p50_ms": round(float(np.percentile(lag, 50)), 1),
            "p99_ms": round(float(np.percentile(lag, 99)), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["throughput", "latency", "process-latency"])  # fmt: skip
    args = parser.parse_args()
    with broker_and_postgres("tickpipe-bench-spark-") as (tmp, broker, pg):
        results: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
        if "throughput" not in args.skip:
            topic = broker.create_topic(f"bench-{uuid.uuid4().hex[:6]}", 3)
            publish_all(broker.bootstrap, topic, args.trades)
            ours = throughput("process", broker, pg, tmp, topic, args.trades, None)
            print(json.dumps(ours), file=sys.stderr)
            theirs = throughput("spark", broker, pg, tmp, topic, args.trades,
                                ours["candles"])  # fmt: skip
            print(json.dumps(theirs), file=sys.stderr)
            results["throughput"] = [ours, theirs]
            if ours["trades_per_s"] and theirs["trades_per_s"]:
                results["process_to_spark_trades_per_s"] = round(
                    ours["trades_per_s"] / theirs["trades_per_s"], 2
                )
            results["spark_to_process_cpu_s"] = round(theirs["cpu_s"] / max(ours["cpu_s"], 0.1), 1)
        if "latency" not in args.skip:
            results["latency"] = [
                latency(kind, broker, pg, tmp, args.rate, args.seconds)
                for kind in ("process", "spark")
                if f"{kind}-latency" not in args.skip
            ]
        results["load_after"] = os.getloadavg()[0]
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
