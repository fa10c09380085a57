"""RSI, MACD and Bollinger bands in real Chromium: what the chart draws equals the textbook
definitions computed here from the API's candles, with the periods the URL and the inputs set."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import Console, Demo, open_dashboard, wait_for
from .studies import assert_series_equal, bollinger, drawn, macd, rsi

pytestmark = pytest.mark.slow

SYMBOL = "BTC-USDT"
SETTLED = 3  # the newest candles may still change while the page draws them: left out


def settled(page, demo: Demo) -> tuple[dict[str, Any], list[float]]:
    """The page's drawn studies and the API's closes of the same candles, the newest left out.

    The API's candles between the first drawn one and the last compared must be exactly the
    drawn ones: a candle missing on the page would shift every indicator after it."""
    shown = drawn(page)
    starts = shown["starts"][:-SETTLED]
    stored = demo.api("/api/candles", exchange="simulated", symbol=SYMBOL, interval="1s",
                      lookback="20m")["candles"]  # fmt: skip
    inside = [c for c in stored if starts[0] <= c["start"] <= starts[-1]]
    assert [c["start"] for c in inside] == starts
    return shown, [c["close"] for c in inside]


def test_rsi_macd_and_bollinger_bands_equal_their_definitions_over_the_stored_candles(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol=SYMBOL, tf="1s", lookback="10m", rsi="14", macd="12,26,9",
                   bb="20,2")  # fmt: skip
    # MACD's signal needs 26 + 9 - 1 candles before its first value; a few dozen more to compare.
    wait_for("80 candles", lambda: len(drawn(page)["starts"]) >= 80, timeout=120)
    for name in ("rsi", "macd", "bb"):
        assert page.is_checked(f"input[data-study={name}]")
    assert page.input_value("input[data-study-params=macd]") == "12,26,9"

    shown, closes = settled(page, demo)
    traces = shown["traces"]
    scale = max(closes)
    assert_series_equal("RSI 14", traces["rsi"]["y"], rsi(closes, 14), 100)
    expected = macd(closes, 12, 26, 9)
    for part in ("line", "signal", "hist"):
        assert_series_equal(f"MACD {part}", traces[f"macd.{part}"]["y"], expected[part], scale)
    bands = bollinger(closes, 20, 2)
    for part in ("mid", "upper", "lower"):
        assert_series_equal(f"BB {part}", traces[f"bb.{part}"]["y"], bands[part], scale)
    # The reference is not trivially met: values exist and the bands have a width.
    assert sum(v is not None for v in traces["rsi"]["y"]) > 40
    assert any(u - lo > 0 for u, lo in zip(bands["upper"][19:], bands["lower"][19:], strict=True))  # type: ignore[operator]
    assert console.unexpected() == []


def test_periods_typed_in_the_inputs_redraw_the_studies_and_stay_in_the_url(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol=SYMBOL, tf="1s", lookback="10m")
    assert drawn(page)["traces"] == {}  # no study until one is chosen
    wait_for("40 candles", lambda: len(drawn(page)["starts"]) >= 40, timeout=120)

    page.fill("input[data-study-params=rsi]", "7")
    page.press("input[data-study-params=rsi]", "Enter")
    page.fill("input[data-study-params=bb]", "10,1.5")
    page.press("input[data-study-params=bb]", "Enter")
    page.fill("input[data-study-params=macd]", "26,12,9")  # fast above slow: refused
    page.press("input[data-study-params=macd]", "Enter")
    assert "invalid" in (page.get_attribute("input[data-study-params=macd]", "class") or "")
    assert page.is_checked("input[data-study=rsi]") and page.is_checked("input[data-study=bb]")
    assert not page.is_checked("input[data-study=macd]")

    query = parse_qs(urlparse(page.url).query)
    assert query["rsi"] == ["7"] and query["bb"] == ["10,1.5"] and "macd" not in query
    shown, closes = settled(page, demo)
    assert "macd.line" not in shown["traces"]
    assert_series_equal("RSI 7", shown["traces"]["rsi"]["y"], rsi(closes, 7), 100)
    bands = bollinger(closes, 10, 1.5)
    for part in ("mid", "upper", "lower"):
        assert_series_equal(
            f"BB {part}", shown["traces"][f"bb.{part}"]["y"], bands[part], max(closes)
        )

    page.uncheck("input[data-study=rsi]")
    assert "rsi" not in parse_qs(urlparse(page.url).query)
    assert "rsi" not in drawn(page)["traces"]
    page.reload()  # the URL brings the rest back
    wait_for("Bollinger bands drawn again", lambda: "bb.mid" in drawn(page)["traces"])
    assert page.input_value("input[data-study-params=bb]") == "10,1.5"
    assert not page.is_checked("input[data-study=rsi]")
    assert console.unexpected() == []
