"""`tickpipe backfill --gaps`: the holes in what a store holds, as backfill tasks.

Where an exchange's trade ids are consecutive per symbol (`CONSECUTIVE_IDS`), a hole is a jump
in the stored ids: ids `a` and `b > a + 1` stored with nothing between them mean that
`a + 1 .. b - 1` traded between the times of `a` and `b`, so the task is exactly that span (its
two ends are stored already and de-duplicated). Elsewhere the sources' stored `disconnect`
events, and `gap` events that did not recover everything, say when data may have been lost:
the task spans from the last stored trade before the event to the first one after it. Tasks
of one instrument that overlap are merged; only holes inside [since, until) are looked at, so
a daily job fills the day's holes.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import numpy as np

from tickpipe.history.backfill import Task
from tickpipe.records import TradeBatch
from tickpipe.stores.base import ALL_TIME, Store

CONSECUTIVE_IDS = frozenset({"binance", "kraken", "okx", "coinbase"})
EVENTS_READ = 100_000  # newest disconnect events looked at


class _Event(msgspec.Struct):
    """What `--gaps` reads of a stored `disconnect` or `gap` event."""

    source: str
    ts: int
    symbol: str = ""  # a gap's (a disconnect concerns every symbol of its source)
    first_missing: int = 0
    last_missing: int = -1
    recovered: int = 0

    @property
    def filled(self) -> bool:
        """A gap whose trades all came back (a disconnect never says so)."""
        return bool(self.symbol) and self.recovered >= self.last_missing - self.first_missing + 1


def find_gaps(
    store: Store,
    exchanges: list[str] | None = None,
    since: int | None = None,
    until: int | None = None,
) -> list[Task]:
    """Backfill tasks for the holes in the stored trades of `exchanges` (all when None)."""
    lo, hi = ALL_TIME[0] if since is None else since, ALL_TIME[1] if until is None else until
    wanted = None if exchanges is None else set(exchanges)
    tasks: list[Task] = []
    for (exchange, symbol), seq, ts in _instruments(store, lo, hi):
        if wanted is not None and exchange not in wanted:
            continue
        if exchange in CONSECUTIVE_IDS:
            order = np.lexsort((ts, seq))
            seq, ts = seq[order], ts[order]
            jumps = np.flatnonzero(np.diff(seq) > 1)
            tasks += [
                Task(exchange, symbol, int(ts[i]), int(ts[i + 1]) + 1) for i in jumps.tolist()
            ]
        else:
            tasks += _around_disconnects(store, exchange, symbol, ts, lo, hi)
    return _merged(tasks)


def _instruments(
    store: Store, lo: int, hi: int
) -> Iterator[tuple[tuple[str, str], np.ndarray, np.ndarray]]:
    """Per stored instrument with trades in [lo, hi): its trades' order keys and times (the
    store hands them out instrument by instrument)."""
    current: tuple[str, str] | None = None
    seqs: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for batch in store.trade_batches(since=lo, until=hi):
        for key, part in _by_instrument(batch):
            if key != current and current is not None:
                yield current, np.concatenate(seqs), np.concatenate(times)
                seqs, times = [], []
            current = key
            seqs.append(part.seq)
            times.append(part.ts)
    if current is not None:
        yield current, np.concatenate(seqs), np.concatenate(times)


def _by_instrument(batch: TradeBatch) -> Iterator[tuple[tuple[str, str], TradeBatch]]:
    names = [(i.exchange, i.symbol) for i in batch.instruments]
    keys = sorted(set(names[c] for c in np.unique(batch.instrument).tolist()))
    for key in keys:
        codes = [c for c, name in enumerate(names) if name == key]
        yield key, batch.take(np.flatnonzero(np.isin(batch.instrument, codes)))


def _around_disconnects(
    store: Store, exchange: str, symbol: str, ts: np.ndarray, lo: int, hi: int
) -> list[Task]:
    out = []
    ts = np.sort(ts)
    events = store.events("disconnect", EVENTS_READ) + store.events("gap", EVENTS_READ)
    for when, _, source, detail in events:
        try:
            event = msgspec.json.decode(detail, type=_Event)
        except msgspec.DecodeError:
            event = _Event(source, when)
        if event.source != exchange or not lo <= event.ts < hi or event.filled:
            continue
        if event.symbol and event.symbol != symbol:
            continue
        at = int(np.searchsorted(ts, event.ts))
        start = int(ts[at - 1]) if at > 0 else lo
        end = int(ts[at]) + 1 if at < len(ts) else min(hi, event.ts + 1)
        out.append(Task(exchange, symbol, start, end))
    return out


def _merged(tasks: list[Task]) -> list[Task]:
    """Overlapping or touching tasks of one instrument as one."""
    out: list[Task] = []
    for task in sorted(tasks, key=lambda t: (t.exchange, t.symbol, t.since_us)):
        last = out[-1] if out else None
        if (
            last is not None
            and (last.exchange, last.symbol) == (task.exchange, task.symbol)
            and task.since_us <= last.until_us
        ):
            out[-1] = Task(last.exchange, last.symbol, last.since_us,
                           max(last.until_us, task.until_us))  # fmt: skip
        else:
            out.append(task)
    return out
