"""Durations: `250ms`-style text, its shortest spelling, and decoding config fields once."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.durations import (
    NOT_A_DURATION,
    Micros,
    MicrosOrZero,
    OptionalMicros,
    Seconds,
    allowing,
    decode,
    format_duration,
    parse_duration,
)

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


class Timers(msgspec.Struct, forbid_unknown_fields=True):
    every_s: Annotated[Seconds, allowing("every: e.g. 1s")] = msgspec.field(
        name="every", default=Seconds(1.0)
    )
    span_us: Micros = msgspec.field(name="span", default=Micros(S))
    delay_us: MicrosOrZero = msgspec.field(name="delay", default=MicrosOrZero(0))
    horizon_us: OptionalMicros = msgspec.field(name="horizon", default=OptionalMicros(0))


def timers(**raw: object) -> Timers:
    return msgspec.convert(raw, Timers, strict=False, dec_hook=decode)


def test_fields_are_decoded_once_into_their_unit_under_the_users_key() -> None:
    got = timers(every="250ms", span="1m", delay="5s", horizon="1h")
    assert (got.every_s, got.span_us, got.delay_us, got.horizon_us) == (0.25, M, 5 * S, H)
    assert isinstance(got.every_s, float)
    assert isinstance(got.span_us, int)


def test_zero_is_allowed_only_where_the_type_says_so() -> None:
    assert timers(delay="0").delay_us == 0
    assert timers(delay="0s").delay_us == 0
    assert timers(horizon="").horizon_us == 0  # not set
    for raw in ({"span": "0s"}, {"every": "0"}, {"horizon": "0s"}, {"span": ""}):
        with pytest.raises(msgspec.ValidationError, match=NOT_A_DURATION):
            timers(**raw)


def test_a_bad_duration_names_its_key_and_a_non_text_value_its_type() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        timers(every="soon")
    assert str(info.value) == f"{NOT_A_DURATION} - at `$.every`"
    with pytest.raises(msgspec.ValidationError) as info:
        timers(span=5)
    assert str(info.value) == "Expected `str`, got `int` - at `$.span`"


def test_the_hook_leaves_other_types_to_msgspec() -> None:
    with pytest.raises(NotImplementedError):
        decode(complex, "1s")
