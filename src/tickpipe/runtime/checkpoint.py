"""The checkpoint of a Kafka processor: which offsets may be committed, and when.

After each submission to the store writer the processor takes a *mark*: the position of every
partition, its replay point (transport/offsets.py) and the writer's submission count. A mark is
released for commit only once the writer's `durable` count has reached it, so the store always
holds everything before a committed offset; each committed offset carries its replay point as
metadata. A commit that fails (broker away, group rebalancing) keeps its mark for the next try.

The commit call is injected, so the checkpoint runs without Kafka: the processor passes one
that commits through its consumer and raises `CommitFailed` when the broker refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tickpipe.transport.offsets import OffsetTracker, decode_metadata, encode_metadata


class CommitFailed(Exception):
    """The commit call could not commit; the same offsets are offered again next time."""


@dataclass(frozen=True)
class Mark:
    """Where every partition stood after one submission to the store writer."""

    submitted: int
    positions: dict[int, int]
    replay: dict[int, int]


@dataclass(frozen=True)
class Offset:
    """One partition's offset to commit, with its replay point as commit metadata."""

    partition: int
    offset: int
    metadata: str


log = logging.getLogger("tickpipe.process")
CommitCall = Callable[[list[Offset], bool], None]  # (offsets, synchronously)


class Checkpoint:
    """What one assignment of a processor may commit. A new assignment takes a new one."""

    def __init__(self, commit: CommitCall, name: str = "process") -> None:
        self._commit = commit
        self.name = name  # the replica's, in log lines
        self.marks: list[Mark] = []
        self.committed: dict[int, int] = {}  # partition -> offset committed (or found committed)
        self.commits = 0

    def resume(self, partition: int, offset: int, metadata: str | None) -> int | None:
        """An assigned partition with `offset` committed: where it must replay from, if its
        open windows need trades before that offset (None: start at the offset)."""
        self.committed[partition] = offset
        replay = decode_metadata(metadata)
        return replay if replay is not None and replay < offset else None

    def forget(self, partitions: set[int]) -> None:
        """Partitions given to another processor (a cooperative rebalance): never commit them
        again from here."""
        for p in partitions:
            self.committed.pop(p, None)
        marks = []
        for m in self.marks:
            positions = {p: o for p, o in m.positions.items() if p not in partitions}
            replay = {p: o for p, o in m.replay.items() if p not in partitions}
            if positions:
                marks.append(Mark(m.submitted, positions, replay))
        self.marks = marks

    def mark(self, submitted: int, tracker: OffsetTracker) -> None:
        """Remember where the partitions stand once the writer's `submitted`-th is durable."""
        positions, replay = {}, {}
        for partition, plog in tracker.partitions.items():
            if plog.position < 0:
                continue
            positions[partition] = plog.position
            replay[partition] = tracker.replay_point(partition)
        if positions:
            self.marks.append(Mark(submitted, positions, replay))

    def commit(self, durable: int, final: bool = False) -> bool:
        """Commit the newest mark the writer has made durable (`final`: synchronously, and
        every partition of it even if committed that far already). False if nothing was
        committed: nothing was ready, or the commit failed and its mark waits for the next."""
        newest = None
        while self.marks and self.marks[0].submitted <= durable:
            newest = self.marks.pop(0)
        if newest is None:
            return False
        offsets = [
            Offset(p, pos, encode_metadata(newest.replay.get(p, pos)))
            for p, pos in newest.positions.items()
            if final or pos > self.committed.get(p, -1)
        ]
        if not offsets:
            return False
        try:
            self._commit(offsets, final)
        except CommitFailed as exc:
            log.warning("%s: offset commit failed (%s); retrying", self.name, exc)
            self.marks.insert(0, newest)
            return False
        for o in offsets:
            self.committed[o.partition] = o.offset
        self.commits += 1
        return True
