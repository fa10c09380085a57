"""`/api/forecasts`: one instrument's next-candle forecasts (the band on the chart) and its
scoreboard (every interval: the model against the baselines, and whether it beats the last
close). Read from the store, where the pipeline's forecasts keep them (`stores/forecasts.py`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tickpipe.engine.windows import parse_window
from tickpipe.forecast.scores import BASELINE, scoreboard
from tickpipe.runtime.clock import now_us
from tickpipe.serve.params import (
    MAX_PERIOD,
    BadRequest,
    check_span,
    parse_span,
    parse_time,
    required,
)
from tickpipe.stores.forecasts import ForecastStore

NOT_KEPT = (
    "no forecasts: they are kept in the DuckDB store only, by a pipeline with forecast = true"
)


def _json(body: Any) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


async def forecasts(request: Request) -> Response:
    """Forecasts of candles starting in [end - lookback, end) and the instrument's scoreboard."""
    ctx = request.app.state.ctx
    q = request.query_params
    exchange, symbol = await ctx.instrument(required(q, "exchange"), required(q, "symbol"))
    interval = required(q, "interval")
    try:
        window = parse_window(interval)
    except ValueError as exc:
        raise BadRequest(f"interval={interval!r}: {exc}") from None
    if window.hopping:
        raise BadRequest(f"interval={interval!r}: forecasts are of tumbling intervals only")
    store = ctx.store
    if not isinstance(store, ForecastStore):
        raise BadRequest(NOT_KEPT, 404)
    end = parse_time("end", q["end"]) if q.get("end") else now_us() + window.size
    lookback = parse_span("lookback", q.get("lookback", "1h"), MAX_PERIOD)
    if lookback <= 0:
        raise BadRequest(f"lookback={q.get('lookback')!r}: must be above 0")
    check_span(end - lookback, end, window.size)
    points = await ctx.read(
        store.forecast_points, exchange, symbol, window.name, end - lookback, end
    )
    scores = await ctx.read(store.forecast_scores, exchange, symbol)
    return _json({
        "exchange": exchange, "symbol": symbol, "interval": window.name,
        "start": end - lookback, "end": end, "baseline": BASELINE, "forecasts": points,
        "scoreboard": scoreboard(scores),
    })  # fmt: skip
