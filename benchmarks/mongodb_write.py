"""Trades and candle upserts per second through the MongoDB store's `write`, beside DuckDB.

    python benchmarks/mongodb_write.py                          # a throwaway FerretDB
    python benchmarks/mongodb_write.py --url mongodb://127.0.0.1:27017/bench --batches 20

Trades as in `store_write.py` (one `write()` per batch, then a replay of half the batches:
every trade a duplicate). Candles: `--candles` per `write()` (20 symbols, consecutive 1m
starts), written new, then again as corrections (revision 1: every one replaced), then again
as stale provisional updates (every one ignored). Without `--url` the script starts FerretDB
over SQLite with the test suite's helper (scripts/setup/ferretdb.sh must have built it): the
figures are FerretDB's, not MongoDB's.
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
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.mongodb import MongoStore

M = 60_000_000


@contextlib.contextmanager
def throwaway_ferretdb() -> Iterator[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from servers.ferretdb import FerretDBServer, ferretdb_binary  # the tests' helper
    from servers.process import serving

    binary = ferretdb_binary()
    if not binary.exists():
        raise SystemExit(f"no FerretDB at {binary}: run scripts/setup/ferretdb.sh or pass --url")
    with tempfile.TemporaryDirectory() as tmp:
        server = FerretDBServer(Path(tmp), binary)
        with serving(server, kill_at_end=True):
            yield server.uri


def make_candles(writes: int, per_write: int, revision: int, final: bool) -> list[list[Candle]]:
    """`writes` lists of `per_write` candles: 20 symbols, consecutive 1m starts."""
    out, i = [], 0
    for _ in range(writes):
        chunk = []
        for _ in range(per_write):
            start = 1_700_000_040_000_000 + (i // 20) * M
            chunk.append(Candle(
                exchange="ex", symbol=f"S{i % 20}-USDT", interval="1m", start=start, open=1.0,
                high=2.0, low=0.5, close=1.5, volume=3.0, quote_volume=4.5, vwap=1.5,
                mean_price=1.25, trades=3, buy_volume=1.0, sell_volume=2.0, first_seq=i,
                last_seq=i + 2, final=final, revision=revision, updated_at=start,
            ))  # fmt: skip
            i += 1
        out.append(chunk)
    return out


def candle_rate(store: Store, writes: list[list[Candle]]) -> float:
    began = time.perf_counter()
    for candles in writes:
        store.write(candles=candles)
    return sum(len(c) for c in writes) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a MongoDB server (mongodb://host:port/db)")
    parser.add_argument("--trades", type=int, default=20_000, help="trades per write()")
    parser.add_argument("--batches", type=int, default=10, help="trade write() calls")
    parser.add_argument("--candles", type=int, default=500, help="candles per write()")
    parser.add_argument("--candle-writes", type=int, default=10)
    args = parser.parse_args()
    batches = make_batches(args.batches, args.trades, 20)
    replay = batches[: max(1, len(batches) // 2)]
    rounds = {
        "new": make_candles(args.candle_writes, args.candles, 0, True),
        "corrected": make_candles(args.candle_writes, args.candles, 1, True),
        "stale": make_candles(args.candle_writes, args.candles, 0, False),
    }
    total = sum(len(b) for b in batches)
    print(f"{len(batches)} writes of {args.trades:,} trades; "
          f"{args.candle_writes} writes of {args.candles} candles per round")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        duck = DuckDBStore(Path(tmp) / "bench.duckdb")
        duck_rate = rate(duck, batches)
        duck_candles = {k: candle_rate(duck, w) for k, w in rounds.items()}
        duck.close()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(throwaway_ferretdb()) + f"bench{int(time.time())}"
        mongo = MongoStore(url)
        mongo_rate = rate(mongo, batches)
        replay_rate = rate(mongo, replay)
        mongo_candles = {k: candle_rate(mongo, w) for k, w in rounds.items()}
        stored = mongo.totals()["stored_trades"]
        mongo.close()
    assert stored == total, f"MongoDB holds {stored} trades, {total} were written"
    print(f"duckdb   {duck_rate:>10,.0f} trades/s")
    print(f"mongodb  {mongo_rate:>10,.0f} trades/s  ({mongo_rate / duck_rate:.3f} x DuckDB)")
    print(f"  replay {replay_rate:>10,.0f} trades/s  (all duplicates: nothing stored)")
    for name in rounds:
        d, m = duck_candles[name], mongo_candles[name]
        print(f"candles {name:<9} duckdb {d:>9,.0f}/s  mongodb {m:>8,.0f}/s  ({m / d:.3f} x)")


if __name__ == "__main__":
    main()
