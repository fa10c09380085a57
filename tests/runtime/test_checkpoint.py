"""The Checkpoint, without Kafka: a fake commit call and the writer's durable count by hand."""

from __future__ import annotations

import numpy as np

from tickpipe.runtime.checkpoint import Checkpoint, CommitFailed, Offset
from tickpipe.transport.offsets import OffsetTracker, decode_metadata, encode_metadata

SECOND = 1_000_000


class FakeCommit:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[list[Offset], bool]] = []

    def __call__(self, offsets: list[Offset], final: bool) -> None:
        self.calls.append((offsets, final))
        if self.failures:
            self.failures -= 1
            raise CommitFailed("broker away")


def consumed(tracker: OffsetTracker, partition: int, offsets: list[int], ts: int) -> None:
    n = len(offsets)
    tracker.note(partition, np.array(offsets, np.int64), np.zeros(n, np.int64),
                 np.full(n, ts, np.int64))  # fmt: skip


def test_an_offset_is_never_released_before_the_writer_made_it_durable() -> None:
    commit = FakeCommit()
    checkpoint = Checkpoint(commit)
    tracker = OffsetTracker(0, SECOND, SECOND)
    consumed(tracker, 0, [0, 1, 2], 100 * SECOND)
    checkpoint.mark(submitted=3, tracker=tracker)
    consumed(tracker, 0, [3, 4], 101 * SECOND)
    checkpoint.mark(submitted=5, tracker=tracker)

    assert not checkpoint.commit(durable=2)
    assert commit.calls == [] and checkpoint.committed == {}
    assert checkpoint.commit(durable=4)  # only the first mark is durable
    ((offsets, final),) = commit.calls
    assert [(o.partition, o.offset) for o in offsets] == [(0, 3)] and not final
    assert checkpoint.commit(durable=5)
    assert [(o.partition, o.offset) for o in commit.calls[-1][0]] == [(0, 5)]
    assert checkpoint.committed == {0: 5} and checkpoint.commits == 2
    assert not checkpoint.commit(durable=9)  # nothing new consumed: nothing to commit


def test_the_newest_durable_mark_is_committed_with_its_replay_point_as_metadata() -> None:
    commit = FakeCommit()
    checkpoint = Checkpoint(commit)
    tracker = OffsetTracker(0, SECOND, SECOND)
    consumed(tracker, 0, [0, 1], 100 * SECOND)
    checkpoint.mark(1, tracker)
    consumed(tracker, 1, [7], 100 * SECOND)
    checkpoint.mark(2, tracker)
    assert checkpoint.commit(durable=2)
    assert len(commit.calls) == 1  # one commit for both marks: the newest
    offsets = {o.partition: o for o in commit.calls[0][0]}
    assert {p: o.offset for p, o in offsets.items()} == {0: 2, 1: 8}
    for p, o in offsets.items():
        assert o.metadata == encode_metadata(tracker.replay_point(p))
        assert decode_metadata(o.metadata) is not None


def test_a_failed_commit_is_retried_with_the_same_offsets() -> None:
    commit = FakeCommit(failures=1)
    checkpoint = Checkpoint(commit)
    tracker = OffsetTracker(0, SECOND, SECOND)
    consumed(tracker, 3, [10, 11], 100 * SECOND)
    checkpoint.mark(1, tracker)
    assert not checkpoint.commit(durable=1)
    assert checkpoint.committed == {} and checkpoint.commits == 0
    assert checkpoint.commit(durable=1)
    first, second = commit.calls
    assert first == second
    assert checkpoint.committed == {3: 12} and checkpoint.commits == 1


def test_a_final_commit_repeats_partitions_committed_already() -> None:
    commit = FakeCommit()
    checkpoint = Checkpoint(commit)
    tracker = OffsetTracker(0, SECOND, SECOND)
    consumed(tracker, 0, [0], 100 * SECOND)
    checkpoint.mark(1, tracker)
    assert checkpoint.commit(1)
    checkpoint.mark(2, tracker)  # nothing new since
    assert not checkpoint.commit(2)
    checkpoint.mark(3, tracker)
    assert checkpoint.commit(3, final=True)
    assert commit.calls[-1][1] is True and commit.calls[-1][0][0].offset == 1


def test_resume_says_where_an_assigned_partition_replays_from() -> None:
    checkpoint = Checkpoint(FakeCommit())
    assert checkpoint.resume(0, 50, encode_metadata(40)) == 40
    assert checkpoint.resume(1, 50, encode_metadata(50)) is None  # nothing open before it
    assert checkpoint.resume(2, 50, None) is None  # no metadata: start at the commit
    assert checkpoint.committed == {0: 50, 1: 50, 2: 50}


def test_partitions_given_away_are_never_committed_from_here_again() -> None:
    commit = FakeCommit(failures=1)
    checkpoint = Checkpoint(commit)
    tracker = OffsetTracker(0, SECOND, SECOND)
    consumed(tracker, 0, [0, 1], 100 * SECOND)
    consumed(tracker, 1, [0, 1, 2], 100 * SECOND)
    checkpoint.mark(submitted=1, tracker=tracker)
    assert not checkpoint.commit(durable=1)  # failed: the mark waits, both partitions in it
    checkpoint.forget({1})  # a cooperative rebalance gave partition 1 to another processor
    assert checkpoint.commit(durable=1)
    assert [(o.partition, o.offset) for o in commit.calls[-1][0]] == [(0, 2)]
    checkpoint.forget({0})
    assert checkpoint.marks == [] and checkpoint.committed == {}
