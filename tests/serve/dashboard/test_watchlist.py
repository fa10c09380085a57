"""The watchlist in real Chromium: every symbol, sortable by last, change and 24h volume,
searchable, and refreshed by one request instead of one per symbol."""

from __future__ import annotations

import pytest

from .conftest import Console, Demo, open_dashboard, wait_for

pytestmark = pytest.mark.slow

NO_VALUE = "\u2013"
SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def number(text: str) -> float | None:
    """What the page writes back as a number: '65,003.0', '+0.013%', '170.13M'; NO_VALUE is None."""
    text = text.strip().rstrip("%").replace(",", "")
    if text == NO_VALUE:
        return None
    scale = SUFFIX.get(text[-1], 1.0)
    return float(text.rstrip("KMBT")) * scale


def table(page) -> list[list[str]]:
    return [
        row.locator("td").all_inner_texts() for row in page.locator("#watchlist tbody tr").all()
    ]


def column(page, index: int) -> list[float]:
    return [v for v in (number(r[index]) for r in table(page)) if v is not None]


def test_every_symbol_is_listed_and_refreshed_by_one_request(
    page, demo: Demo, console: Console
) -> None:
    def listed() -> list[str]:
        return [s["symbol"] for s in demo.api("/api/exchanges")["exchanges"][0]["symbols"]]

    wait_for("every symbol of the demo to trade", lambda: len(listed()) == 30, timeout=60)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    wait_for("the watchlist's figures", lambda: len(column(page, 3)) == 30)
    assert sorted(r[0] for r in table(page)) == sorted(listed())

    requests.clear()
    page.wait_for_timeout(11_000)  # one watchlist period and a little more (events flow)
    per_symbol = [u for u in requests if "/api/candles" in u]
    refreshes = [u for u in requests if "/api/analytics/exchange/" in u]
    assert per_symbol == [] and 1 <= len(refreshes) <= 2, requests
    assert console.unexpected() == []


def test_sorting_by_a_column_orders_the_rows_and_a_second_click_reverses_it(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    wait_for("the watchlist's figures", lambda: len(column(page, 2)) >= 25)
    for index, key in ((2, "change"), (3, "volume"), (1, "last")):
        page.click(f'#watchlist th[data-sort="{key}"]')
        values = column(page, index)
        assert values == sorted(values, reverse=True), key  # largest first
        page.click(f'#watchlist th[data-sort="{key}"]')
        values = column(page, index)
        assert values == sorted(values), key
    page.click('#watchlist th[data-sort="symbol"]')
    symbols = [r[0] for r in table(page)]
    assert symbols == sorted(symbols)
    assert console.unexpected() == []


def test_search_narrows_the_list_and_a_found_row_opens_its_chart(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    page.fill("#watch-search", "eth")
    assert [r[0] for r in table(page)] == ["ETH-USDT"]
    page.fill("#watch-search", "usdt")
    assert len(table(page)) == len(demo.api("/api/exchanges")["exchanges"][0]["symbols"])
    page.fill("#watch-search", "sol/usdt")  # any spelling of the pair
    assert [r[0] for r in table(page)] == ["SOL-USDT"]
    page.click('#watchlist tr[data-symbol="SOL-USDT"]')
    wait_for("the SOL chart", lambda: page.inner_text("#q-symbol") == "SOL-USDT")
    assert console.unexpected() == []
