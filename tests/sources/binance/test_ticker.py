"""The Binance ticker source samples last prices over REST as size-0 `binance-ticker` trades."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fakes import async_test
from fakes.binance_server import FakeBinance
from fakes.harness import SourceRun

from tickpipe.deadletter import DeadLetters
from tickpipe.records import Disconnect
from tickpipe.sources.binance import make_source
from tickpipe.sources.binance.ticker import BinanceTickerSource
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig

FAST_REST = RestConfig(timeout=2.0, attempts=2, backoff_initial=0.01, backoff_max=0.02)


class Poll(SourceRun):
    async def polls(self, count: int, timeout: float = 5.0) -> None:
        await self.until(lambda: len(self.batches) >= count, timeout)


@async_test()
async def test_each_poll_gives_one_size_zero_sample_per_symbol_at_the_last_price() -> None:
    async with FakeBinance(["BTCUSDT", "ETHUSDT"]) as server:
        server.publish("BTCUSDT", price=65000.5)
        server.publish("ETHUSDT", price=3000.25)
        source = BinanceTickerSource(
            ["BTC-USDT", "ETH-USDT"], rest_url=server.rest_url, poll_every=0.05,
            rest_config=FAST_REST,
        )  # fmt: skip
        poll = Poll(source)
        async with poll.running():
            await poll.polls(2)
            server.publish("BTCUSDT", price=65100.0)
            await poll.polls(len(poll.batches) + 2)
        trades = poll.trades()
    assert {(t.source, t.exchange, t.size, t.side) for t in trades} == {
        ("binance-ticker", "binance-ticker", 0.0, "unknown")
    }
    first, second = trades[0:2]
    assert {(first.symbol, first.raw_symbol, first.price), (second.symbol, second.price)} == {
        ("BTC-USDT", "BTCUSDT", 65000.5),
        ("ETH-USDT", 3000.25),
    }
    assert trades[-2].price == 65100.0 or trades[-1].price == 65100.0
    # One id per poll, the same for every symbol of it, rising, and equal to the sample time.
    seqs = [b.seq[0] for b in poll.batches]
    assert seqs == sorted(set(seqs))
    assert all(t.trade_id == str(t.seq) and t.ts == t.recv_ts for t in trades)
    assert all(abs(t.ts // 1000 - t.seq) <= 1 for t in trades)
    requests = [q for p, q in server.rest_requests if p == "/api/v3/ticker/price"]
    assert requests[0] == {"symbols": '["BTCUSDT","ETHUSDT"]'}


@async_test()
async def test_polls_keep_their_interval() -> None:
    async with FakeBinance() as server:
        source = BinanceTickerSource(["BTC-USDT"], rest_url=server.rest_url, poll_every=0.1)
        poll = Poll(source)
        async with poll.running():
            await asyncio.sleep(0.55)
    assert 4 <= len(poll.batches) <= 7  # 6 due (0, 0.1, ..., 0.5 s); a busy machine may lag


@async_test()
async def test_a_429_is_waited_out_and_a_failed_poll_is_a_disconnect_not_the_end(
    tmp_path: Path,
) -> None:
    letters = DeadLetters(tmp_path / "dead.jsonl")
    async with FakeBinance() as server:
        source = BinanceTickerSource(
            ["BTC-USDT"], rest_url=server.rest_url, poll_every=0.05, rest_config=FAST_REST
        )
        poll = Poll(source, letters)
        async with poll.running():
            await poll.polls(1)
            server.rest_reject_next(429, retry_after="0.3")
            before = len(poll.batches)
            started = asyncio.get_running_loop().time()
            await poll.polls(before + 1)
            assert asyncio.get_running_loop().time() - started >= 0.25
            server.rest_reject_next(500, count=2)  # both attempts of one poll fail
            await server.wait_for(lambda: bool(poll.events))
            await poll.polls(len(poll.batches) + 1)  # and polling goes on
    [event] = poll.events
    assert isinstance(event, Disconnect)
    assert event.source == "binance-ticker"
    assert "HTTP 500" in event.reason
    assert poll.ctx.stats.connected


@async_test()
async def test_a_refused_request_is_dead_lettered(tmp_path: Path) -> None:
    letters = DeadLetters(tmp_path / "dead.jsonl")
    async with FakeBinance(["BTCUSDT"]) as server:
        source = BinanceTickerSource(
            ["NOPE-USDT"], rest_url=server.rest_url, poll_every=0.05, rest_config=FAST_REST
        )
        poll = Poll(source, letters)
        async with poll.running():
            await server.wait_for(lambda: poll.ctx.stats.malformed >= 2)
        letters.close()
    text = (tmp_path / "dead.jsonl").read_text()
    assert "ticker request refused" in text
    assert "Invalid symbol" in text
    assert poll.batches == []


def test_make_source_builds_the_ticker_for_the_ticker_stream() -> None:
    source = make_source(
        ["BTC-USDT"], ExchangeOptions(rest_url="http://127.0.0.1:1", stream="ticker", poll_every=2)
    )
    assert isinstance(source, BinanceTickerSource)
    assert (source.name, source.poll_every, source.rest_url) == (
        "binance-ticker",
        2,
        "http://127.0.0.1:1",
    )


@pytest.mark.parametrize("poll_every", [0, -1])
def test_a_poll_interval_must_be_positive(poll_every: float) -> None:
    with pytest.raises(ValueError, match="poll_every"):
        BinanceTickerSource(["BTC-USDT"], poll_every=poll_every)
