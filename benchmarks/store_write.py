"""Trades per second through `Store.write`, DuckDB and PostgreSQL in the same run.

    python benchmarks/store_write.py                       # a throwaway PostgreSQL cluster
    python benchmarks/store_write.py --dsn postgresql://me@127.0.0.1:5432/bench --batches 20

Each round writes `--batches` batches of `--trades` trades (100,000 by default) with one
`write()` call per batch, as the pipeline's store writer does: one transaction per flush. Trades
come from the simulated market (numeric trade ids, 20 symbols); every batch holds new trades,
so PostgreSQL's unique index does real work. A replay round then writes the first batches
again: nothing new is stored, which is what a Kafka processor's restart costs.

Without `--dsn` the script starts its own cluster with the test suite's helper (a source
checkout and Debian's PostgreSQL are needed), tuned as in the tests (fsync off): the figures
are the client and server's work, not the disk's. Run it on an idle machine, and more than
once; the ratio between the stores in one run means more than either figure alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tickpipe.records import TradeBatch
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore

S = 1_000_000


def make_batches(count: int, size: int, symbols: int) -> list[TradeBatch]:
    """`count` batches of `size` trades each, consecutive in event time (no duplicates)."""
    market = MarketSimulator([f"S{i}-USDT" for i in range(symbols)], 50_000.0, 1)
    batches, t = [], 1_700_000_000 * S
    while len(batches) < count:
        span = market.span(t, t + S)
        t += S
        while len(span) >= size and len(batches) < count:
            batches.append(span.take(slice(0, size)))
            span = span.take(slice(size, None))
    return batches


def rate(store: Store, batches: list[TradeBatch]) -> float:
    began = time.perf_counter()
    for batch in batches:
        store.write([batch])
    return sum(len(b) for b in batches) / (time.perf_counter() - began)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    root = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(root))
    from servers.postgres import PostgresServer, find_bin_dir  # the tests' helper

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries: run scripts/setup/postgresql.sh or pass --dsn")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server.dsn
    finally:
        server.close()


def fresh_database(dsn: str) -> str:
    name = f"bench_{int(time.time() * 1000)}"
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="a PostgreSQL server to use [default: start one]")
    parser.add_argument("--trades", type=int, default=100_000, help="trades per write()")
    parser.add_argument("--batches", type=int, default=10, help="write() calls per store")
    parser.add_argument("--symbols", type=int, default=20)
    args = parser.parse_args()
    batches = make_batches(args.batches, args.trades, args.symbols)
    replay = batches[: max(1, len(batches) // 2)]
    total = sum(len(b) for b in batches)
    print(f"{len(batches)} writes of {args.trades:,} trades ({total:,} trades)")
    with tempfile.TemporaryDirectory() as tmp:
        duck = DuckDBStore(Path(tmp) / "bench.duckdb")
        duck_rate = rate(duck, batches)
        duck.close()
    with contextlib.ExitStack() as stack:
        server = args.dsn or stack.enter_context(throwaway_postgres())
        pg = PostgresStore(fresh_database(server))
        pg_rate = rate(pg, batches)
        replay_rate = rate(pg, replay)
        (stored,) = pg.query("SELECT count(*) FROM trades")[0]
        pg.close()
    assert stored == total, f"PostgreSQL holds {stored} trades, {total} were written"
    print(f"duckdb      {duck_rate:>12,.0f} trades/s")
    print(f"postgresql  {pg_rate:>12,.0f} trades/s  ({pg_rate / duck_rate:.2f} x DuckDB)")
    print(f"  replayed  {replay_rate:>12,.0f} trades/s  (all duplicates: nothing stored)")


if __name__ == "__main__":
    main()
