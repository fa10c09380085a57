"""Metrics: numpy-batched histograms and labelled counts agree with prometheus-client's own
per-value implementation, and the exposition parses with the Prometheus text parser."""

from __future__ import annotations

from collections import Counter as Tally

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.examples import example_status
from tickpipe.monitor.metrics import LAG_BUCKETS, BatchHistogram, PipelineMetrics
from tickpipe.records import Gap, Trade, TradeBatch
from tickpipe.runtime.status import InstrumentStatus
from tickpipe.sources.simulated import MarketSimulator


def samples(text: str, family: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == family:
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_batch_histogram_equals_prometheus_clients_histogram_fed_one_value_at_a_time():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.exponential(0.3, 5000), [0.005, 0.1, 300.0, 1e6, 0.0]])
    batched = BatchHistogram("lag_seconds", "lag", LAG_BUCKETS)
    for part in np.array_split(values, 7):
        batched.observe_many(part)
    mine, theirs = CollectorRegistry(), CollectorRegistry()
    mine.register(batched)
    reference = Histogram("lag_seconds", "lag", buckets=LAG_BUCKETS, registry=theirs)
    for v in values.tolist():
        reference.observe(v)
    got = samples(generate_latest(mine).decode(), "lag_seconds")
    want = {k: v for k, v in samples(generate_latest(theirs).decode(), "lag_seconds").items()
            if not k[0].endswith("_created")}  # fmt: skip
    assert got.keys() == want.keys()
    for key in want:
        assert abs(got[key] - want[key]) <= 1e-9 * max(1.0, abs(want[key])), key


def test_trades_received_are_counted_per_source_exchange_and_symbol_once_per_batch():
    market = MarketSimulator(12, 5000.0, seed=5, exchange="venue", source="feed")
    metrics = PipelineMetrics()
    tally: Tally[tuple[str, str, str]] = Tally()
    for t in range(10):
        batch = market.span(t * 1_000_000, (t + 1) * 1_000_000)
        metrics.observe_received(batch, float(t))
        for trade in batch.to_trades():
            tally[(trade.source, trade.exchange, trade.symbol)] += 1
    got = samples(metrics.render().decode(), "tickpipe_trades_received")
    counted = {
        (lab["source"], lab["exchange"], lab["symbol"]): v
        for (name, labels), v in got.items() if name.endswith("_total")
        for lab in [dict(labels)]
    }  # fmt: skip
    assert counted == {k: float(v) for k, v in tally.items()}
    assert len(counted) == 12


def test_stored_trades_count_per_symbol_and_lag_is_now_minus_event_time():
    metrics = PipelineMetrics()
    now = 1_800_000_000_000_000
    trades = [Trade(source="s", exchange="x", symbol=sym, trade_id=str(i), seq=i, price=1.0,
                    size=1.0, ts=now - lag_us, recv_ts=now - lag_us // 2)
              for i, (sym, lag_us) in enumerate([("A-B", 2_000_000), ("A-B", 500_000),
                                                  ("C-D", 70_000_000)])]  # fmt: skip
    lags = metrics.observe_stored([TradeBatch.from_trades(trades)], 4, 0.01, now)
    assert sorted(lags.tolist()) == [0.5, 2.0, 70.0]
    text = metrics.render().decode()
    stored = samples(text, "tickpipe_trades_stored")
    assert stored[("tickpipe_trades_stored_total", (("exchange", "x"), ("symbol", "A-B")))] == 2
    assert stored[("tickpipe_trades_stored_total", (("exchange", "x"), ("symbol", "C-D")))] == 1
    lag = samples(text, "tickpipe_processing_lag_seconds")
    assert lag[("tickpipe_processing_lag_seconds_bucket", (("le", "1.0"),))] == 1
    assert lag[("tickpipe_processing_lag_seconds_bucket", (("le", "60.0"),))] == 2
    assert lag[("tickpipe_processing_lag_seconds_count", ())] == 3
    assert lag[("tickpipe_processing_lag_seconds_sum", ())] == 72.5
    e2e = samples(text, "tickpipe_end_to_end_latency_seconds")
    assert e2e[("tickpipe_end_to_end_latency_seconds_sum", ())] == 36.25
    assert samples(text, "tickpipe_candles_written")[("tickpipe_candles_written_total", ())] == 4


def test_every_metric_family_the_issue_names_is_exposed_and_parses():
    metrics = PipelineMetrics()
    row = InstrumentStatus(exchange="x", symbol="A-B", last_price=2.0, last_trade_us=1_500_000,
                           lag_ms=5.0, trades_per_s=1.0, trades=3, candle=None)  # fmt: skip
    metrics.watch(lambda: example_status(queue_depth=7, instruments=(row,)))
    metrics.observe_gap(Gap(source="s", exchange="x", symbol="A-B", first_missing=5,
                            last_missing=9, ts=1, recovered=5))  # fmt: skip
    metrics.kafka_consumer_lag.labels("trades", "0").set(12)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    expected = {
        "tickpipe_trades_received": "counter", "tickpipe_trades_stored": "counter",
        "tickpipe_malformed_messages": "counter", "tickpipe_gaps": "counter",
        "tickpipe_backfilled_trades": "counter", "tickpipe_reconnects": "counter",
        "tickpipe_queue_depth_trades": "gauge", "tickpipe_processing_lag_seconds": "histogram",
        "tickpipe_end_to_end_latency_seconds": "histogram", "tickpipe_candles_written": "counter",
        "tickpipe_late_trades": "counter", "tickpipe_kafka_consumer_lag": "gauge",
        "tickpipe_store_write_seconds": "histogram", "tickpipe_source_connected": "gauge",
        "tickpipe_last_trade_timestamp_seconds": "gauge",
    }  # fmt: skip
    assert {name: families[name].type for name in expected} == expected
    assert families["tickpipe_queue_depth_trades"].samples[0].value == 7
    assert families["tickpipe_last_trade_timestamp_seconds"].samples[0].value == 1.5
    backfilled = [s for s in families["tickpipe_backfilled_trades"].samples
                  if s.name.endswith("_total")]  # fmt: skip
    assert backfilled[0].value == 5
    lag = families["tickpipe_kafka_consumer_lag"].samples[0]
    assert lag.labels == {"topic": "trades", "partition": "0"} and lag.value == 12


def test_two_pipelines_keep_separate_registries():
    a, b = PipelineMetrics(), PipelineMetrics()
    a.candles_written.inc(3)
    assert "tickpipe_candles_written_total 3.0" in a.render().decode()
    assert "tickpipe_candles_written_total 0.0" in b.render().decode()
