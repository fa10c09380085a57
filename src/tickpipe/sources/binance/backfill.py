"""Refetching trades the Binance stream lost, over the public REST API.

Two things start a backfill. A hole in a symbol's trade ids (the gap detector saw id 105 after
100) asks for exactly ids 101-104. A reconnect asks for everything after the last id seen of
each symbol that has no live trade yet `catch_up_after` seconds later (busy symbols reveal
their hole with their next live trade, which names its end exactly; quiet ones would wait
for it indefinitely). Both go through one queue served by one task, paced so that backfill
after a reconnect of many symbols stays well inside Binance's request-weight limit, and
ranges already fetched are not fetched or reported twice.

`trade` streams page `/api/v3/historicalTrades` by `fromId` (no API key needed); if Binance
asks for one after all (401/403), the recent-trades list `/api/v3/trades` is used instead,
which recovers only what is still among the last 1000 trades. `aggTrade` streams page
`/api/v3/aggTrades`. Recovered trades go out through `ctx.emit` like live ones (the engine
drops the duplicates), and one `Gap` event per hole says how many came back and which ids
did not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import numpy as np

from tickpipe.sources import SourceContext
from tickpipe.sources.binance.parse import InstrumentIndex
from tickpipe.sources.binance.rest import (
    AGG_TRADES,
    HISTORICAL_TRADES,
    PAGE_LIMIT,
    TRADES,
    Page,
    Row,
    fetch_page,
    rows_to_batch,
)
from tickpipe.sources.feed import gap_event
from tickpipe.sources.rest import RestClient, RestError

log = logging.getLogger(__name__)
_NO_ID = np.iinfo(np.int64).max


@dataclass(frozen=True)
class BackfillConfig:
    max_pages: int = 50  # per hole: 50,000 trades; what lies beyond is reported as not recovered
    requests_per_second: float = 2.0  # 2 x weight 25 x 60 = half of Binance's 6000 a minute
    catch_up_after: float = 1.0  # seconds after a reconnect before quiet symbols are caught up
    lag_retries: int = 2  # the database behind historicalTrades may trail the stream a little
    lag_delay: float = 1.0
    max_pending: int = 10_000  # queued requests; beyond, a hole is reported without a fetch


class _Request(NamedTuple):
    code: int
    first: int
    last: int | None  # None: a catch-up, everything after `first - 1`


class Backfiller:
    """The backfill queue of one Binance source and the task that serves it (`run`)."""

    def __init__(
        self,
        rest: RestClient,
        index: InstrumentIndex,
        stream: str,
        ctx: SourceContext,
        source: str,
        config: BackfillConfig | None = None,
    ) -> None:
        self.rest = rest
        self.index = index
        self.ctx = ctx
        self.source = source
        self.config = config or BackfillConfig()
        self.path = AGG_TRADES if stream == "aggTrade" else HISTORICAL_TRADES
        self.recovered = 0  # trades recovered so far (a metric)
        self.requests = 0  # REST requests made
        n = len(index.instruments)
        self._covered: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        self._awaiting = np.zeros(n, np.bool_)  # no live trade since the reconnect yet
        self._resumed = np.full(n, -1, np.int64)  # first live id after the reconnect
        self._last_seen = np.full(n, -1, np.int64)  # last id seen before the reconnect
        self._tracking = False
        self._catch_up_at: float | None = None
        self._pending: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._next_request = 0.0

    # -- called by the source ------------------------------------------------------------

    def gap(self, code: int, first: int, last: int) -> None:
        """Ids `first`..`last` of instrument `code` never arrived: fetch them."""
        self._enqueue(_Request(code, first, last))

    def reconnected(self, last_seen: np.ndarray) -> None:
        """A new connection is up; `last_seen` is the highest id seen per instrument."""
        self._last_seen = last_seen.copy()
        self._awaiting = last_seen >= 0
        self._resumed.fill(-1)
        self._tracking = bool(self._awaiting.any())
        if self._tracking:
            self._catch_up_at = asyncio.get_running_loop().time() + self.config.catch_up_after
            self._wake.set()

    def seen(self, instrument: np.ndarray, seq: np.ndarray) -> None:
        """Live trades arrived (after the gap check): note where each symbol resumed."""
        if not self._tracking or not len(seq):
            return
        first = np.full(len(self._resumed), _NO_ID, np.int64)
        np.minimum.at(first, instrument, seq)
        new = (self._resumed < 0) & (first != _NO_ID)
        self._resumed[new] = first[new]
        self._awaiting[new] = False

    # -- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until cancelled; a failed request is reported, never raised."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake.clear()
                timeout = None
                if self._catch_up_at is not None:
                    timeout = max(0.0, self._catch_up_at - loop.time())
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            if self._catch_up_at is not None and loop.time() >= self._catch_up_at:
                self._catch_up_at = None
                for code in np.flatnonzero(self._awaiting):
                    self._enqueue(_Request(int(code), int(self._last_seen[code]) + 1, None))
                self._awaiting[:] = False
            if self._pending:
                request = self._pending.popleft()
                try:
                    await self._serve(request)
                except Exception as exc:  # never let one request stop the backfill
                    log.exception("%s: backfill of %s failed", self.source, request)
                    if request.last is not None:
                        self._report(request.code, request.first, request.last, [], _why(exc))
            if not self._pending and self._catch_up_at is None:
                self._tracking = False

    def _enqueue(self, request: _Request) -> None:
        if len(self._pending) >= self.config.max_pending:
            if request.last is not None:
                self._report(request.code, request.first, request.last, [], "backfill queue full")
            return
        self._pending.append(request)
        self._wake.set()

    async def _serve(self, request: _Request) -> None:
        if request.last is None:
            await self._catch_up(request.code, request.first)
            return
        for first, last in _subtract(request.first, request.last, self._covered[request.code]):
            self._cover(request.code, first, last)
            await self._fill(request.code, first, last)

    async def _fill(self, code: int, first: int, last: int) -> None:
        """Fetch ids `first`..`last`, emit them, report the hole."""
        got: list[int] = []
        next_id, pages, lag = first, 0, 0
        problem = ""
        try:
            while next_id <= last:
                if pages >= self.config.max_pages:
                    problem = f"stopped after {pages} pages"
                    break
                page = await self._page(code, next_id)
                pages += 1
                rows = [r for r in page.rows if first <= r.id <= last]
                got.extend(r.id for r in rows)
                await self._emit(code, rows)
                if self.path == TRADES:  # the recent window holds what it holds
                    problem = "older than the recent trades /api/v3/trades keeps"
                    break
                if page.rows and page.rows[-1].id >= next_id:
                    next_id = page.rows[-1].id + 1
                if len(page.rows) < PAGE_LIMIT and next_id <= last:
                    if lag >= self.config.lag_retries:
                        problem = "REST does not have them (yet)"
                        break
                    lag += 1
                    await asyncio.sleep(self.config.lag_delay)
        except (RestError, msgspec.ValidationError) as exc:
            problem = _why(exc)
        self._report(code, first, last, got, problem)

    async def _catch_up(self, code: int, first: int) -> None:
        """Fetch everything after `first - 1` up to now, for a symbol quiet since a reconnect."""
        fetched: list[int] = []
        next_id = first
        try:
            for _ in range(self.config.max_pages):
                page = await self._page(code, next_id)
                rows = [r for r in page.rows if r.id >= first]
                fetched.extend(r.id for r in rows)
                await self._emit(code, rows)
                if not rows or len(page.rows) < PAGE_LIMIT or self.path == TRADES:
                    break
                next_id = rows[-1].id + 1
        except (RestError, msgspec.ValidationError) as exc:
            # Where the hole ends is unknown; the next live trade will reveal it as a gap.
            log.warning("%s: catch-up of %s failed: %s", self.source, self._name(code), _why(exc))
            return
        resumed = int(self._resumed[code])
        last = resumed - 1 if resumed >= 0 else max(fetched, default=first - 1)
        if fetched:
            self._cover(code, first, max(fetched))
        if last >= first:
            self._report(
                code, first, last, [i for i in fetched if i <= last], "", "after a reconnect: "
            )

    async def _page(self, code: int, from_id: int) -> Page:
        raw = self.index.instruments[code].raw_symbol
        await self._pace()
        try:
            page = await fetch_page(self.rest, self.path, raw, from_id)
        except RestError as exc:
            if self.path != HISTORICAL_TRADES or exc.status not in (401, 403):
                raise
            log.warning(
                "%s: %s wants an API key (%s); backfilling from the recent trades only",
                self.source, HISTORICAL_TRADES, exc,
            )  # fmt: skip
            self.path = TRADES
            await self._pace()
            page = await fetch_page(self.rest, TRADES, raw, None)
        for row in page.bad:
            self.ctx.dead_letters.write(
                self.source, "unreadable REST trade row", msgspec.json.encode(row)
            )
        self.ctx.stats.malformed += len(page.bad)
        return page

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_request > now:
            await asyncio.sleep(self._next_request - now)
        self._next_request = max(now, self._next_request) + 1 / self.config.requests_per_second
        self.requests += 1

    async def _emit(self, code: int, rows: list[Row]) -> None:
        if not rows:
            return
        batch = rows_to_batch(rows, code, self.index, self.source, time.time_ns() // 1000)
        self.recovered += len(batch)
        self.ctx.stats.trades += len(batch)
        await self.ctx.emit(batch)

    def _cover(self, code: int, first: int, last: int) -> None:
        covered = self._covered[code]
        covered.append((first, last))
        del covered[:-32]  # only recent ranges can overlap a new request

    def _report(
        self, code: int, first: int, last: int, got: list[int], problem: str, prefix: str = ""
    ) -> None:
        missing = last - first + 1
        ids = sorted(set(got))
        recovered = len(ids)
        where = f"over REST {self.path}"
        if recovered == missing:
            detail = f"{prefix}recovered all {missing} {where}"
        else:
            lost = _holes(first, last, ids)
            detail = (
                f"{prefix}recovered {recovered} of {missing} {where}; not recovered: ids {lost}"
                + (f" ({problem})" if problem else "")
            )
        instrument = self.index.instruments[code]
        self.ctx.event(gap_event(self.source, instrument, first, last, recovered, detail))

    def _name(self, code: int) -> str:
        return self.index.instruments[code].symbol


def _subtract(first: int, last: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `first`..`last` that no covered range holds."""
    parts = [(first, last)]
    for lo, hi in covered:
        out = []
        for a, b in parts:
            if hi < a or lo > b:
                out.append((a, b))
                continue
            if a < lo:
                out.append((a, lo - 1))
            if hi < b:
                out.append((hi + 1, b))
        parts = out
    return parts


def _holes(first: int, last: int, ids: list[int], show: int = 3) -> str:
    """`5-9, 12, 20-30` for the ids of `first`..`last` missing from sorted `ids`."""
    holes = []
    expect = first
    for i in [*ids, last + 1]:
        if i > expect:
            holes.append(f"{expect}-{i - 1}" if i - 1 > expect else f"{expect}")
        expect = max(expect, i + 1)
    more = f" and {len(holes) - show} more ranges" if len(holes) > show else ""
    return ", ".join(holes[:show]) + more


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
