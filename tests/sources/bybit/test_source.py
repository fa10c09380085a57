"""The Bybit source delivers every trade the exchange published, catches up after reconnects as
far as Bybit's REST allows, and says what it could not recover.

Each test runs `BybitSource` against the fake Bybit (v5 public spot WebSocket and REST) on
127.0.0.1. Duplicates may reach `emit` (the engine removes them); nothing may be lost or altered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from fakes import async_test
from fakes.bybit_server import FakeBybit
from fakes.harness import SourceRun, observed

from sources.contract.exchanges import FAST
from sources.contract.exchanges import expected_bybit as expected
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Instrument
from tickpipe.sources.bybit import fetch_symbols, make_source
from tickpipe.sources.bybit.source import BybitSource, connection_groups
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig

FAST_REST = RestConfig(timeout=2.0, attempts=3, backoff_initial=0.01, rate_limit_backoff=0.05)
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


class Run(SourceRun):
    def __init__(
        self, server: FakeBybit, dead_letters: DeadLetters | None = None, **kwargs: Any
    ) -> None:
        symbols = kwargs.pop("symbols", SYMBOLS)
        options = {
            "ws_config": FAST,
            "rest_config": FAST_REST,
            "app_ping_interval": 0.2,
            **kwargs,
        }
        source = BybitSource(symbols, url=server.url, rest_url=server.rest_url, **options)
        super().__init__(source, dead_letters)


def made(server: FakeBybit) -> set[tuple]:
    return {row for trades in server.history.values() for row in expected(trades)}


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeBybit() as server:
        run = Run(server)
        async with run.running():
            conn = await server.wait_subscribed(1)
            await server.feed(rate=20_000, count=2000)
            await run.received(2000)
        assert conn.requests[0] == {
            "req_id": "1",
            "op": "subscribe",
            "args": ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"],
        }
        assert observed(run.trades()) == expected(server.published)
        assert run.ctx.stats.trades == 2000
        assert run.gaps() == [] and run.disconnects() == []


@async_test()
async def test_topics_go_ten_to_a_request_and_beyond_the_cap_to_more_connections() -> None:
    symbols = [f"C{n:02d}USDT" for n in range(25)]
    async with FakeBybit(symbols) as server:
        run = Run(
            server, symbols=[f"C{n:02d}-USDT" for n in range(25)], max_topics_per_connection=12
        )
        async with run.running():
            await server.wait_for(lambda: sum(len(c.topics) for c in server.connections) == 25)
            for symbol in symbols:
                server.publish(symbol)
            await run.received(25)
        assert sorted(len(c.topics) for c in server.connections) == [1, 12, 12]
        sizes = sorted(
            len(r["args"]) for c in server.connections for r in c.requests if r["op"] == "subscribe"
        )
        assert sizes == [1, 2, 2, 10, 10]  # 12 = 10 + 2 twice, then 1; never more than 10
        assert run.ctx.dead_letters.total == 0  # no request was refused
        assert sorted(observed(run.trades())) == sorted(expected(server.published))


@async_test()
async def test_application_pings_keep_a_connection_the_server_would_cut() -> None:
    async with FakeBybit(ping_deadline=0.3) as server:
        run = Run(server, app_ping_interval=0.05)
        async with run.running():
            conn = await server.wait_subscribed(1)
            await asyncio.sleep(1.0)
            server.publish("BTCUSDT")
            await run.received(1)
            assert conn.open
        assert conn.app_pings >= 10
        assert all(r["op"] in ("subscribe", "ping") for r in conn.requests)
        assert run.disconnects() == []


@async_test()
async def test_without_timely_pings_the_server_cuts_and_the_source_reconnects() -> None:
    async with FakeBybit(ping_deadline=0.2) as server:
        run = Run(server, app_ping_interval=5.0)
        async with run.running():
            first = await server.wait_subscribed(1)
            await server.wait_subscribed(2)
            server.publish("BTCUSDT")
            await run.received(1)
        assert first.close_reason == "no ping"
        assert run.disconnects()[0].reason == "connection lost"


@async_test()
async def test_reconnect_catches_up_the_trades_missed_over_rest_despite_a_429() -> None:
    async with FakeBybit() as server:
        run = Run(server)
        async with run.running():
            first = await server.wait_subscribed(1)
            server.publish("BTCUSDT")
            server.publish("ETHUSDT")
            server.drop_all()
            server.skip("BTCUSDT", 5)  # traded while nobody listened
            server.rest_reject_next(429, retry_after="0.05")
            second = await server.wait_subscribed(2)
            await run.until(lambda: run.gaps())
            server.publish("BTCUSDT")
            await run.received(8)
            assert first.closed and second.open and second.topics == first.topics
        assert set(observed(run.trades())) == made(server)
        [gap] = run.gaps()  # ETHUSDT had no trade while away: nothing to report
        assert (gap.symbol, gap.recovered) == ("BTC-USDT", 5)
        assert gap.detail.startswith("refetched all 5 trades since the last one seen")
        assert [r["symbol"] for r in server.rest_requests] == ["BTCUSDT", "BTCUSDT", "ETHUSDT"]
        assert all(r["category"] == "spot" and r["limit"] == "60" for r in server.rest_requests)
        assert [d.reason for d in run.disconnects()] == ["connection lost"]


@async_test()
async def test_trades_older_than_the_rest_window_are_reported_lost() -> None:
    async with FakeBybit() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("BTCUSDT")
            server.drop_all()
            lost = server.skip("BTCUSDT", 70)  # recent-trade holds only the last 60
            await server.wait_subscribed(2)
            await run.until(lambda: run.gaps())
        [gap] = run.gaps()
        assert gap.recovered == 60
        assert "older trades since the last one seen are lost" in gap.detail
        assert set(observed(run.trades())) == made(server) - set(expected(lost[:10]))


@async_test()
async def test_catch_up_that_rest_refuses_ends_in_a_gap_event_not_a_crash() -> None:
    async with FakeBybit() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("BTCUSDT")
            server.drop_all()
            server.rest_reject_next(500, count=3)
            await server.wait_subscribed(2)
            await run.until(lambda: run.gaps())
            server.publish("BTCUSDT")
            await run.received(2)
        [gap] = run.gaps()
        assert gap.recovered == 0 and gap.detail.startswith("catch-up failed")


@async_test()
async def test_duplicated_and_reordered_trades_all_arrive() -> None:
    async with FakeBybit() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            a, b, c = (server.trade("BTCUSDT") for _ in range(3))
            server.send(c, a, b, a, c)
            server.send(a, b, c, per_message=3)
            await run.received(8)
        assert observed(run.trades()) == expected([c, a, b, a, c, a, b, c])
        assert run.gaps() == []


@async_test()
async def test_fetch_symbols_maps_base_and_quote_coins_after_a_429() -> None:
    async with FakeBybit(["BTCUSDT", "ETHBTC", "SOLUSDC"]) as server:
        server.rest_reject_next(429, retry_after="0.01")
        symbols = await fetch_symbols(ExchangeOptions(rest_url=server.rest_url))
    assert symbols == {"BTC-USDT": "BTCUSDT", "ETH-BTC": "ETHBTC", "SOL-USDC": "SOLUSDC"}


def test_make_source_uses_the_endpoint_overrides() -> None:
    source = make_source(["btcusdt"], ExchangeOptions(url="ws://127.0.0.1:9/x", rest_url="y"))
    assert isinstance(source, BybitSource)
    assert (source.url, source.rest_url) == ("ws://127.0.0.1:9/x", "y")
    assert source.index.instruments == [Instrument("bybit", "BTC-USDT", "BTCUSDT")]
    with pytest.raises(ValueError, match="symbol"):
        BybitSource([])


def test_connection_groups_respect_the_topic_cap_and_21000_characters() -> None:
    assert connection_groups(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    long = [f"publicTrade.{'X' * 985}{n:03d}USDT" for n in range(50)]  # 1004 chars each
    groups = connection_groups(long, 1000)
    assert [len(g) for g in groups] == [20, 20, 10]
    assert all(len(msgspec.json.encode(g)) <= 21_000 for g in groups)
