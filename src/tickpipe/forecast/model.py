"""The online model: a linear regression (river) of the next candle's log return on the last
returns and on the closed candle's shape, and a band from the quantiles of its own past errors.

Returns, not prices: a price level is not stationary, and a model of the level learns little
more than "the last close". Returns are in basis points (1e-4) so the features and the target
are of similar size for any price. The band is conformal in spirit: the 10 % and 90 %
quantiles of the model's past errors (streaming estimates), added to its point forecast, so
its width follows what the model actually gets wrong; `scores.py` counts how often the close
lands inside it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from tickpipe.records import Candle

INSTALL_HINT = "forecasts need river: pip install 'tickpipe[forecast]' (or: pip install river)"
LAGS = 3  # past returns the model sees
BAND_QUANTILES = (0.1, 0.9)  # the band holds 80 % of the closes when the model is calibrated
LEARNING_RATE = 0.005
L2 = 0.01


class ForecastUnavailable(RuntimeError):
    """river is not installed; the message says how to install it."""


def require_river() -> Any:
    """The river package, or one line saying how to install it."""
    try:
        import river
        from river import linear_model, optim, preprocessing, stats  # noqa: F401 - loaded now
    except ImportError:
        raise ForecastUnavailable(INSTALL_HINT) from None
    return river


def log_return_bp(prev_close: float, close: float) -> float:
    """ln(close / prev_close) in basis points (0 when a price is not positive)."""
    if prev_close <= 0 or close <= 0:
        return 0.0
    return math.log(close / prev_close) * 1e4


def features(returns_bp: deque[float] | list[float], candle: Candle) -> dict[str, float]:
    """What the model sees when `candle` closes: the last `LAGS` returns (newest first), the
    candle's range and where it closed against its VWAP (both in bp), and its taker buy share
    of volume, centred on 0."""
    close = candle.close if candle.close > 0 else 1.0
    x = {f"r{i}": r for i, r in enumerate(reversed(list(returns_bp)[-LAGS:]))}
    x["range_bp"] = (candle.high - candle.low) / close * 1e4
    x["close_vwap_bp"] = (candle.close - candle.vwap) / close * 1e4 if candle.vwap > 0 else 0.0
    x["buy_share"] = candle.buy_volume / candle.volume - 0.5 if candle.volume > 0 else 0.0
    return x


class ReturnModel:
    """An online model of the next log return (bp) with its error quantiles."""

    def __init__(self) -> None:
        river = require_river()
        from river import linear_model, optim, preprocessing, stats

        self._river = river
        self.regression = preprocessing.StandardScaler() | linear_model.LinearRegression(
            optimizer=optim.SGD(LEARNING_RATE), l2=L2
        )
        self.error_quantiles = [stats.Quantile(q) for q in BAND_QUANTILES]
        self.learned = 0

    def predict(self, x: dict[str, float]) -> tuple[float, float, float]:
        """(predicted return, low and high end of the band), all in bp; the band is empty
        (both ends at the prediction) until errors have been seen."""
        pred = float(self.regression.predict_one(x))
        if not math.isfinite(pred):
            pred = 0.0
        lo, hi = (q.get() for q in self.error_quantiles)
        return pred, pred + (lo if lo is not None else 0.0), pred + (hi if hi is not None else 0.0)

    def learn(self, x: dict[str, float], y_bp: float, predicted_bp: float) -> None:
        """Learn the actual return `y_bp` for `x`, and the error of what was predicted."""
        for q in self.error_quantiles:
            q.update(y_bp - predicted_bp)
        self.regression.learn_one(x, y_bp)
        self.learned += 1
