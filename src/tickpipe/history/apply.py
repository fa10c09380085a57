"""Backfilled trades into a store: de-duplicated against what it holds, and the candles of every
window they touch recomputed by the engine and corrected with revisions, in one transaction.

A live engine corrects a closed candle only within its correction horizon; history is older
than any horizon. So each chunk of fetched trades gets a dedicated `CandleEngine` over the
stored trades of the windows it touches (from the start of the first window of any interval
that holds the chunk's oldest trade, to the end of the last one that holds its newest) plus
the new ones: every such window is then complete, and its candle is what a batch
recomputation gives. A candle that differs from the stored one is written with the revision
rule of late trades (a final candle's revision goes up by one, a provisional one keeps it), so
the stores' idempotent upsert keeps the newest; windows that ended before `now` minus the
allowed lateness are final. Trades and their candles land in one `Store.write`, so a crash
never leaves candles without their trades or the other way round. A store that keeps the
engine snapshot of an embedded run loses it in that write: the next `tickpipe run` restores
its windows from the stored trades (backfilled ones included), not from a snapshot without them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.records import Candle, TradeBatch, concat_batches
from tickpipe.runtime.writer import REPLAY_FROM, STATE
from tickpipe.stores.base import SnapshotStore, Store
from tickpipe.stores.flush import Flush
from tickpipe.verify import APPROX, EXACT, REL_TOL


@dataclass
class Applied:
    """What one chunk changed in the store."""

    fetched: int = 0
    new: int = 0  # trades stored (the rest were stored already)
    candles: int = 0  # candles written (new or corrected)
    corrected: int = 0  # of those, final candles whose revision went up


def touched_range(config: EngineConfig, first_ts: int, last_ts: int) -> tuple[int, int]:
    """[lo, hi): the start of the first and the end of the last window of any interval that
    holds a trade in [first_ts, last_ts]."""
    lo = min(first_ts - first_ts % w.slide - (w.size - w.slide) for w in config.windows)
    hi = max(last_ts - last_ts % w.slide + w.size for w in config.windows)
    return lo, hi


def of_instrument(batch: TradeBatch, exchange: str, symbol: str) -> TradeBatch:
    """The trades of one (exchange, symbol) in `batch`."""
    codes = [
        c for c, i in enumerate(batch.instruments) if i.exchange == exchange and i.symbol == symbol
    ]
    if not codes:
        return batch.take(np.zeros(0, np.int64))
    return batch.take(np.flatnonzero(np.isin(batch.instrument, codes)))


def apply_chunk(store: Store, config: EngineConfig, fetched: TradeBatch, now_us: int) -> Applied:
    """Store the trades of `fetched` (one instrument) the store lacks, with their candles."""
    out = Applied(fetched=len(fetched))
    if not len(fetched):
        return out
    instrument = fetched.instruments[int(fetched.instrument[0])]
    exchange, symbol = instrument.exchange, instrument.symbol
    lo, hi = touched_range(config, int(fetched.ts.min()), int(fetched.ts.max()))
    stored = concat_batches(
        [of_instrument(b, exchange, symbol) for b in store.trade_batches(since=lo, until=hi)],
        fetched.source,
    )
    new = _new_trades(fetched, stored)
    out.new = len(new)
    if not len(new):
        return out
    candles = _recomputed(config, [stored, new], lo, hi, now_us)
    changed = _changed(store, config, candles, exchange, symbol, new, now_us)
    out.candles = len(changed)
    out.corrected = sum(1 for c in changed if c.revision > 0)
    if isinstance(store, SnapshotStore):
        # A stored engine snapshot lacks these trades: a restart that loaded it would close
        # their windows without them. Deleted with the rows, the restart rebuilds its windows
        # from the stored trades instead, backfilled ones included.
        drop: dict[str, bytes | None] = {STATE: None, REPLAY_FROM: None}
        store.write_flush(Flush.of(trades=[new], candles=changed, snapshot=drop))
    else:
        store.write(trades=[new], candles=changed)
    return out


def _new_trades(fetched: TradeBatch, stored: TradeBatch) -> TradeBatch:
    """The trades of `fetched` whose id is neither stored nor repeated earlier in it."""
    if fetched.trade_id is None and stored.trade_id is None:  # numeric ids: column-wise
        _, first = np.unique(fetched.seq, return_index=True)
        first.sort()
        return fetched.take(first[~np.isin(fetched.seq[first], stored.seq)])
    have = set(stored.trade_ids().tolist())
    ids = fetched.trade_ids().tolist()
    keep = []
    for n, trade_id in enumerate(ids):
        key = str(trade_id)
        if key not in have:
            have.add(key)
            keep.append(n)
    return fetched.take(np.array(keep, np.int64))


def _recomputed(
    config: EngineConfig, batches: list[TradeBatch], lo: int, hi: int, now_us: int
) -> list[Candle]:
    """Every candle a dedicated engine makes of `batches` (one instrument's stored and new
    trades of [lo, hi)): nothing is late to it and nothing forgotten before the end."""
    engine = CandleEngine(
        EngineConfig(
            windows=config.windows,
            allowed_lateness=config.allowed_lateness,
            correction_horizon=hi - lo + max(w.size for w in config.windows),
            idle_timeout=config.idle_timeout,
            provisional_every=config.provisional_every,
        )
    )
    instrument = batches[-1].instruments[int(batches[-1].instrument[0])]
    cutoff = {(instrument.exchange, instrument.symbol): lo}
    return engine.restore([b for b in batches if len(b)], cutoff, {}, now_us)


def _changed(
    store: Store,
    config: EngineConfig,
    candles: list[Candle],
    exchange: str,
    symbol: str,
    new: TradeBatch,
    now_us: int,
) -> list[Candle]:
    """The recomputed candles of windows that hold a new trade, where they differ from the
    stored ones, with the revision and final flag the store must keep."""
    first_ts, last_ts = int(new.ts.min()), int(new.ts.max())
    closed_before = now_us - config.allowed_lateness
    out = []
    for window in config.windows:
        first = first_ts - first_ts % window.slide - (window.size - window.slide)
        last = last_ts - last_ts % window.slide
        mine = [c for c in candles if c.interval == window.name and first <= c.start <= last]
        if not mine:
            continue
        held = {c.start: c for c in store.candles(exchange, symbol, window.name, first, last + 1)}
        for candle in mine:
            before = held.get(candle.start)
            if before is not None and _same(before, candle):
                continue
            final = candle.final or candle.start + window.size <= closed_before
            revision = 0
            if before is not None:
                final = final or before.final
                revision = before.revision + 1 if before.final else before.revision
            candle.final, candle.revision, candle.updated_at = final, revision, now_us
            out.append(candle)
    return out


def _same(a: Candle, b: Candle) -> bool:
    """Equal as `tickpipe verify` compares them (sums of floats to the last bits)."""
    if any(getattr(a, f) != getattr(b, f) for f in EXACT):
        return False
    return all(math.isclose(getattr(a, f), getattr(b, f), rel_tol=REL_TOL) for f in APPROX)
