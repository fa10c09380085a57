"""The dashboard on a phone (390x844, touch) in real Chromium: one column with the chart
first and full width, the watchlist and the tape behind tabs, nothing wider than the screen."""

from __future__ import annotations

import pytest

from .conftest import Console, Demo, chart_candles, open_dashboard, wait_for

pytestmark = pytest.mark.slow

WIDTH = 390


def box(page, selector: str) -> dict | None:
    """Where `selector` is drawn (CSS px), or None when it is not shown."""
    return page.locator(selector).bounding_box() if page.locator(selector).is_visible() else None


def test_on_a_phone_the_chart_comes_first_at_full_width_and_tabs_switch_the_side_panels(
    phone_page, demo: Demo, console: Console
) -> None:
    page = phone_page
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    chart = box(page, "#chart")
    assert chart is not None and chart["width"] >= WIDTH - 40 and chart["height"] >= 250, chart
    tabs = box(page, "#side-tabs")
    assert tabs is not None and tabs["y"] >= chart["y"] + chart["height"]  # below the chart
    # Plotly drew into the box it has: its SVG is as wide as the chart's div.
    svg_width = page.evaluate(
        "() => document.querySelector('#chart .main-svg').getBoundingClientRect().width"
    )
    assert abs(svg_width - chart["width"]) <= 2
    assert chart_candles(page)

    assert box(page, ".watchlist") is not None and box(page, ".tape") is None
    page.tap('#side-tabs button[data-side="tape"]')
    wait_for("the tape", lambda: box(page, ".tape") is not None)
    assert box(page, ".watchlist") is None
    wait_for("trades on the tape", lambda: page.locator("#tape tbody tr").count() > 0)
    page.tap('#side-tabs button[data-side="watchlist"]')
    wait_for("the watchlist", lambda: box(page, ".watchlist") is not None)
    assert box(page, ".tape") is None

    # Nothing sideways: the page is no wider than the screen.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= WIDTH
    assert console.unexpected() == []


def test_a_finger_drag_on_the_phone_chart_pans_it(phone_page, demo: Demo) -> None:
    page = phone_page
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    assert page.evaluate("() => document.getElementById('chart').layout.dragmode") == "pan"


def test_the_desktop_layout_keeps_three_columns_and_no_tabs(page, demo: Demo) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    watchlist, chart, tape = (box(page, s) for s in (".watchlist", "#chart", ".tape"))
    assert watchlist and chart and tape and box(page, "#side-tabs") is None
    assert watchlist["x"] < chart["x"] < tape["x"]
