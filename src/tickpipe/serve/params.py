"""Query parameters of the API, parsed and checked before anything touches the store.

Every bad value becomes a `BadRequest` naming the parameter and what is allowed, which the app
answers as a 4xx JSON body: a typo in a URL must never surface as a 500.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from tickpipe.durations import format_duration, parse_duration
from tickpipe.engine.windows import parse_window

MAX_CANDLES = 100_000  # per answer: beyond this a chart is unreadable and the answer huge
MAX_TRADES = 10_000
MAX_PERIOD = parse_duration("30d")  # a month of candles bounds what analytics read
MAX_BUCKET = parse_duration("3650d")  # ten years: DEFAULT_CANDLES of them stay in 64-bit µs
DEFAULT_CANDLES = 500  # without start or lookback: the last 500 buckets up to `end`


class BadRequest(Exception):
    """A query the API refuses; `status` is the HTTP status, `reason` says why in one line."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_time(name: str, text: str) -> int:
    """ISO 8601 (`2026-11-21T06:00:00Z`; no zone means UTC) or epoch milliseconds, as µs."""
    text = text.strip()
    try:
        ms = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(ms) or abs(ms) > 1e15:
            raise BadRequest(f"{name}={text!r}: epoch milliseconds out of range")
        return int(ms * 1000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name}={text!r}: malformed time (use ISO 8601, e.g. 2026-11-21T06:00:00Z, "
            f"or epoch milliseconds)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1_000_000)


def parse_span(name: str, text: str, maximum: int | None = None) -> int:
    """A duration parameter (`lookback=1h`, `period=15m`) as µs, bounded by `maximum`."""
    try:
        value = parse_duration(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r}: not a duration (use e.g. 5m, 1h, 1d)") from None
    if maximum is not None and value > maximum:
        raise BadRequest(f"{name}={text!r}: at most {format_duration(maximum)}")
    return value


def required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise BadRequest(f"{name} is required")
    return value


def parse_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = query.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r}: not an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name}={value}: must be between {lo} and {hi}")
    return value


def parse_bool(query: Mapping[str, str], name: str) -> bool:
    text = query.get(name, "false").strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("", "0", "false", "no"):
        return False
    raise BadRequest(f"{name}={text!r}: use true or false")


def check_span(start: int, end: int, step: int) -> None:
    """Refuse a range [start, end) of more than `MAX_CANDLES` candles `step` µs apart: the
    most one answer holds (/api/candles and the UDF history)."""
    if (end - start) // step > MAX_CANDLES:
        raise BadRequest(
            f"range too large: {(end - start) // step:,} candles of "
            f"{format_duration(step)}; at most {MAX_CANDLES:,} per answer"
        )


@dataclass(frozen=True, slots=True)
class CandleQuery:
    """A checked /api/candles query: which stored interval to read and how to re-bucket it."""

    exchange: str
    symbol: str
    interval: str  # the stored interval read
    interval_size: int
    bucket: int | None  # µs: roll the stored candles up into this size; None: as stored
    step: int  # µs between candle starts (the bucket, the interval, or a hopping slide)
    start: int
    end: int
    fill: bool


def parse_candle_query(
    query: Mapping[str, str], exchange: str, symbol: str, stored: list[str], now: int
) -> CandleQuery:
    """Pick the stored interval and time range; `stored` lists the store's interval names.

    `bucket` may be any multiple of a stored tumbling interval; the largest such interval is
    read, so the store rolls up as few rows as possible.
    """
    interval_text, bucket_text = query.get("interval"), query.get("bucket")
    if interval_text and bucket_text:
        raise BadRequest("give interval or bucket, not both")
    allowed = ", ".join(stored) or "none stored yet"
    if bucket_text:
        bucket = parse_span("bucket", bucket_text, MAX_BUCKET)
        sizes = {}
        for name in stored:
            window = parse_window(name)
            if not window.hopping:
                sizes[name] = window.size
        bases = [n for n, s in sizes.items() if bucket % s == 0]
        if not bases:
            raise BadRequest(
                f"bucket={bucket_text!r}: not a multiple of a stored interval ({allowed})"
            )
        interval = max(bases, key=sizes.__getitem__)
        size = sizes[interval]
        step = bucket
    else:
        interval = interval_text or "1m"
        try:
            window = parse_window(interval)
        except ValueError:
            raise BadRequest(f"interval={interval!r}: not an interval (e.g. 1m)") from None
        if window.name not in stored:
            raise BadRequest(f"interval={interval!r}: not allowed (stored: {allowed})")
        interval, size, step = window.name, window.size, window.slide
    end = parse_time("end", query["end"]) if query.get("end") else now
    if query.get("start") and query.get("lookback"):
        raise BadRequest("give start or lookback, not both")
    if query.get("start"):
        start = parse_time("start", query["start"])
    elif query.get("lookback"):
        start = end - parse_span("lookback", query["lookback"])
    else:
        start = end - DEFAULT_CANDLES * step
    if start >= end:
        raise BadRequest("start must be before end")
    start -= start % step  # whole buckets only: a cut-off first bucket would mislead
    check_span(start, end, step)
    return CandleQuery(
        exchange, symbol, interval, size, bucket if bucket_text else None, step, start, end,
        parse_bool(query, "fill"),
    )  # fmt: skip
