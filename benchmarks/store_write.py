"""Writes per second into every store side by side, and into the Parquet lake, in one run.

    python benchmarks/store_write.py                   # throwaway servers, a file:// lake
    python benchmarks/store_write.py --stores duckdb,postgresql --batches 20
    python benchmarks/store_write.py --postgresql-url postgresql://me@127.0.0.1:5432/postgres \\
        --cassandra-url cassandra://127.0.0.1:9042 --mongodb-url mongodb://127.0.0.1:27017
    python benchmarks/store_write.py --lake-url s3://bench/lake --lake-endpoint 127.0.0.1:9000

Every store gets the same work through `Store.write`, one call (one transaction) per batch, as
the pipeline's store writer flushes: `--batches` writes of `--trades` simulated trades (20
symbols, numeric trade ids, every batch new), then a replay of the first half of them (every
trade a duplicate, nothing stored: what a restart costs; not into DuckDB, whose store leaves
de-duplication to the engine), then `--candle-writes` writes of `--candles` candles written new,
then the same candles again as corrections (revision 1, every one replaced). Cassandra and
MongoDB get `--slow-batches` and `--slow-candle-writes` instead: they are slow, and the output
gives each store's counts. The lake gets the same trades as DuckDB through the live path's
`LakeWriter`, and the new candles (final) in a lake of their own.

Each figure comes with its ratio to DuckDB's in the same run (DuckDB always runs: it is the
reference). CPU per trade is this process's CPU time during the trade writes (client code and
drivers; DuckDB's and the lake's work too, since they run in this process), never a server's.

Without a URL each server is a throwaway one started with the test suite's helpers
(tests/servers/; a source checkout, and scripts/setup/{postgresql,cassandra,ferretdb}.sh having
run): PostgreSQL with fsync off, one Cassandra node (512 MB heap), FerretDB over SQLite standing
in for MongoDB, all on this machine beside the client. Each store writes into a new database or
keyspace. The figures are client and server together on one machine, not the disk's nor a
cluster's: run it on an idle machine and more than once; the ratios in one run mean more than
any figure alone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tickpipe.records import Candle, TradeBatch
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.base import Store, StoreError
from tickpipe.stores.lake.location import LakeSettings, open_lake
from tickpipe.stores.lake.writer import LakeWriter

S = 1_000_000
M = 60 * S
STORES = ("duckdb", "postgresql", "cassandra", "mongodb")
SLOW = ("cassandra", "mongodb")
TESTS = Path(__file__).resolve().parent.parent / "tests"


def say(line: str) -> None:
    """A progress line (stderr; the figures go to stdout)."""
    print(line, file=sys.stderr, flush=True)


# -- the work ------------------------------------------------------------------------------


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


def make_candles(writes: int, size: int, symbols: int, revision: int) -> list[list[Candle]]:
    """`writes` lists of `size` final candles: `symbols` instruments, consecutive 1m starts.
    The same keys for every `revision`, so revision 1 replaces what revision 0 wrote."""
    out, i = [], 0
    for _ in range(writes):
        chunk = []
        for _ in range(size):
            start = 1_700_000_040 * S + (i // symbols) * M
            chunk.append(Candle(
                exchange="simulated", symbol=f"S{i % symbols}-USDT", interval="1m", start=start,
                open=1.0, high=2.0, low=0.5, close=1.5 + revision, volume=3.0, quote_volume=4.5,
                vwap=1.5, mean_price=1.25, trades=3, buy_volume=1.0, sell_volume=2.0,
                first_seq=i, last_seq=i + 2, final=True, revision=revision,
                updated_at=start + M + revision,
            ))  # fmt: skip
            i += 1
        out.append(chunk)
    return out


def timed(writes: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of `writes()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    writes()
    return time.perf_counter() - wall, time.process_time() - cpu


# -- the stores ----------------------------------------------------------------------------


@dataclasses.dataclass
class Figures:
    """One store's rounds: what was written, and how fast."""

    name: str
    batches: int
    trades: int
    trades_per_s: float
    cpu_us_per_trade: float
    replay_per_s: float | None  # None: not replayed (DuckDB leaves de-duplication to the engine)
    candle_writes: int
    candles: int  # per round (new, then corrected)
    new_per_s: float
    corrected_per_s: float
    stored: int

    @property
    def upserts_per_s(self) -> float:
        return 2 / (1 / self.new_per_s + 1 / self.corrected_per_s)


def measure(name: str, store: Store, batches: list[TradeBatch], candles: int, size: int,
            symbols: int) -> Figures:  # fmt: skip
    """The trade, replay and candle rounds on a new, empty `store`. No replay into DuckDB: its
    store appends without a unique key (the engine never hands it a trade twice)."""
    trades = sum(len(b) for b in batches)
    replay = batches[: max(1, len(batches) // 2)] if name != "duckdb" else []
    new = make_candles(candles, size, symbols, 0)
    corrected = make_candles(candles, size, symbols, 1)

    def trade_round(round_: list[TradeBatch]) -> Callable[[], None]:
        def run() -> None:
            for batch in round_:
                store.write([batch])

        return run

    def candle_round(round_: list[list[Candle]]) -> Callable[[], None]:
        def run() -> None:
            for chunk in round_:
                store.write(candles=chunk)

        return run

    say(f"{name}: {len(batches)} writes of {len(batches[0]):,} trades ...")
    wall, cpu = timed(trade_round(batches))
    replay_per_s, took_s = None, wall
    if replay:
        say(f"{name}:   {wall:.2f} s; replaying {len(replay)} of them ...")
        took_s, _ = timed(trade_round(replay))
        replay_per_s = sum(len(b) for b in replay) / took_s
    say(f"{name}:   {took_s:.2f} s; {candles} writes of {size:,} candles, new then corrected ...")
    new_s, _ = timed(candle_round(new))
    corrected_s, _ = timed(candle_round(corrected))
    say(f"{name}:   {new_s:.2f} s + {corrected_s:.2f} s; counting what is stored ...")
    return Figures(
        name, len(batches), trades, trades / wall, cpu / trades * S,
        replay_per_s, candles, candles * size,
        candles * size / new_s, candles * size / corrected_s, store.totals()["stored_trades"],
    )  # fmt: skip


def with_database(url: str, name: str) -> str:
    """`url` with its path (database, keyspace) replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def running(server: Any) -> Iterator[None]:  # a tests/servers ServerProcess
    """`server` started (until it answers) and killed on exit: its data is thrown away."""
    say(f"starting a throwaway {server.name} ...")
    try:
        server.start()
    except RuntimeError as exc:
        raise StoreError(f"cannot start {server.name}: {exc}") from None
    say(f"{server.name} answers after {server.started_in_s:.1f} s")
    try:
        yield
    finally:
        server.stop(kill=True)


def use_test_servers() -> None:
    """Make the test suite's server helpers (tests/servers/) importable."""
    if not (TESTS / "servers").is_dir():
        raise StoreError("throwaway servers need a source checkout (tests/servers/); pass a URL")
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


@contextlib.contextmanager
def open_duckdb(url: str | None, tmp: Path) -> Iterator[Store]:
    from tickpipe.stores.duckdb import DuckDBStore

    store = DuckDBStore(tmp / "bench.duckdb")
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def open_postgresql(url: str | None, tmp: Path) -> Iterator[Store]:
    import psycopg

    from tickpipe.stores.postgresql import PostgresStore

    with contextlib.ExitStack() as stack:
        if url is None:
            use_test_servers()
            from servers.postgres import PostgresServer, find_bin_dir

            bin_dir = find_bin_dir()
            if bin_dir is None:
                raise StoreError("no PostgreSQL binaries: run scripts/setup/postgresql.sh")
            say("starting a throwaway PostgreSQL ...")
            server = PostgresServer(bin_dir)
            stack.callback(server.close)
            server.init()
            server.start()
            url = server.dsn
        name = f"bench_{int(time.time() * 1000)}"
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(url, autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        stack.callback(drop)
        store = PostgresStore(psycopg.conninfo.make_conninfo(url, dbname=name))
        stack.callback(store.close)
        yield store


@contextlib.contextmanager
def open_cassandra(url: str | None, tmp: Path) -> Iterator[Store]:
    from tickpipe.stores.cassandra import CassandraStore

    with contextlib.ExitStack() as stack:
        given = url is not None
        if url is None:
            use_test_servers()
            from servers.cassandra import CassandraNode, cassandra_libs

            libs = cassandra_libs()
            if not list(libs.glob("cassandra-all-*.jar")):
                raise StoreError(f"no Cassandra jars in {libs}: run scripts/setup/cassandra.sh")
            (tmp / "cassandra").mkdir()
            node = CassandraNode(tmp / "cassandra", libs)
            stack.enter_context(running(node))
            url = f"cassandra://{node.host}:{node.port}"
        keyspace = f"bench_{int(time.time() * 1000)}"
        store = CassandraStore(with_database(url, keyspace))
        if given:  # the store has no way to drop it; a throwaway node takes it along
            stack.callback(say, f"cassandra: keyspace {keyspace} is left on the server")
        stack.callback(store.close)
        yield store


@contextlib.contextmanager
def open_mongodb(url: str | None, tmp: Path) -> Iterator[Store]:
    from pymongo import MongoClient

    from tickpipe.stores.mongodb import MongoStore

    with contextlib.ExitStack() as stack:
        if url is None:
            use_test_servers()
            from servers.ferretdb import FerretDBServer, ferretdb_binary

            binary = ferretdb_binary()
            if not binary.exists():
                raise StoreError(f"no FerretDB at {binary}: run scripts/setup/ferretdb.sh")
            (tmp / "ferretdb").mkdir()
            server = FerretDBServer(tmp / "ferretdb", binary)
            stack.enter_context(running(server))
            url = server.uri
        name = f"bench_{int(time.time() * 1000)}"
        url = with_database(url, name)

        def drop() -> None:
            with MongoClient(url, serverSelectionTimeoutMS=10_000) as client:
                client.drop_database(name)

        stack.callback(drop)
        store = MongoStore(url)
        stack.callback(store.close)
        yield store


OPEN = {
    "duckdb": open_duckdb,
    "postgresql": open_postgresql,
    "cassandra": open_cassandra,
    "mongodb": open_mongodb,
}


# -- the lake ------------------------------------------------------------------------------


@dataclasses.dataclass
class LakeFigures:
    """The lake's rounds: trades through `LakeWriter`, then final candles."""

    batches: int
    trades: int
    trades_per_s: float
    cpu_us_per_trade: float
    files: int
    files_per_s: float
    bytes_per_trade: float
    candle_writes: int
    candles: int
    candles_per_s: float


def measure_lake(settings: LakeSettings, batches: list[TradeBatch], candle_writes: int,
                 size: int, symbols: int) -> LakeFigures:  # fmt: skip
    """Trades offered batch by batch as the live path does, then `close()` writes what is
    buffered; the candles go into a lake of their own, so bytes per trade is trades alone."""
    trades = sum(len(b) for b in batches)
    say(f"lake: {len(batches)} batches of {len(batches[0]):,} trades into {settings.url} ...")
    lake = open_lake(settings)
    writer = LakeWriter(lake, max_queued=len(batches) + 1)

    def trade_round() -> None:
        for batch in batches:
            writer.offer([batch], [])
        writer.close()

    wall, cpu = timed(trade_round)
    if writer.dropped_trades or lake.rows_written["trades"] != trades:
        raise StoreError(f"the lake wrote {lake.rows_written['trades']} of {trades} trades")
    candles = make_candles(candle_writes, size, symbols, 0)
    say(f"lake:   {wall:.2f} s; {candle_writes} writes of {size:,} final candles ...")
    candle_lake = open_lake(dataclasses.replace(settings, url=settings.url + "-candles"))
    candle_writer = LakeWriter(candle_lake, max_queued=len(candles) + 1)

    def candle_round() -> None:
        for chunk in candles:
            candle_writer.offer([], chunk)
        candle_writer.close()

    candle_s, _ = timed(candle_round)
    say(f"lake:   {candle_s:.2f} s")
    return LakeFigures(
        len(batches), trades, trades / wall, cpu / trades * S, lake.files_written,
        lake.files_written / wall, lake.bytes_written / trades, candle_writes,
        candle_writes * size, candle_writes * size / candle_s,
    )  # fmt: skip


def lake_settings(args: argparse.Namespace, tmp: Path) -> LakeSettings:
    if not args.lake_url:
        url = (tmp / "lake").as_uri()
    else:
        url = f"{args.lake_url.rstrip('/')}/bench-{int(time.time() * 1000)}"
    return LakeSettings(url, args.lake_endpoint, args.lake_region, args.roll_bytes)


# -- the run -------------------------------------------------------------------------------


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.3f}" if reference else "-"


def row(*cells: str) -> str:
    """One line of the table: the store's name, then right-aligned columns."""
    widths = (19, 14, 11, 9, 13, 10, 15, 10, 9)
    name, *rest = cells
    return name.ljust(widths[0]) + "".join(
        c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
    )


def report(args: argparse.Namespace, figures: list[Figures], lake: LakeFigures | None,
           failed: dict[str, str]) -> None:  # fmt: skip
    duck = next((f for f in figures if f.name == "duckdb"), None)
    ref_trades = duck.trades_per_s if duck else None
    ref_candles = duck.upserts_per_s if duck else None
    print()
    print(f"Trades: {args.trades:,} per write(), {args.symbols} symbols, every one new; then half "
          "the writes again (all duplicates; not into DuckDB).")  # fmt: skip
    print(f"Candles: {args.candles:,} per write(), new, then the same again as corrections "
          "(revision 1); upserts/s over both.")  # fmt: skip
    print()
    print(row("store", "trade writes", "trades/s", "x DuckDB", "CPU µs/trade", "replay/s",
              "candle writes", "upserts/s", "x DuckDB"))  # fmt: skip
    for f in figures:
        name = "mongodb (FerretDB)" if f.name == "mongodb" and not args.mongodb_url else f.name
        print(row(name, f"{f.batches} x {args.trades:,}", f"{f.trades_per_s:,.0f}",
                  ratio(f.trades_per_s, ref_trades), f"{f.cpu_us_per_trade:.2f}",
                  f"{f.replay_per_s:,.0f}" if f.replay_per_s else "-",
                  f"2 x {f.candle_writes} x {args.candles:,}",
                  f"{f.upserts_per_s:,.0f}", ratio(f.upserts_per_s, ref_candles)))  # fmt: skip
    if lake is not None:
        print(row("lake", f"{lake.batches} x {args.trades:,}", f"{lake.trades_per_s:,.0f}",
                  ratio(lake.trades_per_s, ref_trades), f"{lake.cpu_us_per_trade:.2f}", "-",
                  f"{lake.candle_writes} x {args.candles:,}", f"{lake.candles_per_s:,.0f}",
                  ratio(lake.candles_per_s, ref_candles)))  # fmt: skip
    for name, why in failed.items():
        print(f"{name:<19}failed: {why}")
    print()
    if figures:
        split = "; ".join(
            f"{f.name} {f.new_per_s:,.0f} / {f.corrected_per_s:,.0f}" for f in figures
        )
        print(f"Candle upserts per s, new / corrected: {split}.")
    if lake is not None:
        print(f"Lake: {lake.files} files in the trade round, {lake.files_per_s:,.1f} files/s (one "
              f"per partition at close, or at {args.roll_bytes:,} Arrow bytes), "
              f"{lake.bytes_per_trade:.1f} bytes per trade")  # fmt: skip
        print("  (zstd Parquet, trade files alone); its candles are final ones, appended (no "
              "upserts), its 'x DuckDB' against DuckDB's upserts.")  # fmt: skip
    print("CPU µs/trade: this process's CPU time over the trade writes (client code and drivers; "
          "DuckDB and the lake writer")  # fmt: skip
    print("  run inside it, so theirs is all of their work); a server's CPU is not counted.")
    for f in figures:
        if f.stored != f.trades:
            print(f"! {f.name} holds {f.stored:,} trades; {f.trades:,} were written")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )  # fmt: skip
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help="which stores, comma-separated (DuckDB always runs) [%(default)s]",
    )
    parser.add_argument("--trades", type=int, default=50_000, help="trades per write()")
    parser.add_argument(
        "--batches",
        type=int,
        default=10,
        help="trade write()s into DuckDB, PostgreSQL and the lake",
    )
    parser.add_argument(
        "--slow-batches", type=int, default=4, help="trade write()s into Cassandra and MongoDB"
    )
    parser.add_argument("--candles", type=int, default=500, help="candles per write()")
    parser.add_argument(
        "--candle-writes",
        type=int,
        default=10,
        help="candle write()s per round into DuckDB, PostgreSQL and the lake",
    )
    parser.add_argument(
        "--slow-candle-writes",
        type=int,
        default=2,
        help="candle write()s per round into Cassandra and MongoDB",
    )
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--postgresql-url", help="a PostgreSQL server [default: start one]")
    parser.add_argument("--cassandra-url", help="a Cassandra node [default: start one]")
    parser.add_argument("--mongodb-url", help="a MongoDB server [default: start FerretDB]")
    parser.add_argument(
        "--lake",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the Parquet lake [default: on]",
    )
    parser.add_argument(
        "--lake-url",
        help="s3://bucket/prefix [default: a temp directory]; "
        "credentials from TICKPIPE_LAKE_ACCESS_KEY_ID/_SECRET_ACCESS_KEY",
    )
    parser.add_argument("--lake-endpoint", default="", help="an S3-compatible server's host:port")
    parser.add_argument("--lake-region", default="")
    parser.add_argument(
        "--roll-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="the lake's roll size (Arrow bytes of a partition) [%(default)s]",
    )
    args = parser.parse_args()  # fmt: skip
    chosen = {s.strip() for s in args.stores.split(",") if s.strip()}
    if unknown := chosen - set(STORES):
        parser.error(f"unknown stores {', '.join(sorted(unknown))}; known: {', '.join(STORES)}")
    names = [s for s in STORES if s in chosen or s == "duckdb"]
    urls = {"postgresql": args.postgresql_url, "cassandra": args.cassandra_url,
            "mongodb": args.mongodb_url}  # fmt: skip

    batches = make_batches(max(args.batches, args.slow_batches), args.trades, args.symbols)
    figures: list[Figures] = []
    lake = None
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-") as tmp:
        for name in names:
            slow = name in SLOW
            count = args.slow_batches if slow else args.batches
            writes = args.slow_candle_writes if slow else args.candle_writes
            try:
                with OPEN[name](urls.get(name), Path(tmp)) as store:
                    figures.append(measure(name, store, batches[:count], writes, args.candles,
                                           args.symbols))  # fmt: skip
            except Exception as exc:  # one store's failure must not lose the others' figures
                failed[name] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                say(f"{name}: failed: {failed[name]}")
        if args.lake:
            try:
                lake = measure_lake(lake_settings(args, Path(tmp)), batches[: args.batches],
                                    args.candle_writes, args.candles, args.symbols)  # fmt: skip
            except Exception as exc:
                failed["lake"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                say(f"lake: failed: {failed['lake']}")
    report(args, figures, lake, failed)
    if failed or any(f.stored != f.trades for f in figures):
        sys.exit(1)


if __name__ == "__main__":
    main()
