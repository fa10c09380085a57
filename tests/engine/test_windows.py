"""Window definitions: durations, tumbling and hopping windows aligned to the Unix epoch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.engine.windows import Window, format_duration, parse_duration, parse_window

US = 1
MS = 1_000
S = 1_000_000
M = 60 * S
H = 60 * M
D = 24 * H


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("1us", 1),
        ("250ms", 250 * MS),
        ("5s", 5 * S),
        ("1m", M),
        ("90m", 90 * M),
        ("1h", H),
        ("1d", D),
        (" 5 s ", 5 * S),
    ],
)
def test_parse_duration_reads_every_unit_as_microseconds(text: str, us: int) -> None:
    assert parse_duration(text) == us


@pytest.mark.parametrize("text", ["7x", "0s", "1.5s", "-1s", "5", "", "5S", "s", "1 m 2"])
def test_parse_duration_rejects_bad_text_and_names_the_allowed_units(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    for example in ("250ms", "5s", "1m", "1h"):
        assert example in message


@pytest.mark.parametrize(
    ("us", "text"),
    [(1, "1us"), (1500, "1500us"), (250 * MS, "250ms"), (60 * S, "1m"), (90 * S, "90s"),
     (H, "1h"), (2 * D, "2d")],
)  # fmt: skip
def test_format_duration_is_the_shortest_exact_spelling(us: int, text: str) -> None:
    assert format_duration(us) == text


@given(st.integers(min_value=1, max_value=10**13))
def test_format_duration_round_trips_through_parse_duration(us: int) -> None:
    assert parse_duration(format_duration(us)) == us


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
