"""Which Kafka offset a partition's open windows still need: the replay point of a commit.

With each offset commit a processor records, per partition, the lowest offset whose trades an
open window (or a window a late trade may still correct) still needs. After a crash or a
rebalance the next owner seeks there and rebuilds those windows by replay. The rule matches the
embedded restart (stores' `restore_cutoff`): per instrument, nothing before
`align_down(max event time - allowed lateness - horizon - align)` can change any more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from tickpipe.engine.windows import restore_cutoff

METADATA_VERSION = 1


@dataclass
class PartitionLog:
    """What one partition's consumed messages still tell: per (instrument, time bucket of
    `align`), the lowest offset of a message whose newest trade fell in that bucket.

    Cut-offs are multiples of `align`, so a message is needed exactly when its bucket is at or
    after its instrument's cut-off bucket: this keeps a few entries per instrument, not one
    per message (bounded memory however small the messages).
    """

    first: dict[tuple[int, int], int] = field(default_factory=dict)
    position: int = -1  # the next offset to consume (last consumed + 1); -1: nothing yet
    floor: int = -1  # the replay point found last time (never goes back)


class OffsetTracker:
    """Per partition of one assignment: consumed messages and the replay point they give."""

    def __init__(self, lateness: int, horizon: int, align: int) -> None:
        self.lateness = lateness
        self.horizon = horizon
        self.align = align
        self.partitions: dict[int, PartitionLog] = {}
        self.max_ts = np.zeros(0, np.int64)  # per instrument id (the processor's numbering)

    def note(self, partition: int, offsets: np.ndarray, gids: np.ndarray, max_ts: np.ndarray):
        """Messages consumed from `partition`, in offset order, with their instrument and max ts."""
        if not len(offsets):
            return
        offsets, gids, max_ts = (np.asarray(a, np.int64) for a in (offsets, gids, max_ts))
        log = self.partitions.setdefault(partition, PartitionLog())
        log.position = max(log.position, int(offsets[-1]) + 1)
        top = int(gids.max()) + 1
        if top > len(self.max_ts):
            grow = np.full(top - len(self.max_ts), np.iinfo(np.int64).min // 4, np.int64)
            self.max_ts = np.concatenate([self.max_ts, grow])
        np.maximum.at(self.max_ts, gids, max_ts)
        buckets = max_ts // self.align
        # the lowest offset per (instrument, bucket) among these messages
        order = np.lexsort((offsets, buckets, gids))
        g, b, o = gids[order], buckets[order], offsets[order]
        starts = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (b[1:] != b[:-1])])
        first = log.first
        for key_g, key_b, off in zip(
            g[starts].tolist(), b[starts].tolist(), o[starts].tolist(), strict=True
        ):
            if (key_g, key_b) not in first:  # offsets only grow: the first one stays lowest
                first[(key_g, key_b)] = off

    def skip(self, partition: int, offset: int) -> None:
        """A message that holds no trades (malformed, dead-lettered): only the position moves."""
        log = self.partitions.setdefault(partition, PartitionLog())
        log.position = max(log.position, offset + 1)

    def replay_point(self, partition: int) -> int:
        """The lowest offset still needed in `partition` (its position when none is).

        Entries no longer needed are forgotten: the point never moves back.
        """
        log = self.partitions.get(partition)
        if log is None:
            return -1
        cutoff = restore_cutoff(self.max_ts, self.lateness, self.horizon, self.align) // self.align
        limit = cutoff.tolist()
        log.first = {key: off for key, off in log.first.items() if key[1] >= limit[key[0]]}
        point = min(log.first.values(), default=log.position)
        log.floor = max(log.floor, point)
        return log.floor


def encode_metadata(replay: int) -> str:
    """Commit metadata: small JSON, so any Kafka tool shows it (`kafka-consumer-groups`)."""
    return json.dumps({"v": METADATA_VERSION, "replay": replay}, separators=(",", ":"))


def decode_metadata(text: str | None) -> int | None:
    """The replay offset of a commit, or None when the commit carries none we understand."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != METADATA_VERSION:
        return None
    replay = data.get("replay")
    return replay if isinstance(replay, int) and replay >= 0 else None
