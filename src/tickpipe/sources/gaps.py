"""Holes in trade ids: the one gap check of every exchange whose ids are consecutive."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Hole(NamedTuple):
    """Ids `first`..`last` of instrument `code` never arrived; `after_ts` is the time of the
    trade just before them (where a REST backfill by time starts)."""

    code: int
    first: int
    last: int
    after_ts: int


# A live delivery holds a few dozen trades: below this many, a loop in Python costs less than
# the twenty numpy calls of the general path (a microsecond each, whatever the size).
_FEW = 64


class IdGaps:
    """Finds missing trade ids per instrument from the highest id seen so far.

    Ids at or below that mark are duplicates or late arrivals and never a gap, so reordering
    inside a batch costs nothing; reordering across batches can report a gap that the late
    trades then fill (the engine sees them all either way). The first id of an instrument only
    sets the mark: what traded before tickpipe started is not a gap.
    """

    def __init__(self, instruments: int) -> None:
        self.last = np.full(instruments, -1, np.int64)  # -1: nothing seen yet
        self.last_ts = np.zeros(instruments, np.int64)  # time of the trade with that id

    def holes(
        self,
        inst: np.ndarray,
        seq: np.ndarray,
        ts: np.ndarray,
        first_seq: np.ndarray | None = None,
    ) -> list[Hole]:
        """The holes these trades show, marking them seen. `first_seq` is the first id each
        row stands for when a row aggregates several trades (else the row's own id)."""
        if first_seq is None and len(seq) <= _FEW:
            found = self._holes_in_order(inst.tolist(), seq.tolist(), ts.tolist())
            if found is not None:
                return found
        first = seq if first_seq is None else first_seq
        fresh = seq > self.last[inst]
        if not fresh.any():
            return []
        order = np.lexsort((seq[fresh], inst[fresh]))
        inst, seq, ts, first = (a[fresh][order] for a in (inst, seq, ts, first))
        prev = np.empty_like(seq)
        prev_ts = np.empty_like(ts)
        prev[1:], prev_ts[1:] = seq[:-1], ts[:-1]
        starts = np.ones(len(seq), np.bool_)
        starts[1:] = inst[1:] != inst[:-1]
        prev[starts] = self.last[inst[starts]]
        prev_ts[starts] = self.last_ts[inst[starts]]
        missing = (first > prev + 1) & (prev >= 0)
        ends = np.ones(len(seq), np.bool_)
        ends[:-1] = inst[:-1] != inst[1:]
        self.last[inst[ends]] = seq[ends]
        self.last_ts[inst[ends]] = ts[ends]
        return [
            Hole(int(inst[i]), int(prev[i]) + 1, int(first[i]) - 1, int(prev_ts[i]))
            for i in np.flatnonzero(missing).tolist()
        ]

    def _holes_in_order(self, inst: list[int], seq: list[int], ts: list[int]) -> list[Hole] | None:
        """`holes` for trades whose new ids arrive in order per instrument, the common case,
        without numpy; None (nothing marked) when they do not, for the general path."""
        last, last_ts = self.last, self.last_ts
        marks: dict[int, tuple[int, int]] = {}  # instrument -> (id, time) of its newest trade
        found = []
        for code, id_, t in zip(inst, seq, ts, strict=True):
            mark = marks.get(code)
            if mark is None:
                prev, prev_ts = int(last[code]), int(last_ts[code])
                if id_ <= prev:
                    continue  # seen before the batch: a duplicate or a late trade
            else:
                prev, prev_ts = mark
                if id_ <= prev:
                    return None  # out of order within the batch
            if id_ > prev + 1 and prev >= 0:
                found.append(Hole(code, prev + 1, id_ - 1, prev_ts))
            marks[code] = (id_, t)
        for code, (id_, t) in marks.items():
            last[code], last_ts[code] = id_, t
        found.sort()  # by instrument, then id, as the general path gives them
        return found
