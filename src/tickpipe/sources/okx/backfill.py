"""Refetching lost OKX trades over REST (`GET /api/v5/market/history-trades`).

OKX trade ids are consecutive per instrument, so a hole in them names exactly the trades to
fetch. The endpoint pages by trade id, newest first, at most 100 rows a page: `after=<id>`
returns trades older than `id`, `before=<id>` newer ones, and both together the trades between.
It keeps three months of trades and allows 20 requests per 2 s per IP; `RestClient` waits out a
429 with its Retry-After.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickpipe.records import TradeBatch
from tickpipe.sources.okx.parse import InstrumentIndex, OkxTrade, columns
from tickpipe.sources.rest import RestClient, RestError, read_rows

HISTORY_PATH = "/api/v5/market/history-trades"
PAGE = 100  # the endpoint's maximum `limit`


class OkxApiError(RuntimeError):
    """An answer with `code` other than "0" (OKX reports errors in the body)."""


@dataclass
class Fetched:
    """Trades fetched for one instrument, with the rows that could not be read."""

    trades: list[OkxTrade]
    bad_rows: list[Any]
    limited: bool = False  # stopped at the trade limit before reaching the start


async def fetch_trades(
    client: RestClient,
    inst_id: str,
    *,
    after_id: int,
    before_id: int | None = None,
    limit: int = 5000,
) -> Fetched:
    """Trades of `inst_id` with `after_id < tradeId < before_id` (no upper bound when None),
    newest first, at most `limit` of them.

    (OKX's own names are the other way round: its `after` means older than, `before` newer.)
    """
    trades: list[OkxTrade] = []
    bad: list[Any] = []
    upper = before_id
    while len(trades) < limit:
        params: dict[str, Any] = {"instId": inst_id, "type": 1, "before": after_id, "limit": PAGE}
        if upper is not None:
            params["after"] = upper
        page, unread = read_rows(_rows(await client.get_json(HISTORY_PATH, params)), OkxTrade)
        bad += unread
        page = [
            t
            for t in page
            if t.instId == inst_id and after_id < t.tradeId and (upper is None or t.tradeId < upper)
        ]
        if not page:
            break
        trades.extend(page)
        upper = min(t.tradeId for t in page)
        if upper <= after_id + 1:
            break
    limited = len(trades) >= limit and (upper is None or upper > after_id + 1)
    return Fetched(trades[:limit], bad, limited)


async def fetch_older(
    client: RestClient, inst_id: str, *, than_id: int | None = None, than_ms: int | None = None
) -> tuple[list[OkxTrade], list[Any]]:
    """One page (up to 100) of the trades of `inst_id` just older than trade `than_id`, or
    than the time `than_ms` (OKX's `type=2` pages by time), newest first; and the rows that
    could not be read. How a backfill by time walks back from the end of its range."""
    params: dict[str, Any] = {"instId": inst_id, "limit": PAGE}
    if than_id is not None:
        params.update(type=1, after=than_id)
    elif than_ms is not None:
        params.update(type=2, after=than_ms)
    page, bad = read_rows(_rows(await client.get_json(HISTORY_PATH, params)), OkxTrade)
    return [t for t in page if t.instId == inst_id], bad


def _rows(answer: Any) -> list[Any]:
    if not isinstance(answer, dict):
        raise OkxApiError("answer is not a JSON object")
    if str(answer.get("code")) != "0":
        raise OkxApiError(f"error {answer.get('code')}: {answer.get('msg', '')}")
    data = answer.get("data")
    if not isinstance(data, list):
        raise OkxApiError("answer has no data list")
    return data


def to_batch(trades: list[OkxTrade], index: InstrumentIndex, source: str) -> TradeBatch:
    """Fetched trades (all of instruments in `index`) as a batch stamped with the local time."""
    codes = [index.codes[t.instId] for t in trades]
    batch, _ = columns(trades, codes, time.time_ns() // 1000, index, source)
    return batch


def ids_in(trades: list[OkxTrade], first: int, last: int) -> int:
    """How many distinct trade ids in `[first, last]` the fetched trades hold."""
    ids = np.fromiter((t.tradeId for t in trades), np.int64, len(trades))
    return int(np.unique(ids[(ids >= first) & (ids <= last)]).size)


__all__ = [
    "Fetched", "OkxApiError", "RestError", "fetch_older", "fetch_trades", "ids_in", "to_batch",
]  # fmt: skip
