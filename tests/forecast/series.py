"""A fixed candle series for the forecast tests: a wave with a deterministic wobble, so the
model has something to learn and the baselines something to get wrong."""

from __future__ import annotations

import math

from tickpipe.records import Candle

S = 1_000_000
T0 = 1_796_000_000 * S


def candle(
    i: int, close: float, interval: str = "1s", step_us: int = S, final: bool = True
) -> Candle:
    """The i-th candle of an instrument, closing at `close`, with a shape derived from i."""
    wobble = ((i * 7919) % 13 - 6) / 6  # in [-1, 1], fixed
    high, low = close * (1 + 0.0004 * (1 + abs(wobble))), close * (1 - 0.0003 * (2 - wobble))
    volume = 2.0 + (i % 5)
    buy = volume * (0.5 + 0.3 * wobble)
    return Candle(
        exchange="sim", symbol="BTC-USDT", interval=interval, start=T0 + i * step_us,
        open=close, high=high, low=low, close=close, volume=volume, quote_volume=volume * close,
        vwap=close * (1 + 0.0001 * wobble), mean_price=close, trades=3 + i % 4, buy_volume=buy,
        sell_volume=volume - buy, first_seq=i, last_seq=i, final=final, revision=0,
        updated_at=T0 + (i + 1) * step_us,
    )  # fmt: skip


def closes(n: int) -> list[float]:
    """n closes: a slow wave, a faster one and a fixed irregular step."""
    return [
        100.0 + 2.0 * math.sin(i / 7) + 0.5 * math.sin(i / 2.3) + ((i * 31) % 11 - 5) * 0.03
        for i in range(n)
    ]


def series(n: int, interval: str = "1s", step_us: int = S) -> list[Candle]:
    return [candle(i, c, interval, step_us) for i, c in enumerate(closes(n))]
