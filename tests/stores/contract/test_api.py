"""`tickpipe serve` answers every API route the same over every store.

The same simulated run is written into a DuckDB file (the reference) and into the store under
test; both are served by real uvicorn servers and asked the same questions over HTTP. Sums of
floats may differ in their last bits between databases; nothing else may.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve.conftest import ApiThread, simulate
from serve.test_api import BAD

from tickpipe.durations import Seconds
from tickpipe.monitor.service import ALERT_EVENT
from tickpipe.records import PipelineMetric
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.settings import ServeConfig
from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import Opener

M = 60_000_000
END = (1_700_000_400 * 1_000_000) // M * M
NOW = time.time_ns() // 1000  # KPI history is read back from the wall clock's now
# The simulated venues at a quarter of their rates: the same instruments, routes and answers
# to compare, a quarter of the trades (FerretDB decodes every stored trade for each trade
# read: /api/exchanges reads each instrument's newest trades for its precision).
RATE_FACTOR = 0.25


def keep_monitoring(store: Store) -> None:
    """Alert transitions and KPIs as a pipeline's monitor keeps them."""
    alerts = [
        (NOW - k * M, ALERT_EVENT, "monitor", json.dumps(
            {"rule": rule, "labels": {"exchange": "alpha"}, "state": state, "at": NOW - k * M}))
        for k, (rule, state) in enumerate([("lag", "resolved"), ("lag", "firing"),
                                           ("gap", "firing"), ("stale", "firing")])
    ]  # fmt: skip
    metrics = [
        PipelineMetric(ts=NOW - k * 5_000_000, process=process, period_s=5.0, trades=100 + k,
                       trades_per_s=20.0 + k, candles=7, lag_p50_ms=1.5, lag_p99_ms=9.0,
                       queue_depth=k)
        for k in range(30) for process in ("embedded", "process-2")
    ]  # fmt: skip
    store.write(events=alerts, metrics=metrics)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "tickpipe.duckdb"
    store = DuckDBStore(path)
    try:
        simulate(store, END, one_write=True, rate_factor=RATE_FACTOR)
        keep_monitoring(store)
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def urls(reference: Path, opener: Opener) -> Iterator[tuple[str, str]]:
    """The API over the reference and over the store under test, holding the same run."""
    duck = DuckDBStore(reference, read_only=True)
    with opener() as store:
        simulate(store, END, one_write=True, rate_factor=RATE_FACTOR)
        keep_monitoring(store)
        # The answers are the subject here, not their speed: FerretDB streams every trade to
        # list the instruments, which a loaded machine cannot do within the default budget.
        serve = ServeConfig(read_timeout_s=Seconds(120.0))
        apis = [ApiThread(create_app(ApiContext(s), serve=serve)) for s in (duck, store)]
        try:
            yield apis[0].url, apis[1].url
        finally:
            for api in apis:
                api.stop()
            duck.close()


def _questions() -> list[tuple[str, dict]]:
    end = END // 1000 + 1
    btc = {"exchange": "alpha", "symbol": "BTC-USDT"}
    start = (END - 10 * M) // M * M // 1000
    xrp = {"exchange": "beta", "symbol": "xrp/usdt", "interval": "5s", "lookback": "2m"}
    return [
        ("/api/exchanges", {}),
        ("/api/candles", {**btc, "interval": "1m", "start": start, "end": end}),
        ("/api/candles", {**btc, "interval": "1s", "lookback": "3m", "end": end}),
        ("/api/candles", {**btc, "bucket": "15s", "lookback": "5m", "end": end}),
        ("/api/candles", {**btc, "bucket": "10m", "lookback": "30m", "end": end, "fill": "1"}),
        ("/api/candles", {**xrp, "end": end, "fill": "true"}),
        ("/api/trades", {**btc, "limit": 50}),
        ("/api/trades", {"exchange": "beta", "symbol": "XRP-USDT"}),
        ("/api/rolling", {**btc, "limit": 20}),
        ("/api/kpis", {}),
        ("/api/alerts", {}),
        ("/api/alerts", {"limit": 2}),
        ("/api/kpis/history", {"lookback": "1h"}),
        ("/api/kpis/history", {"lookback": "1m", "process": "process-2", "limit": 5}),
        ("/api/analytics/top-exchanges", {"period": "1h", "end": end}),
        ("/api/analytics/top-exchanges", {"period": "2m", "end": end, "by": "volume"}),
        ("/api/analytics/top-tickers", {"period": "1h", "end": end}),
        ("/api/analytics/top-tickers", {"period": "5m", "end": end, "by": "volume", "limit": 3}),
        ("/api/analytics/exchange/alpha", {"period": "1h", "end": end}),
        ("/api/analytics/exchange/beta", {"period": "90s", "end": end}),
    ]


def _approx(value):
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return value


@pytest.mark.parametrize(("path", "params"), _questions(), ids=lambda v: str(v)[:40])
def test_every_route_answers_as_over_duckdb(urls: tuple[str, str], path: str, params: dict) -> None:
    answers = [httpx.get(url + path, params=params, timeout=120) for url in urls]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    expected, got = answers[0].json(), answers[1].json()
    assert got == _approx(expected)
    assert got not in ({}, [], None)


@pytest.mark.parametrize(("path", "params", "status", "reason"), BAD)
def test_a_bad_parameter_gets_the_same_4xx(
    urls: tuple[str, str], path: str, params: dict, status: int, reason: str
) -> None:
    answers = [httpx.get(url + path, params=params, timeout=10) for url in urls]
    assert answers[1].status_code == status
    assert answers[1].json() == answers[0].json()
