"""The monitor inside a real embedded pipeline (real DuckDB store, real engine and writer):
a source that trades and then falls silent raises an alert that reaches a local webhook and
SMTP server and is kept in the store; metrics and KPIs agree with what the store holds.
Alert timing (`for`) and the KPI cadence are checked tick by tick on a ManualClock."""

from __future__ import annotations

import asyncio
import email
import os
import socket
import subprocess
import sys
import time

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.monitor.receivers import HttpReceiver, SmtpReceiver, free_port
from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.durations import MicrosOrZero
from tickpipe.engine.candles import CandleEngine
from tickpipe.monitor.alerts.config import AlertRule, AlertsConfig, MonitorConfig
from tickpipe.monitor.service import Monitor
from tickpipe.records import Trade, TradeBatch
from tickpipe.runners.embedded import Pipeline
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.status import StatusBoard
from tickpipe.runtime.writer import StoreWriter
from tickpipe.sources import Link, SourceContext, SourceStats
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.transport.memory import MemoryTransport


class TradesThenSilence:
    """Trades for `seconds` through the real emit path, then a live connection with no trades."""

    name = "scripted"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.market = MarketSimulator(["BTC-USDT", "ETH-USDT", "SOL-USDT"], 400.0, seed=9,
                                      exchange="venue", source="scripted")  # fmt: skip

    async def run(self, ctx: SourceContext) -> None:
        ctx.stats.connected = True
        end = time.monotonic() + self.seconds
        last = time.time_ns() // 1000
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
            now = time.time_ns() // 1000
            batch = self.market.span(last, now)
            last = now
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
        await asyncio.sleep(3600)


async def scrape(port: int) -> str:
    """/metrics on the monitor's own port, while the pipeline runs."""
    await asyncio.sleep(1.0)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as answer,
    ):
        return await answer.text()


def test_a_silent_source_alerts_through_webhook_and_email_and_metrics_agree_with_the_store(
    tmp_path, monkeypatch
):
    with SmtpReceiver() as smtp:

        async def main():
            async with HttpReceiver() as rx:
                monkeypatch.setenv("TICKPIPE_ALERT_WEBHOOK_URL", rx.url + "/hook")
                config = Config(
                    data_dir=str(tmp_path),
                    monitor=MonitorConfig(kpi_every_us=300_000, metrics_port=port),
                    alerts=AlertsConfig(
                        evaluate_every_s=0.1, notifiers=["webhook", "email"],
                        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False,
                        email_from="tickpipe@example.org", email_to=["ops@example.org"],
                        rules=[AlertRule(name="quiet", kind="silence", threshold=1.0,
                                         severity="critical")],
                    ),
                )  # fmt: skip
                pipeline = Pipeline(config, [TradesThenSilence(1.5)], "run")
                scraper = asyncio.create_task(scrape(port))
                try:
                    await pipeline.run(duration=4.0)
                    own_port = await scraper
                    await rx.wait_for(1)
                    text = pipeline.monitor.metrics.render().decode()
                    body = pipeline.monitor.alerts_body()
                finally:
                    pipeline.close()
                return rx.received, text, body, own_port

        port = free_port()
        received, text, body, own_port = asyncio.run(main())
        deadline = time.monotonic() + 5
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        mails = list(smtp.messages)

    # The alert: fired once for the silent source, to both receivers, and kept.
    (path, hook) = received[0]
    assert path == "/hook" and hook["alert"]["rule"] == "quiet"
    assert hook["alert"]["state"] == "firing" and hook["alert"]["labels"]["source"] == "scripted"
    assert hook["alert"]["value"] > 1.0
    assert len(mails) == 1 and "quiet" in email.message_from_bytes(mails[0].content)["Subject"]
    assert [a["rule"] for a in body["active"]] == ["quiet"]
    assert [a["state"] for a in body["history"]] == ["firing", "pending"]  # newest first

    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        kept = store.query("SELECT source, detail FROM events WHERE kind = 'alert'")
        per_symbol = dict(store.query("SELECT symbol, count(*) FROM trades GROUP BY symbol"))
        kpis = store.query("SELECT trades, candles, lag_p50_ms, process FROM pipeline_metrics "
                           "ORDER BY ts")  # fmt: skip
        ((candles_stored,),) = store.query("SELECT count(*) FROM candles")
    finally:
        store.close()
    assert [(s, msgspec.json.decode(d)["state"]) for s, d in kept] == [("quiet", "firing")]

    # Metrics agree with the store, symbol by symbol.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    stored = {s.labels["symbol"]: s.value for s in families["tickpipe_trades_stored"].samples
              if s.name.endswith("_total")}  # fmt: skip
    received_ = {s.labels["symbol"]: s.value for s in families["tickpipe_trades_received"].samples
                 if s.name.endswith("_total")}  # fmt: skip
    assert stored == {k: float(v) for k, v in per_symbol.items()}
    assert received_ == stored  # simulated trades are unique: every one received is stored
    assert sum(per_symbol.values()) > 100
    firing = [s for s in families["tickpipe_alerts_firing"].samples if s.labels["rule"] == "quiet"]
    assert firing[0].value == 1
    # KPIs: several periods, adding up to what was stored.
    assert len(kpis) >= 5 and {k[3] for k in kpis} == {"embedded"}
    assert sum(k[0] for k in kpis) == sum(per_symbol.values())
    assert sum(k[1] for k in kpis) >= candles_stored
    assert any(k[2] > 0 for k in kpis)
    # The same metrics on their own port while it ran, and the port closed when it stopped.
    names = {f.name for f in text_string_to_metric_families(own_port)}
    assert {"tickpipe_trades_received", "tickpipe_processing_lag_seconds"} <= names
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


class PriceJump:
    """BTC-USDT trades at 100, then at 120 (+20%), through the real emit path."""

    name = "jumpy"

    async def run(self, ctx: SourceContext) -> None:
        ctx.stats.connected = True
        for i in range(40):
            await asyncio.sleep(0.05)
            price = 100.0 if i < 20 else 120.0
            now = time.time_ns() // 1000
            trade = Trade(source="jumpy", exchange="venue", symbol="BTC-USDT",
                          trade_id=str(i), seq=i, price=price, size=1.0, ts=now,
                          recv_ts=now)  # fmt: skip
            await ctx.emit(TradeBatch.from_trades([trade], "jumpy"))
        await asyncio.sleep(3600)


def test_a_price_jump_in_a_running_pipeline_fires_the_move_rule_for_that_symbol(
    tmp_path, monkeypatch
):
    async def main():
        async with HttpReceiver() as rx:
            monkeypatch.setenv("TICKPIPE_ALERT_WEBHOOK_URL", rx.url + "/hook")
            config = Config(
                data_dir=str(tmp_path),
                alerts=AlertsConfig(
                    evaluate_every_s=0.1, notifiers=["webhook"],
                    rules=[AlertRule(name="jump", kind="price_move", threshold=10.0,
                                     window_us=60_000_000, severity="critical")],
                ),
            )  # fmt: skip
            pipeline = Pipeline(config, [PriceJump()], "run")
            try:
                await pipeline.run(duration=3.5)
                await rx.wait_for(1)
            finally:
                pipeline.close()
            return rx.received

    received = asyncio.run(main())
    alerts = [body["alert"] for _path, body in received]
    assert [(a["rule"], a["state"]) for a in alerts] == [("jump", "firing")]
    assert alerts[0]["labels"] == {"exchange": "venue", "symbol": "BTC-USDT", "source": ""}
    assert 19.9 < alerts[0]["value"] < 20.1


def test_a_busy_metrics_port_stops_start_up_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
        env["TICKPIPE_MONITOR_METRICS_PORT"] = str(port)
        result = subprocess.run(
            [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--no-serve", "--duration",
             "1", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
            env=env, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"config error: monitor.metrics_port = {port}: cannot listen")
    assert result.stderr.count("\n") == 1


def test_a_failing_monitor_is_logged_once_and_the_pipeline_goes_on(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr("tickpipe.monitor.metrics.PipelineMetrics.observe_stored", broken)
    monkeypatch.setattr("tickpipe.monitor.service.Monitor.step", broken)
    config = Config(data_dir=str(tmp_path), alerts=AlertsConfig(evaluate_every_s=0.1))
    pipeline = Pipeline(config, [TradesThenSilence(1.0)], "run")
    try:
        asyncio.run(pipeline.run(duration=1.5))
    finally:
        pipeline.close()
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        ((stored,),) = store.query("SELECT count(*) FROM trades")
    finally:
        store.close()
    assert stored == pipeline.writer.written_trades > 0  # storage went on
    failures = [r.getMessage() for r in caplog.records if "monitor:" in r.getMessage()]
    assert len(failures) == 2  # once per kind, not once per flush or evaluation
    assert all("ZeroDivisionError: injected" in f for f in failures)


def test_ticks_on_a_manual_clock_fire_after_for_resolve_on_trades_and_keep_kpis_on_cadence(
    tmp_path,
):
    clock = ManualClock()
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store)
    stage = EngineStage(CandleEngine(Config().engine_config()), writer, DeadLetters(None), clock)
    stats = {"scripted": SourceStats(links=[Link(up=True)])}
    board = StatusBoard("run", stage, writer, MemoryTransport(100), stats, clock)
    config = Config(
        data_dir=str(tmp_path),
        monitor=MonitorConfig(kpi_every_us=1_000_000),
        alerts=AlertsConfig(notifiers=[], rules=[
            AlertRule(name="quiet", kind="silence", threshold=1.0,
                      for_us=MicrosOrZero(2_000_000), severity="critical"),
        ]),
    )  # fmt: skip
    monitor = Monitor(config, board.read, writer, clock=clock)
    market = MarketSimulator(["BTC-USDT"], 50.0, seed=4, exchange="venue", source="scripted")
    start = clock.now_us()

    def trades() -> None:
        batch = market.span(clock.now_us() - 500_000, clock.now_us())
        monitor.on_batch(batch)
        stage.process(batch)

    def quiet() -> str | None:
        return next((a.state for a in monitor.alerts.active.values() if a.rule == "quiet"), None)

    trades()
    states = []
    for _ in range(10):
        clock.advance(0.5)
        monitor.tick(clock.now_us())
        states.append(quiet())
    trades()
    monitor.tick(clock.now_us())
    states.append(quiet())
    writer.close()
    try:
        kpis = store.query("SELECT ts, period_s FROM pipeline_metrics ORDER BY ts")
        kept = store.query("SELECT ts, detail FROM events WHERE kind = 'alert' ORDER BY ts")
    finally:
        store.close()

    # Silent for more than 1 s at 1.5 s: pending; held for its 2 s `for`: firing at 3.5 s;
    # a trade clears it (resolved, no longer active).
    assert states == [None, None, *["pending"] * 4, *["firing"] * 4, None]
    assert [(ts - start, msgspec.json.decode(d)["state"]) for ts, d in kept] == [
        (3_500_000, "firing"), (5_000_000, "resolved"),
    ]  # fmt: skip
    # One KPI row per whole second of ticks, each covering exactly that second.
    assert [(ts - start, period) for ts, period in kpis] == [
        (k * 1_000_000, 1.0) for k in range(1, 6)
    ]
