"""The composite price beside the venues and data quality per venue, in real Chromium, against
a real `tickpipe run` replaying three venues (Kraken 5% off the other two) at wall-clock pace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickpipe.records import Trade
from tickpipe.sources.replay import write_trades

from .conftest import Console, Demo, chart_candles, replaying, wait_for

pytestmark = pytest.mark.slow
S = 1_000_000
VENUES = (("binance", "BTC-USDT"), ("coinbase", "BTC-USD"), ("kraken", "BTC-USD"))


def tape(path: Path, seconds: int = 600) -> None:
    """Ten trades a second per venue from now on, one random walk; Kraken prints 5% above."""
    start = time.time_ns() // 1000
    price, seq, rows = 60_000.0, 0, []
    for k in range(seconds * 10):
        price *= 1 + (0.0003 if (k * 7919) % 13 > 6 else -0.0003)
        ts = start + k * 100_000
        for venue, symbol in VENUES:
            seq += 1
            p = price * (1.05 if venue == "kraken" else 1 + (seq % 3 - 1) * 1e-4)
            rows.append(Trade(
                source="tape", exchange=venue, symbol=symbol, trade_id=str(seq), seq=seq,
                price=round(p, 2), size=0.01, side="buy", ts=ts, recv_ts=ts,
            ))  # fmt: skip
    write_trades(path, rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`tickpipe run --replay` of the three venues, USD and USDT configured as one quote."""
    data_dir = tmp_path_factory.mktemp("consolidated")
    tape(data_dir / "tape.jsonl")
    with replaying(
        data_dir / "tape.jsonl", data_dir, env={"TICKPIPE_COMPOSITE_EQUIVALENT_QUOTES": "USD/USDT"}
    ) as running:
        wait_for("a stored composite candle", lambda: _stored_composite(running))
        yield running


def _stored_composite(run: Demo) -> bool:
    try:
        body = run.api("/api/candles", exchange="composite", symbol="BTC-USD", interval="1s",
                       lookback="10m")  # fmt: skip
    except Exception:
        return False
    return len(body["candles"]) >= 3


def test_the_composite_shows_beside_the_venues_with_the_outlier_left_out(
    page, run: Demo, console: Console
) -> None:
    page.goto(run.page_url(exchange="binance", symbol="BTC-USDT", tf="1s", lookback="10m"))
    wait_for("the composite panel", lambda: page.locator("#c-panel").is_visible())
    wait_for("three venues", lambda: page.locator("#c-venues tbody tr").count() == 3)
    (api,) = run.api("/api/composite")["composites"]
    assert page.locator("#c-symbol").inner_text() == api["symbol"] == "BTC-USD"
    shown = {
        row.get_attribute("data-exchange"): row.locator("td").all_inner_texts()
        for row in page.locator("#c-venues tbody tr").all()
    }
    assert (
        {v["exchange"]: "in" if v["included"] else "out" for v in api["venues"]}
        == {name: cells[4] for name, cells in shown.items()}
        == {"binance": "in", "coinbase": "in", "kraken": "out"}
    )
    kraken_dev = float(shown["kraken"][2].rstrip("%"))
    assert 4.5 < kraken_dev < 5.5  # about +5% from the composite of the other two
    composite = float(page.locator("#c-price").inner_text().replace(",", ""))
    assert composite == pytest.approx(api["price"], rel=0.005)
    assert console.unexpected() == []


def test_composite_in_the_picker_charts_the_stored_composite_candles(
    page, run: Demo, console: Console
) -> None:
    page.goto(run.page_url(exchange="binance", symbol="BTC-USDT", tf="1s", lookback="10m"))
    wait_for("candles", lambda: chart_candles(page))
    assert "composite" in page.locator("#exchange option").all_inner_texts()
    page.select_option("#exchange", "composite")
    stored = {
        c["start"]: c
        for c in run.api("/api/candles", exchange="composite", symbol="BTC-USD", interval="1s",
                         lookback="10m")["candles"]
        if c["final"]
    }  # fmt: skip

    def drawn_as_stored() -> bool:
        # Until the page has swapped Binance's candles for the composite's, starts overlap
        # but prices differ: wait for the composite's (a mismatch that stays times out).
        drawn = [c for c in chart_candles(page) if c["start"] in stored]
        return len(drawn) >= 2 and all(
            c[k] == stored[c["start"]][k] for c in drawn for k in ("open", "high", "low", "close")
        )

    wait_for("the stored composite candles on the chart", drawn_as_stored)
    assert page.locator("#q-exchange").inner_text() == "composite"
    assert console.unexpected() == []


def test_the_pipeline_view_shows_data_quality_per_venue(page, run: Demo, console: Console) -> None:
    page.goto(run.page_url(exchange="binance", symbol="BTC-USDT", view="pipeline"))
    wait_for("the quality table", lambda: page.locator("#p-quality tbody tr[data-exchange]").count()
             == 3)  # fmt: skip
    before = {v["exchange"]: v["received"] for v in run.api("/api/quality")["venues"]}

    def refreshed() -> dict[str | None, list[str]] | None:
        """The table's rows, once the page shows every venue's count as of `before` or later."""
        rows = {
            row.get_attribute("data-exchange"): row.locator("td").all_inner_texts()
            for row in page.locator("#p-quality tbody tr").all()
        }
        shown = all(name in rows and int(rows[name][1].replace(",", "")) >= n
                    for name, n in before.items())  # fmt: skip
        return rows if shown else None

    rows = wait_for("one more refresh of the page", refreshed, timeout=2.5)
    after = {v["exchange"]: v["received"] for v in run.api("/api/quality")["venues"]}
    assert set(rows) == {"binance", "coinbase", "kraken"}
    for name, cells in rows.items():
        received = int(cells[1].replace(",", ""))
        assert before[name] <= received <= after[name]
        assert cells[4] == "0.0%"  # no trade out of order in the tape
        assert cells[7] == "0"  # none future-stamped
    assert console.unexpected() == []
