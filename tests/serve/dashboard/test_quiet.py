"""A quiet symbol looks quiet, not broken, in real Chromium against a `tickpipe run` replaying a
tape on which ETH-USDT trades for half a second and then stops while BTC-USDT goes on."""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickpipe.records import Trade
from tickpipe.sources.replay import write_trades

from .conftest import Console, Demo, chart_candles, replaying, wait_for

pytestmark = pytest.mark.slow
S = 1_000_000


def tape(path: Path, seconds: int = 300) -> None:
    """BTC-USDT ten trades a second from now on; ETH-USDT five trades in the first 0.5 s."""
    start = time.time_ns() // 1000
    rows = [
        Trade(source="tape", exchange="binance", symbol="BTC-USDT", trade_id=str(k), seq=k,
              price=60_000.0 + (k % 7), size=0.01, side="buy", ts=start + k * 100_000,
              recv_ts=start + k * 100_000)
        for k in range(seconds * 10)
    ]  # fmt: skip
    rows += [
        Trade(source="tape", exchange="binance", symbol="ETH-USDT", trade_id=f"e{k}", seq=k,
              price=3_000.0 + k, size=0.1, side="sell", ts=start + k * 100_000 + 50_000,
              recv_ts=start + k * 100_000 + 50_000)
        for k in range(5)
    ]  # fmt: skip
    write_trades(path, sorted(rows, key=lambda t: t.ts))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`tickpipe run --replay` of the tape at wall-clock pace."""
    data_dir = tmp_path_factory.mktemp("quiet")
    tape(data_dir / "tape.jsonl")
    with replaying(data_dir / "tape.jsonl", data_dir) as running:
        wait_for("ETH-USDT's trades stored", lambda: _stored(running, "ETH-USDT") == 5)
        yield running


def _stored(run: Demo, symbol: str) -> int:
    try:
        body = run.api("/api/trades", exchange="binance", symbol=symbol, limit=10)
    except Exception:
        return 0
    return len(body["trades"])


def local_time(us: int) -> str:
    """The page's date format in this machine's zone (Chromium's, as the test starts it)."""
    return datetime.datetime.fromtimestamp(us / S).strftime("%Y-%m-%d %H:%M:%S")


def test_a_quiet_symbol_says_since_when_and_keeps_its_last_candles_on_the_chart(
    page, run: Demo, console: Console
) -> None:
    last = run.api("/api/trades", exchange="binance", symbol="ETH-USDT", limit=1)["trades"][0]
    stored = run.api("/api/candles", exchange="binance", symbol="ETH-USDT", interval="1s",
                     lookback="10m")["candles"]  # fmt: skip
    page.goto(run.page_url(exchange="binance", symbol="ETH-USDT", tf="1s", lookback="10m",
                           quiet="3s"))  # fmt: skip
    wait_for("candles on the chart", lambda: chart_candles(page))
    # Its last candles stay drawn, the feed stays live, and nothing says it is still loading.
    assert [c["start"] for c in chart_candles(page)] == [c["start"] for c in stored]
    assert page.inner_text("#live-status").strip().lower() == "live"
    wait_for("the quiet note", lambda: page.locator("#q-quiet").is_visible(), timeout=30)
    note = page.inner_text("#q-quiet")
    assert page.get_attribute("#q-quiet", "data-last-ts") == str(last["ts"])
    assert re.search(r"no trade for \d+ (s|min)", note) and local_time(last["ts"]) in note, note
    assert "waiting" not in page.inner_text("#chart-foot")

    # A lookback with no trade in it: the chart shows the candles up to the last trade.
    page.fill("#lookback", "2s")
    page.press("#lookback", "Enter")
    wait_for(
        "the chart up to the last trade", lambda: "none since" in page.inner_text("#chart-foot")
    )
    drawn = [c["start"] for c in chart_candles(page)]
    assert drawn and drawn[-1] == last["ts"] - last["ts"] % S
    assert page.locator("#q-quiet").is_visible()

    # A symbol that trades is not quiet.
    page.select_option("#symbol", "BTC-USDT")
    wait_for("BTC-USDT's chart", lambda: page.inner_text("#q-symbol") == "BTC-USDT"
             and chart_candles(page))  # fmt: skip
    time.sleep(1.5)  # the note is refreshed every second
    assert page.locator("#q-quiet").is_hidden()
    assert console.unexpected() == []
