"""Data quality per venue, measured where trades enter the engine.

Per exchange (the venue, not the feed): how long trades take to reach us (local receipt minus
event time, p50/p99 over the last minute or two), how many arrive out of order (an event time
earlier than one already received for the same instrument), sequence gaps and the trades
they missed (from the sources' `Gap` events), and, from the engine's own counts, duplicates
and future-stamped trades. Everything is counted per batch with numpy and kept in bounded
form: the delays in a fixed log-bucket histogram (`DelaySketch`), never as a list of values.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tickpipe.records import Gap, TradeBatch

# Upper bounds (ms) of the delay buckets: (-inf, 0], then 0.1 ms growing by 20% up to about
# an hour. A quantile is reported as its bucket's upper bound: at most 20% above the truth.
DELAY_BOUNDS_MS: np.ndarray = np.concatenate(
    [[0.0], 0.1 * 1.2 ** np.arange(int(np.ceil(np.log(3.6e7) / np.log(1.2))) + 1)]
)
RECENT_S = 60.0  # delay quantiles are those of the last one to two of these periods


class DelaySketch:
    """A histogram of delays (ms) over `DELAY_BOUNDS_MS`; the last bucket holds what is
    beyond them. Bounded whatever the number of trades."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = np.zeros(len(DELAY_BOUNDS_MS) + 1, np.int64)

    def add(self, delays_ms: np.ndarray) -> None:
        if len(delays_ms):
            bucket = np.searchsorted(DELAY_BOUNDS_MS, delays_ms, side="left")
            self.counts += np.bincount(bucket, minlength=len(self.counts))

    def merged(self, other: DelaySketch) -> DelaySketch:
        out = DelaySketch()
        out.counts = self.counts + other.counts
        return out

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the sample of rank ceil(q * n) (None: empty;
        inf: beyond the last bound)."""
        n = self.count
        if not n:
            return None
        rank = max(1, int(np.ceil(q * n)))
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        return float(DELAY_BOUNDS_MS[bucket]) if bucket < len(DELAY_BOUNDS_MS) else float("inf")


@dataclass(frozen=True)
class VenueQuality:
    """One venue's data quality since start-up (delays: recent)."""

    exchange: str
    received: int  # trades that reached the engine, duplicates included
    delay_p50_ms: float | None  # local receipt minus event time, recent trades
    delay_p99_ms: float | None
    out_of_order: int  # event time earlier than one already received for its instrument
    gaps: int  # sequence gaps the sources reported
    missing: int  # trades those gaps left out (before any backfill)
    recovered: int  # of those, fetched again
    duplicates: int = 0  # dropped by the engine's de-duplication
    future: int = 0  # stamped beyond `future_tolerance` after receipt (kept, no watermark)

    @property
    def out_of_order_share(self) -> float:
        return self.out_of_order / self.received if self.received else 0.0


@dataclass
class _Venue:
    received: int = 0
    out_of_order: int = 0
    gaps: int = 0
    missing: int = 0
    recovered: int = 0
    recent: DelaySketch = field(default_factory=DelaySketch)
    previous: DelaySketch = field(default_factory=DelaySketch)
    period: int = 0  # which RECENT_S period `recent` holds


class QualityMeter:
    """Counts each batch that reaches the engine, per venue; `read` gives `VenueQuality`s.

    Fed on the engine's loop (`observe`, `on_gap`), read from any thread: the counters are
    guarded by one lock, held for a few array additions per batch.
    """

    def __init__(self, recent_s: float = RECENT_S) -> None:
        self.recent_us = int(recent_s * 1e6)
        self._venues: dict[str, _Venue] = {}
        self._newest: dict[tuple[str, str], int] = {}  # (exchange, symbol) -> max event time
        self._lock = threading.Lock()

    def observe(self, batch: TradeBatch, now_us: int) -> None:
        """A batch as it reaches the engine, in arrival order."""
        if not len(batch):
            return
        keys = [(i.exchange, i.symbol) for i in batch.instruments]
        code = batch.instrument.astype(np.int64)
        late = self._out_of_order(keys, code, batch.ts)
        delay_ms = (batch.recv_ts - batch.ts) / 1000.0
        names = list(dict.fromkeys(i.exchange for i in batch.instruments))
        venue_of = None
        if len(names) > 1:  # an aggregator's feed: several venues in one batch
            position = {name: v for v, name in enumerate(names)}
            venue_of = np.array([position[i.exchange] for i in batch.instruments])[code]
        period = now_us // self.recent_us
        with self._lock:
            for v, name in enumerate(names):
                mine = slice(None) if venue_of is None else np.flatnonzero(venue_of == v)
                venue = self._venues.setdefault(name, _Venue(period=period))
                if venue.period != period:
                    fresh = DelaySketch()
                    venue.previous = venue.recent if venue.period == period - 1 else fresh
                    venue.recent, venue.period = DelaySketch(), period
                venue.received += len(delay_ms[mine])
                venue.out_of_order += int(late[mine].sum())
                venue.recent.add(delay_ms[mine])

    def on_gap(self, gap: Gap) -> None:
        """A source's `Gap` event: a hole in a venue's consecutive trade ids."""
        with self._lock:
            venue = self._venues.setdefault(gap.exchange, _Venue())
            venue.gaps += 1
            venue.missing += max(0, gap.last_missing - gap.first_missing + 1)
            venue.recovered += gap.recovered

    def read(
        self, now_us: int, engine_counts: Mapping[str, tuple[int, int]] | None = None
    ) -> dict[str, VenueQuality]:
        """Per venue, by name; `engine_counts`: (duplicates, future) per venue."""
        counts = engine_counts or {}
        period = now_us // self.recent_us
        out = {}
        with self._lock:
            for name, v in sorted(self._venues.items()):
                recent = DelaySketch()
                if v.period == period:
                    recent = v.recent.merged(v.previous)
                elif v.period == period - 1:
                    recent = v.recent
                dups, future = counts.get(name, (0, 0))
                out[name] = VenueQuality(
                    exchange=name, received=v.received, delay_p50_ms=recent.quantile(0.5),
                    delay_p99_ms=recent.quantile(0.99), out_of_order=v.out_of_order,
                    gaps=v.gaps, missing=v.missing, recovered=v.recovered,
                    duplicates=dups, future=future,
                )  # fmt: skip
        return out

    # -- internals -------------------------------------------------------------------------

    def _out_of_order(
        self, keys: list[tuple[str, str]], code: np.ndarray, ts: np.ndarray
    ) -> np.ndarray:
        """Per trade: whether an earlier-arrived trade of its instrument (in this batch or
        before) has a later event time.

        In (instrument, arrival) order (one stable sort), a key packing instrument above
        event time makes one running maximum serve every instrument: each instrument's keys
        lie above all of the previous one's, so a trade is out of order exactly when its key
        is below the running maximum before it. Against earlier batches: the newest event
        time each instrument had.
        """
        n = len(ts)
        floor = np.iinfo(np.int64).min
        newest = np.array([self._newest.get(k, floor) for k in keys], np.int64)
        late = ts < newest[code]
        if n > 1:
            order = np.argsort(code, kind="stable")
            t0, span = int(ts.min()), int(ts.max()) - int(ts.min())
            if span < (1 << 40) and len(keys) < (1 << 22):
                key = (code[order] << 40) | (ts[order] - t0)
            else:  # a batch spanning years: ranks instead of times, same order
                rank = np.empty(n, np.int64)
                rank[np.lexsort((np.arange(n), ts, code))] = np.arange(n)
                key = rank[order]
            before = np.maximum.accumulate(key)
            late[order[1:]] |= key[1:] < before[:-1]
        batch_max = np.full(len(keys), floor, np.int64)
        np.maximum.at(batch_max, code, ts)
        for k in np.flatnonzero(batch_max > newest).tolist():
            self._newest[keys[k]] = int(batch_max[k])
        return late


def engine_counts(states: Iterable[object]) -> dict[str, tuple[int, int]]:
    """(duplicates, future-stamped) per venue, summed over the engine's instrument states."""
    out: dict[str, tuple[int, int]] = {}
    for s in states:
        exchange = s.instrument.exchange  # type: ignore[attr-defined]
        dups, future = out.get(exchange, (0, 0))
        out[exchange] = (dups + s.duplicates, future + s.future)  # type: ignore[attr-defined]
    return out
