"""The monitoring routes: `/metrics` (Prometheus), `/api/alerts`, `/api/kpis/history`.

With a running pipeline, metrics and alerts come from its monitor; over a stored file
(`tickpipe serve`) alerts and KPIs are read from the store, where the pipeline kept them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tickpipe.monitor.metrics import CONTENT_TYPE
from tickpipe.monitor.service import ALERT_EVENT
from tickpipe.runtime.clock import now_us
from tickpipe.serve.params import MAX_PERIOD, BadRequest, parse_int, parse_span

HISTORY_LIMIT = 1000


def _json(body: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status, media_type="application/json")


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the running pipeline's metrics."""
    monitor = request.app.state.ctx.monitor
    if monitor is None:
        raise BadRequest(
            "no metrics: this server reads a stored file (tickpipe serve); the processes that "
            "ingest and process trades expose them", 404,
        )  # fmt: skip
    return Response(monitor.metrics.render(), media_type=CONTENT_TYPE)


async def alerts(request: Request) -> Response:
    """Active alerts and their history (newest first): `{"active": [...], "history": [...]}`."""
    ctx = request.app.state.ctx
    limit = parse_int(request.query_params, "limit", HISTORY_LIMIT, 1, 100_000)
    if ctx.monitor is not None:
        body = ctx.monitor.alerts_body()
        body["history"] = body["history"][:limit]
        return _json(body)
    rows = await ctx.read(ctx.store.events, ALERT_EVENT, limit)
    history = [msgspec.json.decode(detail) for _, _, _, detail in rows]
    return _json({"active": stored_active(history), "history": history})


def stored_active(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From kept transitions (newest first): each alert whose latest state is not resolved."""
    latest: dict[tuple, dict[str, Any]] = {}
    for item in history:
        key = (item["rule"], tuple(sorted(item["labels"].items())))
        latest.setdefault(key, item)
    return [item for item in latest.values() if item["state"] != "resolved"]


async def kpi_history(request: Request) -> Response:
    """KPIs kept in the store over `lookback` (default 1h): `{"metrics": [...]}`, oldest first."""
    ctx = request.app.state.ctx
    q = request.query_params
    lookback = parse_span("lookback", q.get("lookback", "1h"), MAX_PERIOD)
    if lookback <= 0:
        raise BadRequest(f"lookback={q.get('lookback')!r}: must be above 0")
    limit = parse_int(q, "limit", 10_000, 1, 100_000)
    rows = await ctx.read(
        ctx.store.metrics_since, now_us() - lookback, limit, q.get("process") or None
    )
    metrics_ = [msgspec.structs.asdict(m) for m in reversed(rows)]
    return _json({"lookback": lookback, "metrics": metrics_})
