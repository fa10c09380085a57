"""Early and edge states that must look right: a refused timeframe or lookback leaves the chart
and the pickers agreeing on what is shown, and says why; a firing alert is listed once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import Console, Demo, chart_candles, open_dashboard, start_demo, wait_for

pytestmark = pytest.mark.slow


def active(page, picker: str) -> list[str]:
    """The labels of the picker's buttons marked active."""
    return page.eval_on_selector_all(
        f"#{picker} button.active", "buttons => buttons.map((b) => b.textContent)"
    )


def address(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def assert_chart_spans(page, demo: Demo, lookback: str) -> None:
    """The chart draws the stored 1 s candles of the API's answer for `lookback`."""
    drawn = [c["start"] for c in chart_candles(page)]
    stored = [c["start"] for c in demo.api(
        "/api/candles", exchange="simulated", symbol="BTC-USDT", interval="1s", lookback=lookback
    )["candles"]]  # fmt: skip
    assert drawn and stored
    # Asked at different moments: only the ends may differ, by the candles live in between.
    upto = min(drawn[-1], stored[-1])
    assert [s for s in drawn if s <= upto] == [s for s in stored if drawn[0] <= s <= upto]
    assert drawn[0] <= stored[0] + 30_000_000


def test_a_refused_lookback_leaves_the_chart_and_the_pickers_on_what_is_shown(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    page.click("#lookbacks button[data-lookback='24h']")  # 86,400 one-second candles
    wait_for("the reason", lambda: page.locator("#error").is_visible())
    assert "choose a larger timeframe" in page.inner_text("#error")
    assert active(page, "lookbacks") == ["10m"] and active(page, "timeframes") == ["1s"]
    assert address(page)["lookback"] == "10m"
    assert_chart_spans(page, demo, "10m")
    renders = page.evaluate("() => window.tickpipe.stats.renders")
    wait_for("live updates go on", lambda: page.evaluate(
        "() => window.tickpipe.stats.renders") > renders)  # fmt: skip
    assert console.unexpected() == []


def test_a_refused_lookback_in_the_address_shows_the_hour_and_says_why(
    page, demo: Demo, console: Console
) -> None:
    page.goto(demo.page_url(symbol="BTC-USDT", tf="1s", lookback="24h"))
    wait_for("candles on the chart", lambda: chart_candles(page))
    wait_for("the reason", lambda: page.locator("#error").is_visible())
    assert "86,400 candles" in page.inner_text("#error")
    assert active(page, "lookbacks") == ["1h"] and active(page, "timeframes") == ["1s"]
    assert address(page)["lookback"] == "1h"
    assert_chart_spans(page, demo, "1h")
    assert console.unexpected() == []


ALWAYS_FIRING = """
[alerts]
notifiers = ["log"]

[[alerts.rules]]
name = "btc-above-zero"
kind = "price_above"
threshold = 0.000001
for = "0s"
severity = "info"
symbols = ["simulated:BTC-USDT"]
"""


def test_a_firing_alert_is_listed_once(page, tmp_path: Path, console: Console) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text(ALWAYS_FIRING)
    demo = start_demo(tmp_path, symbols=3, extra=("--config", str(config)))
    try:
        wait_for("the alert firing", lambda: demo.api("/api/alerts")["active"])
        page.goto(demo.page_url(view="pipeline"))
        wait_for("the alerts listed", lambda: "btc-above-zero" in page.inner_text("#p-alerts"))
        rows = page.locator("#p-alerts tbody tr").all_inner_texts()
        body = demo.api("/api/alerts")
    finally:
        demo.stop()
    # Reference: the active alerts, then the transitions that are not an active alert's own.
    key = lambda a: (a["rule"], sorted(a["labels"].items()), a["state"], a["since"])  # noqa: E731
    active = {repr(key(a)) for a in body["active"]}
    expected = len(body["active"]) + min(
        20, len([a for a in body["history"] if repr(key(a)) not in active])
    )
    firing = [r for r in rows if "btc-above-zero" in r and "firing" in r]
    assert len(firing) == 1, rows
    assert len(rows) == expected
    assert console.unexpected() == []


def test_one_candle_at_the_start_is_drawn_in_a_window_thirty_candles_wide(
    page, tmp_path: Path, console: Console
) -> None:
    demo = start_demo(tmp_path, symbols=3)
    try:
        page.goto(demo.page_url(symbol="BTC-USDT", tf="1h", lookback="24h"))
        drawn = wait_for("the first candle", lambda: chart_candles(page))
        stored = demo.api("/api/candles", exchange="simulated", symbol="BTC-USDT", interval="1h",
                          lookback="24h")["candles"]  # fmt: skip
        # The x axis's range in ms (Plotly's own conversion of its date strings).
        span_ms = page.evaluate(
            """() => {
                const ax = document.getElementById("chart")._fullLayout.xaxis;
                return ax.r2l(ax.range[1]) - ax.r2l(ax.range[0]);
            }"""
        )
    finally:
        demo.stop()
    assert [c["start"] for c in drawn] == [c["start"] for c in stored] and len(drawn) == 1
    assert span_ms == 30 * 3_600_000  # 29.5 candles before the newest start, half after
    assert console.unexpected() == []
