"""`tickpipe forecast --evaluate`: the same prequential evaluation over the stored final
candles, as if they were closing now one after another, and the scoreboard as a table.

Nothing is written: the replay says how the model would have done on the stored history,
with fresh models, whatever a running pipeline kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.table import Table

from tickpipe.forecast.evaluator import Forecasts
from tickpipe.forecast.model import ReturnModel
from tickpipe.forecast.scores import BASELINE, LAST_MOVE, MODEL, Score, beats_baseline
from tickpipe.stores.base import Store


@dataclass
class Replay:
    """The scores of a replay and what it cost."""

    scores: list[Score]
    candles: int
    cpu_s: float  # process CPU time spent in the models and the evaluation


def replay_stored(
    store: Store, intervals: list[str], model: Callable[[], ReturnModel] = ReturnModel
) -> Replay:
    """Every stored final candle of `intervals`, in time order per instrument, through a
    fresh `Forecasts`."""
    forecasts = Forecasts(model)
    candles, cpu_s = 0, 0.0
    for interval in intervals:
        for candle in store.stored_candles(interval):
            if not candle.final:
                continue
            started = time.process_time()
            forecasts.observe([candle], candle.start)
            cpu_s += time.process_time() - started
            candles += 1
    return Replay(forecasts.scores(), candles, cpu_s)


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def scoreboard_table(scores: list[Score]) -> Table:
    """One row per (exchange, symbol, interval): the model against the baselines."""
    table = Table(title="Next-candle forecasts, scored prequentially (predict, then learn)")
    for name, justify in [
        ("exchange", "left"), ("symbol", "left"), ("interval", "left"), ("candles", "right"),
        ("MAE model", "right"), ("MAE last close", "right"), ("RMSE model", "right"),
        ("RMSE last close", "right"), ("dir. model", "right"), ("dir. last move", "right"),
        ("in 80% band", "right"), ("beats last close", "left"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=name == "beats last close")  # type: ignore[arg-type]
    by_key: dict[tuple[str, str, str], dict[str, Score]] = {}
    for s in scores:
        by_key.setdefault((s.exchange, s.symbol, s.interval), {})[s.forecaster] = s
    for (exchange, symbol, interval), of in sorted(by_key.items()):
        model, base, move = of[MODEL], of[BASELINE], of[LAST_MOVE]
        if model.n == 0:
            verdict = "[dim]no forecast yet[/dim]"
        elif beats_baseline(model, base):
            verdict = "[green]yes[/green]"
        else:
            verdict = "[red]NO[/red]"
        table.add_row(
            exchange, symbol, interval, f"{model.n:,}", _num(model.mae), _num(base.mae),
            _num(model.rmse), _num(base.rmse), _pct(model.directional), _pct(move.directional),
            _pct(model.coverage), verdict,
        )  # fmt: skip
    return table
