"""The page asks the live socket for trades only while its tape is on screen (desktop chart
view, or the phone's Trades tab), read from the WebSocket frames Chromium itself received."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Console, Demo, chart_candles, open_dashboard, wait_for

pytestmark = pytest.mark.slow


class Frames:
    """Every message the page's live sockets received, in order, by type."""

    def __init__(self, page) -> None:
        self.page = page
        self.messages: list[dict[str, Any]] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._received))

    def _received(self, payload: str | bytes) -> None:
        self.messages.append(json.loads(payload))

    def count(self, kind: str) -> int:
        self.page.wait_for_timeout(50)  # Playwright's sync API delivers events only in its calls
        return sum(1 for m in self.messages if m["type"] == kind)

    def after_nth_subscribed(self, n: int) -> list[dict[str, Any]]:
        """The messages after the n-th (1-based) `subscribed` answer."""
        self.page.wait_for_timeout(50)
        seen = 0
        for i, message in enumerate(self.messages):
            seen += message["type"] == "subscribed"
            if seen == n:
                return self.messages[i + 1 :]
        return []


def test_the_desktop_page_gets_trades_in_the_chart_view_and_none_in_the_analytics_view(
    page, demo: Demo, console: Console
) -> None:
    frames = Frames(page)
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    wait_for("trades pushed to the chart view", lambda: frames.count("trades"))

    page.click("#tabs button[data-view='analytics']")
    wait_for("the answer to trades: false", lambda: frames.count("subscribed") >= 2)
    page.wait_for_timeout(3000)
    hidden = frames.after_nth_subscribed(2)
    assert [m for m in hidden if m["type"] == "trades"] == []
    assert [m for m in hidden if m["type"] == "candle"], "candle updates go on"

    page.click("#tabs button[data-view='chart']")
    wait_for("the answer to trades: true", lambda: frames.count("subscribed") >= 3)
    wait_for("trades pushed again", lambda: any(
        m["type"] == "trades" for m in frames.after_nth_subscribed(3)))  # fmt: skip
    # The tape holds the newest trades, the ones missed meanwhile filled from the API.
    page.wait_for_timeout(500)
    shown = page.evaluate("() => window.tickpipe.state.tape.map((t) => t.trade_id)")

    def stored_ids() -> list[str] | None:
        """The newest stored trade ids, once they hold every trade the tape shows."""
        stored = demo.api("/api/trades", exchange="simulated", symbol="BTC-USDT", limit=10000)
        ids = [t["trade_id"] for t in stored["trades"]]
        return ids if set(shown) <= set(ids) else None

    # Pushed trades are stored within the writer's next commit: within 2 s, polled.
    ids = wait_for("the shown trades stored", stored_ids, timeout=2.0)
    assert shown and set(shown) <= set(ids)
    # No gap: the tape is a run of consecutive stored trades, newest first.
    start = ids.index(shown[0])
    assert ids[start : start + len(shown)] == shown
    assert console.unexpected() == []


def _last_price_and_close(page) -> tuple[float, float]:
    return page.evaluate(
        """() => {
            const t = document.getElementById("chart").data[0];
            const last = document.getElementById("q-last").textContent.replace(/,/g, "");
            return [Number(last), t.close[t.close.length - 1]];
        }"""
    )


def test_on_a_phone_trades_come_only_with_the_trades_tab_and_the_last_price_stays_live(
    phone_page, demo: Demo, console: Console
) -> None:
    page = phone_page
    frames = Frames(page)
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    wait_for("the subscription", lambda: frames.count("subscribed"))
    first = chart_candles(page)[-1]["start"]
    wait_for("a newer candle", lambda: chart_candles(page)[-1]["start"] > first)
    assert frames.count("trades") == 0  # the watchlist tab is shown, the tape is not
    # Without pushed trades the quote's last price is still the newest candle's close.
    places = next(
        s["price_decimals"] for e in demo.api("/api/exchanges")["exchanges"]
        if e["name"] == "simulated" for s in e["symbols"] if s["symbol"] == "BTC-USDT"
    )  # fmt: skip
    last, close = _last_price_and_close(page)
    assert last == round(close, places)

    page.tap('#side-tabs button[data-side="tape"]')
    wait_for("trades pushed to the Trades tab", lambda: frames.count("trades"))
    assert console.unexpected() == []
