"""A Kafka consumer group's offsets kept in the PostgreSQL write transaction (migration 5):
stored with the rows, moved only from where this store last read or wrote them, so a
processor that lost a partition writes nothing for it and a retried write is stored once."""

from __future__ import annotations

import pytest

from stores.rows import T0, trade
from tickpipe.records import TradeBatch
from tickpipe.stores.base import FencedWrite
from tickpipe.stores.flush import Flush, StreamOffsets
from tickpipe.stores.postgresql import PostgresStore

GROUP, TOPIC = "g", "trades"


def _flush(ids: range, positions: dict[int, int]) -> Flush:
    trades = TradeBatch.from_trades([trade(i, T0 + i) for i in ids])
    offsets = {p: (o, f'{{"v": 1, "replay": {o - 1}}}') for p, o in positions.items()}
    return Flush.of([trades], offsets=StreamOffsets(GROUP, TOPIC, offsets))


def _trade_ids(store: PostgresStore) -> list[str]:
    return [r[0] for r in store.query("SELECT trade_id FROM trades ORDER BY ts")]


@pytest.fixture
def two(postgres_dsn):
    """Two processors' stores on one database."""
    a, b = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    yield a, b
    a.close()
    b.close()


def test_offsets_are_stored_in_the_transaction_of_the_rows_they_produced(two):
    a, _ = two
    assert a.stream_offsets(GROUP, TOPIC, [0, 1]) == {}
    a.write_flush(_flush(range(3), {0: 10, 1: 4}))
    a.write_flush(_flush(range(3, 5), {1: 6}))
    assert a.stream_offsets(GROUP, TOPIC, [0, 1, 2]) == {
        0: (10, '{"v": 1, "replay": 9}'),
        1: (6, '{"v": 1, "replay": 5}'),
    }
    assert a.stream_offsets(GROUP, "other", [0]) == {}
    assert _trade_ids(a) == [str(i) for i in range(5)]


def test_a_processor_that_lost_its_partition_cannot_store_anything_for_it(two):
    old, new = two
    old.stream_offsets(GROUP, TOPIC, [0])
    old.write_flush(_flush(range(2), {0: 10}))
    assert new.stream_offsets(GROUP, TOPIC, [0]) == {0: (10, '{"v": 1, "replay": 9}')}
    # Claimed by the new owner: the old one's late flush is refused, before and after the
    # new owner's first write.
    with pytest.raises(FencedWrite, match="partition 0 was taken by another processor"):
        old.write_flush(_flush(range(100, 103), {0: 12}))
    new.write_flush(_flush(range(2, 4), {0: 20}))
    with pytest.raises(FencedWrite):
        old.write_flush(_flush(range(100, 103), {0: 25}))
    new.write_flush(_flush(range(4, 5), {0: 30}))
    assert _trade_ids(new) == [str(i) for i in range(5)]  # none of the fenced writes
    assert new.stream_offsets(GROUP, TOPIC, [0])[0][0] == 30


def test_of_two_processors_taking_a_new_partition_the_last_to_claim_it_stores(two):
    first, last = two
    first.stream_offsets(GROUP, TOPIC, [3])
    last.stream_offsets(GROUP, TOPIC, [3])  # both found no offset
    with pytest.raises(FencedWrite):
        first.write_flush(_flush(range(2), {3: 5}))
    last.write_flush(_flush(range(2, 4), {3: 7}))
    assert _trade_ids(last) == ["2", "3"]


def test_a_retried_write_whose_first_try_committed_is_not_stored_again(two):
    # The store's retry of a write whose COMMIT answer was lost sends it again from the same
    # offsets and claim: `retry` is given `first`'s, then `first` commits, `retry` retries.
    first, retry = two
    first.stream_offsets(GROUP, TOPIC, [0, 1])
    retry._offsets = dict(first._offsets)  # noqa: SLF001  (the state a lost answer leaves)
    write = _flush(range(4), {0: 8, 1: 3})
    first.write_flush(write)
    retry.write_flush(write)  # no error: already stored
    assert _trade_ids(first) == [str(i) for i in range(4)]
    assert retry.conflicted_writes == 0  # rolled back at the offsets, before any trade
    retry.write_flush(_flush(range(4, 6), {0: 9}))  # and it goes on from there
    assert _trade_ids(first) == [str(i) for i in range(6)]
    assert first.stream_offsets(GROUP, TOPIC, [0, 1]) == {
        0: (9, '{"v": 1, "replay": 8}'),
        1: (3, '{"v": 1, "replay": 2}'),
    }
