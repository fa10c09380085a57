"""The prequential evaluation against a reference computed here, independently: a plain
loop over the closes that predicts each candle before learning it (with river's own model,
built here), and numpy for the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river import linear_model, optim, preprocessing, stats

from tickpipe.forecast.evaluator import Forecasts, Prequential
from tickpipe.forecast.model import L2, LEARNING_RATE
from tickpipe.forecast.scores import LAST_CLOSE, LAST_MOVE, MODEL, beats_baseline, scoreboard
from tickpipe.records import Candle

from .series import S, candle, closes, series

N = 300


def reference(candles: list[Candle]) -> dict[str, dict[str, float]]:
    """The metrics of the model and the baselines, computed without tickpipe's evaluator."""
    c = np.array([k.close for k in candles])
    r = np.log(c[1:] / c[:-1]) * 1e4  # r[i-1]: the return into candle i, bp
    model = preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(LEARNING_RATE), l2=L2
    )
    q_lo, q_hi = stats.Quantile(0.1), stats.Quantile(0.9)
    pred_model, pred_move, pred_bp, lows, highs = [], [], [], [], []
    x_prev: dict[str, float] | None = None
    p_prev = 0.0
    # Candle i (i >= 3) has 3 returns behind it: it forecasts candle i + 1.
    for i in range(3, len(candles)):
        k = candles[i]
        if x_prev is not None:  # score and learn candle i, forecast at i - 1
            q_lo.update(r[i - 1] - p_prev)
            q_hi.update(r[i - 1] - p_prev)
            model.learn_one(x_prev, r[i - 1])
        x = {"r0": r[i - 1], "r1": r[i - 2], "r2": r[i - 3]}
        x["range_bp"] = (k.high - k.low) / k.close * 1e4
        x["close_vwap_bp"] = (k.close - k.vwap) / k.close * 1e4
        x["buy_share"] = k.buy_volume / k.volume - 0.5
        p = model.predict_one(x)
        if i + 1 < len(candles):
            pred_bp.append(p)
            pred_model.append(c[i] * math.exp(p / 1e4))
            pred_move.append(c[i] * math.exp(r[i - 1] / 1e4))
            lo, hi = q_lo.get(), q_hi.get()
            lows.append(c[i] * math.exp((p + (lo or 0.0)) / 1e4))
            highs.append(c[i] * math.exp((p + (hi or 0.0)) / 1e4))
        x_prev, p_prev = x, p
    actual = c[4:]
    last = c[3:-1]
    actual_r = r[3:]
    out = {}
    for name, pred, pred_r in [
        (MODEL, np.array(pred_model), np.array(pred_bp)),
        (LAST_CLOSE, last, np.zeros(len(last))),
        (LAST_MOVE, np.array(pred_move), r[2:-1]),
    ]:
        err = pred - actual
        called = (pred_r != 0) & (actual_r != 0)
        hits = np.sign(pred_r[called]) == np.sign(actual_r[called])
        out[name] = {
            "n": len(err), "mae": np.mean(np.abs(err)), "rmse": np.sqrt(np.mean(err**2)),
            "directional": hits.mean() if called.any() else None,
        }  # fmt: skip
    inside = (np.array(lows) <= actual) & (actual <= np.array(highs))
    out[MODEL]["coverage"] = inside.mean()
    return out


def run(candles: list[Candle]) -> Prequential:
    evaluator = Prequential("sim", "BTC-USDT", "1s", S)
    for k in candles:
        evaluator.observe(k, k.updated_at)
    return evaluator


def test_metrics_equal_a_reference_computation_on_a_fixed_series() -> None:
    candles = series(N)
    want = reference(candles)
    got = run(candles).scores
    for name in (MODEL, LAST_CLOSE, LAST_MOVE):
        assert got[name].n == want[name]["n"] == N - 4
        assert got[name].mae == pytest.approx(want[name]["mae"], rel=1e-9)
        assert got[name].rmse == pytest.approx(want[name]["rmse"], rel=1e-9)
        if want[name]["directional"] is None:
            assert got[name].directional is None
        else:
            assert got[name].directional == pytest.approx(want[name]["directional"])
    assert got[MODEL].coverage == pytest.approx(want[MODEL]["coverage"])


def test_the_baselines_are_the_last_close_and_the_last_move() -> None:
    c = np.array(closes(N))
    got = run(series(N)).scores
    # Scored: candles 4 .. N-1 (the first forecast is made at candle 3).
    assert got[LAST_CLOSE].mae == pytest.approx(np.mean(np.abs(np.diff(c)[3:])), rel=1e-12)
    assert got[LAST_CLOSE].directional is None  # a zero return calls no direction
    moves = np.sign(np.diff(c))
    assert got[LAST_MOVE].directional == pytest.approx(np.mean(moves[3:] == moves[2:-1]))


def test_a_forecast_never_sees_the_candle_it_predicts() -> None:
    candles = series(60)
    changed = [*candles[:-1], candle(59, candles[-1].close * 1.05)]
    a = Prequential("sim", "BTC-USDT", "1s", S)
    b = Prequential("sim", "BTC-USDT", "1s", S)
    points_a = [a.observe(k, 0) for k in candles[:-1]]
    points_b = [b.observe(k, 0) for k in changed[:-1]]
    assert points_a == points_b  # the forecast of candle 59 was made without it
    a.observe(candles[-1], 0)
    b.observe(changed[-1], 0)
    assert b.scores[MODEL].abs_err > a.scores[MODEL].abs_err


def test_a_repeated_or_older_final_candle_changes_nothing() -> None:
    candles = series(80)
    repeated = []
    for i, k in enumerate(candles):
        repeated.append(k)
        if i % 7 == 0:
            repeated += [k, candles[max(0, i - 3)]]  # sent again; an older one late
    assert run(repeated).scores == run(candles).scores


def test_a_window_without_trades_is_scored_flat_at_the_last_close() -> None:
    candles = series(12)
    gap = [*candles[:8], *candles[9:]]  # window 8 had no trades: no candle
    evaluator = run(gap)
    # Forecasts of windows 4..7 scored as usual, of window 8 against the close of 7; the
    # candle after the gap starts a new forecast (scored at 10 and 11).
    c = closes(12)
    flat = [c[i] for i in (4, 5, 6, 7)] + [c[7], c[10], c[11]]
    last = [c[i] for i in (3, 4, 5, 6, 7, 9, 10)]
    assert evaluator.scores[LAST_CLOSE].n == 7
    assert evaluator.scores[LAST_CLOSE].abs_err == pytest.approx(
        sum(abs(a - b) for a, b in zip(flat, last, strict=True))
    )


def test_forecasts_take_final_candles_of_tumbling_intervals_only() -> None:
    forecasts = Forecasts()
    provisional = [candle(i, c) for i, c in enumerate(closes(20))]
    for k in provisional:
        k.final = False
    hopping = series(20, interval="10s/1s")
    assert forecasts.observe([*provisional, *hopping], 0) == []
    assert forecasts.by_key == {}
    points = forecasts.observe(series(20, "5s", 5 * S), 0)
    assert [p.start - p.based_on for p in points] == [5 * S] * 17


def test_the_model_beats_the_baseline_only_with_lower_mae_and_rmse() -> None:
    scores = run(series(N)).scores
    model, base = scores[MODEL], scores[LAST_CLOSE]
    want = model.abs_err < base.abs_err and model.sq_err < base.sq_err
    assert beats_baseline(model, base) is want
    (row,) = scoreboard(list(scores.values()))
    assert row["beats_baseline"] is want
    worse = model.__copy__()
    worse.abs_err = base.abs_err  # a tie is not beating it
    assert not beats_baseline(worse, base)


def test_windows_closed_in_one_step_are_taken_in_time_order() -> None:
    candles = series(40)
    in_order, shuffled = Forecasts(), Forecasts()
    in_order.observe(candles, 0)
    for i in range(0, 40, 4):  # four windows closed in one step, listed newest first
        shuffled.observe(candles[i : i + 4][::-1], 0)
    assert shuffled.scores() == in_order.scores()
    assert in_order.scores()[0].n == 36
