"""`/metrics`, `/api/alerts` and `/api/kpis/history`: over a stored file (what a pipeline kept)
and from a running `tickpipe demo`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serve.conftest import ApiThread
from tickpipe.monitor.alerts.config import AlertRule
from tickpipe.monitor.alerts.engine import AlertEngine, Observation
from tickpipe.monitor.kpis import KpiSampler
from tickpipe.monitor.notify.base import alert_json
from tickpipe.monitor.service import ALERT_EVENT
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore

S = 1_000_000
TICKPIPE = [sys.executable, "-m", "tickpipe"]


@pytest.fixture(params=["duckdb", "postgresql"])
def kept(request, tmp_path: Path):
    """A store holding what a pipeline keeps: alert transitions and KPI rows, then the API
    over it (DuckDB, as `tickpipe serve` reads a file; PostgreSQL, as `serve --store`)."""
    now = time.time_ns() // 1000
    rules = [AlertRule(name="high", kind="price_above", threshold=100, symbols=["BTC-USDT"])]
    engine = AlertEngine(rules, 3600 * S, 100, started=now - 60 * S)
    transitions = []
    for i, (btc, eth) in enumerate([(99, 99), (101, 101), (99, 101), (101, 101)]):
        obs = Observation(now=now - (10 - i) * S,
                          prices={("x", "BTC-USDT"): btc, ("y", "BTC-USDT"): eth})  # fmt: skip
        transitions += engine.evaluate(obs)
    sampler = KpiSampler("process-a", now - 3 * 3600 * S)
    metrics = [sampler.sample(now - age * S, 10 * (i + 1), 2 * (i + 1), [], 0)
               for i, age in enumerate([7200, 1800, 60])]  # fmt: skip
    path = tmp_path / "tickpipe.duckdb"
    if request.param == "postgresql":
        store = PostgresStore(request.getfixturevalue("postgres_dsn"))
    else:
        store = DuckDBStore(path)
    store.write(
        events=[(a.updated, ALERT_EVENT, a.rule, msgspec.json.encode(alert_json(a)).decode())
                for a in transitions], metrics=metrics,
    )  # fmt: skip
    if request.param == "duckdb":
        store.close()
        store = DuckDBStore(path, read_only=True)
    api = ApiThread(create_app(ApiContext(store)))
    try:
        yield api.url, transitions, metrics
    finally:
        api.stop()
        store.close()


def test_alerts_over_a_stored_file_show_history_newest_first_and_what_is_still_firing(kept):
    url, transitions, _ = kept
    body = httpx.get(url + "/api/alerts", timeout=5).json()
    assert len(body["history"]) == len(transitions)
    assert [h["updated"] for h in body["history"]] == sorted(
        (a.updated for a in transitions), reverse=True)  # fmt: skip
    # x fired, resolved, fired again; y fired and stayed: both are firing now.
    assert sorted(a["labels"]["exchange"] for a in body["active"]) == ["x", "y"]
    assert {a["state"] for a in body["active"]} == {"firing"}
    item = body["active"][0]
    assert set(item) == {"rule", "severity", "state", "labels", "value", "message", "since",
                         "updated"}  # fmt: skip
    assert set(item["labels"]) == {"exchange", "symbol", "source"}


def test_kpi_history_returns_the_lookback_oldest_first(kept):
    url, _, metrics = kept
    body = httpx.get(url + "/api/kpis/history", params={"lookback": "1h"}, timeout=5).json()
    assert [m["ts"] for m in body["metrics"]] == [metrics[1].ts, metrics[2].ts]
    assert body["metrics"][0] == msgspec.structs.asdict(metrics[1])
    longer = httpx.get(url + "/api/kpis/history?lookback=3h", timeout=5).json()
    assert len(longer["metrics"]) == 3
    other = httpx.get(url + "/api/kpis/history?lookback=3h&process=b", timeout=5).json()
    assert other["metrics"] == []


@pytest.mark.parametrize("query", ["lookback=soon", "lookback=90d", "limit=0"])
def test_a_bad_kpi_history_query_is_a_400_naming_the_parameter(kept, query):
    url, _, _ = kept
    answer = httpx.get(f"{url}/api/kpis/history?{query}", timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(query.split("=")[0])


def test_metrics_over_a_stored_file_say_why_there_are_none(kept):
    url, _, _ = kept
    answer = httpx.get(url + "/metrics", timeout=5)
    assert answer.status_code == 404 and "tickpipe serve" in answer.json()["error"]


@pytest.mark.slow
def test_a_running_demo_serves_metrics_that_parse_and_agree_with_its_store(tmp_path: Path):
    proc = subprocess.Popen(
        [*TICKPIPE, "demo", "--quiet", "--duration", "5", "--port", "0", "--data-dir",
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TICKPIPE_MONITOR_KPI_EVERY": "500ms"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
        time.sleep(3)
        text = httpx.get(url + "/metrics", timeout=5).text
        alerts = httpx.get(url + "/api/alerts", timeout=5).json()
        history = httpx.get(url + "/api/kpis/history?lookback=5m", timeout=5).json()
    finally:
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    families = {f.name: f for f in text_string_to_metric_families(text)}
    stored = {s.labels["symbol"]: s.value for s in families["tickpipe_trades_stored"].samples
              if s.name.endswith("_total")}  # fmt: skip
    assert len(stored) > 1 and sum(stored.values()) > 0
    connected = families["tickpipe_source_connected"].samples
    assert [(s.labels["source"], s.value) for s in connected] == [("simulated", 1.0)]
    assert families["tickpipe_processing_lag_seconds"].type == "histogram"
    assert alerts == {"active": [], "history": []}  # a healthy demo raises nothing
    assert len(history["metrics"]) >= 2
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        per_symbol = dict(store.query("SELECT symbol, count(*) FROM trades GROUP BY symbol"))
        kpi_trades = store.query("SELECT sum(trades) FROM pipeline_metrics")[0][0]
    finally:
        store.close()
    # Scraped mid-run: every symbol's counter is at most what the store holds at the end.
    for symbol, count in stored.items():
        assert count <= per_symbol[symbol]
    assert kpi_trades == sum(per_symbol.values())  # the KPI periods add up to what was stored
