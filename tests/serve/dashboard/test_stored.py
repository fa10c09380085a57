"""`tickpipe serve` serves the dashboard alone over a stored file: no live feed, same data."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Console, chart_candles, serving, wait_for
from .test_states import ALWAYS_FIRING

pytestmark = pytest.mark.slow

TICKPIPE = [sys.executable, "-m", "tickpipe"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """4 s of demo (3 symbols, an alert rule firing at once) run to its end, then `tickpipe
    serve` over what it stored: its URL. Module-scoped: the tests only read it."""
    data = tmp_path_factory.mktemp("stopped-demo")
    config = data / "alerts.toml"
    config.write_text(ALWAYS_FIRING)
    made = subprocess.run(
        [*TICKPIPE, "demo", "--quiet", "--duration", "4", "--no-serve", "--symbols", "3",
         "--data-dir", str(data), "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with serving(data) as url:
        yield url


def test_serve_shows_stored_candles_without_a_live_feed(
    page, stopped: str, console: Console
) -> None:
    url = stopped
    page.goto(url + "/?symbol=BTC-USDT&tf=1s&lookback=1h")
    drawn = wait_for("stored candles on the chart", lambda: chart_candles(page))
    stored = httpx.get(
        url + "/api/candles",
        params={"exchange": "simulated", "symbol": "BTC-USDT", "interval": "1s",
                "lookback": "1h"}, timeout=10,
    ).json()["candles"]  # fmt: skip
    assert [c["start"] for c in drawn] == [c["start"] for c in stored]
    assert [c["close"] for c in drawn] == [c["close"] for c in stored]
    assert page.inner_text("#live-status").lower() == "stored data"
    assert page.locator("#banner").is_hidden()
    assert "no live feed" in page.inner_text("#chart-foot")
    assert console.unexpected() == []


def test_stored_data_older_than_the_lookback_is_shown_up_to_its_last_trade(
    page, tmp_path: Path, console: Console
) -> None:
    from tickpipe.stores.duckdb import DuckDBStore

    from ..conftest import simulate

    minute_us = 60_000_000
    end_us = (time.time_ns() // 1000 - 3 * 60 * minute_us) // minute_us * minute_us  # 3 h ago
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    try:
        simulate(store, end_us, minutes=90)
    finally:
        store.close()
    with serving(tmp_path) as url:
        page.goto(url + "/?exchange=alpha&symbol=BTC-USDT&tf=1m&lookback=1h")
        drawn = wait_for("stored candles on the chart", lambda: chart_candles(page))
        exchanges = httpx.get(url + "/api/exchanges", timeout=10).json()["exchanges"]
        last_ts = next(
            s["last_ts"] for e in exchanges if e["name"] == "alpha" for s in e["symbols"]
            if s["symbol"] == "BTC-USDT"
        )  # fmt: skip
        stored = httpx.get(
            url + "/api/candles",
            params={"exchange": "alpha", "symbol": "BTC-USDT", "interval": "1m",
                    "start": (end_us - 100 * minute_us) // 1000}, timeout=10,
        ).json()["candles"]  # fmt: skip
        # Reference: the hour of stored candles ending with the one holding the last trade.
        first = (last_ts - 60 * minute_us) // minute_us * minute_us
        wanted = [c for c in stored if first <= c["start"] <= last_ts]
        assert last_ts < time.time_ns() // 1000 - 2 * 60 * minute_us  # older than the lookback
        assert [c["start"] for c in drawn] == [c["start"] for c in wanted]
        assert [c["close"] for c in drawn] == [c["close"] for c in wanted]
        assert "to the last trade stored" in page.inner_text("#chart-foot")
        assert console.unexpected() == []


def test_an_alert_left_firing_by_a_stopped_pipeline_is_shown_as_its_last_state(
    page, stopped: str, console: Console
) -> None:
    url = stopped
    active = httpx.get(url + "/api/alerts", timeout=10).json()["active"]
    assert [a["state"] for a in active if a["rule"] == "btc-above-zero"] == ["firing"]
    page.goto(url + "/?view=pipeline")
    wait_for("the alerts listed", lambda: "btc-above-zero" in page.inner_text("#p-alerts"))
    states = page.eval_on_selector_all(
        "#p-alerts tbody tr", "rows => rows.map((r) => r.children[1].textContent)"
    )
    assert states[0] == "was firing"  # the active alert, first
    assert "firing" not in states  # nothing claims to fire now
    assert console.unexpected() == []
