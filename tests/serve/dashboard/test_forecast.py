"""The forecasts on the dashboard in real Chromium: `tickpipe demo --forecast` keeps them,
`tickpipe serve` shows the stored file (so what the page draws and what the API answers are
the same data), and the page draws the band and the forecasts over the candles and the
scoreboard beside them, a model that does not beat the last close marked as such."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Console, chart_candles, serving, wait_for

pytestmark = pytest.mark.slow

TICKPIPE = [sys.executable, "-m", "tickpipe"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """20 s of demo with forecasts, then `tickpipe serve` over what it stored."""
    data = tmp_path_factory.mktemp("forecast-dashboard")
    made = subprocess.run(
        [*TICKPIPE, "demo", "--quiet", "--duration", "20", "--no-serve", "--forecast",
         "--symbols", "3", "--interval", "1s", "--interval", "5s", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with serving(data) as url:
        yield url


def drawn_trace(page, name: str) -> list[float]:
    return page.evaluate(
        """(name) => {
            const t = (document.getElementById("chart").data || []).find((d) => d.name === name);
            return t ? t.y : [];
        }""",
        name,
    )


def test_the_chart_draws_the_forecast_band_and_the_scoreboard_marks_the_verdicts(
    page, served: str, console: Console
) -> None:
    params = {"exchange": "simulated", "symbol": "BTC-USDT", "interval": "1s", "lookback": "1h"}
    body = httpx.get(served + "/api/forecasts", params=params, timeout=10).json()
    page.goto(served + "/?symbol=BTC-USDT&tf=1s&lookback=1h")
    candles = wait_for("stored candles on the chart", lambda: chart_candles(page))
    highs = wait_for("the forecast band", lambda: drawn_trace(page, "forecast band 80%"))

    shown = [p for p in body["forecasts"] if p["start"] >= candles[0]["start"]]
    assert len(shown) > 5
    assert highs == [p["high"] for p in shown]
    assert drawn_trace(page, "forecast low") == [p["low"] for p in shown]
    assert drawn_trace(page, "forecast") == [p["close"] for p in shown]
    assert all(p["low"] <= p["high"] for p in shown)

    rows = page.locator("#forecast-scores tbody tr")
    wait_for("the scoreboard", lambda: rows.count() == len(body["scoreboard"]) > 0)
    for i, want in enumerate(body["scoreboard"]):
        row = rows.nth(i)
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == want["interval"]
        assert cells[1] == f"{want['forecasters']['model']['n']:,}"
        verdict = row.locator("td").last
        if want["forecasters"]["model"]["n"] == 0:
            assert verdict.inner_text() == "no forecast yet"
        elif want["beats_baseline"]:
            assert verdict.inner_text() == "beats last close"
            assert verdict.get_attribute("class") == "up"
        else:
            assert verdict.inner_text() == "does not beat last close"
            assert verdict.get_attribute("class") == "down"
    scored = [r for r in body["scoreboard"] if r["forecasters"]["model"]["n"] > 0]
    losing = sum(not r["beats_baseline"] for r in scored)
    assert page.inner_text("#forecast-note") == (
        f"{losing} of {len(scored)} intervals do not beat the last close"
    )
    assert console.unexpected() == []


def test_a_custom_bucket_has_no_band(page, served: str, console: Console) -> None:
    page.goto(served + "/?symbol=BTC-USDT&tf=2s&lookback=1h")
    wait_for("stored candles on the chart", lambda: chart_candles(page))
    assert drawn_trace(page, "forecast band 80%") == []
    assert console.unexpected() == []
