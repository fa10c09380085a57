"""The candlestick chart in real Chromium against `tickpipe demo`: it loads cleanly, updates
live over the WebSocket, redraws on a new timeframe or symbol, and keeps the user's zoom."""

from __future__ import annotations

import itertools
import math
import time

import pytest

from .conftest import (
    ARTIFACTS,
    Console,
    Demo,
    chart_candles,
    open_dashboard,
    page_stats,
    wait_for,
)

pytestmark = pytest.mark.slow

S = 1_000_000
LATENESS = 2 * S  # the demo's allowed lateness: a 1s candle is final this long after its end
NO_VALUE = "\u2013"  # what the page shows before it has a number


def bucketed(candles: list[dict], step: int) -> list[dict]:
    """`candles` when every start is aligned to `step` and none is missing between two."""
    aligned = all(c["start"] % step == 0 for c in candles)
    spaced = all(b["start"] - a["start"] == step for a, b in itertools.pairwise(candles))
    return candles if candles and aligned and spaced else []


def api_candles(demo: Demo, symbol: str, **params: str) -> dict[int, dict]:
    body = demo.api("/api/candles", exchange="simulated", symbol=symbol, **params)
    return {c["start"]: c for c in body["candles"]}


def final_candle(demo: Demo, start: int) -> dict | None:
    candle = api_candles(demo, "BTC-USDT", interval="1s", lookback="1m").get(start)
    return candle if candle and candle["final"] else None


def same_prices(drawn: dict, stored: dict) -> bool:
    return all(drawn[k] == stored[k] for k in ("open", "high", "low", "close"))


def test_the_page_loads_with_no_console_errors_and_shows_what_the_api_holds(
    page, demo: Demo, console: Console
) -> None:
    before = [s["symbol"] for s in demo.api("/api/exchanges")["exchanges"][0]["symbols"]]
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1m", lookback="1h")
    wait_for("the watchlist's prices", lambda: NO_VALUE not in page.inner_text("#watchlist tbody"))
    after = [s["symbol"] for s in demo.api("/api/exchanges")["exchanges"][0]["symbols"]]

    # A quiet symbol may start trading meanwhile: the page lists what the API listed then.
    rows = [r.split()[0] for r in page.locator("#watchlist tbody tr").all_inner_texts()]
    assert set(before) <= set(rows) <= set(after) and rows == sorted(rows)
    assert page.locator("#symbol option").all_inner_texts() == rows
    assert page.locator("#timeframes button").all_inner_texts() == ["1s", "5s", "1m", "5m", "1h"]
    assert page.inner_text("#live-status").strip().lower() == "live"
    scripts = page.evaluate("() => [...document.scripts].map(s => s.src).filter(Boolean)")
    assert scripts and all(s.startswith(demo.url + "/static/") for s in scripts)  # no CDN
    assert console.unexpected() == []


def test_a_candle_appears_and_updates_live_over_the_websocket_without_refetching(
    page, demo: Demo, console: Console
) -> None:
    refetches: list[str] = []
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    page.on(
        "request",
        lambda r: refetches.append(r.url) if "/api/candles" in r.url and "=1s" in r.url else None,
    )
    newest = chart_candles(page)[-1]["start"]
    # A candle the page did not have when it fetched: only the WebSocket can bring it.
    fresh = wait_for(
        "a new candle to appear live",
        lambda: [c for c in chart_candles(page) if c["start"] > newest + S],
    )[0]
    time.sleep(max(0.0, (fresh["start"] + S + LATENESS) / S - time.time()))  # until final
    stored = wait_for("the stored candle to be final", lambda: final_candle(demo, fresh["start"]))
    drawn = wait_for(
        "the live candle to match the stored one",
        lambda: next(
            (
                c
                for c in chart_candles(page)
                if c["start"] == fresh["start"] and same_prices(c, stored)
            ),
            None,
        ),
        timeout=5,
    )
    assert same_prices(drawn, stored)
    assert refetches == [], "the candles came from /api/candles, not the live socket"
    stats = page_stats(page)
    assert stats["liveCandles"] > 0 and stats["liveTrades"] > 0
    last_trade = demo.api("/api/trades", exchange="simulated", symbol="BTC-USDT", limit=1)
    assert page.locator("#tape tbody tr").count() > 10
    assert last_trade["trades"][0]["ts"] >= fresh["start"]
    assert console.unexpected() == []


def test_switching_timeframe_then_symbol_redraws_with_the_apis_candles(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")

    page.click("#timeframes button[data-timeframe='5s']")
    five = wait_for("5-second candles", lambda: bucketed(chart_candles(page), 5 * S))
    stored = api_candles(demo, "BTC-USDT", interval="5s", lookback="10m")
    settled = [c for c in five if c["start"] + 5 * S + LATENESS < time.time() * S]
    assert settled, "no final 5-second candle to compare"
    for candle in settled:
        assert same_prices(candle, stored[candle["start"]])
    assert "tf=5s" in page.url

    page.select_option("#symbol", "ETH-USDT")
    eth = wait_for(
        "ETH-USDT candles",
        lambda: (
            (c := chart_candles(page))
            and page.inner_text("#q-symbol") == "ETH-USDT"
            and c[0]["close"] < 10_000
            and c
        ),
    )
    stored = api_candles(demo, "ETH-USDT", interval="5s", lookback="10m")
    settled = [c for c in eth if c["start"] + 5 * S + LATENESS < time.time() * S]
    assert settled and all(same_prices(c, stored[c["start"]]) for c in settled)
    btc_close = demo.api("/api/trades", exchange="simulated", symbol="BTC-USDT", limit=1)
    assert not math.isclose(eth[-1]["close"], btc_close["trades"][0]["price"], rel_tol=0.1)
    assert page.locator("#watchlist tr.selected").inner_text().startswith("ETH-USDT")
    assert console.unexpected() == []


def test_a_custom_bucket_rolls_stored_candles_up_like_the_api(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="SOL-USDT", tf="1s", lookback="10m")
    page.fill("#bucket", "10s")
    page.press("#bucket", "Enter")
    drawn = wait_for("10-second buckets", lambda: bucketed(chart_candles(page), 10 * S))
    stored = api_candles(demo, "SOL-USDT", bucket="10s", lookback="10m")
    settled = [c for c in drawn if c["start"] + 10 * S + LATENESS < time.time() * S]
    assert settled and all(same_prices(c, stored[c["start"]]) for c in settled)
    # The bucket still updates live: its pushes come per 5 s candle and are rolled up.
    before = page_stats(page)["liveCandles"]
    wait_for("live pushes into the bucket", lambda: page_stats(page)["liveCandles"] > before)
    assert "rolled up from 5s" in page.inner_text("#chart-foot")
    assert console.unexpected() == []


# At the next drawing of the newest candle alone (not a whole redraw): that candle's data, and
# where its candle and volume bar are drawn, read back through the axes' pixel-to-value maps.
NEXT_LAST_DRAW = """() => new Promise((resolve) => {
    const tp = window.tickpipe;
    const before = tp.stats.lastDraws;
    tp.onDrawn = (candle) => {
        if (tp.stats.lastDraws === before) return;  // a whole redraw: wait for the next
        tp.onDrawn = null;
        const div = document.getElementById("chart");
        const price = div._fullLayout.yaxis, volume = div._fullLayout.yaxis2;
        const boxes = [...div.querySelectorAll(".trace.boxes path.box")];
        const bars = [...div.querySelectorAll(".barlayer .trace.bars")][0].querySelectorAll("path");
        const box = boxes[boxes.length - 1], bar = bars[bars.length - 1].getBBox();
        const up = candle.close >= candle.open;
        const same = boxes.slice(0, -1).find((b) => (b.__data__.dir === "increasing") === up);
        const outline = box.getBBox();
        resolve({
            candle: {...candle}, count: boxes.length, candles: div.data[0].close.length,
            high: price.p2c(outline.y), low: price.p2c(outline.y + outline.height),
            pricePerPx: Math.abs(price.p2c(0) - price.p2c(1)),
            volume: volume.p2c(bar.y), volumePerPx: Math.abs(volume.p2c(0) - volume.p2c(1)),
            fill: getComputedStyle(box).fill,
            sameDirectionFill: same && getComputedStyle(same).fill,
            drawnClose: div.data[0].close[div.data[0].close.length - 1],
        });
    };
})"""


def test_a_live_update_of_the_newest_candle_draws_it_where_its_prices_are(
    page, demo: Demo, console: Console
) -> None:
    # 1-minute candles: most live updates change the newest candle only.
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1m", lookback="1h")
    for _ in range(3):
        shown = page.evaluate(NEXT_LAST_DRAW)
        candle = shown["candle"]
        assert shown["count"] == shown["candles"]  # one shape per candle, the newest redrawn
        assert shown["drawnClose"] == candle["close"]  # the figure's data holds it too
        # Whiskers from high to low, the volume bar's top at the volume: within a pixel.
        assert abs(shown["high"] - candle["high"]) <= 1.5 * shown["pricePerPx"]
        assert abs(shown["low"] - candle["low"]) <= 1.5 * shown["pricePerPx"]
        assert abs(shown["volume"] - candle["volume"]) <= 1.5 * shown["volumePerPx"]
        if shown["sameDirectionFill"] and candle["close"] != candle["open"]:
            assert shown["fill"] == shown["sameDirectionFill"]  # Plotly's colour for its direction
    stats = page_stats(page)
    assert stats["lastDraws"] >= 3 and stats["renders"] >= 1
    assert console.unexpected() == []


# Each drawing that shows a new newest candle without a whole redraw (the page's onDrawn hook,
# "alone"): where that candle and the one before it are drawn, read back through the axes'
# pixel-to-value maps from the shapes on screen, with the figure's data and x range then.
COLLECT_NEW_CANDLES = """() => {
    const tp = window.tickpipe;
    window.__newCandles = [];
    window.__drawings = [];  // every drawing: [how, the figure's first start, shapes, candles]
    let newest = null;
    tp.onDrawn = (candle, how) => {
        const grew = newest !== null && candle.start > newest;
        newest = candle.start;
        const div = document.getElementById("chart");
        window.__drawings.push([how, div.data[0].customdata[0],
            div.querySelectorAll(".trace.boxes path.box").length, div.data[0].close.length]);
        if (!grew || how !== "alone") return;
        const time = div._fullLayout.xaxis, price = div._fullLayout.yaxis;
        const volume = div._fullLayout.yaxis2;
        const seen = (e) => e.style.display !== "none";
        const boxes = [...div.querySelectorAll(".trace.boxes path.box")].filter(seen);
        const bars = [...[...div.querySelectorAll(".barlayer .trace.bars")][0]
            .querySelectorAll("path")].filter(seen);
        const [box, prev] = [boxes[boxes.length - 1].getBBox(), boxes[boxes.length - 2].getBBox()];
        const first = boxes[0].getBBox();
        const bar = bars[bars.length - 1].getBBox();
        const t = div.data[0];
        window.__newCandles.push({
            candle: {...candle}, count: boxes.length, bars: bars.length,
            candles: t.close.length, starts: t.customdata.slice(-2),
            shownClose: t.close[t.close.length - 1],
            high: price.p2c(box.y), low: price.p2c(box.y + box.height),
            pricePerPx: Math.abs(price.p2c(0) - price.p2c(1)),
            volume: volume.p2c(bar.y), volumePerPx: Math.abs(volume.p2c(0) - volume.p2c(1)),
            msApart: time.p2c(box.x + box.width / 2) - time.p2c(prev.x + prev.width / 2),
            msPerPx: Math.abs(time.p2c(1) - time.p2c(0)), first: t.customdata[0],
            firstOffMs: time.p2c(first.x + first.width / 2) - time.d2c(t.x[0]),
            range: div.layout.xaxis.range ? div.layout.xaxis.range.slice() : null,
        });
    };
}"""


def assert_drawn_where_their_prices_are(drawings: list[dict]) -> None:
    for shown in drawings:
        candle = shown["candle"]
        # One visible candle and volume bar per candle of the figure, the newest one last.
        assert shown["count"] == shown["bars"] == shown["candles"]
        assert shown["starts"][-1] == candle["start"] and shown["shownClose"] == candle["close"]
        assert abs(shown["high"] - candle["high"]) <= 1.5 * shown["pricePerPx"]
        assert abs(shown["low"] - candle["low"]) <= 1.5 * shown["pricePerPx"]
        assert abs(shown["volume"] - candle["volume"]) <= 1.5 * shown["volumePerPx"]
        # Right of the one before by their starts' distance (axis milliseconds), within 1.5 px.
        apart_ms = (shown["starts"][1] - shown["starts"][0]) / 1000
        assert abs(shown["msApart"] - apart_ms) <= 1.5 * shown["msPerPx"]
        # The first shape on screen is the figure's first candle, at its time.
        assert abs(shown["firstOffMs"]) <= 1.5 * shown["msPerPx"]


def new_candles_drawn(page, what: str) -> list[dict]:
    """The first 3 candles drawn in place since COLLECT_NEW_CANDLES (or the list's reset),
    each checked to be drawn where its prices are."""
    count = "() => window.__newCandles.length"
    wait_for(what, lambda: page.evaluate(count) >= 3, timeout=30)
    drawings = page.evaluate("() => window.__newCandles")
    assert_drawn_where_their_prices_are(drawings)
    return drawings


def drag_across_chart(page, start: float, end: float, inset_px: float = 0.0) -> None:
    """Drag along the middle of the plot area from `start` to `end` (fractions of its width,
    the end `inset_px` short of it): a zoom on x only."""
    box = page.locator("#chart .nsewdrag").first.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end - inset_px, y, steps=8)
    page.mouse.up()


def test_zoom_and_pan_survive_live_updates_and_a_new_timeframe_resets_them(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    wait_for("a dozen candles", lambda: len(chart_candles(page)) >= 12, timeout=30)
    drag_across_chart(page, 0.3, 0.5)
    zoomed = page.evaluate("() => document.getElementById('chart').layout.xaxis.range.slice()")
    before = page_stats(page)
    newest = chart_candles(page)[-1]["start"]

    wait_for("new candles after the zoom", lambda: chart_candles(page)[-1]["start"] > newest + S)
    # New candles are drawn in place; Plotly lays the figure out again within 10 s (main.js).
    wait_for("more drawings, a whole redraw among them", lambda: (
        (now := page_stats(page))["renders"] > before["renders"]
        and now["renders"] + now["lastDraws"] > before["renders"] + before["lastDraws"] + 5
    ), timeout=30)  # fmt: skip
    page.screenshot(path=str(ARTIFACTS / "zoom-kept-after-live-updates.png"))
    layout = page.evaluate("() => document.getElementById('chart').layout.xaxis")
    assert layout["range"] == zoomed and layout["autorange"] is False

    page.click("#timeframes button[data-timeframe='5s']")
    wait_for("the 5s chart", lambda: all(c["start"] % (5 * S) == 0 for c in chart_candles(page)))
    reset = page.evaluate(
        """() => {
            const div = document.getElementById("chart");
            const ax = div._fullLayout.xaxis;
            return {autorange: div.layout.xaxis.autorange, range: div.layout.xaxis.range,
                    starts: div.data[0].customdata,
                    span: ax.r2l(ax.range[1]) - ax.r2l(ax.range[0])};
        }"""
    )  # fmt: skip
    assert reset["range"] != zoomed
    starts = reset["starts"]
    if (starts[-1] - starts[0]) // (5 * S) >= 29:
        assert reset["autorange"] is True
    else:  # a young demo: a few candles are drawn in a window 30 candles wide (test_states.py)
        assert reset["span"] == 30 * 5000
    assert console.unexpected() == []


def figure(page) -> dict:
    """The chart's candles (start, close) and every overlay's y values, read in one go (one
    render: live pushes keep redrawing between two reads)."""
    return page.evaluate(
        """() => {
            const data = document.getElementById("chart").data;
            const lines = {};
            for (const t of data.slice(2)) lines[t.name] = t.y;
            return {starts: data[0].customdata, lines};
        }"""
    )


def test_overlays_follow_the_stored_candles_and_toggle(page, demo: Demo, console: Console) -> None:
    open_dashboard(page, demo, symbol="ETH-USDT", tf="1s", lookback="10m")
    wait_for("25 candles", lambda: len(chart_candles(page)) >= 25, timeout=40)
    page.check("#overlays input[data-overlay='ema']")
    shown = wait_for("the EMA", lambda: (f := figure(page)) and "EMA 50" in f["lines"] and f)
    starts, lines = shown["starts"], shown["lines"]
    assert {"VWAP", "SMA 20", "EMA 50"} <= set(lines)

    stored = api_candles(demo, "ETH-USDT", interval="1s", lookback="10m")
    assert starts[0] == min(stored), "the demo is younger than 10 minutes"
    i = max(n for n, start in enumerate(starts) if start + S + LATENESS < time.time() * S)
    rows = [stored[start] for start in starts[: i + 1]]
    expected_vwap = sum(r["quote_volume"] for r in rows) / sum(r["volume"] for r in rows)
    assert lines["VWAP"][i] == pytest.approx(expected_vwap, rel=1e-9)
    assert lines["SMA 20"][i] == pytest.approx(sum(r["close"] for r in rows[-20:]) / 20)
    assert lines["SMA 20"][18] is None and lines["SMA 20"][19] is not None

    rolling = demo.api("/api/rolling", exchange="simulated", symbol="ETH-USDT")["history"]
    if rolling:  # a 1-minute candle has closed: the stored averages are drawn
        drawn = wait_for("the 30m average", lambda: figure(page)["lines"].get("30m avg"))
        assert set(drawn) <= {r["avg_close_30m"] for r in rolling}  # the page asked earlier

    page.uncheck("#overlays input[data-overlay='vwap']")
    lines = figure(page)["lines"]
    assert "VWAP" not in lines and "EMA 50" in lines
    assert console.unexpected() == []


def test_lookback_picks_refetch_and_too_many_candles_are_refused_with_a_reason(
    page, demo: Demo, console: Console
) -> None:
    asked: list[str] = []
    open_dashboard(page, demo, symbol="BTC-USDT", tf="5s", lookback="10m")
    page.on("request", lambda r: asked.append(r.url) if "/api/candles" in r.url else None)
    page.fill("#lookback", "30m")
    page.press("#lookback", "Enter")
    wait_for("the 30m fetch", lambda: any("lookback=30m" in u and "=5s" in u for u in asked))
    wait_for("the foot", lambda: "30m back" in page.inner_text("#chart-foot"))

    page.click("#timeframes button[data-timeframe='1s']")
    page.click("#lookbacks button[data-lookback='24h']")
    wait_for("the refusal", lambda: page.locator("#error").is_visible())
    assert "86,400 candles" in page.inner_text("#error")
    assert "larger timeframe" in page.inner_text("#error")
    assert not any("lookback=24h" in u and "interval=1s" in u for u in asked)
    assert console.unexpected() == []


# The two tests below need 35-40 one-second candles of the session's demo: last in the file,
# they find them drawn already instead of waiting for the demo to grow them.
def test_new_candles_arriving_live_are_drawn_in_place_where_their_prices_are_and_zoom_is_kept(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="BTC-USDT", tf="1s", lookback="10m")
    # Fewer than 30 candles are drawn in a 30-candle window that moves with each (test_states).
    wait_for("35 candles", lambda: len(chart_candles(page)) >= 35, timeout=60)
    page.evaluate(COLLECT_NEW_CANDLES)
    new_candles_drawn(page, "3 new candles drawn in place")

    # Zoomed onto the right half (the newest candles and the room kept right of them).
    drag_across_chart(page, 0.5, 1.0, inset_px=2)
    zoomed = page.evaluate("() => document.getElementById('chart').layout.xaxis.range.slice()")
    renders = page_stats(page)["renders"]
    page.evaluate("() => { window.__newCandles = []; }")
    drawings = new_candles_drawn(page, "3 new candles drawn in the zoom")
    assert all(d["range"] == zoomed for d in drawings)
    # A whole redraw (Plotly laying out what was drawn in place) keeps the zoom too.
    wait_for("a whole redraw", lambda: page_stats(page)["renders"] > renders, timeout=30)
    layout = page.evaluate("() => document.getElementById('chart').layout.xaxis")
    assert layout["range"] == zoomed and layout["autorange"] is False
    assert console.unexpected() == []


def test_candles_leaving_the_lookback_leave_the_figure_as_new_ones_are_drawn_in_place(
    page, demo: Demo, console: Console
) -> None:
    open_dashboard(page, demo, symbol="ETH-USDT", tf="1s", lookback="40s")
    wait_for("40 candles", lambda: len(chart_candles(page)) >= 40, timeout=60)
    page.evaluate(COLLECT_NEW_CANDLES)
    drawings = new_candles_drawn(page, "3 new candles drawn in place")
    for shown in drawings:  # nothing older than the lookback (40 s before the newest, at most)
        assert shown["candle"]["start"] - 41 * S <= shown["first"]
    # Candles left the figure in drawings in place: one shape per candle on screen each time.
    every = page.evaluate("() => window.__drawings")
    assert any(b[0] == "alone" and b[1] > a[1] for a, b in itertools.pairwise(every)), (
        "no candle left the figure in place"
    )
    assert all(d[2] == d[3] for d in every)
    assert console.unexpected() == []
