"""The distributed mode's processes are monitored too: `tickpipe ingest` and `process` serve
/metrics on `monitor.metrics_port`, a processor reports its Kafka consumer lag per partition
and keeps its KPIs in PostgreSQL, and what they count agrees with what the store holds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tickpipe(*args: str, metrics_port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TICKPIPE_MONITOR_METRICS_PORT": str(metrics_port)}
    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", *args],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip


def scrape(port: int) -> dict[str, list]:
    """Samples by metric name from /metrics, or {} while the process is not serving yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def wait_for(predicate, timeout: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    text = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))
    pytest.fail(f"timed out waiting for {what}\n{text}")


def stored_trades(dsn: str) -> int:
    with psycopg.connect(dsn) as con:
        return con.execute("SELECT count(*) FROM trades").fetchone()[0]


def test_ingest_and_process_serve_metrics_consumer_lag_and_kpis_that_match_the_store(
    kafka, postgres_dsn, tmp_path
):
    topic = kafka.create_topic(f"mon-{uuid.uuid4().hex[:8]}", 2)
    config = tmp_path / "tickpipe.toml"
    config.write_text('intervals = ["1s"]\nallowed_lateness = "200ms"\nflush_every = "50ms"\n'
                      '[monitor]\nkpi_every = "500ms"\n')  # fmt: skip
    common = ["--config", str(config), "--kafka", kafka.bootstrap, "--topic", topic]
    ingest_port, process_port = free_port(), free_port()
    process = tickpipe("process", *common, "--store", postgres_dsn, "--name", "replica-a",
                       "--candles-topic", "", "--data-dir", str(tmp_path / "p"),
                       metrics_port=process_port, log=tmp_path / "process.log")  # fmt: skip
    ingest = tickpipe("ingest", *common, "--simulated", "--symbols", "8", "--rate", "300",
                      "--duration", "6", "--data-dir", str(tmp_path / "i"),
                      metrics_port=ingest_port, log=tmp_path / "ingest.log")  # fmt: skip
    try:
        received = wait_for(
            lambda: scrape(ingest_port).get("tickpipe_trades_received_total"), 30,
            "ingest's /metrics", tmp_path,
        )  # fmt: skip
        assert {s.labels["source"] for s in received} == {"simulated"}
        assert len({s.labels["symbol"] for s in received}) >= 2  # labelled per symbol
        assert ingest.wait(60) == 0

        def caught_up():
            m = scrape(process_port)
            stored = sum(s.value for s in m.get("tickpipe_trades_stored_total", []))
            lag = m.get("tickpipe_kafka_consumer_lag", [])
            done = stored > 0 and stored == stored_trades(postgres_dsn)
            return (m, stored) if done and lag and all(s.value == 0 for s in lag) else None

        metrics, stored = wait_for(caught_up, 60, "the processor to catch up", tmp_path)
        lag = metrics["tickpipe_kafka_consumer_lag"]
        assert {s.labels["partition"] for s in lag} == {"0", "1"}  # it owns both partitions
        assert {s.labels["topic"] for s in lag} == {topic}
    finally:
        for p in (ingest, process):
            p.terminate()
        for p in (ingest, process):
            p.wait(30)
    assert process.returncode == 0, (tmp_path / "process.log").read_text()[-2000:]
    with psycopg.connect(postgres_dsn) as con:
        rows = con.execute(
            "SELECT process, sum(trades), count(*) FROM pipeline_metrics GROUP BY process"
        ).fetchall()
        total = con.execute("SELECT count(*) FROM trades").fetchone()[0]
    # KPI periods, the last one written after the final flush, add up to what was stored.
    assert [(r[0], r[1]) for r in rows] == [("replica-a", total)]
    assert rows[0][2] >= 3 and total == stored
