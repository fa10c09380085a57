"""tickpipe over Cassandra as a user runs it: `demo --store cassandra://…` in a real subprocess
against the real node, then the stored data read back through the store."""

from __future__ import annotations

import subprocess
import sys

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
