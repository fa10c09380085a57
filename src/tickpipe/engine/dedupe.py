"""Which trades has the engine already accepted? Exact answers, within the correction horizon.

A duplicate can arrive any time a trade could still change a candle, so the engine remembers
every accepted trade id until its trade falls behind the correction horizon.

Numeric ids (most exchanges) are packed with the instrument into one int64 and kept as sorted,
merged ranges [lo, hi] of consecutive ids. Exchanges number trades consecutively per symbol,
so a million trades of a symbol are one range: memory follows the gaps in the ids, not the
number of trades, and a batch is checked with one `searchsorted`. A range is forgotten when
its newest trade falls behind the horizon (so an id may be remembered for longer than
needed, never for less). Ids that do not pack (text ids, or numbers far from the
instrument's first id) go to a plain Python set, which is exact too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_ID_BITS = 40
_HALF_RANGE = 1 << (_ID_BITS - 1)
_MAX_INSTRUMENTS = 1 << (63 - _ID_BITS)


class SeenTrades:
    """Remembers accepted (instrument, trade id) pairs and forgets them past the horizon."""

    def __init__(self) -> None:
        self._base = np.zeros(0, np.int64)  # per instrument: offset centring its ids in range
        self._has_base = np.zeros(0, bool)
        self._lo = np.zeros(0, np.int64)  # sorted, disjoint, never adjacent ranges of keys
        self._hi = np.zeros(0, np.int64)
        self._ts = np.zeros(0, np.int64)  # the newest trade time in each range
        self._other: dict[tuple[int, object], int] = {}  # (instrument, id) -> ts

    def __len__(self) -> int:
        """How many trade ids are remembered."""
        return int((self._hi - self._lo + 1).sum()) + len(self._other)

    @property
    def entries(self) -> int:
        """How many ranges and set members hold them (what the memory follows)."""
        return len(self._lo) + len(self._other)

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
            fits, packed = self._pack(gid, seq, None)
            in_order = n == 1 or np.count_nonzero(packed[1:] > packed[:-1]) == n - 1
            if in_order and np.count_nonzero(fits) == n:
                # The live case: numeric ids, increasing (the engine hands trades over in
                # instrument and time order): nothing to sort, no id twice in the batch.
                new = ~self._contains(packed)
                self._add(packed[new], gid[new], ts[new])
                return new
            decimal, number, texts = np.ones(n, bool), seq, seq  # `texts` is never read
        else:
            (decimal, number), texts = _decimal_ids(ids), ids
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
            key = (int(gid[i]), number[i].item() if decimal[i] else texts[i])
            if key in self._other:
                new[i] = False
            else:
                self._other[key] = int(ts[i])
        return new

    def forget_before(self, horizon_start: np.ndarray) -> None:
        """Drop trades older than `horizon_start[gid]` (per instrument, microseconds)."""
        keep = self._ts >= horizon_start[self._lo >> _ID_BITS]
        self._lo, self._hi, self._ts = self._lo[keep], self._hi[keep], self._ts[keep]
        limit = horizon_start.tolist()
        self._other = {k: t for k, t in self._other.items() if t >= limit[k[0]]}

    def state(self) -> dict[str, Any]:
        """The ranges, per-instrument id bases and other ids (engine/snapshot.py)."""
        other = list(self._other.items())
        return {
            "base": self._base, "has_base": self._has_base, "lo": self._lo, "hi": self._hi,
            "ts": self._ts, "other_gid": [k[0] for k, _ in other],
            "other_id": [k[1] for k, _ in other], "other_ts": [t for _, t in other],
        }  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        """Remember what `state()` held."""
        self._base, self._has_base = state["base"], state["has_base"]
        self._lo, self._hi, self._ts = state["lo"], state["hi"], state["ts"]
        keys = zip(state["other_gid"], state["other_id"], strict=True)
        self._other = dict(zip(keys, state["other_ts"], strict=True))

    def _pack(self, gid: np.ndarray, seq: np.ndarray, numeric: np.ndarray | None):
        """(Whether each id packs, the keys); `numeric`: which ids are numbers (None: all)."""
        size = int(gid.max()) + 1
        if size > len(self._base):
            self._base = np.concatenate([self._base, np.zeros(size - len(self._base), np.int64)])
            self._has_base = np.concatenate(
                [self._has_base, np.zeros(size - len(self._has_base), bool)]
            )
        fresh = ~self._has_base[gid]
        if numeric is not None:
            fresh &= numeric
        if np.count_nonzero(fresh):
            g, first = np.unique(gid[fresh], return_index=True)
            self._base[g] = seq[fresh][first] - _HALF_RANGE
            self._has_base[g] = True
        offset = seq - self._base[gid]
        fits = (offset >= 0) & (offset < (1 << _ID_BITS))
        if size > _MAX_INSTRUMENTS:
            fits &= gid < _MAX_INSTRUMENTS
        packed = (gid.astype(np.int64) << _ID_BITS) | np.where(fits, offset, 0)
        return fits, packed

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self._lo, keys, side="right") - 1
        inside = at >= 0
        found = np.zeros(len(keys), bool)
        found[inside] = keys[inside] <= self._hi[at[inside]]
        return found

    def _add(self, keys: np.ndarray, gid: np.ndarray, ts: np.ndarray) -> None:
        """Remember `keys` (sorted, unique, none seen before) with their trade times."""
        if not len(keys):
            return
        del gid  # the instrument is in the key's high bits
        step = (keys[1:] != keys[:-1] + 1).nonzero()[0] + 1
        first = np.concatenate(([0], step))
        add_lo, add_hi = keys[first], keys[np.concatenate((step, [len(keys)])) - 1]
        add_ts = np.maximum.reduceat(ts, first)
        if self._extend(add_lo, add_hi, add_ts):
            return
        lo = np.concatenate([self._lo, add_lo])
        hi = np.concatenate([self._hi, add_hi])
        newest = np.concatenate([self._ts, add_ts])
        order = np.argsort(lo, kind="stable")
        lo, hi, newest = lo[order], hi[order], newest[order]
        reach = np.maximum.accumulate(hi)
        # A range joins the one before it when it starts at most one past that one's end,
        # and is of the same instrument.
        starts = np.concatenate(
            [[True], (lo[1:] > reach[:-1] + 1) | ((lo[1:] >> _ID_BITS) != (lo[:-1] >> _ID_BITS))]
        )
        begin = np.flatnonzero(starts)
        self._lo = lo[begin]
        self._hi = reach[np.append(begin[1:], len(lo)) - 1]
        self._ts = np.maximum.reduceat(newest, begin)

    def _extend(self, lo: np.ndarray, hi: np.ndarray, ts: np.ndarray) -> bool:
        """The live case in place: every new range [lo, hi] (sorted) continues a different
        remembered range of its instrument (the next ids of a symbol) and stays clear of the
        range after it. Then nothing is re-sorted or copied, whatever the number of ranges
        (instruments) held; False (nothing changed) otherwise."""
        held = len(self._lo)
        if not held:
            return False
        at = np.searchsorted(self._lo, lo, side="right") - 1
        if at[0] < 0 or (len(at) > 1 and np.count_nonzero(at[1:] > at[:-1]) < len(at) - 1):
            return False
        after = np.minimum(at + 1, held - 1)
        ok = (
            (self._hi[at] + 1 == lo)
            & ((self._lo[at] >> _ID_BITS) == (lo >> _ID_BITS))
            & ((at + 1 == held) | (hi + 1 < self._lo[after]))
        )
        if np.count_nonzero(ok) < len(ok):
            return False
        self._hi[at] = hi
        self._ts[at] = np.maximum(self._ts[at], ts)
        return True


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
