"""deploy/grafana: provisioning files have the structure Grafana reads, dashboards reference
only provisioned data sources, and every SQL query in them (Grafana's macros and template
variables expanded here as Grafana would) runs against the real PostgreSQL schema that
PostgresStore creates, filled by the real engine."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
import pytest
import yaml

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine
from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.kpis import KpiSampler
from tickpipe.monitor.notify.base import alert_json
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.postgresql import PostgresStore

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
S = 1_000_000
PANEL_TYPES = {"candlestick", "timeseries", "stat", "table", "barchart", "bargauge", "text"}


def dashboards() -> dict[str, dict]:
    return {
        p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def datasources() -> list[dict]:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "tickpipe.yml").read_text())
    assert doc["apiVersion"] == 1
    return doc["datasources"]


def alert_groups() -> list[dict]:
    doc = yaml.safe_load((PROVISIONING / "alerting" / "tickpipe.yml").read_text())
    assert doc["apiVersion"] == 1
    return doc["groups"]


# -- structure -------------------------------------------------------------------------------


def test_the_datasource_is_postgresql_with_its_secret_from_the_environment():
    (ds,) = datasources()
    assert ds["type"] in ("grafana-postgresql-datasource", "postgres")
    assert {"name", "uid", "url", "jsonData"} <= set(ds)
    assert ds["jsonData"]["database"] and ds["url"].endswith(":5432")
    assert re.fullmatch(r"\$\{?[A-Z_]+\}?", ds["secureJsonData"]["password"])
    assert re.fullmatch(r"\$\{?[A-Z_]+\}?", ds["user"])


def test_the_dashboard_provider_loads_files_from_one_folder():
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "tickpipe.yml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_dashboards_have_the_keys_grafana_requires_unique_panel_ids_and_known_datasources():
    uids = {ds["uid"] for ds in datasources()}
    seen_uids = set()
    for name, dash in dashboards().items():
        assert {"uid", "title", "panels", "schemaVersion", "time", "templating"} <= set(dash), name
        assert len(dash["uid"]) <= 40 and dash["uid"] not in seen_uids
        seen_uids.add(dash["uid"])
        assert isinstance(dash["schemaVersion"], int)
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for panel in dash["panels"]:
            assert panel["type"] in PANEL_TYPES, panel["type"]
            pos = panel["gridPos"]
            assert all(isinstance(pos[k], int) for k in "xywh") and pos["x"] + pos["w"] <= 24
            area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                    for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
            assert not area & cells, f"{name}: panel {panel['id']} overlaps another"
            cells |= area
            assert panel["datasource"]["uid"] in uids
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))
            for t in panel["targets"]:
                assert t["datasource"]["uid"] in uids and t["rawSql"].strip()
                assert t["format"] in ("time_series", "table")
        for var in dash["templating"]["list"]:
            assert var["datasource"]["uid"] in uids and var["query"].strip()


def test_the_price_dashboard_has_candles_with_volume_the_rolling_average_and_top_tickers():
    panels = dashboards()["prices.json"]["panels"]
    (candles,) = [p for p in panels if p["type"] == "candlestick"]
    assert "volume" in candles["options"]["mode"]
    sql = candles["targets"][0]["rawSql"]
    assert all(col in sql for col in ("open", "high", "low", "close", "volume"))
    assert any("avg_close_30m" in t["rawSql"] for p in panels for t in p["targets"])
    assert any(p["type"] == "table" and "quote_volume" in p["targets"][0]["rawSql"]
               for p in panels)  # fmt: skip


def test_the_pipeline_dashboard_shows_throughput_lag_and_volume():
    sqls = " ".join(t["rawSql"] for p in dashboards()["pipeline.json"]["panels"]
                    for t in p["targets"])  # fmt: skip
    for column in ("trades_per_s", "lag_p50_ms", "lag_p99_ms", "trades", "candles"):
        assert column in sqls


def test_alert_rules_have_the_structure_grafana_provisions():
    uids = {ds["uid"] for ds in datasources()}
    rule_uids = set()
    for group in alert_groups():
        assert {"orgId", "name", "folder", "interval", "rules"} <= set(group)
        for rule in group["rules"]:
            assert {"uid", "title", "condition", "data", "for", "labels"} <= set(rule)
            assert len(rule["uid"]) <= 40 and rule["uid"] not in rule_uids
            rule_uids.add(rule["uid"])
            refs = {d["refId"] for d in rule["data"]}
            assert rule["condition"] in refs
            for d in rule["data"]:
                assert d["datasourceUid"] in uids | {"__expr__"}
                assert d["model"]["refId"] == d["refId"]
                if d["datasourceUid"] != "__expr__":
                    assert d["relativeTimeRange"]["from"] > 0 and d["model"]["rawSql"]
                else:
                    assert d["model"]["expression"] in refs
            # Labels are expanded from the environment when provisioned: no `$` there.
            assert "$" not in json.dumps(rule["labels"])
            assert rule["labels"]["severity"] in ("info", "warning", "critical")


# -- every query against the real schema -----------------------------------------------------


def expand(sql: str, start_s: int, end_s: int, variables: dict[str, str]) -> str:
    """Grafana's macros and template variables, as Grafana's PostgreSQL data source expands them."""
    iso = lambda s: datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    sql = sql.replace("$__unixEpochFrom()", str(start_s)).replace("$__unixEpochTo()", str(end_s))
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m[1]} BETWEEN '{iso(start_s)}' AND '{iso(end_s)}'", sql)  # fmt: skip
    for name in sorted(variables, key=len, reverse=True):
        sql = sql.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    assert "$" not in sql, f"unexpanded: {sql}"
    return sql


@pytest.fixture
def filled(postgres_dsn: str):
    """A PostgreSQL store holding 20 minutes of engine output up to now, KPIs and events,
    with one planted price jump and one planted lag spike for the alert rules to find."""
    store = PostgresStore(postgres_dsn)
    engine = CandleEngine(Config().engine_config())
    end = time.time_ns() // 1000
    end -= end % S
    start = end - 20 * 60 * S
    market = MarketSimulator(["BTC-USDT", "ETH-USDT", "SOL-USDT"], 30.0, seed=4,
                             exchange="venue", source="venue")  # fmt: skip
    sampler = KpiSampler("process-1", start)
    written = 0
    for t in range(start, end, 10 * S):
        out = engine.process(market.span(t, t + 10 * S), t + 10 * S)
        tick = engine.tick(t + 10 * S)
        written += len(out.accepted) if out.accepted else 0
        lag = 90.0 if t >= end - 60 * S else 0.2  # the last minute lags
        kpi = sampler.sample(t + 10 * S, written, 0, [lag, lag], 0)
        store.write([out.accepted] if out.accepted else [], out.candles + tick.candles,
                    out.rolling + tick.rolling, metrics=[kpi])  # fmt: skip
    store.write(candles=engine.flush(end + 60 * S))
    alert = Alert(rule="quiet", severity="critical", state="firing",
                  labels={"exchange": "", "symbol": "", "source": "venue"}, value=200.0,
                  message="no trades", since=end - S, updated=end - S)  # fmt: skip
    store.write(events=[
        (end - S, "alert", "quiet", msgspec.json.encode(alert_json(alert)).decode()),
        (end - 2 * S, "disconnect", "venue", '{"reason": "test"}'),
    ])  # fmt: skip
    # A 10% jump of one instrument within the last five minutes, as a separate exchange.
    store.write(candles=[c for c in _jump(end)])
    store.close()
    return postgres_dsn, start // S, end // S


def _jump(end: int):
    from tickpipe.records import Candle

    for i, price in enumerate([100.0, 100.0, 110.0]):
        start = end - (3 - i) * 60 * S
        start -= start % (60 * S)
        yield Candle(exchange="jumpx", symbol="JMP-USDT", interval="1m", start=start,
                     open=price, high=price, low=price, close=price, volume=1.0,
                     quote_volume=price, vwap=price, mean_price=price, trades=1, buy_volume=1.0,
                     sell_volume=0.0, first_seq=i, last_seq=i, final=True, revision=0,
                     updated_at=end)  # fmt: skip


def run(dsn: str, sql: str) -> tuple[list[str], list[tuple]]:
    with psycopg.connect(dsn) as con:
        cur = con.execute(sql)
        return [d.name for d in cur.description], cur.fetchall()


def test_every_dashboard_query_runs_on_the_real_schema_and_finds_the_data(filled):
    dsn, start_s, end_s = filled
    for name, dash in dashboards().items():
        variables: dict[str, str] = {}
        for var in dash["templating"]["list"]:  # in order: later ones use earlier ones
            _cols, rows = run(dsn, expand(var["query"], start_s, end_s, variables))
            values = [r[0] for r in rows]
            assert values, f"{name}: variable {var['name']} has no values"
            variables[var["name"]] = "venue" if "venue" in values else values[0]
        for panel in dash["panels"]:
            for target in panel["targets"]:
                sql = expand(target["rawSql"], start_s - 3600, end_s + 60, variables)
                cols, rows = run(dsn, sql)
                assert rows, f"{name}: panel {panel['title']!r} found nothing"
                if target["format"] == "time_series":
                    assert cols[0] == "time"
                    times = [r[0] for r in rows]
                    assert times == sorted(times), f"{name}: {panel['title']!r} not in order"


def reduce_and_compare(rule: dict, rows: list[tuple], cols: list[str]) -> dict[str, bool]:
    """B (reduce) and C (threshold) as Grafana applies them to a table with one number."""
    steps = {d["refId"]: d["model"] for d in rule["data"]}
    threshold = steps[rule["condition"]]["conditions"][0]["evaluator"]
    # The one numeric column is the value; the text columns are the series' labels.
    value_col = next((i for i, r in enumerate(rows[0]) if not isinstance(r, str)), 0) if rows else 0
    out = {}
    for row in rows:
        label = "/".join(str(v) for i, v in enumerate(row) if i != value_col)
        value = float(row[value_col])
        (limit,) = threshold["params"]
        out[label] = value > limit if threshold["type"] == "gt" else value < limit
    return out


def test_every_alert_rule_query_runs_and_fires_on_what_was_planted(filled):
    dsn, _start_s, end_s = filled
    firing: dict[str, dict[str, bool]] = {}
    for group in alert_groups():
        for rule in group["rules"]:
            (query,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
            span = query["relativeTimeRange"]["from"]
            sql = expand(query["model"]["rawSql"], end_s + 1 - span, end_s + 1, {})
            cols, rows = run(dsn, sql)
            firing[rule["uid"]] = reduce_and_compare(rule, rows, cols)
    assert firing["tickpipe-lag-high"] == {"process-1": True}
    assert firing["tickpipe-no-trades"] == {"process-1": False}  # trades were stored
    assert firing["tickpipe-price-move"]["jumpx:JMP-USDT"] is True
    assert not any(v for k, v in firing["tickpipe-price-move"].items() if k.startswith("venue"))
    assert firing["tickpipe-source-disconnects"] == {"venue": False}  # one is not "keeps"
