"""What the pipeline keeps beside trades and candles: rolling statistics, events and KPIs, and
the reads over trades the API's summaries make (the analytics: test_analytics.py)."""

from __future__ import annotations

import msgspec

from stores.rows import T0, M, trade
from tickpipe.records import PipelineMetric, RollingStat, TradeBatch
from tickpipe.stores.base import Store


def stat(ts: int, avg: float = 1.5) -> RollingStat:
    return RollingStat(exchange="ex", symbol="BTC-USDT", ts=ts, avg_close_30m=avg,
                       min_price_5m=1.0, max_price_5m=2.0, avg_price_5m=1.4)  # fmt: skip


def metric(ts: int, process: str = "p1", trades: int = 500) -> PipelineMetric:
    return PipelineMetric(ts=ts, process=process, period_s=5.0, trades=trades,
                          trades_per_s=100.0, candles=12, lag_p50_ms=3.5, lag_p99_ms=40.0,
                          queue_depth=7)  # fmt: skip


def test_rolling_statistics_are_kept_newest_first_and_upserted(store: Store) -> None:
    store.write(rolling=[stat(T0), stat(T0 + M)])
    store.write(rolling=[stat(T0 + M, avg=2.5)])
    assert store.rolling_history("ex", "BTC-USDT", 10) == [
        msgspec.structs.asdict(stat(T0 + M, avg=2.5)), msgspec.structs.asdict(stat(T0)),
    ]  # fmt: skip
    assert store.rolling_history("ex", "BTC-USDT", 1) == [msgspec.structs.asdict(stat(T0 + M, 2.5))]
    assert store.rolling_history("ex", "ETH-USDT", 10) == []


def test_events_are_kept_and_read_newest_first_by_kind(store: Store) -> None:
    store.write(events=[(T0, "gap", "binance", "seq 5-9"), (T0 + 1, "disconnect", "b", "eof"),
                        (T0 + 2, "gap", "okx", '{"x": 1}')])  # fmt: skip
    assert store.events("gap", 10) == [(T0 + 2, "gap", "okx", '{"x": 1}'),
                                       (T0, "gap", "binance", "seq 5-9")]  # fmt: skip
    assert store.events("gap", 1) == [(T0 + 2, "gap", "okx", '{"x": 1}')]
    assert store.events("alert", 10) == []
    assert store.totals()["events"] == {"disconnect": 1, "gap": 2}


def test_kpis_are_kept_per_process_the_last_write_of_a_period_wins(store: Store) -> None:
    store.write(metrics=[metric(T0, process="p2"), metric(T0 + M), metric(T0)])
    store.write(metrics=[metric(T0 + M, trades=600)])
    assert store.metrics_since(T0, 10) == [  # newest first, a tie in ts by process
        metric(T0 + M, trades=600), metric(T0), metric(T0, process="p2"),
    ]  # fmt: skip
    assert store.metrics_since(T0 + 1, 10) == [metric(T0 + M, trades=600)]
    assert store.metrics_since(T0, 10, process="p2") == [metric(T0, process="p2")]
    assert store.metrics_since(T0, 1, process="p1") == [metric(T0 + M, trades=600)]


def test_trade_summaries(store: Store) -> None:
    trades = [trade(1, T0, price=10.0, size=2.0), trade(2, T0 + M, price=12.0, side="sell"),
              trade(3, T0 + 5, exchange="b", symbol="XRP-USDT", price=0.5, size=10.0)]  # fmt: skip
    store.write([TradeBatch.from_trades(trades)])
    assert store.instrument_summary() == [("b", "XRP-USDT", 1, T0 + 5, T0 + 5),
                                          ("ex", "BTC-USDT", 2, T0, T0 + M)]  # fmt: skip
    totals = store.totals()
    assert (totals["stored_trades"], totals["stored_candles"]) == (3, 0)
    assert (totals["last_trade_ts"], totals["last_recv_ts"]) == (T0 + M, T0 + M + 1234)
    assert not store.has_instrument("ex", "BTC-USDT")  # an instrument is known by its candles
    assert not store.has_exchange("ex")
