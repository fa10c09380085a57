"""The Finnhub source delivers exactly the trades Finnhub published, through every fault, and
never lets the API token out.

Each test runs `FinnhubSource` against the fake Finnhub on 127.0.0.1. Duplicates may arrive
here (the engine removes them by trade id); nothing may be lost or altered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fakes import async_test
from fakes.finnhub_server import FakeFinnhub
from fakes.harness import SourceRun

from sources.contract.exchanges import FAST
from tickpipe.deadletter import DeadLetters
from tickpipe.records import Trade
from tickpipe.sources.finnhub import fetch_symbols, make_source
from tickpipe.sources.finnhub.source import FinnhubSource
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig, RestError
from tickpipe.sources.ws import WsConfig

TOKEN = "s3cr3t-Token+/="  # characters that URL-quoting changes
SYMBOLS = ["binance:BTC-USDT", "BINANCE:ETHUSDT", "coinbase:btc/usd"]
RAW = {"BINANCE:BTCUSDT": "BTC-USDT", "BINANCE:ETHUSDT": "ETH-USDT", "COINBASE:BTC-USD": "BTC-USD"}


class Run(SourceRun):
    def __init__(
        self,
        url: str,
        token: str = TOKEN,
        dead_letters: DeadLetters | None = None,
        config: WsConfig = FAST,
    ) -> None:
        super().__init__(FinnhubSource(SYMBOLS, token, url=url, ws_config=config), dead_letters)


def expected(messages: list[list[dict[str, Any]]]) -> list[tuple]:
    """What each published trade must become, in the order it was sent."""
    return [
        ("finnhub", t["s"].split(":")[0].lower(), RAW[t["s"]], t["s"], t["p"], t["v"], "unknown",
         t["t"] * 1000)
        for m in messages
        for t in m
    ]  # fmt: skip


def observed(trades: list[Trade]) -> list[tuple]:
    return [
        (t.source, t.exchange, t.symbol, t.raw_symbol, t.price, t.size, t.side, t.ts)
        for t in trades
    ]


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeFinnhub(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            conn = await server.wait_for_subscriptions(3)
            await server.feed(RAW, messages=400, per_message=3)
            await run.received(1200)
        assert conn.requests == [{"type": "subscribe", "symbol": s} for s in RAW]
        assert observed(run.trades()) == expected(server.published)
        assert [t.seq for t in run.trades()] == list(range(1200))  # arrival order
        assert len({t.trade_id for t in run.trades()}) == 1200
        assert {t.exchange for t in run.trades()} == {"binance", "coinbase"}
        assert run.ctx.stats.trades == 1200 and run.ctx.stats.malformed == 0
        assert run.events == []


@async_test()
async def test_identical_trades_in_one_message_stay_two_and_a_repeat_keeps_their_ids() -> None:
    async with FakeFinnhub(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            await server.wait_for_subscriptions(3)
            same = server.trade("BINANCE:BTCUSDT")
            server.send(same, same)
            server.send(same, same)  # the whole message again: a duplicate delivery
            await run.received(4)
        ids = [t.trade_id for t in run.trades()]
        assert ids[0] != ids[1]
        assert ids[2:] == ids[:2]


@async_test()
async def test_token_never_appears_in_disconnect_reasons_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeFinnhub(TOKEN) as server:
        wrong = Run(server.url, token=TOKEN + "-wrong")
        async with wrong.running():
            await server.wait_for(lambda: len(server.rejected) >= 2)
        assert {d.reason for d in wrong.disconnects()} == {"upgrade refused: HTTP 401"}

        run = Run(server.url)
        async with run.running():
            await server.wait_for_subscriptions(3)
            server.close_quoting_path()  # the server's close reason quotes the URL
            await server.wait_for_subscriptions(3, connection=2)
        [closed] = run.disconnects()
    assert closed.reason.startswith("closed by server") and "***" in closed.reason
    refused = Run("ws://127.0.0.1:9/feed")  # nothing listens there
    async with refused.running():
        async with asyncio.timeout(5):
            while not refused.disconnects():
                await asyncio.sleep(0.01)
    reasons = [d.reason for r in (wrong, run, refused) for d in r.disconnects()]
    for secret in (TOKEN, "s3cr3t", "Token%2B"):
        assert not any(secret in reason for reason in reasons)
        assert secret not in caplog.text
        assert secret not in repr(run.source)


def test_bad_url_error_does_not_show_the_token() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://") as error:
        FinnhubSource(["BTC-USDT"], TOKEN, url="http://ws.finnhub.io")
    assert TOKEN not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"token": None}, "FINNHUB_TOKEN"), ({"token": ""}, "token"), ({"symbols": []}, "symbol")],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FinnhubSource(**{"symbols": ["BTC-USDT"], "token": TOKEN, **kwargs})


def test_make_source_takes_token_and_url_from_options() -> None:
    source = make_source(["BTC-USDT"], ExchangeOptions(url="ws://127.0.0.1:1", token=TOKEN))
    assert isinstance(source, FinnhubSource)
    assert source.subscriptions == ["BINANCE:BTCUSDT"]  # a bare pair means Binance


@async_test()
async def test_fetch_symbols_maps_every_venue_pair_and_waits_out_a_429() -> None:
    async with FakeFinnhub(TOKEN) as server:
        server.reject_rest_next(429, retry_after="0.2")
        options = ExchangeOptions(rest_url=f"{server.rest_url}/api/v1", token=TOKEN)
        loop = asyncio.get_running_loop()
        started = loop.time()
        symbols = await fetch_symbols(options)
        assert loop.time() - started >= 0.2
    assert symbols == {"BTC-USDT": "BINANCE:BTCUSDT", "ETH-USDT": "BINANCE:ETHUSDT"}
    assert server.rest_requests[-1] == ("/api/v1/crypto/symbol", {"exchange": "binance"})
    assert all("token" not in query for _, query in server.rest_requests)


@async_test()
async def test_fetch_symbols_over_every_venue_names_the_venue() -> None:
    from tickpipe.sources.finnhub.symbols import fetch_finnhub_symbols

    async with FakeFinnhub(TOKEN) as server:
        symbols = await fetch_finnhub_symbols(
            f"{server.rest_url}/api/v1", TOKEN, venues=None, prefixed=True
        )
    assert symbols == {
        "binance:BTC-USDT": "BINANCE:BTCUSDT",
        "binance:ETH-USDT": "BINANCE:ETHUSDT",
        "coinbase:BTC-USD": "COINBASE:BTC-USD",
        "kraken:BTC-USD": "KRAKEN:XXBTZUSD",
    }


@async_test()
async def test_fetch_symbols_error_does_not_show_the_token() -> None:
    from tickpipe.sources.finnhub.symbols import fetch_finnhub_symbols

    async with FakeFinnhub("another-token") as server:  # answers 401 quoting the key sent
        with pytest.raises(RestError, match="HTTP 401") as error:
            await fetch_finnhub_symbols(f"{server.rest_url}/api/v1", TOKEN, RestConfig(attempts=1))
    assert TOKEN not in str(error.value) and "***" in str(error.value)
