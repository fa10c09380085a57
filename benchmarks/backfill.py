"""Backfill throughput: trades per second `tickpipe backfill` fetches, de-duplicates and stores
with their candles, from a local fake Binance REST server into a new DuckDB file.

    python benchmarks/backfill.py                       # 300,000 trades over ~8 hours
    python benchmarks/backfill.py --trades 1000000 --chunk 100000
    python benchmarks/backfill.py --overlap 0.5         # half of them stored already

The fake answers `/api/v3/aggTrades` and `/api/v3/historicalTrades` with 1000 trades a page, as
Binance does, on this machine, without pacing (a real backfill is bound by Binance's request
weight: about 3 pages, 3,000 trades, a second). So the figure is tickpipe's side of a backfill:
HTTP client, JSON decoding, de-duplication against the store, the dedicated engine over every
window the trades touch, and the store's transaction; the fake server runs in this process too
and its share of the CPU is included. `--overlap` stores that share of the trades first (as a
live run would have, with their candles), so the backfill de-duplicates and corrects candles.
Run it on an idle machine and more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.binance_server import FakeBinance

from tickpipe.engine.candles import CandleEngine
from tickpipe.engine.settings import EngineSettings
from tickpipe.history.backfill import Backfiller, Task
from tickpipe.history.state import BackfillState
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore

HOUR_MS = 3_600_000
T0_MS = 1_780_000_000_000 - 1_780_000_000_000 % HOUR_MS


async def main(args: argparse.Namespace) -> None:
    engine = EngineSettings().engine_config()  # the default intervals: 1s 5s 1m 5m 1h
    step_ms = max(1, int(args.hours * HOUR_MS / args.trades))
    async with FakeBinance(["BTCUSDT"]) as server:
        events = [
            server.trade("BTCUSDT", trade_time=T0_MS + k * step_ms) for k in range(args.trades)
        ]
        with tempfile.TemporaryDirectory() as tmp:
            store = DuckDBStore(Path(tmp) / "bench.duckdb")
            if args.overlap:
                _store_live(store, engine, events[:: max(1, round(1 / args.overlap))])
            filler = Backfiller(
                store, engine, BackfillState(Path(tmp) / "state.json"),
                rest_url=lambda _: server.rest_url, chunk_trades=args.chunk,
                requests_per_s={"binance": 1e9},
            )  # fmt: skip
            until_us = (T0_MS + args.trades * step_ms + 1) * 1000
            started = time.perf_counter()
            report = await filler.run([Task("binance", "BTC-USDT", T0_MS * 1000, until_us)])
            elapsed = time.perf_counter() - started
            store.close()
    fetched, new = report.total("fetched"), report.total("new")
    print(
        f"backfill: {fetched:,} trades fetched ({new:,} new, {report.total('candles'):,} "
        f"candles written, {report.total('corrected'):,} corrected) in {elapsed:.2f}s: "
        f"{fetched / elapsed:,.0f} trades/s (chunk {args.chunk:,}, {report.tasks[0].pages} pages)"
    )
    if report.failed:
        raise SystemExit(f"failed: {report.failed[0].error}")


def _store_live(store: DuckDBStore, engine_config, events: list[dict]) -> None:
    """Store `events` as a live run would have: the engine's trades and candles."""
    trades = [
        Trade(source="binance", exchange="binance", symbol="BTC-USDT", trade_id=str(e["t"]),
              seq=e["t"], price=float(e["p"]), size=float(e["q"]),
              side="sell" if e["m"] else "buy", ts=e["T"] * 1000, recv_ts=e["T"] * 1000)
        for e in events
    ]  # fmt: skip
    engine = CandleEngine(engine_config)
    now = trades[-1].ts + 10 * HOUR_MS * 1000
    out = engine.process(TradeBatch.from_trades(trades), now)
    store.write(trades=[out.accepted] if out.accepted else [], candles=engine.flush(now))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--hours", type=float, default=8.0, help="market time they span")
    parser.add_argument("--chunk", type=int, default=50_000, help="trades per transaction")
    parser.add_argument("--overlap", type=float, default=0.0, help="share stored beforehand")
    asyncio.run(main(parser.parse_args()))
