"""The Binance source delivers exactly the trades the exchange published, through every fault.

Each test runs `BinanceSource` against the fake Binance server on 127.0.0.1. Duplicates may
arrive here (the engine removes them); nothing may be lost or altered.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from fakes import async_test
from fakes.binance_server import FakeBinance, FakeBinanceThread
from fakes.harness import SourceRun, observed

from sources.contract.exchanges import FAST
from sources.contract.exchanges import expected_binance as expected
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Instrument, Trade, TradeBatch
from tickpipe.sources.binance.backfill import BackfillConfig
from tickpipe.sources.binance.source import BinanceSource, GapDetector
from tickpipe.sources.rest import RestConfig

FAST_REST = RestConfig(timeout=2.0, attempts=3, backoff_initial=0.01, backoff_max=0.05)
FAST_BACKFILL = BackfillConfig(requests_per_second=1000, catch_up_after=0.5, lag_delay=0.01)
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


class Run(SourceRun):
    def __init__(
        self,
        server: FakeBinance,
        dead_letters: DeadLetters | None = None,
        *,
        backfill: bool = True,
        stream: str = "trade",
        symbols: list[str] = SYMBOLS,
    ) -> None:
        source = BinanceSource(
            symbols,
            url=server.url,
            stream=stream,
            ws_config=FAST,
            rest_url=server.rest_url if backfill else None,
            rest_config=FAST_REST,
            backfill_config=FAST_BACKFILL,
        )
        super().__init__(source, dead_letters)

    def ids(self) -> set[tuple[str, int]]:
        """(raw symbol, trade id) of every trade handed out, live or backfilled."""
        return {(t.raw_symbol, t.seq) for t in self.trades()}

    async def received_ids(self, wanted: set[tuple[str, int]], timeout: float = 5.0) -> None:
        await self.until(lambda: wanted <= self.ids(), timeout)


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeBinance(["BTCUSDT", "ETHUSDT"]) as server:
        run = Run(server)
        async with run.running():
            conn = await server.wait_connections(1)
            await server.feed(rate=20_000, count=3000)
            await run.received(3000)
        assert conn.path == "/stream?streams=btcusdt@trade/ethusdt@trade"
        assert observed(run.trades()) == expected(server.published)
        assert run.ctx.stats.trades == run.ctx.stats.frames == 3000
        assert run.gaps() == [] and run.disconnects() == []
        assert all(b.instruments == run.source.index.instruments for b in run.batches)
        assert len(run.batches) < 3000  # frames arrive batched


@async_test()
async def test_taker_side_is_sell_when_buyer_is_maker() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT", buyer_is_maker=True)
            server.publish("BTCUSDT", buyer_is_maker=False)
            await run.received(2)
        assert [t.side for t in run.trades()] == ["sell", "buy"]


@async_test()
async def test_trades_lost_while_disconnected_are_only_reported_with_backfill_off() -> None:
    async with FakeBinance() as server:
        run = Run(server, backfill=False)
        async with run.running():
            await server.wait_connections(1)
            server.publish("BTCUSDT")
            server.drop_all()
            lost = server.skip("BTCUSDT", 3)
            await server.wait_connections(2)
            await server.wait_for(lambda: run.ctx.stats.connected)
            server.publish("BTCUSDT")
            await run.received(2)
        [gap] = run.gaps()
        assert (gap.first_missing, gap.last_missing, gap.recovered) == (
            lost[0]["t"],
            lost[-1]["t"],
            0,
        )
        assert "backfill is off" in gap.detail
        assert server.rest_requests == []
        assert observed(run.trades()) == expected(server.published)


@async_test()
async def test_gap_in_trade_ids_is_backfilled_and_emits_a_gap_event() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        async with run.running():
            await server.wait_connections(1)
            server.publish("ETHUSDT")
            server.publish("BTCUSDT")
            lost = server.skip("ETHUSDT", 2)
            server.publish("ETHUSDT")
            server.publish("BTCUSDT")
            await run.received(6)
            await server.wait_for(lambda: bool(run.gaps()))
        [gap] = run.gaps()
        assert gap.source == gap.exchange == "binance"
        assert (gap.symbol, gap.first_missing, gap.last_missing) == (
            "ETH-USDT",
            lost[0]["t"],
            lost[1]["t"],
        )
        assert gap.recovered == 2
        # Every trade exactly as the exchange made it, each once (live or backfilled).
        assert sorted(observed(run.trades())) == sorted(expected(server.published + lost))
        assert [(p, q["fromId"]) for p, q in server.rest_requests] == [
            ("/api/v3/historicalTrades", str(lost[0]["t"]))
        ]


@async_test()
async def test_full_transport_pauses_the_feed_and_loses_nothing() -> None:
    async with FakeBinance() as server:
        run = Run(server)
        run.source.ws_config = replace(FAST, max_pending_frames=500, max_batch_frames=100)
        async with run.running():
            await server.wait_connections(1)
            run.gate.clear()
            server.send(*(server.trade("BTCUSDT") for _ in range(20_000)))
            await asyncio.sleep(0.3)
            held = run.ctx.stats.frames
            run.gate.set()
            await run.received(20_000, timeout=10)
        assert held < 5_000  # the socket was left unread while emit waited
        assert observed(run.trades()) == expected(server.published)


def test_source_works_against_the_threaded_fake_that_subprocess_tests_use() -> None:
    with FakeBinanceThread(symbols=["BTCUSDT"]) as fake:
        server = fake.server
        assert server is not None

        async def consume() -> list[Trade]:
            run = Run(server)
            async with run.running():
                await asyncio.wrap_future(fake.start(server.wait_connections(1)))
                await asyncio.wrap_future(fake.start(server.feed(rate=2000, count=200)))
                await run.received(200)
            return run.trades()

        trades = asyncio.run(consume())
        published = fake.call(lambda server: list(server.published))
    assert len(published) == 200
    assert observed(trades) == expected(published)


def test_url_names_every_stream_in_lowercase() -> None:
    source = BinanceSource(["BTC-USDT", "eth/usdt", "BTCUSDT"], url="ws://127.0.0.1:9/")
    [shard] = source.shards
    assert source.connection_url(shard) == (
        "ws://127.0.0.1:9/stream?streams=btcusdt@trade/ethusdt@trade"
    )
    assert source.index.instruments == [
        Instrument("binance", "BTC-USDT", "BTCUSDT"),
        Instrument("binance", "ETH-USDT", "ETHUSDT"),
    ]
    agg = BinanceSource(["BTC-USDT"], url="wss://stream.binance.com:9443", stream="aggTrade")
    assert [agg.connection_url(s) for s in agg.shards] == [
        "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade"
    ]


def test_streams_beyond_the_per_connection_limit_open_more_connections() -> None:
    source = BinanceSource(
        ["BTC-USDT", "ETH-USDT", "SOL-USDT"], url="ws://h", max_streams_per_connection=2
    )
    assert [source.connection_url(s) for s in source.shards] == [
        "ws://h/stream?streams=btcusdt@trade/ethusdt@trade",
        "ws://h/stream?streams=solusdt@trade",
    ]
    assert [s.codes for s in source.shards] == [[0, 1], [2]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": "kline_1m"}, "stream"),
        ({"symbols": []}, "symbol"),
        ({"max_streams_per_connection": 0}, "max_streams_per_connection"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BinanceSource(**{"symbols": ["BTC-USDT"], **kwargs})


def batch_of(*rows: tuple[int, int]) -> TradeBatch:
    """(instrument, seq) pairs as a batch of two instruments."""
    instruments = [Instrument("binance", "BTC-USDT", "BTCUSDT"), Instrument("binance", "E-T", "ET")]
    n = len(rows)
    return TradeBatch(
        source="binance",
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
    assert gaps.check(batch_of((0, 100), (1, 7))) == []  # nothing known before: no gap
    assert gaps.check(batch_of((0, 103), (0, 101), (0, 102), (0, 101), (1, 8))) == []
    assert gaps.check(batch_of((0, 99), (0, 103))) == []  # late and duplicate
    found = gaps.check(batch_of((0, 110), (1, 9), (0, 104), (1, 12), (0, 106)))
    assert [(g.code, g.first, g.last) for g in found] == [(0, 105, 105), (0, 107, 109), (1, 10, 11)]
    assert gaps.check(batch_of((0, 105))) == []  # a late fill is not a new gap
