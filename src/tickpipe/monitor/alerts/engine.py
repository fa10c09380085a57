"""The alert engine: rules evaluated on an observation of the pipeline, one alert per key.

An alert is keyed by (rule, labels), so a condition that stays true is one alert, not one per
evaluation (de-duplication). It goes pending when its condition first holds, firing once the
condition has held for the rule's `for`, and resolved when the condition clears; a pending
alert whose condition clears is dropped, as Prometheus does. Notifications go out on firing,
on resolved, and again every `renotify_every` while firing.

The engine has no clock and no I/O: each observation carries its time (`now`, µs), so tests
drive hours of scripted time in milliseconds, and the caller decides where notifications go.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from tickpipe.durations import format_duration
from tickpipe.monitor.alerts.config import AlertRule

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
S = 1_000_000


class Alert(msgspec.Struct, kw_only=True):
    """One alert as the API, the store and the notifiers see it (times in µs)."""

    rule: str
    severity: str
    state: str
    labels: dict[str, str]  # exchange, symbol, source ("" where the rule has none)
    value: float
    message: str
    since: int  # when it entered `state`
    updated: int  # last evaluation that saw it
    started: int = 0  # when the condition first held (pending or firing)
    notified: int = 0  # last notification sent (0: never)


@dataclass
class SourceView:
    """What the monitor knows about one source at observation time."""

    connected: bool
    last_trade: int | None = None  # µs, local clock, of the last trade received
    down_since: int | None = None  # µs, when it was last seen disconnected (None: connected)


@dataclass(frozen=True)
class VenueView:
    """One venue of a composite (the consolidated price) at observation time."""

    composite: str  # the composite symbol, e.g. BTC-USD
    deviation_pct: float  # its latest price against the composite
    stale_s: float  # since its latest trade was received


@dataclass
class Observation:
    """The pipeline's state at `now`, as the rules read it."""

    now: int
    lag_s: float | None = None  # processing lag over the last period; None: nothing to say
    sources: dict[str, SourceView] = field(default_factory=dict)
    prices: dict[tuple[str, str], float] = field(default_factory=dict)  # (exchange, symbol)
    venues: dict[tuple[str, str], VenueView] = field(default_factory=dict)  # of composites


def _labels(exchange: str = "", symbol: str = "", source: str = "") -> dict[str, str]:
    return {"exchange": exchange, "symbol": symbol, "source": source}


def matches(rule: AlertRule, exchange: str, symbol: str) -> bool:
    """`symbols` entries are `SYMBOL` (any exchange) or `exchange:SYMBOL`; none: every one."""
    if not rule.symbols:
        return True
    return symbol in rule.symbols or f"{exchange}:{symbol}" in rule.symbols


class AlertEngine:
    """Evaluates `rules` on each observation; keeps active alerts and a bounded history."""

    def __init__(
        self, rules: Iterable[AlertRule], renotify_us: int, history: int, started: int
    ) -> None:
        self.rules = list(rules)
        self.renotify_us = renotify_us
        self.started = started  # a source never heard from counts as silent since start-up
        self.active: dict[tuple[str, tuple[tuple[str, str], ...]], Alert] = {}
        self.history: deque[Alert] = deque(maxlen=history)
        # (exchange, symbol) -> (time, price) samples for price_move rules
        self._prices: dict[tuple[str, str], deque[tuple[int, float]]] = {}
        self._window_us = max(
            (r.window_us for r in self.rules if r.kind == "price_move"), default=0
        )

    def evaluate(self, obs: Observation) -> list[Alert]:
        """Advance every alert to `obs.now`; the alerts to notify about (copies)."""
        self._remember_prices(obs)
        out: list[Alert] = []
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for rule in self.rules:
            for labels, value, holds, message in self._conditions(rule, obs):
                key = (rule.name, tuple(sorted(labels.items())))
                seen.add(key)
                if holds:
                    self._holds(rule, key, labels, value, message, obs.now, out)
                else:
                    self._clears(key, value, message, obs.now, out)
        for key in [k for k in self.active if k not in seen]:
            alert = self.active[key]
            self._clears(key, alert.value, alert.message, obs.now, out)
        return out

    # -- state machine ---------------------------------------------------------------------

    def _holds(self, rule, key, labels, value, message, now, out) -> None:
        alert = self.active.get(key)
        if alert is None:
            alert = Alert(
                rule=rule.name, severity=rule.severity, state=PENDING, labels=labels,
                value=value, message=message, since=now, updated=now, started=now,
            )  # fmt: skip
            self.active[key] = alert
            self._record(alert)
        alert.value, alert.message, alert.updated = value, message, now
        if alert.state == PENDING and now - alert.started >= rule.for_us:
            alert.state, alert.since, alert.notified = FIRING, now, now
            self._record(alert)
            out.append(msgspec.structs.replace(alert))
        elif alert.state == FIRING and now - alert.notified >= self.renotify_us:
            alert.notified = now
            out.append(msgspec.structs.replace(alert))

    def _clears(self, key, value, message, now, out) -> None:
        alert = self.active.pop(key, None)
        if alert is None or alert.state == PENDING:
            return
        alert.state, alert.since, alert.updated, alert.value = RESOLVED, now, now, value
        alert.message = f"resolved: {message}"
        self._record(alert)
        out.append(msgspec.structs.replace(alert))

    def _record(self, alert: Alert) -> None:
        self.history.append(msgspec.structs.replace(alert))

    # -- conditions ------------------------------------------------------------------------

    def _conditions(self, rule: AlertRule, obs: Observation):
        """(labels, value, holds, message) for every subject the rule looks at."""
        t = rule.threshold
        if rule.kind == "lag":
            if obs.lag_s is not None:
                v = obs.lag_s
                yield _labels(), v, v > t, f"processing lag {v:.1f}s (threshold {t:g}s)"
            return
        if rule.kind in ("silence", "disconnected"):
            for name, src in obs.sources.items():
                if rule.sources and name not in rule.sources:
                    continue
                if rule.kind == "silence":
                    last = src.last_trade if src.last_trade is not None else self.started
                    v = (obs.now - last) / S
                    text = f"no trades from {name} for {v:.0f}s (threshold {t:g}s)"
                else:
                    down = None if src.connected else src.down_since
                    v = 0.0 if down is None else (obs.now - down) / S
                    text = f"{name} disconnected for {v:.0f}s (threshold {t:g}s)"
                yield _labels(source=name), v, v > t, text
            return
        if rule.kind in ("venue_deviation", "venue_stale"):
            for (exchange, symbol), venue in obs.venues.items():
                if not matches(rule, exchange, symbol):
                    continue
                where = f"{symbol} on {exchange}"
                if rule.kind == "venue_deviation":
                    v = venue.deviation_pct
                    text = (f"{where} is {v:+.2f}% from the {venue.composite} composite "
                            f"(threshold {t:g}%)")  # fmt: skip
                    yield _labels(exchange, symbol), v, abs(v) > t, text
                else:
                    v = venue.stale_s
                    text = f"{where}: no trade for {v:.0f}s (threshold {t:g}s)"
                    yield _labels(exchange, symbol), v, v > t, text
            return
        for (exchange, symbol), price in obs.prices.items():
            if not matches(rule, exchange, symbol):
                continue
            labels = _labels(exchange, symbol)
            where = f"{symbol} on {exchange}"
            if rule.kind == "price_above":
                yield labels, price, price > t, f"{where} at {price:g}, above {t:g}"
            elif rule.kind == "price_below":
                yield labels, price, price < t, f"{where} at {price:g}, below {t:g}"
            elif rule.kind == "price_move":
                move = self._move(exchange, symbol, obs.now, rule.window_us)
                if move is not None:
                    within = format_duration(rule.window_us)
                    text = f"{where} moved {move:+.2f}% within {within} (threshold {t:g}%)"
                    yield labels, move, abs(move) > t, text

    def _remember_prices(self, obs: Observation) -> None:
        if not self._window_us:
            return
        for key, price in obs.prices.items():
            samples = self._prices.setdefault(key, deque())
            samples.append((obs.now, price))
            # Keep one sample at or before the longest window's start: the base of the move.
            while len(samples) > 1 and samples[1][0] <= obs.now - self._window_us:
                samples.popleft()

    def _move(self, exchange: str, symbol: str, now: int, window_us: int) -> float | None:
        """Percent change from the price `window_us` ago (or the oldest one since) to now."""
        samples = self._prices.get((exchange, symbol))
        if not samples or len(samples) < 2:
            return None
        base = samples[0][1]
        for ts, price in samples:
            if ts >= now - window_us:
                break
            base = price
        last = samples[-1][1]
        return (last - base) / base * 100 if base else None
