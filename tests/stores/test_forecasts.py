"""The forecasts the stores keep (DuckDB and PostgreSQL): upserted on their keys, read back by
range and instrument; and none (not an error) from a DuckDB file written before they were
kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tickpipe.forecast.scores import ForecastPoint, Score
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.forecasts import ForecastStore
from tickpipe.stores.postgresql import PostgresStore

S = 1_000_000


def point(start_s: int, close: float, symbol: str = "BTC-USDT") -> ForecastPoint:
    return ForecastPoint(
        exchange="sim", symbol=symbol, interval="1s", start=start_s * S,
        based_on=(start_s - 1) * S, close=close, low=close - 1, high=close + 1, made_at=start_s,
    )  # fmt: skip


def score(forecaster: str, n: int, symbol: str = "BTC-USDT") -> Score:
    return Score(exchange="sim", symbol=symbol, interval="1s", forecaster=forecaster, n=n,
                 abs_err=n * 0.5, sq_err=n * 0.3, calls=n - 1, hits=n // 2, band_n=n,
                 band_in=n - 2, updated_at=n)  # fmt: skip


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForecastStore]:
    if request.param == "duckdb":
        opened: DuckDBStore | PostgresStore = DuckDBStore(tmp_path / "t.duckdb")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_dsn"))
    try:
        yield opened
    finally:
        opened.close()


def test_forecasts_and_scores_are_upserted_on_their_keys(store: ForecastStore) -> None:
    assert isinstance(store, ForecastStore)
    store.write_forecasts([point(10, 100.0), point(11, 101.0)], [score("model", 5)])
    store.write_forecasts(
        [point(11, 102.0), point(12, 103.0), point(12, 7.0, "ETH-USDT")],
        [score("model", 6), score("last_close", 6), score("model", 2, "ETH-USDT")],
    )
    got = store.forecast_points("sim", "BTC-USDT", "1s", 11 * S, 13 * S)
    assert got == [point(11, 102.0), point(12, 103.0)]  # 10 is before the range
    assert store.forecast_scores("sim", "BTC-USDT") == [score("last_close", 6),
                                                        score("model", 6)]  # fmt: skip
    assert len(store.forecast_scores()) == 3


def test_a_file_from_before_forecasts_reads_none(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    DuckDBStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE forecasts")
    con.execute("DROP TABLE forecast_scores")
    con.close()
    store = DuckDBStore(path, read_only=True)
    try:
        assert store.forecast_points("sim", "BTC-USDT", "1s", 0, 2**62) == []
        assert store.forecast_scores() == []
    finally:
        store.close()
