"""The replay point a processor commits: the first message an open window still needs."""

from __future__ import annotations

import numpy as np

from tickpipe.transport.offsets import OffsetTracker, decode_metadata, encode_metadata

S = 1_000_000  # one second in µs
LATENESS, HORIZON, ALIGN = 0, 5 * S, 5 * S  # nothing before max - 10 s (aligned) can change


def note(tracker: OffsetTracker, partition: int, rows: list[tuple[int, int, int]]) -> None:
    arr = np.array(rows, np.int64)
    tracker.note(partition, arr[:, 0], arr[:, 1], arr[:, 2])


def test_the_replay_point_is_the_first_message_a_changeable_window_needs():
    tracker = OffsetTracker(LATENESS, HORIZON, ALIGN)
    # instrument 0: one message a second, event times 100 s .. 119 s
    note(tracker, 0, [(i, 0, (100 + i) * S) for i in range(20)])
    # cut-off: align_down(119 - 0 - 5 - 5) = 105 s: messages from 105 s (offset 5) are needed
    assert tracker.replay_point(0) == 5


def test_a_quiet_instrument_holds_the_point_back_for_its_own_windows():
    tracker = OffsetTracker(LATENESS, HORIZON, ALIGN)
    note(tracker, 0, [(0, 1, 100 * S)])  # instrument 1: one trade at 100 s, then quiet
    note(tracker, 0, [(i, 0, (100 + i) * S) for i in range(1, 40)])
    # instrument 0 only needs its last ~14 s, but instrument 1's window (its own clock) is open
    assert tracker.replay_point(0) == 0


def test_the_point_moves_on_with_event_time_and_never_back():
    tracker = OffsetTracker(LATENESS, HORIZON, ALIGN)
    note(tracker, 0, [(i, 0, (100 + i) * S) for i in range(10)])
    first = tracker.replay_point(0)
    note(tracker, 0, [(i, 0, (100 + i) * S) for i in range(10, 60)])
    later = tracker.replay_point(0)
    assert first == 0 and later == 45  # align_down(159 - 10) = 145 s -> offset 45
    note(tracker, 0, [(60, 0, 90 * S)])  # a very late trade does not pull the point back
    assert tracker.replay_point(0) == 45


def test_with_nothing_needed_the_point_is_the_position():
    tracker = OffsetTracker(LATENESS, HORIZON, ALIGN)
    note(tracker, 2, [(7, 0, 100 * S)])
    tracker.skip(2, 8)  # a malformed message: only the position moves
    assert tracker.partitions[2].position == 9
    assert tracker.replay_point(2) == 7
    assert tracker.replay_point(5) == -1  # a partition never consumed


def test_partitions_are_independent():
    tracker = OffsetTracker(LATENESS, HORIZON, ALIGN)
    note(tracker, 0, [(i, 0, (100 + i) * S) for i in range(30)])
    note(tracker, 1, [(i, 1, (200 + i) * S) for i in range(3)])
    assert tracker.replay_point(0) == 15
    assert tracker.replay_point(1) == 0


def test_commit_metadata_round_trips_and_unknown_metadata_means_no_replay():
    assert decode_metadata(encode_metadata(1234)) == 1234
    for text in (None, "", "garbage", '{"v": 2, "replay": 5}', '{"v": 1, "replay": -3}', "[]"):
        assert decode_metadata(text) is None


def test_what_is_kept_grows_with_instruments_not_with_messages():
    tracker = OffsetTracker(LATENESS, HORIZON, ALIGN)
    offset = 0
    for second in range(100, 400):  # 5 minutes, 3 instruments, 100 one-trade messages a second
        rows = [(offset + i, i % 3, second * S + i * 1000) for i in range(100)]
        offset += 100
        note(tracker, 0, rows)
        tracker.replay_point(0)
    assert len(tracker.partitions[0].first) <= 3 * 4  # a few align-buckets per instrument
    # and the point is still exact: the first message of 385 s (align_down(399 - 10) = 385)
    assert tracker.replay_point(0) == (385 - 100) * 100
