"""SeenTrades: which (instrument, trade id) pairs the engine has already accepted."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpipe.engine.dedupe import SeenTrades

FAR = 1 << 41  # beyond the 40-bit packing range around an instrument's first id


def numeric(seen: SeenTrades, gids: list[int], seqs: list[int], ts: list[int] | None = None):
    """filter_new for exchanges whose trade id is the decimal form of seq (ids=None)."""
    n = len(seqs)
    return seen.filter_new(
        np.array(gids, np.int64),
        np.array(seqs, np.int64),
        None,
        np.array(ts if ts is not None else [0] * n, np.int64),
    ).tolist()


def text(seen: SeenTrades, gids: list[int], ids: list[str], seqs: list[int], ts: list[int]):
    return seen.filter_new(
        np.array(gids, np.int64),
        np.array(seqs, np.int64),
        np.array(ids, object),
        np.array(ts, np.int64),
    ).tolist()


def test_a_trade_id_is_new_once_and_then_a_duplicate() -> None:
    seen = SeenTrades()
    assert numeric(seen, [0, 0, 0], [100, 101, 102]) == [True, True, True]
    assert numeric(seen, [0, 0, 0], [101, 103, 100]) == [False, True, False]


def test_the_first_occurrence_within_a_batch_wins() -> None:
    seen = SeenTrades()
    assert numeric(seen, [0, 0, 0, 0], [7, 7, 8, 7]) == [True, False, True, False]
    assert text(seen, [1, 1, 1], ["a", "a", "b"], [1, 2, 3], [0, 0, 0]) == [True, False, True]


def test_the_same_id_on_another_instrument_is_a_different_trade() -> None:
    seen = SeenTrades()
    assert numeric(seen, [0, 1, 2], [5, 5, 5]) == [True, True, True]
    assert numeric(seen, [2, 1, 0, 3], [5, 5, 5, 5]) == [False, False, False, True]


def test_numeric_ids_far_apart_still_dedupe() -> None:
    seen = SeenTrades()
    first = 10**12
    ids = [first, first + FAR, first - FAR, first + 3 * FAR, 2**62, 0]
    assert numeric(seen, [0] * len(ids), ids) == [True] * len(ids)
    # Again, in another batch and in another order: every one is known.
    assert numeric(seen, [0] * len(ids), ids[::-1]) == [False] * len(ids)
    # Neighbours of the far ids are still new.
    assert numeric(seen, [0, 0, 0], [first + FAR + 1, first - FAR - 1, 2**62 - 1]) == [True] * 3
    assert len(seen) == len(ids) + 3


def test_text_ids_that_are_not_numbers_dedupe() -> None:
    seen = SeenTrades()
    ids = ["a1b2-c3", "0xff", "007", "7", "trade 1"]
    # seq is arrival order for exchanges without numeric ids: a resend gets another seq.
    assert text(seen, [0] * 5, ids, [1, 2, 3, 4, 5], [0] * 5) == [True] * 5
    assert text(seen, [0] * 5, ids[::-1], [10, 11, 12, 13, 14], [0] * 5) == [False] * 5
    assert text(seen, [1], ["a1b2-c3"], [20], [0]) == [True]  # another instrument


def test_leading_zeros_make_another_id() -> None:
    seen = SeenTrades()
    assert text(seen, [0, 0], ["7", "007"], [7, 7], [0, 0]) == [True, True]


def test_forget_before_drops_only_older_trades_per_instrument() -> None:
    seen = SeenTrades()
    # Ids 1 and 3: not consecutive, so each is remembered on its own.
    assert numeric(seen, [0, 0, 1, 1], [1, 3, 1, 3], ts=[100, 200, 100, 200]) == [True] * 4
    assert text(seen, [0, 1], ["x", "x"], [9, 9], [100, 200]) == [True, True]
    # Instrument 0 forgets what traded before 150; instrument 1 before 50 (nothing).
    seen.forget_before(np.array([150, 50], np.int64))
    assert numeric(seen, [0, 0, 1, 1], [1, 3, 1, 3], ts=[100, 200, 100, 200]) == [
        True, False, False, False,
    ]  # fmt: skip
    assert text(seen, [0, 1], ["x", "x"], [9, 9], [100, 200]) == [True, False]


def test_consecutive_ids_are_forgotten_only_with_their_newest_trade() -> None:
    """Consecutive ids share one range: kept longer than needed, never shorter."""
    seen = SeenTrades()
    assert numeric(seen, [0, 0, 0], [1, 2, 3], ts=[100, 200, 300]) == [True] * 3
    assert seen.entries == 1
    seen.forget_before(np.array([250], np.int64))
    assert numeric(seen, [0, 0], [1, 3], ts=[100, 300]) == [False, False]
    seen.forget_before(np.array([301], np.int64))
    assert numeric(seen, [0], [3], ts=[300]) == [True]


def test_a_million_consecutive_ids_take_one_entry_per_instrument() -> None:
    seen = SeenTrades()
    n = 1_000_000
    gid = np.arange(n) % 4
    seq = 10**9 + np.arange(n) // 4
    assert seen.filter_new(gid, seq, None, np.arange(n)).all()
    assert seen.entries == 4
    assert not seen.filter_new(gid[::7], seq[::7], None, np.arange(n)[::7]).any()


def test_steps_of_the_next_ids_extend_their_ranges_and_a_filled_hole_joins_two() -> None:
    seen = SeenTrades()
    symbols, base = 1_000, 10**9
    for step in range(40):  # live: each step holds the next id of a few of 1,000 symbols
        n = np.arange(step * 50, step * 50 + 50)
        assert seen.filter_new(n % symbols, base + n // symbols, None, np.zeros(50, np.int64)).all()
    assert seen.entries == symbols and len(seen) == 2_000
    assert numeric(seen, [3, 3, 3], [base, base + 1, base + 2]) == [False, False, True]
    assert numeric(seen, [3], [base + 4]) == [True]  # a hole at base + 3: a range of its own
    assert seen.entries == symbols + 1
    assert numeric(seen, [3, 3], [base + 3, base + 4]) == [True, False]  # filled: one range
    assert seen.entries == symbols and len(seen) == 2_003


def test_forget_before_keeps_trades_exactly_at_the_limit() -> None:
    seen = SeenTrades()
    numeric(seen, [0], [FAR], ts=[150])
    numeric(seen, [0], [1], ts=[150])
    seen.forget_before(np.array([150], np.int64))
    assert numeric(seen, [0, 0], [1, FAR], ts=[150, 150]) == [False, False]


id_strategy = st.one_of(
    st.integers(0, 40).map(lambda i: ("n", i)),  # numeric near the first id
    st.integers(0, 3).map(lambda i: ("n", (i + 1) * FAR + 5)),  # numeric far away
    st.sampled_from(["a", "b", "c-1", "00", "x"]).map(lambda s: ("t", s)),  # text
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 2), id_strategy), min_size=1, max_size=12),
        min_size=1,
        max_size=8,
    )
)
def test_filter_new_equals_a_set_of_keys(batches) -> None:
    seen = SeenTrades()
    model: set[tuple[int, str]] = set()
    for batch in batches:
        gid = [g for g, _ in batch]
        ids = [str(v) for _, (_, v) in batch]
        # Numeric ids carry seq = the id; text ids an arbitrary arrival order.
        seqs = [v if kind == "n" else 1000 + i for i, (_, (kind, v)) in enumerate(batch)]
        mask = text(seen, gid, ids, seqs, [0] * len(batch))
        expected = []
        for key in zip(gid, ids, strict=True):
            expected.append(key not in model)
            model.add(key)
        assert mask == expected
    assert len(seen) == len(model)


def test_a_decimal_trade_id_is_a_duplicate_whatever_seq_the_copy_carries() -> None:
    """Uniqueness is on (exchange, symbol, trade_id). A feed whose decimal ids are not an
    order key numbers trades by arrival, so a resent copy can carry another seq."""
    seen = SeenTrades()
    assert text(seen, [0], ["12"], [12], [0]) == [True]
    assert text(seen, [0], ["12"], [13], [0]) == [False]
