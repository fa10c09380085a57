"""The alert engine on scripted streams: trades, stored-trade lags and connection states fed
through the monitor's PipelineState at an injected clock, evaluated every second, as the
pipeline does (hours of scripted time, no sleeping)."""

from __future__ import annotations

import numpy as np

from tickpipe.monitor.alerts.config import AlertRule, default_rules
from tickpipe.monitor.alerts.engine import FIRING, PENDING, RESOLVED, AlertEngine
from tickpipe.monitor.state import PipelineState
from tickpipe.records import Trade, TradeBatch

S = 1_000_000
T0 = 1_800_000_000 * S
HOUR = 3600 * S


def batch(source: str, prices: dict[tuple[str, str], float], now: int) -> TradeBatch:
    trades = [
        Trade(source=source, exchange=exchange, symbol=symbol, trade_id=str(i), seq=i,
              price=price, size=1.0, ts=now, recv_ts=now)
        for i, ((exchange, symbol), price) in enumerate(prices.items())
    ]  # fmt: skip
    return TradeBatch.from_trades(trades, source)


class Script:
    """Evaluates once per scripted second; keeps every notification with its time."""

    def __init__(self, rules: list[AlertRule], renotify: int = HOUR, history: int = 1000):
        self.state = PipelineState()
        self.engine = AlertEngine(rules, renotify, history, started=T0)
        self.sent: list = []
        self.now = T0

    def second(self, busy: bool = False) -> None:
        self.now += S
        for alert in self.engine.evaluate(self.state.observation(self.now, busy)):
            self.sent.append(alert)

    def trade(self, source: str = "binance", prices=None) -> None:
        """A batch from `source`; the engine's newest price per instrument becomes `prices`."""
        prices = prices or {("binance", "BTC-USDT"): 100.0}
        self.state.on_received(batch(source, prices, self.now), self.now)
        self.state.on_prices({**self.state.prices, **prices})

    def stored_with_lag(self, lag_s: float, n: int = 50) -> None:
        """A flush of `n` trades whose event times lie `lag_s` behind now."""
        ts = self.now - int(lag_s * S)
        stored = TradeBatch.from_trades(
            [Trade(source="binance", exchange="binance", symbol="BTC-USDT", trade_id=str(i),
                   seq=i, price=1.0, size=1.0, ts=ts, recv_ts=ts) for i in range(n)]
        )  # fmt: skip
        self.state.on_stored([stored], (self.now - stored.ts) / S)


def rule(name: str) -> AlertRule:
    return next(r for r in default_rules() if r.name == name)


def test_a_silent_source_fires_critical_after_three_minutes_and_resolves_when_trades_return():
    script = Script([rule("source-silent")])
    for _ in range(60):
        script.trade()
        script.second()
    last_trade = script.now - S
    while script.now < last_trade + 10 * 60 * S:  # ten silent minutes
        script.second()
    fired = [a for a in script.sent if a.state == FIRING]
    assert len(fired) == 1  # one alert for the whole silence, not one per evaluation
    alert = fired[0]
    assert alert.rule == "source-silent" and alert.severity == "critical"
    assert alert.labels == {"exchange": "", "symbol": "", "source": "binance"}
    assert last_trade + 180 * S < alert.since <= last_trade + 181 * S
    assert alert.value > 180
    script.trade()
    script.second()
    assert script.sent[-1].state == RESOLVED and script.sent[-1].since == script.now
    assert not script.engine.active


def test_a_source_never_heard_from_counts_as_silent_since_start_up():
    script = Script([rule("source-silent")])
    script.state.on_source("kraken", connected=True, now=T0)
    for _ in range(200):
        script.second()
    fired = [a for a in script.sent if a.state == FIRING]
    assert [a.labels["source"] for a in fired] == ["kraken"]
    assert fired[0].since == T0 + 181 * S


def test_a_lagging_processor_goes_pending_then_fires_after_one_minute_then_resolves():
    script = Script([rule("processing-lag")])
    for _ in range(120):
        script.stored_with_lag(5.0)
        script.second()
    assert not script.sent and not script.engine.active
    lag_from = script.now + S
    for _ in range(120):
        script.stored_with_lag(90.0)
        script.second()
    history = list(script.engine.history)
    assert [a.state for a in history] == [PENDING, FIRING]
    assert history[0].since == lag_from
    assert history[1].since == lag_from + 60 * S  # `for = "1m"` of the default rule
    assert [a.state for a in script.sent] == [FIRING]
    assert script.sent[0].severity == "warning" and 89 < script.sent[0].value < 91
    script.stored_with_lag(1.0)
    script.second()
    assert [a.state for a in script.sent] == [FIRING, RESOLVED]


def test_lag_over_the_threshold_for_less_than_one_minute_never_notifies():
    script = Script([rule("processing-lag")])
    for _ in range(30):
        script.stored_with_lag(90.0)
        script.second()
    script.stored_with_lag(2.0)
    script.second()
    assert script.sent == []
    assert [a.state for a in script.engine.history] == [PENDING]
    assert not script.engine.active


def test_a_stuck_processor_with_trades_waiting_shows_a_growing_lag_and_fires():
    script = Script([rule("processing-lag")])
    script.stored_with_lag(0.5)
    script.second()
    for _ in range(200):  # nothing more is stored while the queue holds trades
        script.second(busy=True)
    fired = [a for a in script.sent if a.state == FIRING]
    assert len(fired) == 1 and fired[0].value > 120


def test_a_price_jump_beyond_the_move_threshold_fires_for_that_symbol_only():
    move = AlertRule(name="jump", kind="price_move", threshold=5.0, window_us=60 * S,
                     severity="critical")  # fmt: skip
    script = Script([move])
    btc, eth = ("binance", "BTC-USDT"), ("binance", "ETH-USDT")
    for _ in range(120):
        script.trade(prices={btc: 100.0, eth: 2000.0})
        script.second()
    assert script.sent == []
    for _ in range(10):
        script.trade(prices={btc: 107.0, eth: 2010.0})  # +7% and +0.5%
        script.second()
    fired = [a for a in script.sent if a.state == FIRING]
    assert [a.labels["symbol"] for a in fired] == ["BTC-USDT"]
    assert 6.9 < fired[0].value < 7.1
    for _ in range(70):  # the jump leaves the one-minute window
        script.trade(prices={btc: 107.0, eth: 2010.0})
        script.second()
    assert [a.state for a in script.sent] == [FIRING, RESOLVED]


def test_a_price_drop_counts_as_a_move_too():
    move = AlertRule(name="drop", kind="price_move", threshold=3.0, window_us=30 * S)
    script = Script([move])
    for price in [100.0] * 40 + [96.0] * 3:
        script.trade(prices={("okx", "SOL-USDT"): price})
        script.second()
    fired = [a for a in script.sent if a.state == FIRING]
    assert len(fired) == 1 and -4.1 < fired[0].value < -3.9


def test_price_thresholds_fire_above_and_below_for_the_named_exchange_and_symbol():
    above = AlertRule(name="btc-high", kind="price_above", threshold=110.0,
                      symbols=["binance:BTC-USDT"])  # fmt: skip
    below = AlertRule(name="btc-low", kind="price_below", threshold=90.0, symbols=["BTC-USDT"])
    script = Script([above, below])
    path = [100.0, 105.0, 111.0, 112.0, 100.0, 89.0, 95.0]
    for price in path:
        script.trade(prices={("binance", "BTC-USDT"): price, ("kraken", "BTC-USDT"): 120.0})
        script.second()
    states = [(a.rule, a.labels["exchange"], a.state, a.value) for a in script.sent]
    assert states == [
        ("btc-high", "binance", FIRING, 111.0),  # kraken is above too, but not named
        ("btc-high", "binance", RESOLVED, 100.0),
        ("btc-low", "binance", FIRING, 89.0),
        ("btc-low", "binance", RESOLVED, 95.0),
    ]


def test_a_source_disconnected_longer_than_the_threshold_fires_and_reconnecting_resolves():
    script = Script([rule("source-disconnected")])
    script.state.on_source("coinbase", connected=True, now=script.now)
    script.second()
    down_at = script.now
    for _ in range(60):
        script.state.on_source("coinbase", connected=False, now=script.now)
        script.second()
    fired = [a for a in script.sent if a.state == FIRING]
    assert len(fired) == 1 and fired[0].labels["source"] == "coinbase"
    assert down_at + 30 * S < fired[0].since <= down_at + 32 * S
    script.state.on_source("coinbase", connected=True, now=script.now)
    script.second()
    assert script.sent[-1].state == RESOLVED


def test_a_firing_alert_is_one_alert_renotified_every_interval_until_it_resolves():
    script = Script([rule("source-silent")], renotify=HOUR)
    script.trade()
    script.second()
    for _ in range(3 * 3600 + 300):  # three hours and five minutes of silence
        script.second()
    assert len(script.engine.active) == 1
    firing = [a for a in script.sent if a.state == FIRING]
    # First at 181 s, then once per hour while it lasts.
    expected = 1 + (script.now - firing[0].since) // HOUR
    assert len(firing) == expected == 4  # at 3 min, then 1 h, 2 h and 3 h later
    gaps = np.diff([a.notified for a in firing])
    assert (gaps == HOUR).all()


def test_the_history_is_bounded():
    above = AlertRule(name="flip", kind="price_above", threshold=100.0, symbols=["BTC-USDT"])
    script = Script([above], history=7)
    for i in range(100):
        script.trade(prices={("binance", "BTC-USDT"): 101.0 if i % 2 else 99.0})
        script.second()
    assert len(script.engine.history) == 7
    assert len(script.sent) == 99  # 50 firings and 49 resolutions, each notified
