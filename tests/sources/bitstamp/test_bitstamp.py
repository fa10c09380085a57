"""Bitstamp: frames become exact trades, and the source loses nothing it can recover.

Parsing runs on bytes; the source runs against the fake Bitstamp (WebSocket and REST) on
127.0.0.1. Bitstamp ids skip per pair, so there is no gap detection: trades made while
disconnected come back over REST after the reconnect, with a `Gap` event that counts them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from fakes import async_test
from fakes.bitstamp_server import FakeBitstamp
from fakes.harness import SourceRun, observed

from sources.contract.exchanges import FAST
from tickpipe.deadletter import DeadLetters
from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument
from tickpipe.sources.bitstamp import fetch_symbols, make_source
from tickpipe.sources.bitstamp.backfill import window
from tickpipe.sources.bitstamp.parse import InstrumentIndex, parse_frames
from tickpipe.sources.bitstamp.source import BitstampSource
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.rest import RestConfig

INDEX = InstrumentIndex.for_symbols(["BTC-USD", "ethusd"])
RECV = 1_700_000_000_123_456
FAST_REST = RestConfig(timeout=2.0, attempts=4, backoff_initial=0.01, backoff_max=0.05)


def event(pair: str = "btcusd", **fields: Any) -> bytes:
    data = {
        "id": 212337562, "timestamp": "1643643584", "amount": 0.0028, "amount_str": "0.00280000",
        "price": 38416, "price_str": "38416", "type": 0, "microtimestamp": "1643643584587000",
        "buy_order_id": 1, "sell_order_id": 2,
    }  # fmt: skip
    data.update(fields)
    return json.dumps({"data": data, "channel": f"live_trades_{pair}", "event": "trade"}).encode()


# -- parsing -------------------------------------------------------------------------------


def test_instruments_use_bitstamps_url_symbol() -> None:
    assert INDEX.instruments == [
        Instrument("bitstamp", "BTC-USD", "btcusd"),
        Instrument("bitstamp", "ETH-USD", "ethusd"),
    ]


def test_trade_event_becomes_exact_columns() -> None:
    frames = [event(), event("ethusd", id=7, amount=0.25, price=2500.5, type=1,
                             microtimestamp="1700000000000001")]  # fmt: skip
    parsed = parse_frames(frames, RECV, INDEX)
    b = parsed.batch
    assert parsed.rejects == [] and not parsed.reconnect
    assert b.instrument.tolist() == [0, 1]
    assert b.seq.tolist() == [212337562, 7]
    assert b.price.tolist() == [38416.0, 2500.5]
    assert b.size.tolist() == [0.0028, 0.25]
    assert b.side.tolist() == [SIDE_BUY, SIDE_SELL]  # type 0: a buyer took; 1: a seller took
    assert b.ts.tolist() == [1_643_643_584_587_000, 1_700_000_000_000_001]  # microtimestamp
    assert b.trade_id is None and b.trade_ids().tolist() == ["212337562", "7"]


def test_control_events_are_neither_trades_nor_rejects_and_reconnect_is_flagged() -> None:
    frames = [
        b'{"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}',
        b'{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}',
        event(),
        b'{"event":"bts:request_reconnect","channel":"","data":""}',
    ]
    parsed = parse_frames(frames, RECV, INDEX)
    assert parsed.rejects == [] and parsed.reconnect and len(parsed.batch) == 1


def test_malformed_frames_are_rejected_with_a_reason_and_the_batch_goes_on() -> None:
    bad = {
        b"not json": "invalid JSON",
        b"[1]": "not a JSON object",
        b'{"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription"}}':
            "error reply from exchange",
        b'{"event":"data","channel":"order_book_btcusd","data":{}}': "unexpected event 'data'",
        event(price="abc"): "bad trade",
        event(price=-1): "bad trade",
        event(amount=0): "bad trade",
        event(type=2): "bad trade",
        event(id=-1): "bad trade",
        event(microtimestamp="x"): "bad trade",
        event("dogeusd"): "unknown channel 'live_trades_dogeusd'",
    }  # fmt: skip
    frames = [event(id=0)]
    for n, frame in enumerate(bad, 1):
        frames += [frame, event(id=n)]
    parsed = parse_frames(frames, RECV, INDEX)
    assert parsed.batch.seq.tolist() == list(range(len(bad) + 1))
    assert [r.payload for r in parsed.rejects] == list(bad)
    for reject, reason in zip(parsed.rejects, bad.values(), strict=True):
        assert reject.reason.startswith(reason), reject


def test_rest_window_is_the_smallest_that_reaches_back() -> None:
    assert window(10) == ("minute", True)
    assert window(600) == ("hour", True)
    assert window(7200) == ("day", True)
    assert window(200_000) == ("day", False)


# -- the source ----------------------------------------------------------------------------


class Run(SourceRun):
    def __init__(self, server: FakeBitstamp, dead_letters: DeadLetters | None = None, **kw: Any):
        kw = {"ws_config": FAST, "rest_config": FAST_REST, **kw}
        source = BitstampSource(
            ["BTC-USD", "ETH-USD"], url=server.url, rest_url=server.rest_url, **kw
        )
        super().__init__(source, dead_letters)

    async def received(self, rows: list[dict[str, Any]], timeout: float = 5.0) -> None:  # type: ignore[override]
        want = {str(r["id"]) for r in rows}
        await self.until(lambda: want <= {t.trade_id for t in self.trades()}, timeout)


def live(rows: list[dict[str, Any]], pair: str) -> list[tuple]:
    """What a live trade event must become."""
    symbol = f"{pair[:3].upper()}-{pair[3:].upper()}"
    return [
        ("bitstamp", "bitstamp", symbol, pair, str(r["id"]), r["id"], float(r["price_str"]),
         float(r["amount_str"]), "sell" if r["type"] else "buy", int(r["microtimestamp"]))
        for r in rows
    ]  # fmt: skip


@async_test()
async def test_trades_received_equal_exactly_the_trades_published() -> None:
    async with FakeBitstamp() as server:
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(2)
            rows = [server.publish("btcusd") for _ in range(300)]
            await run.received(rows)
        assert observed(run.trades()) == live(rows, "btcusd")
        assert server.connections[0].requests == [
            {"event": "bts:subscribe", "data": {"channel": "live_trades_btcusd"}},
            {"event": "bts:subscribe", "data": {"channel": "live_trades_ethusd"}},
        ]
        assert run.gaps() == [] and run.disconnects() == [] and server.rest_requests == []


@async_test()
async def test_quiet_connection_sends_heartbeats_and_stays_open() -> None:
    async with FakeBitstamp() as server:
        run = Run(server, ping_after=0.1, ws_config=replace(FAST, idle_timeout=0.5))
        async with run.running():
            await server.wait_subscribed(2)
            await asyncio.sleep(1.0)
            assert server.connections[0].heartbeats >= 4 and server.connections[0].open
        assert run.disconnects() == []


@async_test()
async def test_unanswered_heartbeats_make_the_source_reconnect() -> None:
    async with FakeBitstamp() as server:
        server.answer_heartbeats = False
        run = Run(server, ping_after=0.1, ws_config=replace(FAST, idle_timeout=0.4))
        async with run.running():
            await server.wait_for(lambda: len(server.connections) >= 2)
            await server.wait_subscribed(2)
        assert run.disconnects()[0].reason == "no frame for 0.4s"


@async_test()
async def test_trades_made_while_disconnected_are_backfilled_without_duplicates_lost() -> None:
    async with FakeBitstamp() as server:
        server.rest_reject_next(429, retry_after="0.1")  # the backfill waits this out
        run = Run(server)
        async with run.running():
            await server.wait_subscribed(2)
            seen = [server.publish("btcusd"), server.publish("ethusd")]
            await run.received(seen)
            server.drop_all()
            lost = server.skip("btcusd", 3)
            await server.wait_for(lambda: len(server.connections) == 2)
            await server.wait_subscribed(2)
            after = server.publish("btcusd")
            await run.received([*lost, after])
            await server.wait_for(lambda: len(run.gaps()) == 1)
        got = {t.trade_id: t for t in run.trades()}
        for row in [*seen, *lost, after]:
            assert str(row["id"]) in got
        for row in lost:  # from REST: times to the second only
            t = got[str(row["id"])]
            assert (t.price, t.size, t.side, t.ts) == (
                float(row["price_str"]),
                float(row["amount_str"]),
                "sell" if row["type"] else "buy",
                int(row["timestamp"]) * 1_000_000,
            )
        [gap] = run.gaps()
        assert (gap.symbol, gap.first_missing, gap.last_missing, gap.recovered) == (
            "BTC-USD", lost[0]["id"], lost[-1]["id"], 3)  # fmt: skip
        assert "disconnected" in gap.detail
        requests = [r for r in server.rest_requests if r[0].startswith("/api/v2/transactions")]
        assert {r[0] for r in requests} == {
            "/api/v2/transactions/btcusd/",
            "/api/v2/transactions/ethusd/",
        }
        assert all(q == {"time": "minute"} for _, q in requests)
        assert [d.reason for d in run.disconnects()] == ["connection lost"]


@async_test()
async def test_request_reconnect_replaces_the_connection_at_once() -> None:
    async with FakeBitstamp() as server:
        run = Run(server, ws_config=replace(FAST, backoff_initial=5.0, backoff_max=5.0))
        async with run.running():
            await server.wait_subscribed(2)
            server.request_reconnect()
            await server.wait_for(lambda: len(server.connections) == 2, timeout=2.0)
            await server.wait_subscribed(2)
            row = server.publish("ethusd")
            await run.received([row])
            assert server.connections[0].closed and server.connections[1].open
        [disconnect] = run.disconnects()
        assert disconnect.reason == "planned: bts:request_reconnect"
        assert disconnect.reconnect_in == 0.0


@async_test()
async def test_fetch_symbols_maps_names_to_url_symbols() -> None:
    async with FakeBitstamp(["btcusd", "ethbtc"]) as server:
        server.rest_reject_next(429, retry_after="0.05")
        symbols = await fetch_symbols(ExchangeOptions(rest_url=server.rest_url))
    assert symbols == {"BTC-USD": "btcusd", "ETH-BTC": "ethbtc"}


def test_make_source_uses_overrides_and_refuses_other_streams() -> None:
    source = make_source(["BTC/USD"], ExchangeOptions(url="ws://127.0.0.1:9",
                                                      rest_url="http://127.0.0.1:8"))  # fmt: skip
    assert isinstance(source, BitstampSource)
    assert (source.url, source.rest_url) == ("ws://127.0.0.1:9", "http://127.0.0.1:8")
    with pytest.raises(ValueError, match="stream"):
        make_source(["BTC-USD"], ExchangeOptions(stream="order_book"))
    with pytest.raises(ValueError, match="symbol"):
        BitstampSource([])
