"""Window definitions: tumbling and hopping windows aligned to the Unix epoch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.engine.windows import Window, parse_window

S = 1_000_000
M = 60 * S


def test_a_plain_duration_is_a_tumbling_window() -> None:
    window = parse_window("5s")
    assert (window.name, window.size, window.slide, window.hopping) == ("5s", 5 * S, 5 * S, False)


def test_window_names_are_canonical_whatever_the_spelling() -> None:
    assert parse_window("60s").name == "1m"
    assert parse_window("60000ms").name == "1m"
    assert parse_window("1m/60s").name == "1m"  # slide equal to the size: tumbling
    assert not parse_window("1m/60s").hopping


def test_size_slash_slide_is_a_hopping_window() -> None:
    window = parse_window("1m/5s")
    assert (window.name, window.size, window.slide, window.hopping) == ("1m/5s", M, 5 * S, True)
    assert parse_window("60s/5000ms").name == "1m/5s"


@pytest.mark.parametrize("text", ["1s/5s", "7s/2s", "1m/7s"])
def test_a_slide_that_does_not_divide_the_size_is_rejected_with_an_example(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_window(text)
    message = str(info.value)
    assert repr(text) in message
    assert "divide" in message
    assert "1m/5s" in message


@pytest.mark.parametrize("text", ["7x", "1m/7x", "x/5s", "1m/5s/1s", "/5s"])
def test_a_bad_part_of_a_window_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_window(text)


def test_tumbling_window_starts_are_aligned_to_the_epoch() -> None:
    window = parse_window("1m")
    ts = 1_700_000_123_456_789  # 2023-11-14T22:15:23.456789Z
    (start,) = window.starts(ts)
    assert start % M == 0
    assert start <= ts < start + M
    assert start == 1_700_000_100_000_000  # 22:15:00 exactly


def test_a_trade_on_a_boundary_starts_the_next_window() -> None:
    window = parse_window("1m")
    assert list(window.starts(5 * M)) == [5 * M]
    assert list(window.starts(5 * M - 1)) == [4 * M]


def test_hopping_starts_are_every_window_that_contains_the_trade() -> None:
    window = parse_window("1m/5s")
    starts = list(window.starts(61 * S + 7))
    assert starts == [60 * S - k * 5 * S for k in range(12)]


@given(
    size_slides=st.integers(1, 12),
    slide=st.integers(1, 10**6),
    ts=st.integers(0, 10**15),
)
def test_hopping_starts_equal_a_brute_force_scan(size_slides: int, slide: int, ts: int) -> None:
    window = Window("w", size_slides * slide, slide)
    starts = list(window.starts(ts))
    lo = (ts - window.size) // slide * slide
    expected = [s for s in range(ts - ts % slide, lo - 1, -slide) if s <= ts < s + window.size]
    assert starts == expected
    assert len(starts) == size_slides
    assert all(s % slide == 0 for s in starts)
