"""Refetching trades the Binance stream lost, over the public REST API: what Binance's
`fetch_since` does beyond one request.

Two things start a refill. A hole in a symbol's trade ids (the gap detector saw id 105 after
100) asks for exactly ids 101-104. A reconnect asks, for each symbol of that connection that
had traded, for everything after the last id seen (a catch-up, how many unknown); it waits
`catch_up_after` seconds first and is dropped if a live trade came meanwhile, since busy
symbols reveal their hole with their next live trade, which names its end exactly (quiet ones
would wait for it indefinitely). Both come through the feed's one refill queue; requests are
paced so that refills after a reconnect of many symbols stay well inside Binance's
request-weight limit, and ranges already fetched are not fetched or reported twice.

`trade` streams page `/api/v3/historicalTrades` by `fromId` (no API key needed); if Binance
asks for one after all (401/403), the recent-trades list `/api/v3/trades` is used instead,
which recovers only what is still among the last 1000 trades. `aggTrade` streams page
`/api/v3/aggTrades`. Recovered trades go out like live ones (the engine drops the
duplicates), and one `Gap` event per hole says how many came back and which ids did not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from tickpipe.records import Gap, TradeBatch
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
from tickpipe.sources.feed import Refill, Refilled, gap_event
from tickpipe.sources.parsing import Reject
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


class _Fetched:
    """What one refill gathered so far: batches to emit, ids found, unreadable rows."""

    def __init__(self) -> None:
        self.batches: list[TradeBatch] = []
        self.ids: list[int] = []
        self.rejects: list[Reject] = []


class Backfill:
    """The refill state of one running Binance source: the REST path in use, the request
    pacing, the id ranges already fetched, and which symbols a reconnect left to catch up."""

    def __init__(
        self, index: InstrumentIndex, stream: str, source: str, config: BackfillConfig
    ) -> None:
        self.index = index
        self.source = source
        self.config = config
        self.path = AGG_TRADES if stream == "aggTrade" else HISTORICAL_TRADES
        n = len(index.instruments)
        self._covered: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        self._awaiting = np.zeros(n, np.bool_)  # no live trade since the reconnect yet
        self._tracking = False  # whether any symbol awaits one
        self._resumed = np.full(n, -1, np.int64)  # first live id after the reconnect
        self._due = np.zeros(n, np.float64)  # loop time a symbol's catch-up may start
        self._next_request = 0.0

    # -- the stream's side ---------------------------------------------------------------

    def reconnected(self, codes: Sequence[int], last_seen: np.ndarray) -> list[Refill]:
        """A connection of `codes` is up again; `last_seen` is the highest id seen per
        instrument. The catch-ups of those that had traded."""
        due = asyncio.get_running_loop().time() + self.config.catch_up_after
        refills = []
        for code in codes:
            last = int(last_seen[code])
            self._resumed[code] = -1
            self._awaiting[code] = last >= 0
            if last >= 0:
                self._due[code] = due
                refills.append(Refill(code, last + 1, last))  # first > last: a catch-up
        self._tracking = bool(self._awaiting.any())
        return refills

    def seen(self, instrument: np.ndarray, seq: np.ndarray) -> None:
        """Live trades arrived (after the gap check): note where each symbol resumed."""
        if not self._tracking or not len(seq):
            return
        first = np.full(len(self._resumed), _NO_ID, np.int64)
        np.minimum.at(first, instrument, seq)
        new = self._awaiting & (first != _NO_ID)
        self._resumed[new] = first[new]
        self._awaiting[new] = False
        self._tracking = bool(self._awaiting.any())

    # -- the refill worker's side --------------------------------------------------------

    async def fetch(self, rest: RestClient, refill: Refill) -> Refilled:
        """Binance's `fetch_since`: a hole's ids (the parts not fetched before; the rest of
        them come back as `more`), or a catch-up."""
        if refill.first > refill.last:
            return await self._catch_up(rest, refill.code, refill.first)
        parts = _subtract(refill.first, refill.last, self._covered[refill.code])
        if not parts:
            return Refilled()
        (first, last), *others = parts
        self._cover(refill.code, first, last)
        fetched, problem = await self._fill(rest, refill.code, first, last)
        gap = self._gap(refill.code, first, last, fetched.ids, problem)
        more = [Refill(refill.code, a, b) for a, b in others]
        return Refilled(fetched.batches, gap, fetched.rejects, more)

    async def _fill(
        self, rest: RestClient, code: int, first: int, last: int
    ) -> tuple[_Fetched, str]:
        """Ids `first`..`last`, and why some did not come ('' when all did)."""
        fetched = _Fetched()
        next_id, pages, lag = first, 0, 0
        try:
            while next_id <= last:
                if pages >= self.config.max_pages:
                    return fetched, f"stopped after {pages} pages"
                page = await self._page(rest, code, next_id, fetched)
                pages += 1
                self._keep(fetched, code, [r for r in page.rows if first <= r.id <= last])
                if self.path == TRADES:  # the recent window holds what it holds
                    return fetched, "older than the recent trades /api/v3/trades keeps"
                if page.rows and page.rows[-1].id >= next_id:
                    next_id = page.rows[-1].id + 1
                if len(page.rows) < PAGE_LIMIT and next_id <= last:
                    if lag >= self.config.lag_retries:
                        return fetched, "REST does not have them (yet)"
                    lag += 1
                    await asyncio.sleep(self.config.lag_delay)
        except (RestError, msgspec.ValidationError) as exc:
            return fetched, _why(exc)
        return fetched, ""

    async def _catch_up(self, rest: RestClient, code: int, first: int) -> Refilled:
        """Everything after `first - 1` up to now, for a symbol quiet since a reconnect."""
        delay = self._due[code] - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not self._awaiting[code]:
            return Refilled()  # a live trade came: the gap check names the hole
        fetched = _Fetched()
        next_id = first
        try:
            for _ in range(self.config.max_pages):
                page = await self._page(rest, code, next_id, fetched)
                rows = [r for r in page.rows if r.id >= first]
                self._keep(fetched, code, rows)
                if not rows or len(page.rows) < PAGE_LIMIT or self.path == TRADES:
                    break
                next_id = rows[-1].id + 1
        except (RestError, msgspec.ValidationError) as exc:
            # Where the hole ends is unknown; the next live trade will reveal it as a gap.
            symbol = self.index.instruments[code].symbol
            log.warning("%s: catch-up of %s failed: %s", self.source, symbol, _why(exc))
            return Refilled(fetched.batches, None, fetched.rejects)
        finally:
            self._awaiting[code] = False
            self._tracking = bool(self._awaiting.any())
        resumed = int(self._resumed[code])
        last = resumed - 1 if resumed >= 0 else max(fetched.ids, default=first - 1)
        if fetched.ids:
            self._cover(code, first, max(fetched.ids))
        gap = None
        if last >= first:
            got = [i for i in fetched.ids if i <= last]
            gap = self._gap(code, first, last, got, "", "after a reconnect: ")
        return Refilled(fetched.batches, gap, fetched.rejects)

    async def _page(self, rest: RestClient, code: int, from_id: int, into: _Fetched) -> Page:
        raw = self.index.instruments[code].raw_symbol
        await self._pace()
        try:
            page = await fetch_page(rest, self.path, raw, from_id)
        except RestError as exc:
            if self.path != HISTORICAL_TRADES or exc.status not in (401, 403):
                raise
            log.warning(
                "%s: %s wants an API key (%s); backfilling from the recent trades only",
                self.source, HISTORICAL_TRADES, exc,
            )  # fmt: skip
            self.path = TRADES
            await self._pace()
            page = await fetch_page(rest, TRADES, raw, None)
        into.rejects += [
            Reject(msgspec.json.encode(row), "unreadable REST trade row") for row in page.bad
        ]
        return page

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_request > now:
            await asyncio.sleep(self._next_request - now)
        self._next_request = max(now, self._next_request) + 1 / self.config.requests_per_second

    def _keep(self, fetched: _Fetched, code: int, rows: list[Row]) -> None:
        if not rows:
            return
        fetched.ids += [r.id for r in rows]
        recv_ts = time.time_ns() // 1000
        fetched.batches.append(rows_to_batch(rows, code, self.index, self.source, recv_ts))

    def _cover(self, code: int, first: int, last: int) -> None:
        covered = self._covered[code]
        covered.append((first, last))
        del covered[:-32]  # only recent ranges can overlap a new request

    def _gap(
        self, code: int, first: int, last: int, got: list[int], problem: str, prefix: str = ""
    ) -> Gap:
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
        return gap_event(self.source, instrument, first, last, recovered, detail)


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
