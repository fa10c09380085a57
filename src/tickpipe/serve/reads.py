"""How the API reads its store without starving the pipeline that writes it.

Every read runs on a worker thread (the event loop is the pipeline's too) inside the store's
read budget (`serve.read_timeout`): the store cuts off a query that runs longer and the API
answers 503 naming the budget. Heavy reads (analytics, trade lists, the exchange list: they
may scan many rows) are also counted: at most `serve.heavy_reads` run at once, and one more
is answered 503 "busy" with `Retry-After` at once, instead of queueing behind the others.
Other reads (/api/kpis, /api/health, /metrics, alerts, candles: at most `MAX_CANDLES` rows
of one instrument, which a dashboard asks for many at once) are never counted, so they
always get through; the stores run reads on connections of their own, so none waits for the
writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from tickpipe.stores.base import Store

RETRY_AFTER_S = 1  # what a "busy" answer asks the client to wait


class Busy(Exception):
    """Every heavy-read slot is taken: the API answers 503 with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReadGate:
    """The API's reads of one store: each within `timeout_s`, at most `max_heavy` heavy
    ones at once. Used from the event loop only, so its counter needs no lock."""

    def __init__(self, timeout_s: float = 5.0, max_heavy: int = 4) -> None:
        self.timeout_s = timeout_s
        self.max_heavy = max_heavy
        self.heavy_in_progress = 0

    async def read(self, store: Store, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on a worker thread, within the read budget."""
        return await run_in_threadpool(self._bounded, store, fn, args)

    def _bounded(self, store: Store, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with store.read_budget(self.timeout_s):
            return fn(*args)

    async def heavy(self, store: Store, fn: Callable[..., Any], *args: Any) -> Any:
        """`read`, if a heavy-read slot is free; else `Busy` at once."""
        if self.heavy_in_progress >= self.max_heavy:
            raise Busy(
                f"busy: {self.heavy_in_progress} reads in progress (serve.heavy_reads = "
                f"{self.max_heavy}); retry in {RETRY_AFTER_S}s"
            )
        self.heavy_in_progress += 1
        try:
            return await self.read(store, fn, *args)
        finally:
            self.heavy_in_progress -= 1
