"""Reading the chart's studies back from the page, and the textbook definitions to compare them
with (written here from the definitions, not from the page's code)."""

from __future__ import annotations

import itertools
import statistics
from typing import Any


def drawn(page) -> dict[str, Any]:
    """The candles' starts and closes and every study trace (by its `meta`), read in one go."""
    return page.evaluate(
        """() => {
            const data = document.getElementById("chart").data || [];
            const out = {starts: [], closes: [], traces: {}};
            if (!data.length) return out;
            out.starts = data[0].customdata.slice();
            out.closes = data[0].close.slice();
            for (const t of data) {
              if (typeof t.meta === "string") out.traces[t.meta] = {
                y: Array.from(t.y, (v) => (v === null || v === undefined ? null : v)),
                starts: t.customdata ? t.customdata.slice() : null, name: t.name};
            }
            return out;
        }"""
    )


def rsi(closes: list[float], n: int) -> list[float | None]:
    """Wilder's RSI: seed averages are the means of the first n changes, then smoothed by 1/n."""
    out: list[float | None] = [None] * len(closes)
    changes = [b - a for a, b in itertools.pairwise(closes)]
    if len(changes) < n:
        return out
    gain = sum(max(c, 0.0) for c in changes[:n]) / n
    loss = sum(max(-c, 0.0) for c in changes[:n]) / n

    def value(g: float, lo: float) -> float:
        if lo == 0:
            return 50.0 if g == 0 else 100.0
        return 100 - 100 / (1 + g / lo)

    out[n] = value(gain, loss)
    for i in range(n + 1, len(closes)):
        c = changes[i - 1]
        gain = (gain * (n - 1) + max(c, 0.0)) / n
        loss = (loss * (n - 1) + max(-c, 0.0)) / n
        out[i] = value(gain, loss)
    return out


def ema(values: list[float | None], n: int) -> list[float | None]:
    """EMA with alpha 2/(n+1), seeded by the mean of the first n values present."""
    out: list[float | None] = [None] * len(values)
    present = [i for i, v in enumerate(values) if v is not None]
    if len(present) < n:
        return out
    seed = present[n - 1]
    prev = statistics.fmean(values[i] for i in present[:n])  # type: ignore[misc]
    out[seed] = prev
    alpha = 2 / (n + 1)
    for i in present[n:]:
        prev = alpha * values[i] + (1 - alpha) * prev  # type: ignore[operator]
        out[i] = prev
    return out


def macd(closes: list[float], fast: int, slow: int, signal: int) -> dict[str, list[float | None]]:
    f, s = ema(list(closes), fast), ema(list(closes), slow)
    line = [None if a is None or b is None else a - b for a, b in zip(f, s, strict=True)]
    sig = ema(line, signal)
    hist = [None if a is None or b is None else a - b for a, b in zip(line, sig, strict=True)]
    return {"line": line, "signal": sig, "hist": hist}


def bollinger(closes: list[float], n: int, k: float) -> dict[str, list[float | None]]:
    """Mean of the last n closes ± k population standard deviations."""
    out: dict[str, list[float | None]] = {
        w: [None] * len(closes) for w in ("mid", "upper", "lower")
    }
    for i in range(n - 1, len(closes)):
        window = closes[i - n + 1 : i + 1]
        mean, sd = statistics.fmean(window), statistics.pstdev(window)
        out["mid"][i], out["upper"][i], out["lower"][i] = mean, mean + k * sd, mean - k * sd
    return out


def assert_series_equal(
    name: str, shown: list[float | None], reference: list[float | None], scale: float
) -> None:
    """Equal up to float rounding (relative to `scale`, the size of the values compared)."""
    assert len(shown) >= len(reference), name
    for i, (a, b) in enumerate(zip(shown, reference, strict=False)):
        if b is None:
            assert a is None, f"{name}[{i}]: drawn {a} where the window is not full"
        else:
            assert a is not None, f"{name}[{i}]: nothing drawn, reference {b}"
            assert abs(a - b) <= 1e-9 * scale, f"{name}[{i}]: drawn {a}, reference {b}"
