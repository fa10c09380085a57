"""Trades/s and candle upserts/s through `Store.write` into Cassandra, DuckDB in the same run.

    python benchmarks/cassandra_write.py                    # a throwaway single node
    python benchmarks/cassandra_write.py --url cassandra://127.0.0.1:9042/bench --batches 20

Trades come from the simulated market as in `store_write.py` (one `write()` per batch of
`--trades`); candles are `--candles` updates per write over 20 symbols, each update a newer
revision of a candle already written (the upsert path, with its write-time rule). Without
`--url` the script starts a node with the test suite's helper (scripts/setup/cassandra.sh must
have run): one node sharing the machine with the client, so the figures are both their work.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from store_write import make_batches, rate

from tickpipe.records import Candle
from tickpipe.stores.base import Store
from tickpipe.stores.cassandra import CassandraStore
from tickpipe.stores.duckdb import DuckDBStore

M = 60_000_000


@contextlib.contextmanager
def throwaway_node() -> Iterator[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from servers.cassandra import CassandraNode, cassandra_libs  # the tests' helper
    from servers.process import serving

    with tempfile.TemporaryDirectory() as tmp:
        node = CassandraNode(Path(tmp), cassandra_libs())
        with serving(node, kill_at_end=True):
            yield f"cassandra://{node.host}:{node.port}/bench"


def candle_writes(count: int, size: int, symbols: int = 20) -> list[list[Candle]]:
    """`count` writes of `size` candle updates, each a newer revision of one already written."""
    writes = []
    for w in range(count):
        writes.append([
            Candle(exchange="sim", symbol=f"S{i % symbols}-USDT", interval="1m",
                   start=1_700_000_000_000_000 + (i // symbols) * M, open=1.0, high=2.0,
                   low=0.5, close=1.5, volume=3.0, quote_volume=4.5, vwap=1.5, mean_price=1.2,
                   trades=3, buy_volume=1.0, sell_volume=2.0, first_seq=1, last_seq=3,
                   final=True, revision=w, updated_at=1_700_000_000_000_000 + w)
            for i in range(size)
        ])  # fmt: skip
    return writes


def candle_rate(store: Store, writes: list[list[Candle]]) -> float:
    began = time.perf_counter()
    for candles in writes:
        store.write(candles=candles)
    return sum(len(c) for c in writes) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a Cassandra keyspace to use [default: start a node]")
    parser.add_argument("--trades", type=int, default=20_000, help="trades per write()")
    parser.add_argument("--batches", type=int, default=5, help="trade write() calls per store")
    parser.add_argument("--candles", type=int, default=5_000, help="candle updates per write()")
    parser.add_argument("--symbols", type=int, default=20)
    args = parser.parse_args()
    batches = make_batches(args.batches, args.trades, args.symbols)
    writes = candle_writes(3, args.candles)
    total = sum(len(b) for b in batches)
    print(f"{len(batches)} writes of {args.trades:,} trades; 3 writes of {args.candles:,} candles")
    with tempfile.TemporaryDirectory() as tmp:
        duck = DuckDBStore(Path(tmp) / "bench.duckdb")
        duck_trades, duck_candles = rate(duck, batches), candle_rate(duck, writes)
        duck.close()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(throwaway_node())
        store = CassandraStore(url)
        trades, candles = rate(store, batches), candle_rate(store, writes)
        stored = store.totals()
        store.close()
    assert stored["stored_trades"] >= total, f"Cassandra holds {stored}, {total} were written"
    print(f"duckdb     {duck_trades:>10,.0f} trades/s  {duck_candles:>10,.0f} candle upserts/s")
    print(f"cassandra  {trades:>10,.0f} trades/s  {candles:>10,.0f} candle upserts/s  "
          f"({trades / duck_trades:.3f} / {candles / duck_candles:.3f} x DuckDB)")  # fmt: skip


if __name__ == "__main__":
    main()
