"""The Tiingo source delivers exactly the trades Tiingo published, through every fault, stamps
each with its venue, and never lets the API token out.

Each test runs `TiingoSource` against the fake Tiingo firehose on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import async_test
from fakes.harness import SourceRun
from fakes.tiingo_server import FakeTiingo

from sources.contract.exchanges import FAST
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Trade
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig, RestError
from tickpipe.sources.tiingo import fetch_symbols, make_source
from tickpipe.sources.tiingo.source import TiingoSource
from tickpipe.sources.tiingo.symbols import fetch_tiingo_symbols
from tickpipe.sources.ws import WsConfig

TOKEN = "t11ngo-s3cr3t"
SYMBOLS = ["BTC-USD", "eth/usd", "ETHBTC"]
PAIRS = {"btcusd": "BTC-USD", "ethusd": "ETH-USD", "ethbtc": "ETH-BTC"}
VENUE = {"gdax": "coinbase"}


class Run(SourceRun):
    def __init__(
        self,
        url: str,
        token: str = TOKEN,
        dead_letters: DeadLetters | None = None,
        config: WsConfig = FAST,
        max_tickers: int = 100,
    ) -> None:
        source = TiingoSource(SYMBOLS, token, url=url, ws_config=config, max_tickers=max_tickers)
        super().__init__(source, dead_letters)


def micros(date: str) -> int:
    return round(datetime.fromisoformat(date).timestamp() * 1e6)


def expected(messages: list[list[list[Any]]]) -> list[tuple]:
    """What each published trade must become, in the order it was sent."""
    return [
        ("tiingo", VENUE.get(d[3], d[3]), PAIRS[d[1]], d[1], d[5], d[4], "unknown", micros(d[2]))
        for m in messages
        for d in m
    ]


def observed(trades: list[Trade]) -> list[tuple]:
    return [
        (t.source, t.exchange, t.symbol, t.raw_symbol, t.price, t.size, t.side, t.ts)
        for t in trades
    ]


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeTiingo(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            conn = await server.wait_for_subscriptions(3)
            for n in range(1500):
                server.publish(list(PAIRS)[n % 3])
                if n % 100 == 99:
                    await asyncio.sleep(0)
            await run.received(1500)
        assert conn.requests == [
            {
                "eventName": "subscribe",
                "authorization": TOKEN,
                "eventData": {"thresholdLevel": 5, "tickers": list(PAIRS)},
            }
        ]
        assert observed(run.trades()) == expected(server.published)
        assert [t.seq for t in run.trades()] == list(range(1500))
        assert len({t.trade_id for t in run.trades()}) == 1500
        assert {t.exchange for t in run.trades()} == {"binance", "coinbase", "bitfinex", "kraken"}
        assert run.ctx.stats.malformed == 0 and run.events == []


@async_test()
async def test_duplicated_and_reordered_trades_all_arrive_with_stable_ids() -> None:
    async with FakeTiingo(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            await server.wait_for_subscriptions(3)
            a, b, c = (server.trade("btcusd", "gdax") for _ in range(3))
            server.send(c, a, b, a, c)
            await run.received(5)
        trades = run.trades()
        assert observed(trades) == expected([[c], [a], [b], [a], [c]])
        ids = [t.trade_id for t in trades]
        assert ids[0] == ids[4] and ids[1] == ids[3] and len(set(ids)) == 3


@async_test()
async def test_many_tickers_are_spread_over_several_connections() -> None:
    async with FakeTiingo(TOKEN) as server:
        run = Run(server.url, max_tickers=2)
        async with run.running():
            await server.wait_for_subscriptions(2, connection=1)
            await server.wait_for_subscriptions(1, connection=2)
            for ticker in PAIRS:
                server.publish(ticker)
            await run.received(3)
        assert sorted(len(c.subscriptions) for c in server.connections) == [1, 2]
        assert sorted(map(observed, ([t] for t in run.trades()))) == sorted(
            map(expected, ([m] for m in server.published))
        )


@async_test()
async def test_naive_dates_are_read_as_utc() -> None:
    async with FakeTiingo(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            await server.wait_for_subscriptions(3)
            server.send(server.trade("ethbtc", "binance", date="2019-01-30T18:03:40.056000"))
            await run.received(1)
        assert run.trades()[0].ts == micros("2019-01-30T18:03:40.056000+00:00")


@async_test()
async def test_wrong_token_is_reported_without_showing_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    letters = DeadLetters(tmp_path / "dead.jsonl")
    async with FakeTiingo(TOKEN) as server:
        run = Run(server.url, token="wrong-" + TOKEN, dead_letters=letters)
        async with run.running():
            await server.wait_for(lambda: len(run.disconnects()) >= 2)
        letters.close()
    assert letters.counts[("tiingo", "error reply from exchange")] >= 2
    text = (tmp_path / "dead.jsonl").read_text() + caplog.text + repr(run.source)
    text += "".join(d.reason for d in run.disconnects())
    assert TOKEN not in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token": None}, "TIINGO_TOKEN"),
        ({"symbols": []}, "symbol"),
        ({"max_tickers": 0}, "max_tickers"),
        ({"url": "https://api.tiingo.com/crypto"}, "ws:// or wss://"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        TiingoSource(**{"symbols": ["BTC-USD"], "token": TOKEN, **kwargs})
    assert TOKEN not in str(error.value)


def test_make_source_takes_token_and_url_from_options() -> None:
    source = make_source(["BTC-USD", "eth-usdt"], ExchangeOptions(token=TOKEN))
    assert isinstance(source, TiingoSource)
    assert source.url == "wss://api.tiingo.com/crypto"
    assert source.groups == [["btcusd", "ethusdt"]]


@async_test()
async def test_fetch_symbols_maps_pairs_to_tickers_and_waits_out_a_429() -> None:
    async with FakeTiingo(TOKEN) as server:
        server.reject_rest_next(429, retry_after="0.2")
        loop = asyncio.get_running_loop()
        started = loop.time()
        symbols = await fetch_symbols(ExchangeOptions(rest_url=server.rest_url, token=TOKEN))
        assert loop.time() - started >= 0.2
    assert symbols == {"BTC-USD": "btcusd", "ETH-USD": "ethusd", "ETH-BTC": "ethbtc"}
    assert all("token" not in query for _, query in server.rest_requests)


@async_test()
async def test_fetch_symbols_error_does_not_show_the_token() -> None:
    async with FakeTiingo("another-token") as server:  # answers 401 quoting the header sent
        with pytest.raises(RestError, match="HTTP 401") as error:
            await fetch_tiingo_symbols(server.rest_url, TOKEN, RestConfig(attempts=1))
    assert TOKEN not in str(error.value) and "***" in str(error.value)
