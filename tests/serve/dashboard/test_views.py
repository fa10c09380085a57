"""Themes, the analytics and pipeline views, and the access token, in real Chromium."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import ARTIFACTS, Console, Demo, chart_candles, open_dashboard, wait_for

pytestmark = pytest.mark.slow


def number(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text))


def test_the_theme_toggles_page_and_chart_and_is_remembered(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="5s", lookback="10m")
    background = "() => getComputedStyle(document.body).backgroundColor"
    paper = "() => document.getElementById('chart').layout.paper_bgcolor"
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    dark_bg, dark_paper = page.evaluate(background), page.evaluate(paper)

    page.click("#theme")
    wait_for("the light chart", lambda: page.evaluate(paper) != dark_paper)
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    light_bg = page.evaluate(background)
    assert light_bg != dark_bg
    assert _luminance(light_bg) > 0.8 > 0.2 > _luminance(dark_bg)
    assert _luminance(page.evaluate(paper)) > 0.8
    page.screenshot(path=str(ARTIFACTS / "light-theme.png"))

    page.reload()
    wait_for("candles after reload", lambda: len(chart_candles(page)) >= 2)
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    page.click("#theme")
    assert page.evaluate(background) == dark_bg
    assert console.unexpected() == []


def _luminance(css_color: str) -> float:
    """0 (black) to 1 (white), from `rgb(r, g, b)` or `#rrggbb`."""
    if css_color.startswith("#"):
        r, g, b = (int(css_color[i : i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_the_analytics_view_shows_the_apis_rankings_and_drill_down(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1m", lookback="1h")
    before = demo.api("/api/analytics/top-exchanges", period="1h")["exchanges"][0]
    page.click("#tabs button[data-view='analytics']")
    wait_for("the drill-down", lambda: page.locator("#d-tickers tbody tr").count() > 0)
    after = demo.api("/api/analytics/top-exchanges", period="1h")["exchanges"][0]
    detail = demo.api("/api/analytics/exchange/simulated", period="1h")

    cells = page.locator("#top-exchanges tbody tr").first.locator("td").all_inner_texts()
    assert cells[0] == before["exchange"] == "simulated"
    assert before["trades"] <= number(cells[1]) <= after["trades"]
    assert page.text_content("#d-name") == "simulated"
    drawn = [r.split("\t")[0] for r in page.locator("#d-tickers tbody tr").all_inner_texts()]
    assert set(drawn) == {t["symbol"] for t in detail["tickers"]}
    tickers = page.locator("#top-tickers tbody tr").all_inner_texts()
    assert {r.split("\t")[0] for r in tickers} <= {t["symbol"] for t in detail["tickers"]}
    bars = page.evaluate("() => document.getElementById('d-chart').data[0].y.length")
    assert bars == min(12, len(detail["tickers"]))
    assert "view=analytics" in page.url
    assert console.unexpected() == []


def test_the_pipeline_view_shows_throughput_volume_and_each_sources_connection(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1m", lookback="1h")
    before_count = demo.api("/api/kpis")["stored_trades"]
    page.click("#tabs button[data-view='pipeline']")
    wait_for(
        "two throughput samples",
        lambda: (
            page.evaluate(
                "() => (document.getElementById('p-throughput').data?.[0]?.y || []).length"
            )
            >= 2
        ),
    )
    stored = page.locator(".kpi", has_text="Stored trades").locator(".s")
    wait_for("a sample taken after ours", lambda: number(stored.inner_text()) >= before_count)
    after = demo.api("/api/kpis")

    source = page.locator("#p-sources tbody tr").first.locator("td").all_inner_texts()
    assert source[0] == "simulated" and source[1] == "connected"
    assert after["pipeline"]["sources"]["simulated"]["connected"] is True
    assert before_count <= number(stored.inner_text()) <= after["stored_trades"]
    rates = page.evaluate("() => document.getElementById('p-throughput').data[0].y")
    assert all(r > 0 for r in rates)  # the demo trades ~2,000/s without a pause
    _check_monitor_routes(page, demo)
    assert console.unexpected() == []


def test_a_page_without_the_token_loads_but_says_it_needs_one(
    page, demo: Demo, console: Console
) -> None:
    page.goto(demo.url + "/")
    wait_for("the token message", lambda: page.locator("#error").is_visible())
    assert "Access token required" in page.inner_text("#error")
    assert page.inner_text("#live-status").lower() == "no access"
    assert chart_candles(page) == []
    # Chromium logs each refused request (401); nothing else may fail.
    assert console.unexpected(lambda e: "401" in e) == []


def _check_monitor_routes(page, demo: Demo) -> None:
    """Where the monitor's routes answer, the page shows them; where they are 404, it hides
    the alerts and draws its own samples (this branch may run before or after they land)."""
    params = {"token": demo.token}
    alerts = httpx.get(demo.url + "/api/alerts", params=params, timeout=5)
    assert page.locator("#p-alerts-panel").is_hidden() == (alerts.status_code == 404)
    if alerts.status_code == 200:
        body = alerts.json()
        rows = page.locator("#p-alerts tbody tr").all_inner_texts()
        # Each alert once: an active alert's own transition is not listed again.
        key = lambda a: repr((a["rule"], sorted(a["labels"].items()), a["state"], a["since"]))  # noqa: E731
        active = {key(a) for a in body["active"]}
        others = [a for a in body["history"] if key(a) not in active]
        shown = len(body["active"]) + min(20, len(others))
        if shown == 0:
            assert rows == ["no alerts"]
        else:
            assert len(rows) == shown
    history = httpx.get(demo.url + "/api/kpis/history", params=params, timeout=5)
    drawn = page.evaluate(
        "() => { const t = document.getElementById('p-throughput').data[0];"
        " return {name: t.name, ts: t.customdata || [], y: t.y}; }"
    )
    if history.status_code == 404 or not history.json()["metrics"]:
        assert drawn["name"] == "trades/s" and not drawn["ts"]
        return
    page.wait_for_timeout(2500)  # the page's next sample asks the route too
    drawn = page.evaluate(
        "() => { const t = document.getElementById('p-throughput').data[0];"
        " return {name: t.name, ts: t.customdata || [], y: t.y}; }"
    )
    stored = {m["ts"]: m["trades_per_s"] for m in demo.api("/api/kpis/history")["metrics"]}
    assert drawn["name"] == "trades/s stored" and drawn["ts"]
    assert all(stored[ts] == y for ts, y in zip(drawn["ts"], drawn["y"], strict=True))
