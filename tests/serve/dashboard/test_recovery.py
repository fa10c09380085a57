"""The page shows a dropped live feed and recovers on its own when the server is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import (
    ARTIFACTS,
    Console,
    chart_candles,
    open_dashboard,
    page_stats,
    start_demo,
    wait_for,
)

pytestmark = pytest.mark.slow

S = 1_000_000


def network_refused(error: str) -> bool:
    """What Chromium logs while the server is down: refused requests and sockets."""
    return "ERR_CONNECTION_REFUSED" in error or "WebSocket connection to" in error


def test_the_page_shows_disconnected_then_recovers_after_the_server_restarts(
    page, tmp_path: Path, console: Console
) -> None:
    demo = start_demo(tmp_path)
    port = int(demo.url.rsplit(":", 1)[1])
    try:
        open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
        wait_for("the live state", lambda: page.inner_text("#live-status").lower() == "live")
        assert page.locator("#banner").is_hidden()
        demo.stop()
        stopped_at = chart_candles(page)[-1]["start"]

        wait_for("the disconnected banner", lambda: page.locator("#banner").is_visible())
        banner = page.inner_text("#banner")
        assert "disconnected" in banner and "reconnecting" in banner
        assert page.inner_text("#live-status").lower() == "reconnecting"
        page.wait_for_timeout(1500)  # a few failed attempts, with backoff
        page.screenshot(path=str(ARTIFACTS / "disconnected-banner.png"))

        demo = start_demo(tmp_path, port=port)
        wait_for("the banner to go", lambda: page.locator("#banner").is_hidden(), timeout=30)
        assert page.inner_text("#live-status").lower() == "live"
        live_before = page_stats(page)["liveCandles"]
        wait_for(
            "candles after the restart",
            lambda: (
                chart_candles(page)[-1]["start"] > stopped_at + 2 * S
                and page_stats(page)["liveCandles"] > live_before
            ),
            timeout=30,
        )
        assert page_stats(page)["reconnects"] >= 1
        assert console.unexpected(network_refused) == []
    finally:
        demo.stop()
