"""Prices and sizes on the page in each instrument's own precision (a sub-cent coin and a
five-figure one), with axis labels that never repeat."""

from __future__ import annotations

import re

import pytest

from .conftest import Demo, open_dashboard, wait_for

pytestmark = pytest.mark.slow

NO_VALUE = "\u2013"


def places(text: str) -> int:
    """Decimal places as written: '0.0000119938' -> 10, '65,000.1' -> 1, '1,500' -> 0."""
    number = re.fullmatch(r"[+-]?[\d,]+(?:\.(\d+))?", text.strip())
    assert number, f"{text!r} is not a number as the page writes one"
    return len(number.group(1) or "")


def precision(demo: Demo, symbol: str, trades: int = 5) -> dict:
    """The API's precision of `symbol` once it has `trades` (a quiet coin trades seldom)."""

    def listed() -> dict | None:
        symbols = demo.api("/api/exchanges")["exchanges"][0]["symbols"]
        return next((s for s in symbols if s["symbol"] == symbol and s["trades"] >= trades), None)

    return wait_for(f"{trades} trades of {symbol}", listed, timeout=60)


@pytest.mark.parametrize("symbol", ["PEPE-USDT", "BTC-USDT"])
def test_quote_tape_and_axis_show_the_instruments_precision(page, demo: Demo, symbol: str) -> None:
    wanted = precision(demo, symbol)
    open_dashboard(page, demo, symbol=symbol, tf="1s", lookback="10m")
    wait_for("a last price", lambda: page.inner_text("#q-last") not in ("", NO_VALUE))
    wait_for("trades on the tape", lambda: page.locator("#tape tbody tr").count() > 0)

    for field in ("#q-last", "#q-open", "#q-high", "#q-low"):
        assert places(page.inner_text(field)) == wanted["price_decimals"], field
    for row in page.locator("#tape tbody tr").all()[:20]:
        _, price, size = row.locator("td").all_inner_texts()
        assert places(price) == wanted["price_decimals"]
        assert places(size) == wanted["size_decimals"]
    # The change is a whole number of ticks, never "-0.00".
    change = page.inner_text("#q-change").split()[0]
    assert places(change) == wanted["price_decimals"]
    assert not re.fullmatch(r"-0[.,0]*", change)

    # The price axis's labels (the volume axis's are `.y2tick`).
    labels = page.evaluate(
        "() => [...document.querySelectorAll('#chart .ytick text')].map(t => t.textContent)"
    )
    prices = [t for t in labels if t]
    assert len(prices) >= 2 and len(set(prices)) == len(prices), prices
    assert all(places(t) <= wanted["price_decimals"] for t in prices), prices


def test_a_sub_cent_coin_and_a_five_figure_one_get_different_precisions(demo: Demo) -> None:
    pepe, btc = precision(demo, "PEPE-USDT"), precision(demo, "BTC-USDT")
    # The demo's grids: about five significant digits (PEPE at 0.000012, BTC at 65,000).
    assert pepe["price_decimals"] >= 9 and btc["price_decimals"] <= 2
    assert pepe["tick_size"] < 1e-8 < 0.01 <= btc["tick_size"]
