"""The id-hole check against a plain model, in batches small (the in-order loop) and large
(the general path), in any order, with duplicates and late trades."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpipe.sources.gaps import Hole, IdGaps

INSTRUMENTS = 4


def model_holes(marks: dict[int, tuple[int, int]], batch: list[tuple[int, int, int]]) -> list[Hole]:
    """What the docstring of `IdGaps` says, one instrument at a time: the new ids (above the
    mark) in id order; a hole before each new id that does not follow the previous one."""
    found = []
    for code in range(INSTRUMENTS):
        prev, prev_ts = marks.get(code, (-1, 0))
        for id_, ts in sorted((i, t) for c, i, t in batch if c == code and i > prev):
            if id_ > prev + 1 and prev >= 0:
                found.append(Hole(code, prev + 1, id_ - 1, prev_ts))
            if id_ != prev:
                prev, prev_ts = id_, ts
        if prev >= 0:
            marks[code] = (prev, prev_ts)
    return found


trade = st.tuples(st.integers(0, INSTRUMENTS - 1), st.integers(0, 60))
batches = st.lists(st.lists(trade, min_size=1, max_size=80), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(batches=batches, in_order=st.booleans())
def test_holes_are_the_models_for_any_batches(batches: list[list[tuple[int, int]]],
                                              in_order: bool) -> None:  # fmt: skip
    gaps = IdGaps(INSTRUMENTS)
    marks: dict[int, tuple[int, int]] = {}
    for raw in batches:
        pairs = sorted(raw, key=lambda p: p[1]) if in_order else raw
        batch = [(code, id_, 1_000 * id_ + code) for code, id_ in pairs]  # a time per trade
        inst, seq, ts = (np.array(col, np.int64) for col in zip(*batch, strict=True))
        assert gaps.holes(inst.astype(np.int32), seq, ts) == model_holes(marks, batch)
        for code in range(INSTRUMENTS):
            assert (int(gaps.last[code]), int(gaps.last_ts[code])) == marks.get(code, (-1, 0))


def test_a_few_trades_in_order_report_the_hole_before_each_jump() -> None:
    gaps = IdGaps(2)
    seq = np.array([10, 5, 11, 14, 8], np.int64)
    # An instrument's first id only sets its mark.
    found = gaps.holes(np.array([0, 1, 0, 0, 1], np.int32), seq, seq * 100)
    assert found == [Hole(0, 12, 13, 1100), Hole(1, 6, 7, 500)]
    found = gaps.holes(np.array([1, 0], np.int32), np.array([9, 17]), np.array([900, 1700]))
    assert found == [Hole(0, 15, 16, 1400)]
