"""What is kept of the forecasts: each prediction made (the band on the chart) and, per
forecaster, the running sums its scores come from (the scoreboard).

Sums, not averages, so a score carries on across restarts and adds up exactly: MAE and RMSE
are of the predicted close (in the quote currency), directional accuracy counts the candles
where the forecaster called a direction (a return other than zero) and the close moved.
"""

from __future__ import annotations

import math

import msgspec

MODEL = "model"
LAST_CLOSE = "last_close"  # the next close is the last one: the zero-return forecast
LAST_MOVE = "last_move"  # the last return repeats: the naive forecast of a direction
FORECASTERS = (MODEL, LAST_CLOSE, LAST_MOVE)
BASELINE = LAST_CLOSE  # what the model must beat on MAE and RMSE


class ForecastPoint(msgspec.Struct, kw_only=True):
    """The forecast of the candle starting at `start`, made when the candle at `based_on`
    closed: its close and the band the close is expected in (80 %), in price."""

    exchange: str
    symbol: str
    interval: str
    start: int
    based_on: int
    close: float
    low: float
    high: float
    made_at: int


class Score(msgspec.Struct, kw_only=True):
    """One forecaster's running error sums on one (exchange, symbol, interval)."""

    exchange: str
    symbol: str
    interval: str
    forecaster: str
    n: int = 0  # candles scored
    abs_err: float = 0.0  # sum of |predicted close - close|
    sq_err: float = 0.0  # sum of (predicted close - close)^2
    calls: int = 0  # directions called on candles whose close moved
    hits: int = 0  # of them, right
    band_n: int = 0  # candles scored against a band (the model only)
    band_in: int = 0  # of them, with the close inside the band
    updated_at: int = 0

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.exchange, self.symbol, self.interval, self.forecaster)

    def add(
        self,
        predicted_close: float,
        close: float,
        predicted_bp: float,
        actual_bp: float,
        band: tuple[float, float] | None = None,
    ) -> None:
        """Score one candle: the predicted close and return against the actual ones."""
        err = predicted_close - close
        self.n += 1
        self.abs_err += abs(err)
        self.sq_err += err * err
        if predicted_bp != 0.0 and actual_bp != 0.0:
            self.calls += 1
            self.hits += (predicted_bp > 0) == (actual_bp > 0)
        if band is not None:
            self.band_n += 1
            self.band_in += band[0] <= close <= band[1]

    @property
    def mae(self) -> float | None:
        return self.abs_err / self.n if self.n else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sq_err / self.n) if self.n else None

    @property
    def directional(self) -> float | None:
        """Share of right directions (None: no direction called)."""
        return self.hits / self.calls if self.calls else None

    @property
    def coverage(self) -> float | None:
        """Share of closes inside the band (None: no band)."""
        return self.band_in / self.band_n if self.band_n else None

    def summary(self) -> dict[str, object]:
        """The score as the API gives it: the sums and what follows from them."""
        return {
            **msgspec.structs.asdict(self), "mae": self.mae, "rmse": self.rmse,
            "directional_accuracy": self.directional, "band_coverage": self.coverage,
        }  # fmt: skip


def beats_baseline(model: Score, baseline: Score) -> bool:
    """The model beats the baseline when both its MAE and its RMSE are lower on the same
    candles (a tie or fewer candles scored is not beating it)."""
    if model.n == 0 or model.n != baseline.n:
        return False
    return model.abs_err < baseline.abs_err and model.sq_err < baseline.sq_err


def scoreboard(scores: list[Score]) -> list[dict[str, object]]:
    """One row per (exchange, symbol, interval): each forecaster's metrics and whether the
    model beats the baseline, sorted by instrument and interval."""
    by_key: dict[tuple[str, str, str], dict[str, Score]] = {}
    for s in scores:
        by_key.setdefault((s.exchange, s.symbol, s.interval), {})[s.forecaster] = s
    rows: list[dict[str, object]] = []
    for (exchange, symbol, interval), of in sorted(by_key.items()):
        model, base = of.get(MODEL), of.get(BASELINE)
        rows.append({
            "exchange": exchange, "symbol": symbol, "interval": interval,
            "forecasters": {name: s.summary() for name, s in sorted(of.items())},
            "beats_baseline": bool(model and base and beats_baseline(model, base)),
        })  # fmt: skip
    return rows
