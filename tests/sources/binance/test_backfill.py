"""Trades the Binance stream lost come back over REST, and the Gap events say how many.

Every test runs `BinanceSource` against the fake Binance server (WebSocket streams and the
REST API, both on 127.0.0.1). What must hold: every trade the exchange made (`history`)
reaches `ctx.emit` (duplicates are fine, the engine drops them), the gap events count what
came back and name what did not, and the source never stops.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from fakes import async_test
from fakes.binance_server import FakeBinance

from tickpipe.sources.binance.backfill import _holes, _subtract
from tickpipe.sources.binance.rest import fetch_symbols
from tickpipe.sources.rest import RestClient

from .test_source import FAST_BACKFILL, Run, expected, observed


def history_ids(server: FakeBinance, *symbols: str) -> set[tuple[str, int]]:
    return {(e["s"], e["t"]) for s in symbols for e in server.history[s]}


def agg_ids(server: FakeBinance, *symbols: str) -> set[tuple[str, int]]:
    return {(e["s"], e["a"]) for s in symbols for e in server.agg_history[s]}


@async_test(timeout=20)
async def test_connection_dropped_mid_stream_while_trading_goes_on_loses_nothing() -> None:
    async with FakeBinance(["BTCUSDT", "ETHUSDT"]) as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            await server.feed(rate=5000, count=400)
            server.drop_all("scripted drop mid-stream")
            # The exchange goes on trading while the source is away and after it is back.
            feeding = asyncio.create_task(server.feed(rate=2000, count=600))
            await server.wait_connections(2)
            await feeding
            made = history_ids(server, "BTCUSDT", "ETHUSDT")
            await run.received_ids(made)
            await asyncio.sleep(0.2)  # let any gap event of the last backfill come out
        missed = made - {(e["s"], e["t"]) for e in server.published}
        assert missed, "the script lost nothing: the test proves nothing"
        assert run.ids() == made  # every trade the exchange made, none it did not
        gaps = run.gaps()
        assert sum(g.recovered for g in gaps) == len(missed)
        assert all(g.recovered == g.last_missing - g.first_missing + 1 for g in gaps)
        assert all("recovered all" in g.detail for g in gaps)
        assert {
            (g.symbol, i) for g in gaps for i in range(g.first_missing, g.last_missing + 1)
        } == {(f"{s[:3]}-{s[3:]}", i) for s, i in missed}
        assert len(run.disconnects()) == 1
        # Every trade arrived exactly as the exchange made it (fields, side, time).
        history = [e for s in ("BTCUSDT", "ETHUSDT") for e in server.history[s]]
        assert set(observed(run.trades())) == set(expected(history))


@async_test()
async def test_a_quiet_symbol_is_caught_up_after_a_reconnect_without_a_live_trade() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("ETHUSDT")
            server.publish("BTCUSDT")
            await run.received(2)
            server.drop_all()
            lost = server.skip("ETHUSDT", 3)
            await server.wait_connections(2)
            # No live ETH trade ever comes: only the catch-up can find the three.
            await run.received_ids({(e["s"], e["t"]) for e in lost})
            await server.wait_for(lambda: bool(run.gaps()))
        [gap] = run.gaps()
        assert (gap.symbol, gap.first_missing, gap.last_missing, gap.recovered) == (
            "ETH-USDT",
            lost[0]["t"],
            lost[-1]["t"],
            3,
        )
        assert gap.detail.startswith("after a reconnect: recovered all 3")
        fetched = [q for p, q in server.rest_requests if p == "/api/v3/historicalTrades"]
        # BTC was caught up too (nothing to find, so no event); ETH from its next id on.
        assert {(q["symbol"], q["fromId"]) for q in fetched} == {
            ("ETHUSDT", str(lost[0]["t"])),
            ("BTCUSDT", str(server.history["BTCUSDT"][-1]["t"] + 1)),
        }


@async_test()
async def test_a_long_gap_is_fetched_in_pages_of_1000() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT")
            lost = server.skip("BTCUSDT", 2500)
            server.publish("BTCUSDT")
            await run.received_ids(history_ids(server, "BTCUSDT"))
            await server.wait_for(lambda: bool(run.gaps()))
        [gap] = run.gaps()
        assert gap.recovered == 2500
        pages = [q for p, q in server.rest_requests if p == "/api/v3/historicalTrades"]
        assert [(q["fromId"], q["limit"]) for q in pages] == [
            (str(lost[0]["t"] + n * 1000), "1000") for n in range(3)
        ]


@async_test()
async def test_aggtrade_streams_are_backfilled_from_aggtrades_by_aggregate_id() -> None:
    async with FakeBinance() as server:
        run = Run(server, stream="aggTrade")
        async with run.running():
            conn = await server.wait_connections(1)
            server.publish("BTCUSDT")
            server.drop_all()
            lost = [server.agg_of(e) for e in server.skip("BTCUSDT", 4)]
            await server.wait_connections(2)
            server.publish("BTCUSDT")
            await run.received_ids(agg_ids(server, "BTCUSDT"))
            await server.wait_for(lambda: bool(run.gaps()))
        assert conn.streams == {"btcusdt@aggTrade", "ethusdt@aggTrade"}
        assert run.ids() == agg_ids(server, "BTCUSDT")
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            lost[0]["a"],
            lost[-1]["a"],
            4,
        )
        assert "/api/v3/aggTrades" in gap.detail
        assert {p for p, _ in server.rest_requests} == {"/api/v3/aggTrades"}


@async_test()
async def test_a_429_with_retry_after_is_waited_out_and_the_gap_still_filled() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT")
            server.rest_reject_next(429, retry_after="0.4")
            lost = server.skip("BTCUSDT", 5)
            server.publish("BTCUSDT")
            started = asyncio.get_running_loop().time()
            await run.received_ids({(e["s"], e["t"]) for e in lost})
            waited = asyncio.get_running_loop().time() - started
            await server.wait_for(lambda: bool(run.gaps()))
        assert waited >= 0.35  # Retry-After said 0.4 s
        assert len(server.rest_requests) == 2  # the refused one, then the one that worked
        [gap] = run.gaps()
        assert gap.recovered == 5


@async_test()
async def test_without_historical_trades_the_recent_window_is_used_and_the_rest_reported() -> None:
    async with FakeBinance() as server:
        server.historical_needs_key = True
        server.recent_window = 50  # /api/v3/trades knows only the last 50 trades
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT")
            lost = server.skip("BTCUSDT", 80)
            server.publish("BTCUSDT")
            await server.wait_for(lambda: bool(run.gaps()))
        [gap] = run.gaps()
        assert gap.recovered == 49  # the window's last 50 trades end with the live one
        recovered = {t.seq for t in run.trades()} & {e["t"] for e in lost}
        assert recovered == {e["t"] for e in lost[-49:]}
        first, last_lost = lost[0]["t"], lost[30]["t"]
        assert "recovered 49 of 80 over REST /api/v3/trades" in gap.detail
        assert f"not recovered: ids {first}-{last_lost}" in gap.detail
        assert [p for p, _ in server.rest_requests] == [
            "/api/v3/historicalTrades",
            "/api/v3/trades",
        ]


@async_test()
async def test_rest_down_reports_the_gap_unrecovered_and_the_stream_goes_on() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT")
            server.rest_reject_next(503, count=100)
            lost = server.skip("BTCUSDT", 3)
            server.publish("BTCUSDT")
            await server.wait_for(lambda: bool(run.gaps()))
            server.publish("BTCUSDT")  # still streaming
            await run.received(3)
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            lost[0]["t"],
            lost[-1]["t"],
            0,
        )
        assert "recovered 0 of 3" in gap.detail
        assert "HTTP 503" in gap.detail
        assert observed(run.trades()) == expected(server.published)


@async_test()
async def test_trades_the_rest_api_does_not_have_yet_are_asked_for_again() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        run.source.backfill_config = replace(FAST_BACKFILL, lag_retries=3, lag_delay=0.2)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT")
            lost = server.skip("BTCUSDT", 2)
            server.publish("BTCUSDT")
            history = server.history["BTCUSDT"]
            newest = history[-2:]  # the database behind REST lags the matching engine
            del history[-2:]
            await server.wait_for(lambda: len(server.rest_requests) >= 1)
            history.extend(newest)
            await server.wait_for(lambda: bool(run.gaps()))
        [gap] = run.gaps()
        assert gap.recovered == 2
        assert newest[0] is lost[-1]
        assert [q["fromId"] for _, q in server.rest_requests] == [
            str(lost[0]["t"]),
            str(lost[1]["t"]),
        ]


@async_test()
async def test_fetch_symbols_lists_trading_symbols_normalized() -> None:
    async with FakeBinance(["BTCUSDT", "ETHUSDT"]) as server, RestClient(server.rest_url) as rest:
        symbols = await fetch_symbols(rest)
    assert symbols["BTC-USDT"] == "BTCUSDT"
    assert symbols["ETH-BTC"] == "ETHBTC"
    assert symbols["BTC-USDC"] == "BTCUSDC"
    assert "LUNA-USDT" not in symbols  # status BREAK: not trading
    assert server.rest_requests[0][0] == "/api/v3/exchangeInfo"


def test_subtract_leaves_only_what_no_covered_range_holds() -> None:
    assert _subtract(10, 20, []) == [(10, 20)]
    assert _subtract(10, 20, [(12, 14), (18, 30)]) == [(10, 11), (15, 17)]
    assert _subtract(10, 20, [(0, 100)]) == []


def test_holes_names_missing_id_ranges() -> None:
    assert _holes(1, 10, [3, 4, 8]) == "1-2, 5-7, 9-10"
    assert _holes(1, 3, [2]) == "1, 3"
    assert _holes(1, 20, [2, 4, 6, 8]) == "1, 3, 5 and 2 more ranges"
