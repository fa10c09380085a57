"""The crosshair in real Chromium: the hovered candle's OHLCV in the legend (the stored candle's
values), the price under the pointer on the axis, and one switch between UTC and local time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from .conftest import PHONE, Console, Demo, _tab, chart_candles, open_dashboard, wait_for

pytestmark = pytest.mark.slow

S = 1_000_000
TOKYO = "Asia/Tokyo"  # UTC+9 all year: local time that cannot be mistaken for UTC


def legend(page) -> dict[str, str]:
    """The legend's figures by their names (O, H, L, C, V, T), its time under '' and the
    start of its candle under 'start', read at one moment (live redraws go on meanwhile)."""
    shown = page.evaluate(
        "() => { const l = document.getElementById('hover-legend');"
        "        return {text: l.innerText, start: l.dataset.start}; }"
    )
    words = shown["text"].split()
    pairs = dict(zip(words[2::2], words[3::2], strict=True))
    return {"": " ".join(words[:2]), "start": shown["start"], **pairs}


def plot_area(page) -> dict[str, float]:
    return page.evaluate(
        """() => { const d = document.getElementById('chart'), r = d.getBoundingClientRect(),
                     x = d._fullLayout.xaxis, y = d._fullLayout.yaxis;
                   return {left: r.left + x._offset, width: x._length,
                           top: r.top + y._offset, height: y._length}; }"""
    )


def test_hovering_a_candle_shows_its_stored_ohlc_and_the_cursor_price_on_the_axis(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    wait_for("a minute of candles", lambda: len(chart_candles(page)) >= 40, timeout=60)
    area = plot_area(page)
    newest = chart_candles(page)[-1]["start"]  # what the legend shows at rest
    page.mouse.move(area["left"] + area["width"] * 0.4, area["top"] + area["height"] * 0.5)
    shown = wait_for(
        "a candle from the middle in the legend",
        lambda: next((s for s in [legend(page)] if int(s["start"]) < newest), None),
    )
    start = int(shown["start"])
    stored = {c["start"]: c for c in demo.api(
        "/api/candles", exchange="simulated", symbol="BTC-USDT", interval="1s", lookback="10m"
    )["candles"]}[start]  # fmt: skip
    for name, field in (("O", "open"), ("H", "high"), ("L", "low"), ("C", "close")):
        assert float(shown[name].replace(",", "")) == pytest.approx(stored[field], abs=0.05), name
    assert int(shown["T"].replace(",", "")) == stored["trades"]

    # The price on the axis follows the pointer: higher up, a higher price.
    low = float(page.inner_text("#cursor-price").replace(",", ""))
    page.mouse.move(area["left"] + area["width"] * 0.4, area["top"] + area["height"] * 0.1)
    high = float(page.inner_text("#cursor-price").replace(",", ""))
    assert high > low
    drawn = chart_candles(page)
    assert min(c["low"] for c in drawn) <= low <= high <= max(c["high"] for c in drawn) * 1.01

    page.mouse.move(1, 1)  # off the chart: the legend shows the newest candle again
    wait_for("the newest candle in the legend", lambda: int(
        page.get_attribute("#hover-legend", "data-start") or 0) >= newest)  # fmt: skip
    assert page.locator("#cursor-price").is_hidden()
    assert console.unexpected() == []


@pytest.fixture
def tokyo_page(chromium, console: Console, request: pytest.FixtureRequest) -> Any:
    yield from _tab(chromium, console, request, viewport={"width": 1440, "height": 900},
                    timezone_id=TOKYO)  # fmt: skip


def wall_clock(us: int, zone: str | None) -> str:
    moment = datetime.fromtimestamp(us / S, tz=UTC)
    if zone:
        moment = moment.astimezone(ZoneInfo(zone))
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_one_switch_shows_every_time_in_utc_or_local_time_and_is_remembered(
    tokyo_page, demo: Demo, console: Console
) -> None:
    page = tokyo_page
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    assert page.inner_text("#tz") == "Local"
    assert "UTC+09:00" in (page.get_attribute("#tz", "title") or "")

    def axis_and_legend() -> tuple[str, str, int]:
        first = page.evaluate("() => document.getElementById('chart').data[0].x[0]")
        start = chart_candles(page)[0]["start"]
        return first, page.inner_text("#hover-legend").split()[1], start

    first, _, start = axis_and_legend()
    assert first == wall_clock(start, TOKYO)
    page.click("#tz")
    assert page.inner_text("#tz") == "UTC"
    first, _, start = axis_and_legend()
    assert first == wall_clock(start, None)
    # Text and candle read at once: a live update may move the legend to a newer candle.
    legend_time, newest = page.evaluate(
        """() => {
            const legend = document.getElementById("hover-legend");
            return [legend.innerText.trim().split(/\\s+/)[1], Number(legend.dataset.start)];
        }"""
    )
    assert legend_time == wall_clock(newest, None)[11:19]

    tape = wait_for("the tape", lambda: page.locator("#tape tbody tr td").first.inner_text())
    assert len(tape) == len("20:19:40.123")
    page.reload()
    wait_for("candles on the chart", lambda: chart_candles(page))
    assert page.inner_text("#tz") == "UTC"  # remembered by the browser
    first, _, start = axis_and_legend()
    assert first == wall_clock(start, None)
    assert console.unexpected() == []


def test_the_phone_page_has_the_switch_too(chromium, console: Console, request, demo: Demo) -> None:
    for tab in _tab(chromium, console, request, **PHONE):
        open_dashboard(tab, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
        assert tab.locator("#tz").is_visible()
