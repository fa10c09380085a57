"""The Parquet lake's writer: trades/s, final candles/s, files/s and bytes per trade, beside
DuckDB's `Store.write` of the same trades and candles in the same run.

    python benchmarks/lake_write.py                                # a local directory
    python benchmarks/lake_write.py --roll-bytes 4194304 --batches 20
    python benchmarks/lake_write.py --s3 127.0.0.1:5000 --bucket bench   # an S3 endpoint

Trades come from the simulated market as in store_write.py (batches of `--trades`, 20
symbols); final candles (1s, 1m) are made from them by the candle engine. The lake round goes
through `LakeWriter` as the live path does: every batch offered, then `close()` writes what is
buffered. Files roll at `--roll-bytes` (Arrow bytes of a partition's buffer). S3 credentials
come from TICKPIPE_LAKE_ACCESS_KEY_ID/_SECRET_ACCESS_KEY, as for tickpipe itself.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from store_write import make_batches

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.lake.location import LakeSettings, open_lake
from tickpipe.stores.lake.writer import LakeWriter


def final_candles(batches: list[TradeBatch]) -> list[list[Candle]]:
    """Per batch, the final candles the engine closed while taking it (1s and 1m windows)."""
    engine = CandleEngine(EngineConfig(windows=(parse_window("1s"), parse_window("1m"))))
    out = []
    for batch in batches:
        now = int(batch.ts.max()) + 10_000_000
        out.append([c for c in engine.process(batch, now).candles if c.final])
    return out


def many_candles(count: int, symbols: int) -> list[Candle]:
    """`count` final 1s candles over `symbols` instruments (the candles-only round)."""
    t0 = 1_700_000_000 * 1_000_000
    return [
        Candle(exchange="simulated", symbol=f"S{i % symbols}-USDT", interval="1s",
               start=t0 + (i // symbols) * 1_000_000, open=1.0, high=2.0, low=0.5, close=1.5,
               volume=3.0, quote_volume=4.5, vwap=1.5, mean_price=1.25, trades=3, buy_volume=1.0,
               sell_volume=2.0, first_seq=i, last_seq=i + 2, final=True, revision=0,
               updated_at=t0)
        for i in range(count)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=100_000, help="trades per batch")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--candles", type=int, default=200_000, help="candles-only round")
    parser.add_argument("--roll-bytes", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--s3", metavar="HOST:PORT", help="an S3 endpoint (plain http)")
    parser.add_argument("--bucket", default="bench", help="its bucket (must exist)")
    args = parser.parse_args()
    batches = make_batches(args.batches, args.trades, args.symbols)
    candles = final_candles(batches)
    trades, finals = sum(len(b) for b in batches), sum(len(c) for c in candles)
    print(f"{len(batches)} batches, {trades:,} trades, {finals:,} final candles")
    with tempfile.TemporaryDirectory() as tmp:
        duck = DuckDBStore(Path(tmp) / "bench.duckdb")
        began = time.perf_counter()
        for batch, closed in zip(batches, candles, strict=True):
            duck.write([batch], closed)
        duck_s = time.perf_counter() - began
        duck.close()

        if args.s3:
            url = f"s3://{args.bucket}/lake-{int(time.time())}"
            settings = LakeSettings(url, f"http://{args.s3}", "us-east-1", args.roll_bytes)
        else:
            settings = LakeSettings(f"file://{tmp}/lake", roll_bytes=args.roll_bytes)
        lake = open_lake(settings)
        writer = LakeWriter(lake, max_queued=len(batches) + 1)
        began = time.perf_counter()
        for batch, closed in zip(batches, candles, strict=True):
            writer.offer([batch], closed)
        writer.close()
        lake_s = time.perf_counter() - began

        rows = many_candles(args.candles, args.symbols)
        duck = DuckDBStore(Path(tmp) / "candles.duckdb")
        began = time.perf_counter()
        for i in range(0, len(rows), 10_000):
            duck.write(candles=rows[i : i + 10_000])
        duck_candles_s = time.perf_counter() - began
        duck.close()
        candle_lake = open_lake(LakeSettings(settings.url + "-candles", settings.endpoint,
                                             settings.region, args.roll_bytes))  # fmt: skip
        began = time.perf_counter()
        for i in range(0, len(rows), 10_000):
            candle_lake.add_candles(rows[i : i + 10_000])
            candle_lake.roll()
        candle_lake.flush()
        lake_candles_s = time.perf_counter() - began
    assert writer.dropped_trades == 0 and lake.rows_written["trades"] == trades
    print(f"duckdb  {trades / duck_s:>12,.0f} trades/s with their candles ({duck_s:.2f} s)")
    print(f"lake    {trades / lake_s:>12,.0f} trades/s with their final candles ({lake_s:.2f} s, "
          f"{duck_s / lake_s:.2f} x DuckDB's rate)")  # fmt: skip
    print(f"        {lake.files_written / lake_s:>12,.1f} files/s ({lake.files_written} files, "
          f"roll at {args.roll_bytes:,} bytes), {lake.bytes_written / trades:.1f} bytes per "
          f"trade on disk (zstd; with the candles' files)")  # fmt: skip
    n = len(rows)
    print(f"duckdb  {n / duck_candles_s:>12,.0f} candle upserts/s ({n:,} final candles, "
          f"10,000 a write)")  # fmt: skip
    print(f"lake    {n / lake_candles_s:>12,.0f} final candles/s ({candle_lake.files_written} "
          f"files, {candle_lake.bytes_written / n:.1f} bytes a candle, "
          f"{duck_candles_s / lake_candles_s:.2f} x DuckDB's rate)")  # fmt: skip


if __name__ == "__main__":
    main()
