"""The Coinbase source delivers every trade the exchange made, through every fault.

Each test runs `CoinbaseSource` against the fake Coinbase server (WebSocket and REST) on
127.0.0.1. Duplicates may arrive here (the engine removes them); nothing may be lost or altered:
trades that never reached the WebSocket must come back over REST.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from fakes import async_test
from fakes.coinbase_server import FakeCoinbase
from fakes.harness import SourceRun, observed

from sources.contract.exchanges import FAST
from sources.contract.exchanges import expected_coinbase as expected
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Gap, Instrument, TradeBatch
from tickpipe.sources.coinbase import INFO, fetch_symbols, make_source
from tickpipe.sources.coinbase.source import BackfillConfig, CoinbaseSource, GapTracker
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig

FAST_REST = RestConfig(timeout=2.0, attempts=3, backoff_initial=0.01, backoff_max=0.05)
FAST_BACKFILL = BackfillConfig(request_interval=0.0, rest=FAST_REST)
SYMBOLS = ["BTC-USD", "ETH-USD"]
FEEDS = ["advanced", "exchange"]


class Run(SourceRun):
    def __init__(
        self,
        server: FakeCoinbase,
        stream: str = "advanced",
        symbols: list[str] = SYMBOLS,
        dead_letters: DeadLetters | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("backfill", FAST_BACKFILL)
        source = CoinbaseSource(
            symbols,
            url=server.url,
            rest_url=server.rest_url,
            stream=stream,
            ws_config=FAST,
            subscribe_interval=0.0,
            **kwargs,
        )
        super().__init__(source, dead_letters)

    async def has_all(self, server: FakeCoinbase, timeout: float = 5.0) -> None:
        """Wait until every trade the exchange made has arrived (live or backfilled)."""
        made = {(t["product_id"], t["trade_id"]) for h in server.history.values() for t in h}
        await self.until(lambda: made <= {(t.symbol, t.seq) for t in self.trades()}, timeout)

    async def gap_events(self, count: int, timeout: float = 5.0) -> list[Gap]:
        await self.until(lambda: len(self.gaps()) >= count, timeout)
        return self.gaps()


def everything(server: FakeCoinbase) -> set[tuple]:
    return set(expected([t for h in server.history.values() for t in h]))


@pytest.mark.parametrize("stream", FEEDS)
@async_test()
async def test_trades_received_equal_exactly_the_trades_published(stream: str) -> None:
    async with FakeCoinbase(SYMBOLS, heartbeat_interval=0.05) as server:
        run = Run(server, stream)
        async with run.running():
            [conn] = await server.wait_subscribed(1)
            await server.feed(rate=20_000, count=3000, together=5)
            await run.received(3000)
        assert observed(run.trades()) == expected(server.published)
        assert run.ctx.stats.trades == 3000
        assert run.gaps() == [] and run.disconnects() == []
        assert run.ctx.stats.malformed == 0
        assert conn.feed == stream and conn.products == set(SYMBOLS)
        if stream == "advanced":
            assert conn.requests == [
                {"type": "subscribe", "product_ids": SYMBOLS, "channel": "market_trades"},
                {"type": "subscribe", "channel": "heartbeats"},
            ]
        else:
            assert conn.requests == [
                {"type": "subscribe", "product_ids": SYMBOLS, "channels": ["matches", "heartbeat"]}
            ]
        assert len(run.batches) < 3000  # frames arrive batched


@pytest.mark.parametrize("stream", FEEDS)
@async_test()
async def test_taker_side_is_the_opposite_of_the_maker_side_coinbase_reports(stream: str) -> None:
    async with FakeCoinbase() as server:
        run = Run(server, stream)
        async with run.running():
            await server.wait_subscribed()
            server.publish("BTC-USD", maker_side="sell")
            server.publish("BTC-USD", maker_side="buy")
            await run.received(2)
        assert [t.side for t in run.trades()] == ["buy", "sell"]


@pytest.mark.parametrize("stream", FEEDS)
@async_test()
async def test_trades_missed_while_disconnected_are_backfilled_over_rest(stream: str) -> None:
    async with FakeCoinbase(heartbeat_interval=0.05) as server:
        run = Run(server, stream)
        async with run.running():
            first = (await server.wait_subscribed())[0]
            server.publish("BTC-USD")
            server.publish("ETH-USD")
            await run.received(2)
            server.drop_all()
            lost = server.skip("BTC-USD", 3)  # traded while nobody listened
            await server.wait_for(lambda: len(server.subscribed()) == 1 and first.closed)
            second = server.subscribed()[0]
            server.publish("BTC-USD")
            await run.has_all(server)
            [gap] = await run.gap_events(1)
        assert second.products == first.products == set(SYMBOLS)  # resubscribed
        # The Exchange feed's `last_match` after subscribing brings back the newest of them.
        missing = lost if stream == "advanced" else lost[:-1]
        assert (gap.symbol, gap.first_missing, gap.last_missing) == (
            "BTC-USD", missing[0]["trade_id"], missing[-1]["trade_id"],
        )  # fmt: skip
        assert gap.recovered == len(missing) and f"recovered all {len(missing)}" in gap.detail
        assert set(observed(run.trades())) == everything(server)
        assert [d.reason for d in run.disconnects()] == ["connection lost"]
        assert [q["after"] for p, q, s in server.rest_log] == [str(missing[-1]["trade_id"] + 1)]


@async_test()
async def test_advanced_snapshot_after_reconnect_reveals_a_gap_with_no_new_trade() -> None:
    async with FakeCoinbase(snapshot_size=2, heartbeat_interval=0.05) as server:
        for _ in range(5):
            server.trade("BTC-USD")  # before tickpipe started: in the first snapshot only
        run = Run(server)
        async with run.running():
            await server.wait_subscribed()
            await run.received(2)
            server.drop_all()
            lost = server.skip("BTC-USD", 6)
            [gap] = await run.gap_events(1)
        # The snapshot brought the last 2 of the 6; the other 4 came over REST.
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            lost[0]["trade_id"], lost[3]["trade_id"], 4,
        )  # fmt: skip
        received = {t.seq for t in run.trades()}
        assert {t["trade_id"] for t in lost} <= received
        assert set(observed(run.trades())) <= everything(server)


@async_test()
async def test_exchange_heartbeat_reveals_lost_trades_of_a_quiet_product() -> None:
    async with FakeCoinbase(heartbeat_interval=0.05) as server:
        run = Run(server, "exchange")
        async with run.running():
            await server.wait_subscribed()
            server.publish("ETH-USD")
            await run.received(1)
            lost = server.skip("ETH-USD", 4)  # never sent; only the heartbeat's id tells
            [gap] = await run.gap_events(1)
            await run.has_all(server)
        assert (gap.symbol, gap.first_missing, gap.last_missing, gap.recovered) == (
            "ETH-USD", lost[0]["trade_id"], lost[-1]["trade_id"], 4,
        )  # fmt: skip
        assert set(observed(run.trades())) == everything(server)


@async_test(timeout=30)
async def test_a_long_gap_is_backfilled_page_by_page_through_the_after_cursor() -> None:
    async with FakeCoinbase() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed()
            server.publish("BTC-USD")
            lost = server.skip("BTC-USD", 2500)
            server.publish("BTC-USD")
            [gap] = await run.gap_events(1, timeout=20)
        assert gap.recovered == 2500
        assert [(q["after"], q["limit"]) for p, q, s in server.rest_log] == [
            (str(lost[-1]["trade_id"] + 1), "1000"),
            (str(lost[-1000]["trade_id"]), "1000"),  # CB-AFTER: the oldest id of the page
            (str(lost[-2000]["trade_id"]), "500"),
        ]
        assert set(observed(run.trades())) == everything(server)


@async_test()
async def test_gap_event_says_which_trades_could_not_be_recovered() -> None:
    async with FakeCoinbase() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed()
            server.publish("BTC-USD")
            lost = server.skip("BTC-USD", 3)
            server.hide_from_rest(lost[1])
            server.publish("BTC-USD")
            [gap] = await run.gap_events(1)
        assert gap.recovered == 2
        assert "recovered 2 of 3" in gap.detail and "not on the exchange's trade list" in gap.detail
        assert lost[1]["trade_id"] not in {t.seq for t in run.trades()}


@async_test()
async def test_backfill_that_fails_for_good_is_reported_and_the_stream_goes_on() -> None:
    async with FakeCoinbase() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed()
            server.publish("BTC-USD")
            server.skip("BTC-USD", 2)
            server.reject_rest(500, count=3)  # every attempt fails
            server.publish("BTC-USD")
            [gap] = await run.gap_events(1)
            server.publish("BTC-USD")
            await run.received(3)
        assert (
            gap.recovered == 0 and "REST backfill failed" in gap.detail and "HTTP 500" in gap.detail
        )


@async_test()
async def test_disabled_backfill_still_reports_the_gap() -> None:
    async with FakeCoinbase() as server:
        run = Run(server, backfill=BackfillConfig(enabled=False))
        async with run.running():
            await server.wait_subscribed()
            server.publish("BTC-USD")
            server.skip("BTC-USD", 2)
            server.publish("BTC-USD")
            [gap] = await run.gap_events(1)
        assert (gap.recovered, gap.detail) == (0, "REST backfill is switched off")
        assert server.rest_log == []


@async_test()
async def test_dead_feed_that_still_answers_pings_reconnects_on_the_any_frame_timer() -> None:
    async with FakeCoinbase(heartbeat_interval=0.05) as server:
        run = Run(server)
        run.source.ws_config = replace(FAST, idle_timeout=0.3, data_timeout=5.0)
        async with run.running():
            first = (await server.wait_subscribed())[0]
            server.dead = True
            await server.wait_for(lambda: first.closed)
            server.dead = False
            await server.wait_for(lambda: len(server.subscribed()) == 1)
            server.publish("BTC-USD")
            await run.received(1)
        assert [d.reason for d in run.disconnects()] == ["no frame for 0.3s"]


@async_test()
async def test_products_beyond_the_per_connection_limit_get_more_connections() -> None:
    products = ["BTC-USD", "ETH-USD", "SOL-USD", "LTC-USD", "ADA-USD"]
    async with FakeCoinbase(products, heartbeat_interval=0.05) as server:
        run = Run(server, symbols=products, max_products=2)
        async with run.running():
            conns = await server.wait_subscribed(3)
            await server.wait_for(lambda: run.ctx.stats.connected)
            for p in products:
                server.publish(p)
            await run.received(5)
            conns[0].transport.disconnect()  # type: ignore[union-attr]
            await server.wait_for(lambda: not run.ctx.stats.connected)
            await server.wait_for(lambda: len(server.subscribed()) == 3)
            await server.wait_for(lambda: run.ctx.stats.connected)
        assert sorted(sorted(c.products) for c in conns) == [
            ["ADA-USD"], ["BTC-USD", "ETH-USD"], ["LTC-USD", "SOL-USD"],
        ]  # fmt: skip
        assert observed(run.trades()) == expected(server.published)
        assert len(run.source.clients) == 3


@async_test()
async def test_fetch_symbols_lists_live_products_and_survives_a_429() -> None:
    async with FakeCoinbase(["BTC-USD", "ETH-USDT"]) as server:
        server.reject_rest(429, retry_after="0.05")
        symbols = await fetch_symbols(ExchangeOptions(rest_url=server.rest_url))
    assert symbols == {"BTC-USD": "BTC-USD", "ETH-USDT": "ETH-USDT"}  # OLD-USD is delisted
    assert [s for p, q, s in server.rest_log] == [429, 200]


def test_make_source_takes_endpoints_and_stream_from_the_options() -> None:
    options = ExchangeOptions(
        url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:8", stream="exchange"
    )
    source = make_source(["btc/usd"], options)
    assert isinstance(source, CoinbaseSource)
    assert (source.url, source.rest_url, source.stream) == (
        "ws://127.0.0.1:9", "http://127.0.0.1:8", "exchange",
    )  # fmt: skip
    default = make_source(["BTC-USD"], ExchangeOptions())
    assert isinstance(default, CoinbaseSource)
    assert (default.url, default.stream) == ("wss://advanced-trade-ws.coinbase.com", "advanced")
    assert default.rest_url == "https://api.exchange.coinbase.com"
    assert source.index.instruments == [Instrument("coinbase", "BTC-USD", "BTC-USD")]
    assert INFO.streams[0] == "advanced" and INFO.gaps.startswith("yes")
    assert INFO.backfill.startswith("yes")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"stream": "level2"}, "stream"), ({"symbols": []}, "symbol"), ({"max_products": 0}, "max")],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CoinbaseSource(**{"symbols": ["BTC-USD"], **kwargs})


def batch_of(*rows: tuple[int, int]) -> TradeBatch:
    instruments = [
        Instrument("coinbase", "BTC-USD", "BTC-USD"),
        Instrument("coinbase", "E-U", "E-U"),
    ]
    n = len(rows)
    return TradeBatch(
        source="coinbase",
        instruments=instruments,
        instrument=np.array([r[0] for r in rows], np.int32),
        seq=np.array([r[1] for r in rows], np.int64),
        price=np.ones(n),
        size=np.ones(n),
        side=np.zeros(n, np.int8),
        ts=np.zeros(n, np.int64),
        recv_ts=np.zeros(n, np.int64),
    )


def test_gap_tracker_finds_skipped_ids_from_trades_and_heartbeats() -> None:
    gaps = GapTracker(2)
    assert gaps.check(batch_of((0, 100), (1, 7))) == []  # nothing known before: no gap
    assert gaps.check(batch_of((0, 103), (0, 101), (0, 102), (0, 101), (1, 8))) == []
    assert gaps.check(batch_of((0, 99), (0, 103))) == []  # late and duplicate
    found = gaps.check(batch_of((0, 110), (1, 9), (0, 104), (1, 12), (0, 106)))
    assert found == [(0, 105, 105), (0, 107, 109), (1, 10, 11)]
    assert gaps.check(batch_of((0, 105))) == []  # a late fill is not a new gap
    assert gaps.check(batch_of(), [(1, 12), (1, 15), (0, 110)]) == [(1, 13, 15)]
    assert gaps.check(batch_of((1, 16))) == []  # the heartbeat moved the mark
    fresh = GapTracker(1)
    assert fresh.check(batch_of(), [(0, 50)]) == []  # a first heartbeat only sets the mark
    assert fresh.check(batch_of((0, 52))) == [(0, 51, 51)]
