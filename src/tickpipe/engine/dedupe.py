"""Which trades has the engine already accepted? Exact answers, within the correction horizon.

A duplicate can arrive any time a trade could still change a candle, so the engine remembers
every accepted trade id until its trade falls behind the correction horizon.

Numeric ids (most exchanges) are packed with the instrument into one int64 and kept in sorted
numpy runs that merge like a binary counter, so a batch is checked with a few `searchsorted`
calls instead of one Python lookup per trade. Ids that do not pack (text ids, or numbers far
from the instrument's first id) go to a plain Python set, which is exact too.
"""

from __future__ import annotations

import numpy as np

_ID_BITS = 40
_HALF_RANGE = 1 << (_ID_BITS - 1)
_MAX_INSTRUMENTS = 1 << (63 - _ID_BITS)


class SeenTrades:
    """Remembers accepted (instrument, trade id) pairs and forgets them past the horizon."""

    def __init__(self) -> None:
        self._base = np.zeros(0, np.int64)  # per instrument: offset centring its ids in range
        self._has_base = np.zeros(0, bool)
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (keys, gid, ts)
        self._other: dict[tuple[int, object], int] = {}  # (instrument, id) -> ts

    def __len__(self) -> int:
        return sum(len(keys) for keys, _, _ in self._runs) + len(self._other)

    def filter_new(
        self, gid: np.ndarray, seq: np.ndarray, ids: np.ndarray | None, ts: np.ndarray
    ) -> np.ndarray:
        """A mask of the trades not seen before (first occurrence within the batch wins).

        `ids` is None when every trade id is `str(seq)`; otherwise an object array of str.
        The trades marked new are remembered.
        """
        n = len(gid)
        new = np.ones(n, bool)
        if n == 0:
            return new
        if ids is None:
            decimal, number = np.ones(n, bool), seq
        else:
            decimal, number = _decimal_ids(ids)
        numeric = decimal.copy()
        keys = np.zeros(n, np.int64)
        if numeric.any():
            packs, packed = self._pack(gid, number, numeric)
            numeric &= packs
            keys[numeric] = packed[numeric]
        idx = np.flatnonzero(numeric)
        if len(idx):
            # A stable sort keeps the first of equal keys first (timsort: cheap when the
            # batch is nearly in id order, as the engine hands it over).
            order = np.argsort(keys[idx], kind="stable")
            ordered = keys[idx][order]
            first = np.ones(len(ordered), bool)
            first[1:] = ordered[1:] != ordered[:-1]
            uniq = ordered[first]
            unseen = ~self._contains(uniq)
            keep = idx[order[first][unseen]]
            new[idx] = False
            new[keep] = True
            self._add(uniq[unseen], gid[keep], ts[keep])
        for i in np.flatnonzero(~numeric).tolist():
            key = (int(gid[i]), number[i].item() if decimal[i] else ids[i])
            if key in self._other:
                new[i] = False
            else:
                self._other[key] = int(ts[i])
        return new

    def forget_before(self, horizon_start: np.ndarray) -> None:
        """Drop trades older than `horizon_start[gid]` (per instrument, microseconds)."""
        runs = []
        for keys, gid, ts in self._runs:
            keep = ts >= horizon_start[gid]
            if keep.all():
                runs.append((keys, gid, ts))
            elif keep.any():
                runs.append((keys[keep], gid[keep], ts[keep]))
        self._runs = runs
        limit = horizon_start.tolist()
        self._other = {k: t for k, t in self._other.items() if t >= limit[k[0]]}

    def _pack(self, gid: np.ndarray, seq: np.ndarray, numeric: np.ndarray):
        size = int(gid.max()) + 1
        if size > len(self._base):
            self._base = np.concatenate([self._base, np.zeros(size - len(self._base), np.int64)])
            self._has_base = np.concatenate(
                [self._has_base, np.zeros(size - len(self._has_base), bool)]
            )
        fresh = numeric & ~self._has_base[gid]
        if fresh.any():
            g, first = np.unique(gid[fresh], return_index=True)
            self._base[g] = seq[fresh][first] - _HALF_RANGE
            self._has_base[g] = True
        offset = seq - self._base[gid]
        fits = (offset >= 0) & (offset < (1 << _ID_BITS)) & (gid < _MAX_INSTRUMENTS)
        packed = (gid.astype(np.int64) << _ID_BITS) | np.where(fits, offset, 0)
        return fits, packed

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), bool)
        for run, _, _ in self._runs:
            pos = np.searchsorted(run, keys)
            pos[pos == len(run)] = 0
            found |= run[pos] == keys
        return found

    def _add(self, keys: np.ndarray, gid: np.ndarray, ts: np.ndarray) -> None:
        """Remember `keys` (sorted, unique) with their instrument and time."""
        if not len(keys):
            return
        self._runs.append((keys, gid, ts))
        # Merge like a binary counter: a run never sits on a smaller one, so there are
        # O(log n) runs and each key is re-sorted O(log n) times over its life.
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (k2, g2, t2), (k1, g1, t1) = self._runs.pop(), self._runs.pop()
            keys = np.concatenate([k1, k2])
            order = np.argsort(keys, kind="stable")
            merged_gid = np.concatenate([g1, g2])[order]
            self._runs.append((keys[order], merged_gid, np.concatenate([t1, t2])[order]))


def _decimal_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which text ids are plain decimal numbers (`12`, not `012` or `a7`), and their values.

    Such an id is keyed by its value, whatever `seq` the copy carries, so a resent trade is
    a duplicate even on a feed that numbers trades by arrival.
    """
    number = np.zeros(len(ids), np.int64)
    decimal = np.zeros(len(ids), bool)
    for i, text in enumerate(ids.tolist()):
        if text.isdecimal() and len(text) < 19 and (text == "0" or text[0] != "0"):
            number[i] = int(text)
            decimal[i] = True
    return decimal, number
