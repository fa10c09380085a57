"""The API over PostgreSQL answers every route as it does over DuckDB, for the same data.

The DuckDB store the engine filled (conftest) is copied row for row into a fresh PostgreSQL
database; both are served by real uvicorn servers and asked the same questions over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers.postgres import fresh_database

from tickpipe.records import CANDLE_FIELDS, Candle, RollingStat
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore

from .conftest import ApiThread, Served
from .test_api import BAD

M = 60_000_000


def copy_store(source: DuckDBStore, target: PostgresStore) -> None:
    """Every trade, candle, rolling statistic and event of `source`, written to `target`."""
    trades = source.query_arrow("SELECT * FROM trades")
    candles = [Candle(**dict(zip(CANDLE_FIELDS, r, strict=True))) for r in
               source.query(f"SELECT {', '.join(CANDLE_FIELDS)} FROM candles")]  # fmt: skip
    fields = RollingStat.__struct_fields__
    rolling = [RollingStat(**dict(zip(fields, r, strict=True))) for r in
               source.query(f"SELECT {', '.join(fields)} FROM rolling_stats")]  # fmt: skip
    events = source.query("SELECT ts, kind, source, detail FROM events")
    target.write([trades], candles, rolling, events)


@pytest.fixture(scope="module")
def both(stored_path: tuple[Path, int], postgres_server) -> Iterator[tuple[Served, Served]]:
    path, end = stored_path
    duck = DuckDBStore(path, read_only=True)
    with fresh_database(postgres_server) as dsn:
        pg = PostgresStore(dsn)
        copy_store(duck, pg)
        apis = [ApiThread(create_app(ApiContext(s))) for s in (duck, pg)]
        try:
            yield Served(apis[0].url, duck, end), Served(apis[1].url, pg, end)
        finally:
            for api in apis:
                api.stop()
            pg.close()
            duck.close()


def _questions(end_us: int) -> list[tuple[str, dict]]:
    end = end_us // 1000 + 1
    btc = {"exchange": "alpha", "symbol": "BTC-USDT"}
    start = (end_us - 10 * M) // M * M // 1000
    return [
        ("/api/exchanges", {}),
        ("/api/candles", {**btc, "interval": "1m", "start": start, "end": end}),
        ("/api/candles", {**btc, "interval": "1s", "lookback": "3m", "end": end}),
        ("/api/candles", {**btc, "bucket": "15s", "lookback": "5m", "end": end}),
        ("/api/candles", {**btc, "bucket": "10m", "lookback": "30m", "end": end, "fill": "1"}),
        (
            "/api/candles",
            {
                "exchange": "beta",
                "symbol": "xrp/usdt",
                "interval": "5s",
                "lookback": "2m",
                "end": end,
                "fill": "true",
            },
        ),
        ("/api/trades", {**btc, "limit": 50}),
        ("/api/trades", {"exchange": "beta", "symbol": "XRP-USDT"}),
        ("/api/rolling", {**btc, "limit": 20}),
        ("/api/kpis", {}),
        ("/api/analytics/top-exchanges", {"period": "1h", "end": end}),
        ("/api/analytics/top-exchanges", {"period": "2m", "end": end, "by": "volume"}),
        ("/api/analytics/top-tickers", {"period": "1h", "end": end}),
        ("/api/analytics/top-tickers", {"period": "5m", "end": end, "by": "volume", "limit": 3}),
        ("/api/analytics/exchange/alpha", {"period": "1h", "end": end}),
        ("/api/analytics/exchange/beta", {"period": "90s", "end": end}),
    ]


def _approx(value):
    """Sums of floats may differ in their last bits between the databases; nothing else."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return value


def test_the_copied_store_holds_what_duckdb_holds(both: tuple[Served, Served]) -> None:
    duck, pg = both
    for table in ("trades", "candles", "rolling_stats", "events"):
        assert pg.store.query(f"SELECT count(*) FROM {table}") == duck.store.query(
            f"SELECT count(*) FROM {table}"
        )
    assert duck.store.query("SELECT count(*) FROM trades")[0][0] > 1000


@pytest.mark.parametrize("index", range(len(_questions(0))))
def test_every_route_answers_the_same_over_postgresql(
    both: tuple[Served, Served], index: int
) -> None:
    duck, pg = both
    path, params = _questions(duck.end)[index]
    answers = [httpx.get(s.url + path, params=params, timeout=30) for s in (duck, pg)]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    expected, got = answers[0].json(), answers[1].json()
    assert got == _approx(expected)
    assert got not in ({}, [], None)


def test_health_names_the_database_without_a_password(both: tuple[Served, Served]) -> None:
    _, pg = both
    body = httpx.get(pg.url + "/api/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["store"].startswith("postgresql://postgres@127.0.0.1:")


@pytest.mark.parametrize(("path", "params", "status", "reason"), BAD)
def test_a_bad_parameter_gets_the_same_4xx_over_postgresql(
    both: tuple[Served, Served], path: str, params: dict, status: int, reason: str
) -> None:
    duck, pg = both
    answers = [httpx.get(s.url + path, params=params, timeout=10) for s in (duck, pg)]
    assert answers[1].status_code == status
    assert answers[1].json() == answers[0].json()
