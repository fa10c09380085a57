"""The same asset on several venues in one chart, and analytics rows that open a chart, in real
Chromium against a `tickpipe run` replaying three venues (test_consolidated's: Kraken 5% above)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import Console, Demo, chart_candles, wait_for
from .studies import drawn
from .test_consolidated import run  # noqa: F401  (the three-venue replay, one per module)

pytestmark = pytest.mark.slow

SETTLED = 3  # the newest candles may still change while the page draws them: left out


def closes(server: Demo, exchange: str, symbol: str) -> dict[int, float]:
    body = server.api(
        "/api/candles", exchange=exchange, symbol=symbol, interval="1s", lookback="20m"
    )
    return {c["start"]: c["close"] for c in body["candles"]}


def test_venues_of_the_shown_asset_are_drawn_with_the_spread_between_them(
    page,
    run: Demo,  # noqa: F811
    console: Console,
) -> None:
    page.goto(run.page_url(exchange="binance", symbol="BTC-USDT", tf="1s", lookback="10m"))
    wait_for("candles on the chart", lambda: len(chart_candles(page)) >= 8, timeout=60)
    # Every other exchange listing BTC (the composite too) can be compared; none is drawn yet.
    offered = page.eval_on_selector_all("#venues input", "els => els.map(e => e.dataset.venue)")
    assert {"coinbase", "kraken"} <= set(offered) and "binance" not in offered
    assert "spread" not in drawn(page)["traces"]

    page.check("#venues input[data-venue=coinbase]")
    page.check("#venues input[data-venue=kraken]")
    assert parse_qs(urlparse(page.url).query)["venues"] == ["coinbase,kraken"]
    wait_for("both venues drawn", lambda: {"venue.coinbase", "venue.kraken", "spread"}
             <= set(drawn(page)["traces"]))  # fmt: skip
    shown = drawn(page)
    stored = {
        "binance": closes(run, "binance", "BTC-USDT"),
        "coinbase": closes(run, "coinbase", "BTC-USD"),
        "kraken": closes(run, "kraken", "BTC-USD"),
    }
    for venue in ("coinbase", "kraken"):
        trace = shown["traces"][f"venue.{venue}"]
        assert trace["name"] == f"{venue} BTC-USD"
        pairs = list(zip(trace["starts"], trace["y"], strict=True))[:-SETTLED]
        assert len(pairs) >= 5
        assert pairs == [(start, stored[venue][start]) for start, _ in pairs]

    # Spread: the highest close minus the lowest of the three venues at each candle shown.
    spread = dict(zip(shown["starts"], shown["traces"]["spread"]["y"], strict=True))
    # The venues' newest candles may still change while the page draws them: left out.
    fetched = [
        set(shown["traces"][f"venue.{v}"]["starts"][:-SETTLED]) for v in ("coinbase", "kraken")
    ]
    compared = [s for s in shown["starts"][:-SETTLED] if all(s in f for f in fetched)]
    assert len(compared) >= 5
    for start in compared:
        prices = [v[start] for v in stored.values()]
        assert spread[start] == pytest.approx(max(prices) - min(prices), rel=1e-12), start
        assert spread[start] > 0.04 * min(prices)  # Kraken's 5% premium is what it shows

    page.reload()  # the URL keeps the comparison
    wait_for("venues drawn after a reload", lambda: "venue.kraken" in drawn(page)["traces"])
    assert page.is_checked("#venues input[data-venue=kraken]")
    page.uncheck("#venues input[data-venue=kraken]")
    page.uncheck("#venues input[data-venue=coinbase]")
    wait_for("no venue drawn", lambda: "spread" not in drawn(page)["traces"])
    assert "venues" not in parse_qs(urlparse(page.url).query)
    assert console.unexpected() == []


def test_rows_of_top_tickers_and_of_the_exchange_breakdown_open_that_chart(
    page,
    run: Demo,  # noqa: F811
    console: Console,
) -> None:
    page.goto(run.page_url(exchange="kraken", symbol="BTC-USD", tf="1s", lookback="10m",
                           view="analytics"))  # fmt: skip
    # A top ticker only binance lists opens binance's chart.
    page.locator("#top-tickers tbody tr[data-symbol='BTC-USDT']").click()
    wait_for("binance's BTC-USDT chart", lambda: page.locator("#view-chart").is_visible()
             and page.input_value("#exchange") == "binance"
             and page.input_value("#symbol") == "BTC-USDT")  # fmt: skip
    query = parse_qs(urlparse(page.url).query)
    assert [query[k] for k in ("exchange", "symbol", "view")] == [
        ["binance"],
        ["BTC-USDT"],
        ["chart"],
    ]

    def binance_drawn() -> bool:
        stored, shown = closes(run, "binance", "BTC-USDT"), chart_candles(page)[:-SETTLED]
        return bool(shown) and all(stored.get(c["start"]) == c["close"] for c in shown)

    wait_for("binance's candles on the chart", binance_drawn)

    # The breakdown of another exchange: its row opens that exchange's chart of the symbol.
    page.click("#tabs button[data-view=analytics]")
    page.locator("#top-exchanges tbody tr[data-exchange=coinbase]").click()
    wait_for("coinbase's breakdown", lambda: page.text_content("#d-name") == "coinbase")
    page.locator("#d-tickers tbody tr[data-symbol='BTC-USD']").click()
    assert page.locator("#view-chart").is_visible()
    assert (page.input_value("#exchange"), page.input_value("#symbol")) == ("coinbase", "BTC-USD")
    wait_for("coinbase's candles", lambda: chart_candles(page) and page.inner_text("#q-exchange")
             == "coinbase")  # fmt: skip
    assert console.unexpected() == []


def test_compared_venues_update_live_over_the_websocket_without_refetching(
    page,
    run: Demo,  # noqa: F811
    console: Console,
) -> None:
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "exchange=kraken" in r.url else None)
    page.goto(run.page_url(exchange="binance", symbol="BTC-USDT", tf="1s", lookback="10m",
                           venues="kraken"))  # fmt: skip
    wait_for("kraken drawn", lambda: "venue.kraken" in drawn(page)["traces"], timeout=60)
    fetched = len(asked)
    assert fetched >= 1  # the venue's candles up to now came from /api/candles
    newest = drawn(page)["traces"]["venue.kraken"]["starts"][-1]

    # Candles that started after the fetch: only the socket can bring them (the page used to
    # fetch the venues every 5 s; here 8 s of new candles and no request for them).
    def later() -> list[int]:
        starts = drawn(page)["traces"]["venue.kraken"]["starts"]
        return [s for s in starts if s > newest]

    wait_for("8 s of kraken's candles after the fetch", lambda: len(later()) >= 8, timeout=40)
    assert len(asked) == fetched, asked[fetched:]
    assert page.evaluate("() => window.tickpipe.stats.venueCandles") > 0
    # What came live equals kraken's candles in the store (the newest may still change).
    now = drawn(page)
    shown = now["traces"]["venue.kraken"]
    stored = closes(run, "kraken", "BTC-USD")
    pairs = [(s, y) for s, y in zip(shown["starts"], shown["y"], strict=True) if s > newest]
    pairs = pairs[:-SETTLED]
    assert len(pairs) >= 4
    assert pairs == [(start, stored[start]) for start, _ in pairs]
    # And the spread follows them: kraken's close against binance's at each new candle.
    binance = closes(run, "binance", "BTC-USDT")
    spread = dict(zip(now["starts"], now["traces"]["spread"]["y"], strict=True))
    compared = [s for s, _ in pairs if s in binance and s in spread]
    assert compared
    for start in compared:
        assert spread[start] == pytest.approx(abs(stored[start] - binance[start]), rel=1e-12)
    assert console.unexpected() == []
