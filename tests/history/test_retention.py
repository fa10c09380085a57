"""`tickpipe retain`: drops what is older than each age and nothing else, from DuckDB and
PostgreSQL (rows) and from the lake (whole day partitions; candle folders rewritten where
only some intervals expired), refuses bad specs with one line, and a second run drops
nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from test_cli import one_line_usage_error, tickpipe

from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.lake.location import LakeSettings, open_lake
from tickpipe.stores.postgresql import PostgresStore

S = 1_000_000
DAY = 86_400 * S
NOW = int(datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()) * S
NOW_TEXT = "2026-12-06T12:00"


def _trades() -> list[Trade]:
    """One trade every 5 hours over the last 50 days, on two instruments."""
    return [
        Trade(source="t", exchange="ex", symbol=symbol, trade_id=str(i), seq=i, price=100.0 + i,
              size=1.0, side="buy", ts=NOW - i * 5 * 3600 * S, recv_ts=NOW - i * 5 * 3600 * S)
        for symbol in ("BTC-USDT", "ETH-USDT")
        for i in range(240)
    ]  # fmt: skip


def _candles() -> list[Candle]:
    """Final candles of 1s, 1m and 5m every 3 days over the last 400 days."""
    return [
        Candle(exchange="ex", symbol="BTC-USDT", interval=interval, start=NOW - k * 3 * DAY,
               open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0, quote_volume=4.0, vwap=1.3,
               mean_price=1.25, trades=2, buy_volume=1.0, sell_volume=2.0, first_seq=k,
               last_seq=k + 1, final=True, revision=0, updated_at=NOW)
        for interval in ("1s", "1m", "5m")
        for k in range(134)
    ]  # fmt: skip


def _fill(store: Store) -> None:
    store.write(trades=[TradeBatch.from_trades(_trades())], candles=_candles())


def _kept_trades(cutoff: int) -> set[tuple[str, str]]:
    return {(t.symbol, t.trade_id) for t in _trades() if t.ts >= cutoff}


def _kept_candles(cutoffs: dict[str, int]) -> set[tuple[str, int]]:
    return {
        (c.interval, c.start) for c in _candles() if c.start >= cutoffs.get(c.interval, -(2**62))
    }


def _stored(store: Store) -> tuple[set, set]:
    trades = {(s, tid) for s, tid in store.query("SELECT symbol, trade_id FROM trades")}
    candles = {(i, st) for i, st in store.query("SELECT interval, start FROM candles")}
    return trades, candles


AGES = ("--trades", "30d", "--candles", "1s=7d,1m=365d")
CUTOFFS = {"1s": NOW - 7 * DAY, "1m": NOW - 365 * DAY}  # 5m: not named, kept


def _check(store_args: list[str], reopen) -> None:
    first = tickpipe("retain", *store_args, *AGES, "--now", NOW_TEXT)
    assert first.returncode == 0, first.stderr
    trades, candles = reopen()
    assert trades == _kept_trades(NOW - 30 * DAY)
    assert candles == _kept_candles(CUTOFFS)
    assert len(_kept_trades(NOW - 30 * DAY)) < len(_trades())  # something did go
    dropped = len(_trades()) - len(trades)
    assert f"retain: {dropped:,} trades and" in first.stdout
    again = tickpipe("retain", *store_args, *AGES, "--now", NOW_TEXT)
    assert again.returncode == 0, again.stderr
    assert "retain: 0 trades and 0 candles dropped" in again.stdout
    assert reopen() == (trades, candles)


def test_retain_deletes_exactly_the_expired_rows_of_a_duckdb_store(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    _fill(store)
    store.close()

    def reopen() -> tuple[set, set]:
        s = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
        try:
            return _stored(s)
        finally:
            s.close()

    _check(["--data-dir", str(tmp_path)], reopen)


def test_retain_deletes_exactly_the_expired_rows_of_a_postgresql_store(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    try:
        _fill(store)
    finally:
        store.close()

    def reopen() -> tuple[set, set]:
        s = PostgresStore(postgres_dsn)
        try:
            return _stored(s)
        finally:
            s.close()

    _check(["--store", postgres_dsn], reopen)


def _lake_rows(root: Path, kind: str) -> list[dict]:
    if not (root / kind).exists():
        return []
    return ds.dataset(root / kind, format="parquet", partitioning="hive").to_table().to_pylist()


def test_retain_drops_whole_day_partitions_of_the_lake_and_rewrites_mixed_candle_days(
    tmp_path: Path,
) -> None:
    root = tmp_path / "lake"
    lake = open_lake(LakeSettings(url=root.as_uri()))
    lake.add_trades(TradeBatch.from_trades(_trades()))
    lake.add_candles(_candles())
    lake.flush()
    days_before = {p.name for p in (root / "trades").glob("*/*/date=*")}

    result = tickpipe("retain", "--lake", str(root), "--lake-only", *AGES, "--now", NOW_TEXT)
    assert result.returncode == 0, result.stderr

    # Trades: a day goes only when all of it is older than the cut-off; the cut-off's own day
    # stays whole (its older trades too).
    cutoff = NOW - 30 * DAY
    first_kept_day = cutoff // DAY * DAY
    kept = {(r["symbol"], r["trade_id"]) for r in _lake_rows(root, "trades")}
    assert kept == {(t.symbol, t.trade_id) for t in _trades() if t.ts >= first_kept_day}
    assert kept > _kept_trades(cutoff)  # more than the rows, by the boundary day
    days_after = {p.name for p in (root / "trades").glob("*/*/date=*")}
    assert days_after < days_before
    # Candles: exactly the expired rows of the named intervals.
    candles = {(r["interval"], r["start"]) for r in _lake_rows(root, "candles")}
    assert candles == _kept_candles(CUTOFFS)
    assert "day partitions dropped" in result.stdout
    assert "(0 day partitions" not in result.stdout

    # Every interval named: candle days all of whose rows expired go as whole folders.
    every = tickpipe("retain", "--lake", str(root), "--lake-only", "--candles",
                     "1s=7d,1m=7d,5m=7d", "--now", NOW_TEXT)  # fmt: skip
    assert every.returncode == 0, every.stderr
    week = {i: NOW - 7 * DAY for i in ("1s", "1m", "5m")}
    candles = {(r["interval"], r["start"]) for r in _lake_rows(root, "candles")}
    assert candles == _kept_candles(week)
    folders = root / "candles" / "exchange=ex" / "symbol=BTC-USDT"
    left = {p.name for p in folders.glob("date=*")}
    assert left == {f"date={datetime.fromtimestamp(s // S, UTC):%Y-%m-%d}" for _, s in candles}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--trades", "30x"], "--trades: '30x' is not a duration"),
        (["--candles", "1s7d"], "'1s7d' is not INTERVAL=AGE"),
        (["--candles", "1q=7d"], "--candles:"),
        (["--candles", "1s=7d,1s=8d"], "interval 1s is named twice"),
        (["--trades", "10m"], "shorter than the correction horizon"),
        ([], "say what to drop"),
    ],
)
def test_retain_refuses_a_bad_spec_with_one_line(
    tmp_path: Path, args: list[str], says: str
) -> None:
    line = one_line_usage_error(tickpipe("retain", "--data-dir", str(tmp_path), *args))
    assert says in line, line
    assert not (tmp_path / "tickpipe.duckdb").exists()  # refused before opening anything
