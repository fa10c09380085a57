"""The Kraken source delivers every trade the exchange made, through every fault, and says what
it could not recover.

Each test runs `KrakenSource` against the fake Kraken (WebSocket v2 and REST) on 127.0.0.1.
Duplicates may reach `emit` (the engine removes them); nothing may be lost or altered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fakes import async_test
from fakes.harness import SourceRun, observed
from fakes.kraken_server import FakeKraken

from sources.contract.exchanges import FAST
from sources.contract.exchanges import expected_kraken as expected
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Instrument, TradeBatch
from tickpipe.sources.kraken import fetch_symbols, make_source
from tickpipe.sources.kraken.source import GapDetector, KrakenSource
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig

FAST_REST = RestConfig(timeout=2.0, attempts=3, backoff_initial=0.01, rate_limit_backoff=0.05)
SYMBOLS = ["BTC-USD", "ETH-USD"]


class Run(SourceRun):
    def __init__(
        self, server: FakeKraken, dead_letters: DeadLetters | None = None, **kwargs: Any
    ) -> None:
        symbols = kwargs.pop("symbols", SYMBOLS)
        options = {"ws_config": FAST, "rest_config": FAST_REST, **kwargs}
        source = KrakenSource(symbols, url=server.url, rest_url=server.rest_url, **options)
        super().__init__(source, dead_letters)


def made(server: FakeKraken) -> set[tuple]:
    """Every trade the exchange made, sent or not."""
    return {row for trades in server.history.values() for row in expected(trades)}


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeKraken() as server:
        run = Run(server)
        async with run.running():
            conn = await server.wait_subscribed(1)
            await server.feed(rate=20_000, count=2000)
            await run.received(2000)
        assert conn.requests[0] == {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": True},
            "req_id": 1,
        }
        assert observed(run.trades()) == expected(server.published)
        assert run.ctx.stats.trades == 2000
        assert run.gaps() == [] and run.disconnects() == []
        assert all(b.instruments == run.source.index.instruments for b in run.batches)


@async_test()
async def test_many_trades_in_one_message_all_arrive() -> None:
    async with FakeKraken() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            trades = [server.trade(["BTC/USD", "ETH/USD"][n % 2]) for n in range(40)]
            server.send(*trades, per_message=7)
            await run.received(40)
        assert observed(run.trades()) == expected(trades)


@async_test()
async def test_symbols_beyond_the_per_connection_limit_open_more_connections() -> None:
    async with FakeKraken(["BTC/USD", "ETH/USD", "SOL/USD"]) as server:
        run = Run(server, symbols=["BTC-USD", "ETH-USD", "SOL-USD"], max_symbols_per_connection=2)
        async with run.running():
            await server.wait_subscribed(2)
            for symbol in server.symbols:
                server.publish(symbol)
            await run.received(3)
        assert sorted(sorted(c.symbols) for c in server.connections) == [
            ["BTC/USD", "ETH/USD"],
            ["SOL/USD"],
        ]
        assert sorted(observed(run.trades())) == sorted(expected(server.published))


@async_test()
async def test_reconnect_resubscribes_and_the_snapshot_fills_a_short_gap() -> None:
    async with FakeKraken() as server:
        run = Run(server)
        async with run.running():
            first = await server.wait_subscribed(1)
            server.publish("BTC/USD")
            server.drop_all()
            server.skip("BTC/USD", 3)  # traded while nobody listened; within the snapshot
            second = await server.wait_subscribed(2)
            server.publish("BTC/USD")
            await run.received(6)  # 1, then the snapshot (1 again and the 3 lost), then 1 live
            assert first.closed and second.open and second.symbols == first.symbols
        assert set(observed(run.trades())) == made(server)
        assert [d.reason for d in run.disconnects()] == ["connection lost"]
        assert run.gaps() == []  # the snapshot brought the lost trades back in order
        assert server.rest_requests == []


@async_test()
async def test_trades_lost_beyond_the_snapshot_are_backfilled_over_rest_despite_a_429() -> None:
    async with FakeKraken(snapshot_size=2) as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("ETH/USD")
            server.publish("BTC/USD")
            server.drop_all()
            lost = server.skip("BTC/USD", 10)  # only the last 2 come back in the snapshot
            server.rest_reject_next(429, retry_after="0.05")
            await server.wait_subscribed(2)
            server.publish("BTC/USD")
            await run.until(lambda: run.gaps())
        assert set(observed(run.trades())) == made(server)
        [gap] = run.gaps()
        assert (gap.symbol, gap.first_missing, gap.last_missing) == (
            "BTC-USD",
            lost[0]["trade_id"],
            lost[-3]["trade_id"],
        )
        assert gap.recovered == 8
        assert gap.detail == "backfilled all 8 missing trades over REST"
        assert [r["pair"] for r in server.rest_requests] == ["XBTUSD", "XBTUSD"]  # 429, then 200


@async_test()
async def test_gap_in_live_trade_ids_is_backfilled_across_pages() -> None:
    async with FakeKraken() as server:
        server.rest_page_limit = 3
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("ETH/USD")
            lost = server.skip("ETH/USD", 7)
            server.publish("ETH/USD")
            await run.until(lambda: run.gaps())
        assert set(observed(run.trades())) == made(server)
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            lost[0]["trade_id"],
            lost[-1]["trade_id"],
            7,
        )
        assert len(server.rest_requests) == 3  # 3 + 3 + 2 trades (the last page ends the gap)


@async_test()
async def test_trades_gone_from_rest_are_reported_as_not_recovered() -> None:
    async with FakeKraken(snapshot_size=0) as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("BTC/USD")
            lost = server.skip("BTC/USD", 6)
            server.rest_history_from["BTC/USD"] = lost[4]["trade_id"]  # the oldest 4 are gone
            server.publish("BTC/USD")
            await run.until(lambda: run.gaps())
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            lost[0]["trade_id"],
            lost[-1]["trade_id"],
            2,
        )
        assert "backfilled 2 of 6" in gap.detail and "4 not recovered" in gap.detail
        assert set(observed(run.trades())) == made(server) - set(expected(lost[:4]))


@async_test()
async def test_rest_that_keeps_refusing_ends_in_an_unrecovered_gap_not_a_crash() -> None:
    async with FakeKraken(snapshot_size=0) as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("BTC/USD")
            server.skip("BTC/USD", 2)
            server.rest_reject_next(500, count=3)
            server.publish("BTC/USD")
            await run.until(lambda: run.gaps())
            server.publish("BTC/USD")  # the stream goes on
            await run.received(3)
        [gap] = run.gaps()
        assert gap.recovered == 0 and "REST backfill failed" in gap.detail


@async_test()
async def test_unknown_pair_in_subscribe_ack_is_dead_lettered() -> None:
    async with FakeKraken(["BTC/USD"]) as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(1)
            server.publish("BTC/USD")
            await run.received(1)
            await run.until(lambda: run.ctx.dead_letters.total == 1)
        [(key, count)] = run.ctx.dead_letters.counts.items()
        assert count == 1
        assert key == ("kraken", "error reply to subscribe: Currency pair not supported ETH/USD")


@async_test()
async def test_fetch_symbols_maps_normalized_names_to_v2_spelling_after_a_429() -> None:
    async with FakeKraken(["BTC/USD", "ETH/USD", "DOGE/EUR"]) as server:
        server.rest_reject_next(429, retry_after="0.01")
        symbols = await fetch_symbols(ExchangeOptions(rest_url=server.rest_url))
    assert symbols == {"BTC-USD": "BTC/USD", "ETH-USD": "ETH/USD", "DOGE-EUR": "DOGE/EUR"}


def test_make_source_uses_the_endpoint_overrides() -> None:
    source = make_source(["xbt/usd"], ExchangeOptions(url="ws://127.0.0.1:9/v2", rest_url="x"))
    assert isinstance(source, KrakenSource)
    assert (source.url, source.rest_url) == ("ws://127.0.0.1:9/v2", "x")
    assert source.index.instruments == [Instrument("kraken", "BTC-USD", "BTC/USD")]
    with pytest.raises(ValueError, match="symbol"):
        KrakenSource([])


def batch_of(*rows: tuple[int, int, int]) -> TradeBatch:
    """(instrument, seq, ts) rows as a batch of two instruments."""
    n = len(rows)
    return TradeBatch(
        source="kraken",
        instruments=[Instrument("kraken", "BTC-USD", "BTC/USD"), Instrument("kraken", "E-T", "E")],
        instrument=np.array([r[0] for r in rows], np.int32),
        seq=np.array([r[1] for r in rows], np.int64),
        price=np.ones(n),
        size=np.ones(n),
        side=np.zeros(n, np.int8),
        ts=np.array([r[2] for r in rows], np.int64),
        recv_ts=np.zeros(n, np.int64),
    )


def test_gap_detector_reports_gaps_with_the_time_of_the_trade_before() -> None:
    gaps = GapDetector(2)
    assert gaps.check(batch_of((0, 100, 1000), (1, 7, 70))) == []  # nothing known before
    assert gaps.check(batch_of((0, 102, 1020), (0, 101, 1010), (0, 101, 1010))) == []
    assert gaps.check(batch_of((0, 99, 990))) == []  # late
    found = gaps.check(batch_of((0, 110, 1100), (1, 9, 90), (0, 104, 1040), (1, 12, 120)))
    assert [(g.code, g.first, g.last, g.after_ts) for g in found] == [
        (0, 103, 103, 1020),
        (0, 105, 109, 1040),
        (1, 8, 8, 70),
        (1, 10, 11, 90),
    ]
    assert gaps.check(batch_of((0, 105, 1050))) == []  # a late fill is not a new gap
    assert gaps.last.tolist() == [110, 12] and gaps.last_ts.tolist() == [1100, 120]
