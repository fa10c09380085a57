"""`/api/quality` (data quality per venue) and `/api/composite` (the consolidated price).

Both render the running pipeline's status read model. Over a stored file (`tickpipe serve`)
there is no pipeline to measure: both answer `"live": false` and empty lists (the stored
composite candles are still at `/api/candles?exchange=composite`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tickpipe.engine.composite_settings import COMPOSITE
from tickpipe.runtime.status import PipelineStatus


def _json(body: Any) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


def quality_json(status: PipelineStatus) -> list[dict[str, Any]]:
    """Per venue: delays (ms, recent), out-of-order share, gaps, duplicates, future-stamped."""
    return [
        {
            "exchange": q.exchange,
            "received": q.received,
            "delay_p50_ms": q.delay_p50_ms,
            "delay_p99_ms": q.delay_p99_ms,
            "out_of_order": q.out_of_order,
            "out_of_order_share": q.out_of_order_share,
            "gaps": q.gaps,
            "missing": q.missing,
            "recovered": q.recovered,
            "duplicates": q.duplicates,
            "future": q.future,
        }
        for q in status.quality.values()
    ]


def composite_json(status: PipelineStatus) -> list[dict[str, Any]]:
    """Per composite symbol: its live price and each venue's price, deviation and staleness."""
    return [
        {
            "symbol": c.symbol,
            "price": c.price,
            "venues": [dataclasses.asdict(v) for v in c.venues],
        }
        for c in status.composites
    ]


async def quality(request: Request) -> Response:
    """Data quality per venue, of the running pipeline."""
    status = request.app.state.ctx.status
    venues = quality_json(status()) if status is not None else []
    return _json({"live": status is not None, "venues": venues})


async def composite(request: Request) -> Response:
    """The live composites (stored ones: `/api/candles?exchange=composite`)."""
    status = request.app.state.ctx.status
    composites = composite_json(status()) if status is not None else []
    return _json({"live": status is not None, "composites": composites})


ROUTES = [Route("/api/quality", quality), Route("/api/composite", composite)]
__all__ = ["COMPOSITE", "ROUTES", "composite_json", "quality_json"]
