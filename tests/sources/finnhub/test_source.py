"""The Finnhub source delivers exactly the trades Finnhub published, through every fault, and
never lets the API token out.

Each test runs `FinnhubSource` against the fake Finnhub on 127.0.0.1. Duplicates may arrive
here (the engine removes them by trade id); nothing may be lost or altered.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes import async_test
from fakes.finnhub_server import FakeFinnhub
from fakes.harness import SourceRun

from tickpipe.deadletter import DeadLetter, DeadLetters
from tickpipe.records import Gap, Trade
from tickpipe.sources.finnhub import fetch_symbols, make_source
from tickpipe.sources.finnhub.source import FinnhubSource
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig, RestError
from tickpipe.sources.ws import WsConfig

TOKEN = "s3cr3t-Token+/="  # characters that URL-quoting changes
FAST = WsConfig(
    connect_timeout=2.0,
    idle_timeout=1.0,
    data_timeout=2.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    stable_after=0.5,
)
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
async def test_dropped_connection_reconnects_resubscribes_and_reports_no_gap() -> None:
    async with FakeFinnhub(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            first = await server.wait_for_subscriptions(3)
            server.drop_after(3)
            for symbol in RAW:
                server.publish(symbol, 2)
            second = await server.wait_for_subscriptions(3, connection=2)
            for symbol in RAW:
                server.publish(symbol, 2)
            await run.received(12)
            assert first.closed and second.open
        assert second.subscriptions == first.subscriptions == set(RAW)
        assert observed(run.trades()) == expected(server.published)
        assert [d.reason for d in run.disconnects()] == ["connection lost"]
        assert not any(isinstance(e, Gap) for e in run.events)  # no ids: nothing to detect


@async_test()
async def test_out_of_order_trades_all_arrive_as_sent() -> None:
    async with FakeFinnhub(TOKEN) as server:
        run = Run(server.url)
        async with run.running():
            await server.wait_for_subscriptions(3)
            a, b, c = (server.trade("BINANCE:BTCUSDT", t=1_700_000_000_000 + n) for n in range(3))
            server.send(c)
            server.send(a, b)
            await run.received(3)
        assert observed(run.trades()) == expected([[c], [a, b]])


@async_test()
async def test_malformed_frames_are_dead_lettered_and_pings_and_price_updates_are_not(
    tmp_path: Path,
) -> None:
    letters = DeadLetters(tmp_path / "dead.jsonl")
    async with FakeFinnhub(TOKEN) as server:
        run = Run(server.url, dead_letters=letters)
        async with run.running():
            await server.wait_for_subscriptions(3)
            server.publish("BINANCE:BTCUSDT")
            server.send_raw('{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":')
            server.send_raw(b"\xff\xfe")
            server.send_raw('{"type":"ping"}')
            server.send_raw('{"type":"trade","data":[{"s":"COINBASE:BTC-USD","p":5,"t":1,"v":0}]}')
            server.send_raw(f'{{"type":"error","msg":"Invalid token {TOKEN}"}}')
            server.send_raw('{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":-1,"t":1,"v":1}]}')
            server.publish("BINANCE:BTCUSDT")
            await run.received(2)
            await asyncio.sleep(0.05)
        letters.close()
    rejects = [
        msgspec.json.decode(line, type=DeadLetter)
        for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()
    ]
    assert [r.reason for r in rejects[:3]] == [
        "invalid JSON",
        "invalid JSON",
        "error reply from exchange",
    ]
    assert rejects[3].reason.startswith("bad trade:")
    assert TOKEN not in rejects[2].payload and "***" in rejects[2].payload
    assert run.ctx.stats.malformed == 4
    assert observed(run.trades()) == expected(server.published)
    assert run.disconnects() == []


@async_test()
async def test_silent_feed_that_still_pings_triggers_data_timeout_reconnect() -> None:
    async with FakeFinnhub(TOKEN, ping_interval=0.05) as server:
        config = replace(
            FAST, idle_timeout=0.3, data_timeout=0.5, ping_interval=0.1, ping_timeout=0.1
        )
        run = Run(server.url, config=config)
        async with run.running():
            first = await server.wait_for_subscriptions(3)
            server.publish("BINANCE:ETHUSDT")
            server.silent = True
            await server.wait_for_subscriptions(3, connection=2)
            server.silent = False
            server.publish("BINANCE:ETHUSDT")
            await run.received(2)
        assert first.heartbeats_sent > 0
        assert [d.reason for d in run.disconnects()] == ["no data for 0.5s"]
        assert observed(run.trades()) == expected(server.published)


@async_test()
async def test_rate_limited_upgrade_waits_for_retry_after() -> None:
    async with FakeFinnhub(TOKEN) as server:
        server.reject_next(429, retry_after="0.3")
        run = Run(server.url)
        async with run.running():
            await server.wait_for_subscriptions(3)
            server.publish("BINANCE:BTCUSDT")
            await run.received(1)
        [refused] = run.disconnects()
        assert refused.reason == "rate limited: HTTP 429, retry after 0.3s"
        assert refused.reconnect_in >= 0.3


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
