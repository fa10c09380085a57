"""`tickpipe export --format csv` round-trips: from DuckDB and from PostgreSQL, the CSV files
read back to exactly the trades and final candles written into the store in the range (awkward
floats, ids with commas and quotes included), nothing outside it."""

from __future__ import annotations

from pathlib import Path

from test_cli import one_line_usage_error, tickpipe

from tickpipe.history.export_csv import read_candles, read_trades
from tickpipe.records import CANDLE_FIELDS, TRADE_SCHEMA, Candle, Trade, TradeBatch
from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore

S = 1_000_000
DAY = 86_400 * S
T0 = 1_796_515_200 * S  # 2026-12-06T00:00Z
PRICES = (0.1 + 0.2, 1e-9, 123456.789012345, 65000.1, 1 / 3)


def _trades() -> list[Trade]:
    ids = ("7", "a,b", 'x"y', "0012", "z")
    return [
        Trade(source="src", exchange=exchange, symbol=symbol, raw_symbol=symbol.replace("-", ""),
              trade_id=f"{ids[i % 5]}-{i}", seq=i, price=PRICES[i % 5], size=PRICES[(i + 2) % 5],
              side=("buy", "sell", "unknown")[i % 3], ts=T0 - DAY + i * 3600 * S, recv_ts=T0 + i)
        for exchange, symbol in (("ex", "BTC-USDT"), ("ex", "ETH-USDT"), ("ox", "BTC-USDT"))
        for i in range(72)
    ]  # fmt: skip


def _candles() -> list[Candle]:
    return [
        Candle(exchange="ex", symbol="BTC-USDT", interval=interval, start=T0 - DAY + k * 3600 * S,
               open=PRICES[k % 5], high=2.5, low=PRICES[(k + 1) % 5], close=1 / 7, volume=3.3,
               quote_volume=4.000000001, vwap=1.3, mean_price=1.25, trades=k, buy_volume=0.1,
               sell_volume=0.2, first_seq=k, last_seq=k + 1, final=k % 4 != 0, revision=k % 3,
               updated_at=T0 + k)
        for interval in ("1m", "1h")
        for k in range(72)
    ]  # fmt: skip


SINCE, UNTIL = T0 - DAY // 2, T0 + DAY  # cuts the first half day off, and the last day
ARGS = ("--since", "2026-12-05T12:00", "--until", "2026-12-07")


def _fill(store: Store) -> None:
    store.write(trades=[TradeBatch.from_trades(_trades())], candles=_candles())


def _expected() -> tuple[list[dict], list[dict]]:
    names = TRADE_SCHEMA.names
    trades = [{n: getattr(t, n) for n in names} for t in _trades() if SINCE <= t.ts < UNTIL]
    candles = [
        {n: getattr(c, n) for n in CANDLE_FIELDS}
        for c in _candles()
        if c.final and SINCE <= c.start < UNTIL
    ]
    return trades, candles


def _check(result, out: Path) -> None:
    assert result.returncode == 0, result.stderr
    trades, candles = _expected()
    got_trades = read_trades(out / "trades.csv").to_pylist()
    got_candles = read_candles(out / "candles.csv").to_pylist()
    assert got_trades == sorted(trades, key=lambda r: (r["exchange"], r["symbol"], r["ts"]))
    key = lambda r: (r["interval"], r["exchange"], r["symbol"], r["start"])  # noqa: E731
    assert sorted(got_candles, key=key) == sorted(candles, key=key)
    assert 0 < len(got_trades) < len(_trades())
    assert f"export: {len(trades):,} trades and {len(candles):,} final candles" in result.stdout


def test_csv_export_from_duckdb_reads_back_to_the_stored_rows(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    _fill(store)
    store.close()
    out = tmp_path / "csv"
    result = tickpipe("export", "--data-dir", str(tmp_path), *ARGS, "--to", str(out),
                      "--format", "csv")  # fmt: skip
    _check(result, out)
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_csv_export_from_postgresql_reads_back_to_the_stored_rows(
    tmp_path: Path, postgres_dsn: str
) -> None:
    store = PostgresStore(postgres_dsn)
    try:
        _fill(store)
    finally:
        store.close()
    out = tmp_path / "csv"
    result = tickpipe("export", "--store", postgres_dsn, *ARGS, "--to", str(out),
                      "--format", "csv")  # fmt: skip
    _check(result, out)


def test_csv_export_to_s3_is_refused_in_one_line(tmp_path: Path) -> None:
    args = ["export", "--data-dir", str(tmp_path), *ARGS, "--to", "s3://b/p", "--format", "csv"]
    line = one_line_usage_error(tickpipe(*args))
    assert "CSV goes to a local directory" in line
