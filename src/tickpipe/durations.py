"""Durations as tickpipe spells them: `250ms`, `5s`, `1m`, `1h`, `1d` (integer microseconds inside).

Configuration decodes every duration once, at load: a field typed `Seconds` or `Micros` (the unit
is also in the field's name) is read from its text by `decode`, msgspec's `dec_hook`, so the rest
of tickpipe gets numbers and never parses a duration again.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_UNITS_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_DURATION = re.compile(r"^\s*(\d+)\s*(us|ms|s|m|h|d)\s*$")
# What `decode` raises for text that is no duration; the loader answers with the field's own
# text instead (`allowing`), which says what that setting allows.
NOT_A_DURATION = "not a duration"
ALLOWED = "allowed"  # the key of that text in the field's msgspec.Meta(extra=...)


def parse_duration(text: str) -> int:
    """`250ms`, `5s`, `1m`, `1h`, `1d` as integer microseconds; ValueError names what is allowed."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration (use e.g. 250ms, 5s, 1m, 1h, 1d)")
    return int(match.group(1)) * _UNITS_US[match.group(2)]


def format_duration(us: int) -> str:
    """The shortest exact spelling: 60_000_000 becomes `1m`."""
    for unit in ("d", "h", "m", "s", "ms", "us"):
        size = _UNITS_US[unit]
        if us % size == 0:
            return f"{us // size}{unit}"
    raise AssertionError("unreachable: every duration is a whole number of microseconds")


class Seconds(float):
    """A configured duration above 0, in seconds (for timers and sleeps)."""


class Micros(int):
    """A configured duration above 0, in integer microseconds (for event-time arithmetic)."""


class MicrosOrZero(Micros):
    """Like `Micros`, but `0` or `0s` is allowed and means none (an alert that fires at once)."""


class OptionalMicros(Micros):
    """Like `Micros`, but empty text decodes to 0: not set (the consumer picks its default)."""


def allowing(why: str) -> msgspec.Meta:
    """Field metadata: what the config error for a bad value of this duration says it needs."""
    return msgspec.Meta(extra={ALLOWED: why})


def decode(kind: type, value: Any) -> Any:
    """msgspec `dec_hook`: duration text into the `Seconds`/`Micros` type a field declares."""
    if not (isinstance(kind, type) and issubclass(kind, Seconds | Micros)):
        raise NotImplementedError(f"no decoder for {kind!r}")
    if not isinstance(value, str):
        raise ValueError(f"Expected `str`, got `{type(value).__name__}`")
    if kind is OptionalMicros and not value.strip():
        return OptionalMicros(0)
    if kind is MicrosOrZero and value.strip() in ("0", "0s"):
        return MicrosOrZero(0)
    try:
        us = parse_duration(value)
    except ValueError:
        raise ValueError(NOT_A_DURATION) from None
    return Seconds(us / 1e6) if kind is Seconds else kind(us)
