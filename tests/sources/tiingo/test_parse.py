"""Tiingo crypto frames become trades on bytes alone: the documented shapes, venues learned
from the messages, and stable content ids."""

from __future__ import annotations

import time

from tickpipe.sources.aggregated import VenueInstruments
from tickpipe.sources.tiingo.parse import parse_frames, tickers_for, tiingo_ticker

# The examples of https://www.tiingo.com/documentation/websockets/crypto
TRADE = (
    b'{"messageType":"A","service":"crypto_data","data":'
    b'["T","evxbtc","2019-01-30T18:03:40.056000+00:00","binance",405.0,9.631e-05]}'
)
QUOTE = (
    b'{"messageType":"A","service":"crypto_data","data":["Q","neojpy",'
    b'"2019-01-30T18:03:40.195515+00:00","bitfinex",38.11162867,787.82,787.83,42.4153887,787.84]}'
)
HEARTBEAT = b'{"messageType":"H","response":{"code":200,"message":"HeartBeat"}}'
ACK = (
    b'{"response":{"code":200,"message":"Success"},"data":{"subscriptionId":49792869},'
    b'"messageType":"I"}'
)


def index() -> VenueInstruments:
    return VenueInstruments(tickers_for(["EVX-BTC", "NEO-JPY", "BTC-USD"]))


def test_documented_trade_becomes_a_trade_on_its_venue() -> None:
    batch, rejects, data, *_ = parse_frames([ACK, HEARTBEAT, QUOTE, TRADE], 9, index(), seq_start=3)
    [trade] = batch.to_trades()
    assert rejects == [] and data == 2  # the quote and the trade are market data
    assert (trade.source, trade.exchange, trade.symbol, trade.raw_symbol) == (
        "tiingo", "binance", "EVX-BTC", "evxbtc",
    )  # fmt: skip
    assert (trade.size, trade.price, trade.side, trade.seq, trade.recv_ts) == (
        405.0, 9.631e-05, "unknown", 3, 9,
    )  # fmt: skip
    assert trade.ts == 1548871420056000


def test_venues_are_learned_and_normalized() -> None:
    frames = [
        TRADE.replace(b"binance", venue) for venue in (b"gdax", b"binance", b"Kraken", b"gdax")
    ]
    batch = parse_frames(frames, 0, index()).batch
    assert [batch.instruments[c].exchange for c in batch.instrument] == [
        "coinbase", "binance", "kraken", "coinbase",
    ]  # fmt: skip
    assert len(batch.instruments) == 3


def test_ids_are_stable_across_replays_and_equal_for_a_redelivered_message() -> None:
    other = TRADE.replace(b"405.0", b"406.0")
    first = [t.trade_id for t in parse_frames([TRADE, other, TRADE], 0, index()).batch.to_trades()]
    again = [t.trade_id for t in parse_frames([TRADE, other, TRADE], 5, index()).batch.to_trades()]
    assert first == again and first[0] == first[2] != first[1]


def test_a_bad_frame_costs_only_itself() -> None:
    frames = [
        TRADE,
        b'{"messageType":"E","response":{"code":400,"message":"thresholdLevel not valid"}}',
        b'{"messageType":"A","data":["T","evxbtc","not a date","binance",1.0,2.0]}',
        b'{"messageType":"A","data":["T","evxbtc","2019-01-30T18:03:40Z","binance",1.0]}',
        b'{"messageType":"A","data":["T","zzzbtc","2019-01-30T18:03:40Z","binance",1.0,2.0]}',
        b'{"messageType":"X"}',
        b"not json",
        TRADE,
    ]
    batch, rejects, _, *_ = parse_frames(frames, 0, index())
    assert len(batch) == 2
    reasons = [r.reason for r in rejects]
    assert reasons[0] == "error reply from exchange"
    assert reasons[1].startswith("bad trade:") and reasons[2].startswith("bad trade:")
    assert reasons[3:] == ["unknown symbol 'zzzbtc'", "unexpected message type 'X'", "invalid JSON"]


def test_glued_tickers_come_from_normalized_symbols() -> None:
    assert tiingo_ticker("BTC-USDT") == "btcusdt"
    assert tickers_for(["btc/usd", "BTCUSD", "XBT-USD", "ETHBTC"]) == {
        "btcusd": "BTC-USD",
        "ethbtc": "ETH-BTC",
    }


def test_parsing_is_fast_enough_for_a_busy_firehose() -> None:
    frames = [TRADE] * 20_000
    started = time.perf_counter()
    batch = parse_frames(frames, 0, index()).batch
    elapsed = time.perf_counter() - started
    assert len(batch) == 20_000
    assert elapsed < 1.0  # about 0.1 s here; a Python-level JSON walk would be several times
