"""The prequential evaluation of one instrument's forecasts: when a final candle closes, the
forecast made for it is scored first, then the model learns from it, then it forecasts the
next candle. A forecast never sees the candle it predicts.

Every forecaster is scored on the same candles (those the model forecast), so their numbers
compare. A candle repeated (a final candle sent again after a restart or a late correction)
or older than the last one seen is ignored: the forecasts are of candles as they first
closed. Windows without trades have no candle; the candle after such a gap is what the
dashboard shows for it, flat at the last close, so a forecast of that window is scored
against the last close, and the candle after the gap starts a new forecast.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from tickpipe.engine.windows import parse_window
from tickpipe.forecast.model import LAGS, ReturnModel, features, log_return_bp
from tickpipe.forecast.scores import LAST_CLOSE, LAST_MOVE, MODEL, ForecastPoint, Score
from tickpipe.records import Candle


def price_of(close: float, return_bp: float) -> float:
    """The price `return_bp` (log, bp) away from `close`."""
    return close * math.exp(return_bp / 1e4)


@dataclass
class _Pending:
    """The forecast made when a candle closed, waiting for the next one."""

    x: dict[str, float]
    start: int  # of the candle it is for
    predicted_bp: float
    low_bp: float
    high_bp: float
    last_bp: float  # the last return (the last-move forecast)


class Prequential:
    """Predict, then learn, over the final candles of one (exchange, symbol, interval)."""

    def __init__(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        step_us: int,
        model: Callable[[], ReturnModel] = ReturnModel,
    ) -> None:
        self.exchange, self.symbol, self.interval = exchange, symbol, interval
        self.step_us = step_us
        self.model = model()
        self.scores = {
            name: Score(exchange=exchange, symbol=symbol, interval=interval, forecaster=name)
            for name in (MODEL, LAST_CLOSE, LAST_MOVE)
        }
        self._last: Candle | None = None
        self._returns: deque[float] = deque(maxlen=LAGS)
        self._pending: _Pending | None = None

    def observe(self, candle: Candle, now_us: int) -> ForecastPoint | None:
        """Score the forecast of `candle`, learn from it and forecast the next candle."""
        last = self._last
        if last is not None and candle.start <= last.start:
            return None
        if last is not None:
            pending, self._pending = self._pending, None
            if pending is not None and pending.start != candle.start:
                self._score(pending, last.close, last.close, now_us)  # the window was flat
                pending = None
            actual_bp = log_return_bp(last.close, candle.close)
            if pending is not None:
                self._score(pending, last.close, candle.close, now_us)
            self._returns.append(actual_bp)
        self._last = candle
        if len(self._returns) < LAGS:
            return None
        x = features(self._returns, candle)
        predicted_bp, low_bp, high_bp = self.model.predict(x)
        self._pending = _Pending(
            x, candle.start + self.step_us, predicted_bp, low_bp, high_bp, self._returns[-1]
        )
        return ForecastPoint(
            exchange=self.exchange, symbol=self.symbol, interval=self.interval,
            start=candle.start + self.step_us, based_on=candle.start,
            close=price_of(candle.close, predicted_bp), low=price_of(candle.close, low_bp),
            high=price_of(candle.close, high_bp), made_at=now_us,
        )  # fmt: skip

    def _score(self, p: _Pending, last_close: float, close: float, now_us: int) -> None:
        """Every forecaster's forecast of the candle that closed at `close`; the model learns."""
        actual_bp = log_return_bp(last_close, close)
        band = (price_of(last_close, p.low_bp), price_of(last_close, p.high_bp))
        s = self.scores
        s[MODEL].add(price_of(last_close, p.predicted_bp), close, p.predicted_bp, actual_bp, band)
        s[LAST_CLOSE].add(last_close, close, 0.0, actual_bp)
        s[LAST_MOVE].add(price_of(last_close, p.last_bp), close, p.last_bp, actual_bp)
        for score in s.values():
            score.updated_at = now_us
        self.model.learn(p.x, actual_bp, p.predicted_bp)


class Forecasts:
    """A `Prequential` per (exchange, symbol, interval), fed final candles of tumbling
    intervals (a hopping window's candles overlap: their "next candle" is mostly this one)."""

    def __init__(self, model: Callable[[], ReturnModel] = ReturnModel) -> None:
        self._model = model
        self.by_key: dict[tuple[str, str, str], Prequential] = {}
        self._steps: dict[str, int | None] = {}
        self._carried: dict[tuple[str, str, str, str], Score] = {}

    def carry_on(self, scores: list[Score]) -> None:
        """Scores kept from an earlier run: the new ones add to them (the models start anew)."""
        self._carried = {s.key: s for s in scores}

    def observe(self, candles: list[Candle], now_us: int) -> list[ForecastPoint]:
        """The new forecasts the final candles among `candles` lead to."""
        out: list[ForecastPoint] = []
        # One engine step can close several windows of an instrument (a quiet one: by the
        # idle timer), not necessarily listed in time order.
        for candle in sorted((c for c in candles if c.final), key=lambda c: c.start):
            key = (candle.exchange, candle.symbol, candle.interval)
            evaluator = self.by_key.get(key)
            if evaluator is None:
                step = self._step(candle.interval)
                if step is None:
                    continue
                evaluator = self.by_key[key] = Prequential(*key, step, self._model)
                for name, score in evaluator.scores.items():
                    kept = self._carried.pop((*key, name), None)
                    if kept is not None:
                        evaluator.scores[name] = msgspec.structs.replace(kept)
                    else:
                        score.updated_at = now_us
            point = evaluator.observe(candle, now_us)
            if point is not None:
                out.append(point)
        return out

    def scores(self) -> list[Score]:
        return [s for e in self.by_key.values() for s in e.scores.values()]

    def _step(self, interval: str) -> int | None:
        if interval not in self._steps:
            try:
                window = parse_window(interval)
            except ValueError:
                self._steps[interval] = None
            else:
                self._steps[interval] = None if window.hopping else window.size
        return self._steps[interval]
