"""The composite's alert kinds: a venue deviating from the composite by more than X %, and a
venue of a composite going stale, on scripted observations (no clock, no sleeping)."""

from __future__ import annotations

from tickpipe.config import ConfigError, load_config
from tickpipe.monitor.alerts.config import AlertRule
from tickpipe.monitor.alerts.engine import FIRING, RESOLVED, AlertEngine, Observation, VenueView

S = 1_000_000
T0 = 1_800_000_000 * S


def run(rule: AlertRule, script: list[dict[tuple[str, str], VenueView]]) -> list[tuple]:
    """One evaluation per second of `script`; (second, state, exchange, value) per change."""
    engine = AlertEngine([rule], 3600 * S, 100, started=T0)
    out = []
    for second, venues in enumerate(script):
        for a in engine.evaluate(Observation(now=T0 + second * S, venues=venues)):
            out.append((second, a.state, a.labels["exchange"], round(a.value, 2)))
    return out


def test_a_venue_deviating_beyond_the_threshold_fires_for_its_duration_then_resolves() -> None:
    rule = AlertRule(name="off", kind="venue_deviation", threshold=2.0, for_us=2 * S)
    ok = {("binance", "BTC-USDT"): VenueView("BTC-USD", 0.1, 1.0),
          ("kraken", "BTC-USD"): VenueView("BTC-USD", -0.5, 1.0)}  # fmt: skip
    off = {**ok, ("kraken", "BTC-USD"): VenueView("BTC-USD", -3.5, 1.0)}
    assert run(rule, [ok, off, off, off, off, ok]) == [
        (3, FIRING, "kraken", -3.5),  # held for 2 s: fires; below -2% counts too
        (5, RESOLVED, "kraken", -0.5),
    ]


def test_a_stale_venue_fires_and_symbols_narrow_the_rule() -> None:
    rule = AlertRule(name="stale", kind="venue_stale", threshold=30, symbols=["kraken:BTC-USD"])
    venues = {("kraken", "BTC-USD"): VenueView("BTC-USD", 0.0, 45.0),
              ("binance", "BTC-USDT"): VenueView("BTC-USD", 0.0, 99.0)}  # fmt: skip
    assert run(rule, [venues]) == [(0, FIRING, "kraken", 45.0)]


def test_a_venue_rule_without_a_threshold_is_a_one_line_config_error() -> None:
    env = {"TICKPIPE_ALERTS_RULES": '[{"name": "x", "kind": "venue_deviation", "threshold": 0}]'}
    try:
        load_config(env=env)
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("accepted")
    assert message.startswith("config error: alerts.rules[0].threshold = 0.0")
    assert "percent; fires while a venue's price is this far from the composite" in message
