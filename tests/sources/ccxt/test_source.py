"""The ccxt source hands on each trade the exchange published once, and survives drops.

The live tests run ccxt's real Binance class with its URLs pointed at the fake Binance server
on 127.0.0.1 (its REST `exchangeInfo` loads the markets, its WebSocket serves the trades);
the converter tests feed it ccxt-shaped trade dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes import async_test
from fakes.binance_server import FakeBinance

from tickpipe.records import Disconnect, Gap, Trade, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.ccxt import CCXT_EXCHANGES, INFO, make_source
from tickpipe.sources.ccxt.source import (
    CcxtMissing,
    CcxtSource,
    TradeConverter,
    create_exchange,
    fetch_spot_symbols,
    import_ccxt_pro,
)
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.ws import WsConfig

pytest.importorskip("ccxt.pro")

FAST = WsConfig(backoff_initial=0.01, backoff_max=0.05, stable_after=0.5)
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


def binance_config(server: FakeBinance) -> dict[str, Any]:
    """ccxt's own config: its Binance class, talking to the fake instead of binance.com."""
    return {
        "urls": {
            "api": {"ws": {"spot": f"{server.url}/ws"}, "public": f"{server.rest_url}/api/v3"}
        },
        "options": {"fetchMarkets": {"types": ["spot"]}},
    }


class Run:
    """A running CcxtSource and everything it handed out."""

    def __init__(self, server: FakeBinance, symbols_per_call: int = 100) -> None:
        self.batches: list[TradeBatch] = []
        self.events: list[Gap | Disconnect] = []
        self.source = CcxtSource(
            "binance",
            SYMBOLS,
            config=binance_config(server),
            retry=FAST,
            symbols_per_call=symbols_per_call,
        )
        self.ctx = SourceContext(emit=self.emit, event=self.events.append)

    async def emit(self, batch: TradeBatch) -> None:
        self.batches.append(batch)

    def trades(self) -> list[Trade]:
        return [t for b in self.batches for t in b.to_trades()]


@contextlib.asynccontextmanager
async def running(server: FakeBinance, symbols_per_call: int = 100) -> AsyncIterator[Run]:
    run = Run(server, symbols_per_call)
    task = asyncio.create_task(run.source.run(run.ctx))
    try:
        yield run
        assert not task.done(), task.exception() if task.done() else None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def subscribed(server: FakeBinance, connections: int) -> None:
    """Wait until the `connections`-th connection has subscribed both trade streams."""
    conn = await server.wait_connections(connections, timeout=10)
    await server.wait_for(lambda: {"btcusdt@trade", "ethusdt@trade"} <= conn.streams, 10)
    await asyncio.sleep(0.05)  # the SUBSCRIBE ack reaches ccxt


async def deliver(server: FakeBinance, run: Run, sent: list[dict[str, Any]]) -> None:
    """Wait until every trade in `sent` arrived. ccxt wakes a caller only on a new message, so
    a trade that came while the source was busy waits for the next one: keep trading."""
    wanted = {(e["s"], str(e["t"])) for e in sent}
    turn = 0
    async with asyncio.timeout(10):
        while not wanted <= {(t.raw_symbol, t.trade_id) for t in run.trades()}:
            server.publish(("BTCUSDT", "ETHUSDT")[turn % 2])
            turn += 1
            await asyncio.sleep(0.05)


def check_trades(run: Run, server: FakeBinance) -> None:
    """Every trade arrived at most once, exactly as the fake made it (sent or skipped)."""
    published = {(e["s"], e["t"]): e for trades in server.history.values() for e in trades}
    received = run.trades()
    keys = [(t.raw_symbol, t.seq) for t in received]
    assert len(keys) == len(set(keys)), "a trade was emitted twice"
    for trade in received:
        event = published[(trade.raw_symbol, trade.seq)]
        assert trade.source == "ccxt"
        assert trade.exchange == "binance"
        assert trade.symbol == {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT"}[event["s"]]
        assert trade.trade_id == str(event["t"])
        assert trade.price == float(event["p"])
        assert trade.size == float(event["q"])
        assert trade.side == ("sell" if event["m"] else "buy")  # m: the buyer was the maker
        assert trade.ts == event["T"] * 1000


@async_test(timeout=30)
async def test_published_trades_arrive_once_with_their_fields() -> None:
    async with FakeBinance() as server, running(server) as run:
        await subscribed(server, 1)
        sent = [server.publish("BTCUSDT", buyer_is_maker=n % 2 == 0) for n in range(5)]
        sent += [server.publish("ETHUSDT", buyer_is_maker=True) for _ in range(3)]
        await deliver(server, run, sent)
        check_trades(run, server)
        assert ("/api/v3/exchangeInfo", {}) in server.rest_requests  # markets came from the fake
        assert all(b.trade_id is None for b in run.batches)  # numeric ids: kept as seq only


@async_test(timeout=30)
async def test_each_watch_loop_keeps_its_own_connection_state() -> None:
    async with FakeBinance() as server, running(server, symbols_per_call=1) as run:
        await server.wait_for(
            lambda: (
                {s for c in server.connections for s in c.streams}
                >= {"btcusdt@trade", "ethusdt@trade"}
            ),
            10,
        )
        await asyncio.sleep(0.05)  # the SUBSCRIBE acks reach ccxt
        assert not run.ctx.stats.connected  # no loop has delivered yet
        btc = server.publish("BTCUSDT")
        await server.wait_for(lambda: any(t.raw_symbol == "BTCUSDT" for t in run.trades()), 10)
        assert [link.up for link in run.ctx.stats.links] == [True, False]
        assert not run.ctx.stats.connected  # the ETH loop has not answered: not all are up
        await deliver(server, run, [btc, server.publish("ETHUSDT")])
        assert [link.up for link in run.ctx.stats.links] == [True, True]
        assert run.ctx.stats.connected


@async_test(timeout=30)
async def test_dropped_connection_is_survived_and_reported() -> None:
    async with FakeBinance() as server, running(server) as run:
        await subscribed(server, 1)
        before = [server.publish("BTCUSDT") for _ in range(3)]
        await deliver(server, run, before)
        server.drop_all()
        await server.wait_for(lambda: any(isinstance(e, Disconnect) for e in run.events), 10)
        await subscribed(server, 2)
        after = [server.publish(s) for s in ("ETHUSDT", "BTCUSDT", "ETHUSDT")]
        await deliver(server, run, after)
        check_trades(run, server)
        drop = next(e for e in run.events if isinstance(e, Disconnect))
        assert drop.source == "ccxt" and drop.reconnect_in <= FAST.backoff_max
        assert "refilled over REST" in drop.reason
        assert run.ctx.stats.reconnects >= 1 and run.ctx.stats.connected


@async_test(timeout=30)
async def test_trades_missed_during_a_reconnect_are_refilled_over_rest_once() -> None:
    async with FakeBinance() as server, running(server) as run:
        await subscribed(server, 1)
        before = [server.publish("BTCUSDT") for _ in range(3)]
        await deliver(server, run, before)
        server.drop_all()
        missed = server.skip("BTCUSDT", 4)  # traded while no client was connected
        await subscribed(server, 2)
        after = [server.publish(s) for s in ("BTCUSDT", "ETHUSDT", "BTCUSDT")]
        await deliver(server, run, before + missed + after)
        check_trades(run, server)  # each exactly as published, none twice
        assert any(path == "/api/v3/trades" for path, _ in server.rest_requests)
        gaps = [e for e in run.events if isinstance(e, Gap)]
        # The refill also brings any trade published after the reconnect that the stream had
        # not handed over yet; the stream's later copy of it is recognised and dropped.
        assert [g.symbol for g in gaps] == ["BTC-USDT"] and gaps[0].recovered >= len(missed)
        assert gaps[0].first_missing == missed[0]["t"]


@async_test(timeout=30)
async def test_a_failed_refill_is_reported_and_the_stream_goes_on() -> None:
    async with FakeBinance() as server, running(server) as run:
        await subscribed(server, 1)
        before = [server.publish("BTCUSDT") for _ in range(2)]
        await deliver(server, run, before)
        server.drop_all()
        server.skip("BTCUSDT", 2)
        server.rest_reject_next(status=500, count=20)  # ccxt's retries included
        await subscribed(server, 2)
        after = [server.publish("BTCUSDT") for _ in range(2)]
        await deliver(server, run, after)
        await server.wait_for(lambda: any(isinstance(e, Gap) for e in run.events), 10)
        gap = next(e for e in run.events if isinstance(e, Gap))
        assert gap.recovered == 0 and "refill failed" in gap.detail
        check_trades(run, server)


@async_test(timeout=30)
async def test_source_retries_while_the_exchange_is_unreachable() -> None:
    async with FakeBinance() as server:
        config = binance_config(server)
        config["urls"]["api"]["public"] = "http://127.0.0.1:1/api/v3"  # nothing listens there
        run = Run(server)
        run.source.config = config
        task = asyncio.create_task(run.source.run(run.ctx))
        try:
            await server.wait_for(lambda: len(run.events) >= 3, 10)
            assert not task.done()
            assert all(isinstance(e, Disconnect) for e in run.events)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@async_test(timeout=30)
async def test_cancelling_the_source_closes_the_connection() -> None:
    async with FakeBinance() as server:
        async with running(server):
            await subscribed(server, 1)
        await server.wait_for(lambda: not server.open_connections(), 5)


@async_test(timeout=30)
async def test_symbol_list_comes_from_the_exchange_markets() -> None:
    async with FakeBinance() as server:
        symbols = await fetch_spot_symbols("binance", binance_config(server))
    assert symbols["BTC-USDT"] == "BTCUSDT"
    assert symbols["ETH-BTC"] == "ETHBTC"


def btc(**fields: Any) -> dict[str, Any]:
    """A ccxt unified public trade."""
    trade = {"id": "7", "symbol": "BTC/USDT", "timestamp": 1_700_000_000_123, "side": "buy",
             "price": 100.5, "amount": 0.25, "info": {}}  # fmt: skip
    return {**trade, **fields}


def test_ccxt_cache_returned_again_is_emitted_once() -> None:
    converter = TradeConverter("kucoin", SYMBOLS)
    first = converter.convert([btc(id="1"), btc(id="2")], 5)
    second = converter.convert([btc(id="1"), btc(id="2"), btc(id="3")], 6)
    assert [t.trade_id for t in first.batch.to_trades()] == ["1", "2"]
    assert [t.trade_id for t in second.batch.to_trades()] == ["3"]
    assert not second.rejects


def test_converted_trade_keeps_ids_times_and_taker_side() -> None:
    converter = TradeConverter("kucoin", SYMBOLS)
    parsed = converter.convert([btc(id="abc-1", side="sell"), btc(id="abc-2", side=None)], 9)
    one, two = parsed.batch.to_trades()
    assert (one.exchange, one.source, one.symbol, one.raw_symbol) == (
        "kucoin",
        "ccxt",
        "BTC-USDT",
        "BTC/USDT",
    )
    assert (one.trade_id, one.seq, one.side, one.ts, one.recv_ts) == (
        "abc-1",
        1,
        "sell",
        1_700_000_000_123_000,
        9,
    )
    assert (two.trade_id, two.seq, two.side) == ("abc-2", 2, "unknown")  # arrival order


def test_trade_without_id_gets_a_stable_content_id() -> None:
    batch_a = TradeConverter("kucoin", SYMBOLS).convert([btc(id=None)], 1).batch
    batch_b = TradeConverter("kucoin", SYMBOLS).convert([btc(id=None)], 2).batch
    assert batch_a.to_trades()[0].trade_id == batch_b.to_trades()[0].trade_id


def test_malformed_trades_are_rejected_and_the_rest_kept() -> None:
    converter = TradeConverter("kucoin", SYMBOLS)
    bad = [btc(id="1", price=None), btc(id="2", timestamp=None), btc(id="3", symbol="X/Y"), "?"]
    parsed = converter.convert([*bad, btc(id="4")], 1)
    assert [t.trade_id for t in parsed.batch.to_trades()] == ["4"]
    assert [r.reason for r in parsed.rejects] == [
        "price or amount missing or not positive",
        "timestamp missing",
        "unexpected symbol 'X/Y'",
        "not a ccxt trade",
    ]


def test_unseen_tail_finds_trades_after_the_last_emitted() -> None:
    converter = TradeConverter("kucoin", SYMBOLS)
    converter.convert([btc(id="1"), btc(id="2")], 1)
    cache = [btc(id=str(i)) for i in range(1, 5)]  # ccxt's cache: 1 and 2 emitted already
    assert [t["id"] for t in converter.unseen_tail("BTC/USDT", cache)] == ["3", "4"]


def test_unknown_exchange_names_close_matches() -> None:
    with pytest.raises(ValueError, match="kucoin"):
        create_exchange("kucion")


def test_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt.pro", None)
    with pytest.raises(CcxtMissing, match=r"pip install 'tickpipe\[ccxt\]'"):
        import_ccxt_pro()


def test_listed_streams_are_ccxt_websocket_exchanges() -> None:
    assert set(CCXT_EXCHANGES) <= set(import_ccxt_pro().exchanges)
    assert INFO.streams[0] == "kucoin"


def test_make_source_uses_the_stream_as_the_ccxt_exchange() -> None:
    source = make_source(["BTC-USDT"], ExchangeOptions(stream="gate"))
    assert isinstance(source, CcxtSource) and source.exchange_id == "gate"
