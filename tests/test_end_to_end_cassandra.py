"""tickpipe over Cassandra as a user runs it: `demo --store cassandra://…` in a real subprocess
against the real node, then the stored data read back through the store."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from servers.cassandra import CassandraNode

from tickpipe.stores.cassandra import CassandraStore

pytestmark = [pytest.mark.slow, pytest.mark.cassandra]

TICKPIPE = [sys.executable, "-m", "tickpipe"]


def tickpipe(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TICKPIPE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_demo_over_cassandra_stores_trades_and_the_candles_they_make(
    cassandra_node: CassandraNode, cassandra_keyspace: str, tmp_path
) -> None:
    url = f"cassandra://{cassandra_node.host}:{cassandra_node.port}/{cassandra_keyspace}"
    run = tickpipe("demo", "--duration", "6", "--quiet", "--no-serve", "--store", url,
                   "--data-dir", str(tmp_path), "--interval", "1s")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert url in run.stdout
    assert not (tmp_path / "tickpipe.duckdb").exists()  # the data went to Cassandra

    store = CassandraStore(url)
    try:
        totals = store.totals()
        summary = store.instrument_summary()
        assert totals["stored_trades"] > 3_000 and len(summary) >= 15
        assert sum(n for _, _, n, _, _ in summary) == totals["stored_trades"]
        exchange, symbol = summary[0][:2]
        candles = store.candles(exchange, symbol, "1s")
        trades = store.recent_trades(exchange, symbol, 10**6)
        assert candles and sum(c.trades for c in candles) == len(trades)
    finally:
        store.close()


def test_cassandra_stopped_mid_demo_loses_and_doubles_nothing(
    cassandra_node: CassandraNode, cassandra_keyspace: str, tmp_path
) -> None:
    url = f"cassandra://{cassandra_node.host}:{cassandra_node.port}/{cassandra_keyspace}"
    proc = subprocess.Popen(
        [*TICKPIPE, "demo", "--duration", "12", "--quiet", "--no-serve", "--store", url,
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(5)
        cassandra_node.stop()
        time.sleep(2)  # the demo's writes fail and retry meanwhile
        cassandra_node.start()
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
        cassandra_node.ensure_running()
    assert proc.returncode == 0, err
    assert "cassandra: write failed (node unreachable" in err  # said, not silent
    (reported,) = re.findall(r"trades ([\d,]+) ", out)
    store = CassandraStore(url)
    try:
        assert store.totals()["stored_trades"] == int(reported.replace(",", "")) > 1_000
    finally:
        store.close()
