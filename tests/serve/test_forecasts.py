"""`/api/forecasts` over a store the real engine filled and the forecasts service kept
forecasts in, through real HTTP on 127.0.0.1: the rows the store holds, the scoreboard's
verdict recomputed here from the stored sums, and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tickpipe.engine.candles import EngineOutput
from tickpipe.forecast.service import ForecastService
from tickpipe.runtime.clock import ManualClock
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread, fill_store

S = 1_000_000


@pytest.fixture(scope="module")
def forecast_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DuckDBStore]]:
    """12 minutes of simulated candles, each final candle handed to the forecasts service in
    time order as a pipeline would; then the API over the file, read-only."""
    path = tmp_path_factory.mktemp("forecasts") / "tickpipe.duckdb"
    fill_store(path, minutes=8)
    store = DuckDBStore(path)
    service = ForecastService(store, ManualClock())
    for interval in ("1s", "5s", "1m"):
        for candle in store.stored_candles(interval):
            service.offer(EngineOutput(candles=[candle]))
    service.close()
    store.close()
    store = DuckDBStore(path, read_only=True)
    api = ApiThread(create_app(ApiContext(store)))
    try:
        yield api.url, store
    finally:
        api.stop()
        store.close()


def get(url: str, **params: object) -> httpx.Response:
    return httpx.get(url + "/api/forecasts", params=params, timeout=10)


def test_forecasts_are_the_stored_rows_of_the_range(forecast_api) -> None:
    url, store = forecast_api
    (last,) = store.query("SELECT max(start) FROM forecasts")[0]
    end = last // 1000 + 1  # ms, just past the newest forecast
    body = get(url, exchange="alpha", symbol="btcusdt", interval="1s", lookback="5m",
               end=end).json()  # fmt: skip
    rows = store.query(
        "SELECT start, close, low, high FROM forecasts WHERE exchange = 'alpha' AND "
        "symbol = 'BTC-USDT' AND interval = '1s' AND start >= ? AND start < ? ORDER BY start",
        [end * 1000 - 300 * S, end * 1000],
    )
    assert 250 <= len(rows) <= 300
    got = [(p["start"], p["close"], p["low"], p["high"]) for p in body["forecasts"]]
    assert got == rows
    assert body["baseline"] == "last_close"


def test_the_scoreboard_says_whether_the_model_beats_the_last_close(forecast_api) -> None:
    url, store = forecast_api
    body = get(url, exchange="alpha", symbol="BTC-USDT", interval="1m").json()
    sums = {
        (interval, forecaster): (n, abs_err, sq_err)
        for interval, forecaster, n, abs_err, sq_err in store.query(
            "SELECT interval, forecaster, n, abs_err, sq_err FROM forecast_scores "
            "WHERE exchange = 'alpha' AND symbol = 'BTC-USDT'"
        )
    }
    assert [r["interval"] for r in body["scoreboard"]] == ["1m", "1s", "5s"]
    for row in body["scoreboard"]:
        n, abs_m, sq_m = sums[(row["interval"], "model")]
        _, abs_b, sq_b = sums[(row["interval"], "last_close")]
        assert row["beats_baseline"] is (n > 0 and abs_m < abs_b and sq_m < sq_b)
        model = row["forecasters"]["model"]
        assert model["mae"] == pytest.approx(abs_m / n)
        assert model["rmse"] == pytest.approx((sq_m / n) ** 0.5)


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"exchange": "alpha", "symbol": "BTC-USDT"}, 400, "interval is required"),
        ({"exchange": "alpha", "symbol": "BTC-USDT", "interval": "1m/5s"}, 400, "tumbling"),
        ({"exchange": "alpha", "symbol": "BTC-USDT", "interval": "7x"}, 400, "interval='7x'"),
        ({"exchange": "alpha", "symbol": "NOPE-USDT", "interval": "1m"}, 404, "unknown symbol"),
        ({"exchange": "alpha", "symbol": "BTC-USDT", "interval": "1s", "lookback": "30d"}, 400,
         "range too large"),
    ],
)  # fmt: skip
def test_a_bad_query_is_refused_with_its_reason(forecast_api, params, status, reason) -> None:
    answer = get(forecast_api[0], **params)
    assert answer.status_code == status
    assert reason in answer.json()["error"]


def test_the_openapi_document_describes_the_route(forecast_api) -> None:
    doc = httpx.get(forecast_api[0] + "/openapi.json", timeout=10).json()
    names = {p["name"] for p in doc["paths"]["/api/forecasts"]["get"]["parameters"]}
    assert names == {"exchange", "symbol", "interval", "lookback", "end"}


def test_a_store_without_forecasts_answers_none(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    fill_store(path, minutes=1)
    store = DuckDBStore(path, read_only=True)
    api = ApiThread(create_app(ApiContext(store)))
    try:
        body = get(api.url, exchange="alpha", symbol="BTC-USDT", interval="1s").json()
    finally:
        api.stop()
        store.close()
    assert body["forecasts"] == [] and body["scoreboard"] == []
