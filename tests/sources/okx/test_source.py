"""The OKX source delivers every trade the exchange made, through every fault.

Each test runs `OkxSource` against the fake OKX server (WebSocket and REST) on 127.0.0.1.
Duplicates may arrive (the engine removes them); nothing may be lost or altered, and trades lost
on the wire come back over REST with a `Gap` event that says how many were recovered.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from fakes import async_test
from fakes.harness import SourceRun, observed
from fakes.okx_server import FakeOkx

from sources.contract.exchanges import FAST
from sources.contract.exchanges import expected_okx as expected
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Instrument, TradeBatch
from tickpipe.sources.okx import fetch_symbols, make_source
from tickpipe.sources.okx.source import GapDetector, OkxSource
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig

FAST_REST = RestConfig(timeout=2.0, attempts=4, backoff_initial=0.01, backoff_max=0.05)
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


class Run(SourceRun):
    def __init__(self, server: FakeOkx, dead_letters: DeadLetters | None = None, **kw: Any):
        kw = {"ws_config": FAST, "rest_config": FAST_REST, "connect_interval": 0.0, **kw}
        symbols = kw.pop("symbols", SYMBOLS)
        source = OkxSource(symbols, url=server.url, rest_url=server.rest_url, **kw)
        super().__init__(source, dead_letters)

    async def received(self, ids: set[tuple[str, str]], timeout: float = 5.0) -> None:  # type: ignore[override]
        """Wait until every (instId, tradeId) in `ids` has arrived."""
        await self.until(
            lambda: ids <= {(t.raw_symbol, t.trade_id) for t in self.trades()}, timeout
        )


def ids(rows: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(r["instId"], r["tradeId"]) for r in rows}


def every_trade_made(server: FakeOkx) -> list[dict[str, str]]:
    return [r for rows in server.history.values() for r in rows]


def assert_exactly_the_exchanges_trades(run: Run, server: FakeOkx) -> None:
    """Every trade made arrived, and nothing arrived that was not made exactly so."""
    made = every_trade_made(server)
    assert set(observed(run.trades())) == set(expected(made))


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeOkx() as server:
        run = Run(server)
        async with run.running():
            conn = await server.wait_connections(1)
            await server.wait_subscribed(2)
            await server.feed(rate=20_000, count=3000)
            await run.received(ids(server.published))
        assert conn.path == "/ws/v5/business"
        assert conn.requests == [
            {"op": "subscribe", "args": [{"channel": "trades-all", "instId": "BTC-USDT"},
                                         {"channel": "trades-all", "instId": "ETH-USDT"}]}
        ]  # fmt: skip
        assert observed(run.trades()) == expected(server.published)
        assert run.ctx.stats.trades == 3000
        assert run.gaps() == [] and run.disconnects() == []
        assert server.rest_requests == []
        assert len(run.batches) < 3000  # frames arrive batched


@async_test()
async def test_quiet_connection_sends_text_ping_and_pong_keeps_it_open() -> None:
    async with FakeOkx(idle_close=0.4) as server:
        run = Run(server, ping_after=0.1, ws_config=replace(FAST, idle_timeout=0.5))
        async with run.running():
            conn = await server.wait_connections(1)
            await asyncio.sleep(1.2)  # three times the server's idle limit
            row = server.publish("BTC-USDT")
            await run.received(ids([row]))
            assert conn.pings >= 5 and conn.open
        assert run.disconnects() == []


@async_test()
async def test_missing_pong_makes_the_source_reconnect() -> None:
    async with FakeOkx() as server:
        server.answer_pings = False
        run = Run(server, ping_after=0.1, ws_config=replace(FAST, idle_timeout=0.4))
        async with run.running():
            first = await server.wait_connections(1)
            await server.wait_connections(2)
            await server.wait_subscribed(2)
        assert first.pings >= 1
        assert run.disconnects()[0].reason == "no frame for 0.4s"


@async_test()
async def test_trades_made_while_disconnected_are_backfilled_over_rest() -> None:
    async with FakeOkx() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(2)
            before = server.publish("BTC-USDT")
            await run.received(ids([before]))
            server.drop_all()
            lost = server.skip("BTC-USDT", 3)  # traded while nobody listened; no trade since
            await server.wait_connections(2)
            await run.received(ids(lost))
        assert_exactly_the_exchanges_trades(run, server)
        [gap] = run.gaps()
        assert (gap.symbol, gap.first_missing, gap.last_missing, gap.recovered) == (
            "BTC-USDT",
            int(lost[0]["tradeId"]),
            int(lost[-1]["tradeId"]),
            3,
        )
        assert "disconnected" in gap.detail and "3 of 3" in gap.detail
        assert [d.reason for d in run.disconnects()] == ["connection lost"]
        paths = {p for p, _ in server.rest_requests}
        assert paths == {"/api/v5/market/history-trades"}


@async_test()
async def test_drop_mid_stream_loses_nothing_once_live_trades_resume() -> None:
    async with FakeOkx() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(2)
            server.drop_after(5)
            for n in range(10):  # five reach the client, five are written to a dead socket
                server.publish(SYMBOLS[n % 2])
            server.skip("ETH-USDT", 4)
            await server.wait_connections(2)
            await server.wait_subscribed(2)
            for n in range(6):
                server.publish(SYMBOLS[n % 2])
            await run.received(ids(every_trade_made(server)))
        assert_exactly_the_exchanges_trades(run, server)
        assert run.gaps(), "the lost trades were reported"
        assert all(g.recovered == g.last_missing - g.first_missing + 1 for g in run.gaps())


@async_test()
async def test_hole_in_live_trade_ids_is_refetched_and_reported() -> None:
    async with FakeOkx() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(2)
            server.publish("ETH-USDT")
            server.publish("BTC-USDT")
            lost = server.skip("ETH-USDT", 2)
            server.publish("ETH-USDT")
            server.publish("BTC-USDT")
            await run.received(ids(every_trade_made(server)))
            await server.wait_for(lambda: len(run.gaps()) == 1)
        [gap] = run.gaps()
        assert gap.source == gap.exchange == "okx"
        assert (gap.symbol, gap.first_missing, gap.last_missing, gap.recovered) == (
            "ETH-USDT",
            int(lost[0]["tradeId"]),
            int(lost[1]["tradeId"]),
            2,
        )
        assert gap.detail == "recovered 2 of 2 trades over REST"
        assert_exactly_the_exchanges_trades(run, server)


@async_test()
async def test_long_gap_is_fetched_page_by_page() -> None:
    async with FakeOkx() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(2)
            server.publish("BTC-USDT")
            server.skip("BTC-USDT", 250)
            server.publish("BTC-USDT")
            await run.received(ids(every_trade_made(server)))
            await server.wait_for(lambda: len(run.gaps()) == 1)
        assert run.gaps()[0].recovered == 250
        assert len(server.rest_requests) == 3  # 100 + 100 + 50
        assert_exactly_the_exchanges_trades(run, server)


@async_test()
async def test_backfill_limit_is_reported_as_not_recovered() -> None:
    async with FakeOkx() as server:
        run = Run(server, backfill_limit=100)
        async with run.running():
            await server.wait_subscribed(2)
            server.publish("BTC-USDT")
            lost = server.skip("BTC-USDT", 150)
            server.publish("BTC-USDT")
            await server.wait_for(lambda: len(run.gaps()) == 1)
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing) == (
            int(lost[0]["tradeId"]),
            int(lost[-1]["tradeId"]),
        )
        assert gap.recovered == 100 and "limit of 100" in gap.detail


@async_test()
async def test_failed_backfill_is_reported_and_the_source_goes_on() -> None:
    async with FakeOkx() as server:
        run = Run(server, rest_config=replace(FAST_REST, attempts=2))
        async with run.running():
            await server.wait_subscribed(2)
            server.publish("BTC-USDT")
            server.rest_reject_next(500, count=2)
            server.skip("BTC-USDT", 2)
            server.publish("BTC-USDT")
            await server.wait_for(lambda: len(run.gaps()) == 1)
            after = server.publish("ETH-USDT")
            await run.received(ids([after]))
        [gap] = run.gaps()
        assert gap.recovered == 0 and gap.detail.startswith("REST backfill failed")


@async_test()
async def test_upgrade_notice_reconnects_at_once_and_resubscribes() -> None:
    async with FakeOkx() as server:
        run = Run(server, ws_config=replace(FAST, backoff_initial=5.0, backoff_max=5.0))
        async with run.running():
            first = await server.wait_connections(1)
            await server.wait_subscribed(2)
            server.notice()
            second = await server.wait_connections(2, timeout=2.0)
            await server.wait_subscribed(2)
            row = server.publish("ETH-USDT")
            await run.received(ids([row]))
            assert first.closed and second.open
        assert second.subscriptions == {("trades-all", "BTC-USDT"), ("trades-all", "ETH-USDT")}
        [disconnect] = run.disconnects()
        assert disconnect.reason == "planned: server upgrade notice 64008"
        assert disconnect.reconnect_in == 0.0


@async_test()
async def test_symbols_beyond_one_connection_open_more_connections() -> None:
    names = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT"]
    async with FakeOkx(names) as server:
        run = Run(server, symbols=names, max_per_connection=2)
        async with run.running():
            await server.wait_connections(3)
            await server.wait_subscribed(5)
            rows = [server.publish(n) for n in names]
            await run.received(ids(rows))
        assert [sorted(i for _, i in c.subscriptions) for c in server.connections] == [
            ["BTC-USDT", "ETH-USDT"],
            ["SOL-USDT", "XRP-USDT"],
            ["DOGE-USDT"],
        ]
        assert observed(run.trades()) == expected(rows)


@async_test()
async def test_aggregated_trades_stream_reports_holes_from_count_and_fills_them() -> None:
    async with FakeOkx() as server:
        run = Run(server, stream="trades")
        async with run.running():
            conn = await server.wait_connections(1)
            await server.wait_subscribed(2)
            first, _ = server.publish_taker_order("BTC-USDT", fills=3)
            second, _ = server.publish_taker_order("BTC-USDT", fills=2)  # contiguous: no gap
            lost = server.skip("BTC-USDT", 2)
            third, _ = server.publish_taker_order("BTC-USDT", fills=4)
            await server.wait_for(lambda: len(run.gaps()) == 1)
            await run.received(ids(lost))
        assert conn.path == "/ws/v5/public"
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            int(lost[0]["tradeId"]),
            int(lost[1]["tradeId"]),
            2,
        )
        got = {t.trade_id: t for t in run.trades()}
        assert got[first["tradeId"]].size == float(first["sz"])  # one row per taker order
        assert {first["tradeId"], second["tradeId"], third["tradeId"]} | {
            r["tradeId"] for r in lost
        } == set(got)


@async_test()
async def test_fetch_symbols_maps_normalized_names_to_inst_ids() -> None:
    async with FakeOkx(["BTC-USDT", "ETH-BTC"]) as server:
        server.rest_reject_next(429, retry_after="0.05")
        symbols = await fetch_symbols(ExchangeOptions(rest_url=server.rest_url))
    assert symbols == {"BTC-USDT": "BTC-USDT", "ETH-BTC": "ETH-BTC"}
    assert server.rest_requests[-1] == ("/api/v5/public/instruments", {"instType": "SPOT"})


def test_make_source_uses_the_endpoint_overrides_and_stream() -> None:
    options = ExchangeOptions(
        url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:8", stream="trades"
    )
    source = make_source(["btc/usdt"], options)
    assert isinstance(source, OkxSource)
    assert source.url == "ws://127.0.0.1:9/ws/v5/public"
    assert source.rest_url == "http://127.0.0.1:8"
    assert source.index.instruments == [Instrument("okx", "BTC-USDT", "BTC-USDT")]
    default = make_source(["BTC-USDT"], ExchangeOptions())
    assert isinstance(default, OkxSource)
    assert default.url == "wss://ws.okx.com:8443/ws/v5/business"
    full = OkxSource(["BTC-USDT"], url="wss://wseea.okx.com:8443/ws/v5/business")
    assert full.url == "wss://wseea.okx.com:8443/ws/v5/business"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"stream": "books"}, "stream"), ({"symbols": []}, "symbol"), ({"ping_after": 0}, "ping")],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OkxSource(**{"symbols": ["BTC-USDT"], **kwargs})


def batch_of(*rows: tuple[int, int]) -> TradeBatch:
    instruments = [Instrument("okx", "BTC-USDT", "BTC-USDT"), Instrument("okx", "E-T", "E-T")]
    n = len(rows)
    return TradeBatch(
        source="okx",
        instruments=instruments,
        instrument=np.array([r[0] for r in rows], np.int32),
        seq=np.array([r[1] for r in rows], np.int64),
        price=np.ones(n),
        size=np.ones(n),
        side=np.zeros(n, np.int8),
        ts=np.zeros(n, np.int64),
        recv_ts=np.zeros(n, np.int64),
    )


def test_gap_detector_ignores_first_trade_reordering_and_duplicates() -> None:
    gaps = GapDetector(2)
    assert gaps.check(batch_of((0, 100), (1, 7))) == []
    assert gaps.check(batch_of((0, 103), (0, 101), (0, 102), (0, 101), (1, 8))) == []
    assert gaps.check(batch_of((0, 99), (0, 103))) == []
    found = gaps.check(batch_of((0, 110), (1, 9), (0, 104), (1, 12), (0, 106)))
    assert found == [(0, 105, 105), (0, 107, 109), (1, 10, 11)]
    assert gaps.check(batch_of((0, 105))) == []


def test_gap_detector_counts_aggregated_rows_as_their_whole_id_range() -> None:
    gaps = GapDetector(2)
    assert gaps.check(batch_of((0, 10)), np.array([8])) == []
    assert gaps.check(batch_of((0, 13), (0, 20)), np.array([11, 16])) == [(0, 14, 15)]
