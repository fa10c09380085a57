"""Coinbase frames become exact trade columns with the TAKER side; anything else is rejected
without stopping a batch."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument
from tickpipe.sources.coinbase.parse import (
    InstrumentIndex,
    parse_advanced,
    parse_exchange,
    rest_batch,
    rest_trades,
)

INDEX = InstrumentIndex.for_symbols(["BTC-USD", "ETH-USD"])
RECV = 1_700_000_000_123_456


def at_trade(trade_id: str = "100", product: str = "BTC-USD", **fields: object) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trade_id": trade_id,
        "product_id": product,
        "price": "1260.01",
        "size": "0.3",
        "side": "BUY",
        "time": "2019-08-14T20:42:27.265Z",
    }
    row.update(fields)
    return row


def at_frame(
    *trades: dict[str, Any], kind: str = "update", channel: str = "market_trades"
) -> bytes:
    return json.dumps(
        {
            "channel": channel,
            "client_id": "",
            "timestamp": "2023-02-09T20:19:35.39625135Z",
            "sequence_num": 0,
            "events": [{"type": kind, "trades": list(trades or [at_trade()])}],
        }
    ).encode()


HEARTBEAT = json.dumps(
    {
        "channel": "heartbeats",
        "client_id": "",
        "timestamp": "2023-06-23T20:31:26.122969572Z",
        "sequence_num": 0,
        "events": [
            {
                "current_time": "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105",
                "heartbeat_counter": "3049",
            }
        ],
    }
).encode()
SUBSCRIPTIONS = json.dumps(
    {
        "channel": "subscriptions",
        "client_id": "",
        "timestamp": "2023-02-09T20:19:35.39625135Z",
        "sequence_num": 1,
        "events": [{"subscriptions": {"market_trades": ["BTC-USD"], "heartbeats": ["heartbeats"]}}],
    }
).encode()


def match(
    trade_id: int = 10, product: str = "BTC-USD", kind: str = "match", **fields: object
) -> bytes:
    msg: dict[str, Any] = {
        "type": kind,
        "trade_id": trade_id,
        "sequence": 50,
        "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
        "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1",
        "time": "2014-11-07T08:19:27.028459Z",
        "product_id": product,
        "size": "5.23512",
        "price": "400.23",
        "side": "sell",
    }
    msg.update(fields)
    return json.dumps(msg).encode()


def heartbeat(last: int = 20, product: str = "BTC-USD") -> bytes:
    return json.dumps(
        {
            "type": "heartbeat",
            "sequence": 90,
            "last_trade_id": last,
            "product_id": product,
            "time": "2014-11-07T08:19:28.464459Z",
        }
    ).encode()


def test_product_ids_are_already_the_normalized_symbol() -> None:
    assert INDEX.instruments == [
        Instrument("coinbase", "BTC-USD", "BTC-USD"),
        Instrument("coinbase", "ETH-USD", "ETH-USD"),
    ]
    assert InstrumentIndex.for_symbols(["btc/usd", "BTCUSD"]).instruments == INDEX.instruments[:1]


def test_advanced_trades_become_exact_columns_with_the_taker_side() -> None:
    frame = at_frame(
        at_trade("7", "ETH-USD", price="2500.5", size="0.25", side="SELL"),
        at_trade("100", time="2023-02-09T20:19:35.39625135Z"),
    )
    parsed = parse_advanced([frame, HEARTBEAT, SUBSCRIPTIONS], RECV, INDEX)
    batch = parsed.batch
    assert parsed.rejects == [] and parsed.data == 1 and parsed.last_ids == []
    assert batch.source == "coinbase" and batch.instruments is INDEX.instruments
    assert batch.instrument.tolist() == [1, 0]
    assert batch.seq.tolist() == [7, 100]
    assert batch.trade_id is None and batch.trade_ids().tolist() == ["7", "100"]
    assert batch.price.tolist() == [2500.5, 1260.01]
    assert batch.size.tolist() == [0.25, 0.3]
    # The side is the maker's: a SELL maker means the taker bought.
    assert batch.side.tolist() == [SIDE_BUY, SIDE_SELL]
    assert batch.ts.tolist() == [1_565_815_347_265_000, 1_675_973_975_396_251]
    assert batch.recv_ts.tolist() == [RECV, RECV]


def test_snapshot_trades_are_kept_like_updates() -> None:
    parsed = parse_advanced([at_frame(at_trade("5"), at_trade("4"), kind="snapshot")], RECV, INDEX)
    assert parsed.batch.seq.tolist() == [5, 4]
    assert parsed.data == 1


def test_heartbeats_and_subscription_acks_are_not_data_and_not_rejects() -> None:
    parsed = parse_advanced([HEARTBEAT, SUBSCRIPTIONS], RECV, INDEX)
    assert len(parsed.batch) == 0 and parsed.rejects == [] and parsed.data == 0


def test_malformed_advanced_frames_are_rejected_and_the_batch_goes_on() -> None:
    bad = {
        b"not json": "invalid JSON",
        b"[1]": "not a JSON object",
        b'{"type":"error","message":"failure to subscribe"}': "error reply from exchange",
        at_frame(channel="level2"): "unexpected channel 'level2'",
        at_frame(at_trade(price="abc")): "bad trade",
        at_frame(at_trade(price="NaN")): "bad trade",
        at_frame(at_trade(size="0")): "bad trade",
        at_frame(at_trade(time="2019-08-14T20:42:27")): "bad trade",  # no offset
        at_frame(at_trade(time="1969-12-31T23:59:59Z")): "bad trade: time before 1970",
        at_frame(at_trade(trade_id="x1")): "bad trade: trade_id 'x1'",
        at_frame(at_trade(trade_id="-3")): "bad trade: trade_id '-3'",
        at_frame(at_trade(product="DOGE-USD")): "unknown product 'DOGE-USD'",
        json.dumps({"channel": "market_trades", "events": [{"trades": [{}]}]}).encode(): "bad",
    }
    frames = [at_frame(at_trade("0"))]
    for n, frame in enumerate(bad, 1):
        frames += [frame, HEARTBEAT, at_frame(at_trade(str(n)))]
    parsed = parse_advanced(frames, RECV, INDEX)
    assert parsed.batch.seq.tolist() == list(range(len(bad) + 1))
    assert parsed.data == len(bad) + 1
    assert [r.payload for r in parsed.rejects] == list(bad)
    for reject, reason in zip(parsed.rejects, bad.values(), strict=True):
        assert reject.reason.startswith(reason), reject


def test_exchange_match_and_last_match_are_trades_with_the_taker_side() -> None:
    frames = [
        match(10, side="sell"),
        match(11, "ETH-USD", kind="last_match", side="buy"),
        heartbeat(20),
        b'{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}',
    ]
    parsed = parse_exchange(frames, RECV, INDEX)
    assert parsed.rejects == [] and parsed.data == 2
    assert parsed.batch.seq.tolist() == [10, 11]
    assert parsed.batch.instrument.tolist() == [0, 1]
    assert parsed.batch.side.tolist() == [SIDE_BUY, SIDE_SELL]  # opposite of the maker
    assert parsed.batch.ts.tolist() == [1_415_348_367_028_459] * 2
    assert parsed.batch.price.tolist() == [400.23] * 2
    assert parsed.last_ids == [(0, 20)]


def test_malformed_exchange_frames_are_rejected_and_the_batch_goes_on() -> None:
    bad = {
        b"{": "invalid JSON",
        b'"x"': "not a JSON object",
        b'{"type":"error","message":"Failed to subscribe","reason":"X is not a valid product"}': (
            "error reply from exchange: Failed to subscribe X is not a valid product"
        ),
        b'{"type":"l2update"}': "unexpected message type 'l2update'",
        b'{"trade_id":1}': "no message type",
        match(price="-1"): "bad trade",
        match(trade_id="x12"): "bad trade",
        match(time="1960-01-01T00:00:00Z"): "bad trade: time before 1970",
        match(product="DOGE-USD"): "unknown product 'DOGE-USD'",
        heartbeat(-1): "bad heartbeat",
        heartbeat(5, "DOGE-USD"): "unknown product 'DOGE-USD'",
    }
    frames = [match(0)]
    for n, frame in enumerate(bad, 1):
        frames += [frame, match(n)]
    parsed = parse_exchange(frames, RECV, INDEX)
    assert parsed.batch.seq.tolist() == list(range(len(bad) + 1))
    assert [r.payload for r in parsed.rejects] == list(bad)
    for reject, reason in zip(parsed.rejects, bad.values(), strict=True):
        assert reject.reason.startswith(reason), reject


def test_rest_trades_are_the_same_records_as_live_ones() -> None:
    page = [
        {"time": "2020-03-20T00:36:59.860Z", "trade_id": 86327327, "price": "6225.32",
         "size": "0.06469797", "side": "sell"},
    ]  # fmt: skip
    batch = rest_batch(rest_trades(page), 0, RECV, INDEX, "coinbase")
    [trade] = batch.to_trades()
    assert (trade.symbol, trade.trade_id, trade.seq, trade.side) == (
        "BTC-USD", "86327327", 86327327, "buy",
    )  # fmt: skip
    assert trade.ts == 1_584_664_619_860_000


def test_empty_input_gives_an_empty_batch() -> None:
    for parse in (parse_advanced, parse_exchange):
        parsed = parse([], RECV, INDEX)
        assert len(parsed.batch) == 0 and parsed.rejects == [] and parsed.data == 0


rows = st.lists(
    st.tuples(
        st.sampled_from(["BTC-USD", "ETH-USD"]),
        st.integers(0, 2**62),
        st.decimals(min_value="0.00000001", max_value="1000000", places=8),
        st.decimals(min_value="0.00000001", max_value="100000", places=8),
        st.integers(0, 4_102_444_800_000_000),
        st.sampled_from(["BUY", "SELL"]),
    ),
    max_size=30,
)


def _iso(us: int) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


@given(rows, st.lists(st.binary(max_size=40), max_size=5), st.randoms())
def test_every_trade_of_either_feed_is_decoded_exactly_and_junk_never_stops_a_batch(
    data: list[tuple], junk: list[bytes], rng: Any
) -> None:
    expected = sorted(
        (INDEX.codes[p], t, float(f"{pr:.8f}"), float(f"{q:.8f}"), us, 1 if s == "SELL" else -1)
        for p, t, pr, q, us, s in data
    )
    advanced = [
        at_frame(at_trade(str(t), p, price=f"{pr:.8f}", size=f"{q:.8f}", time=_iso(us), side=s))
        for p, t, pr, q, us, s in data
    ]
    exchange = [
        match(t, p, price=f"{pr:.8f}", size=f"{q:.8f}", time=_iso(us), side=s.lower())
        for p, t, pr, q, us, s in data
    ]
    for parse, frames in ((parse_advanced, advanced), (parse_exchange, exchange)):
        mixed = frames + junk
        rng.shuffle(mixed)
        parsed = parse(mixed, RECV, INDEX)
        assert len(parsed.batch) + len(parsed.rejects) == len(mixed)
        b = parsed.batch
        got = sorted(
            zip(b.instrument.tolist(), b.seq.tolist(), b.price.tolist(), b.size.tolist(),
                b.ts.tolist(), b.side.tolist(), strict=True)
        )  # fmt: skip
        assert got == expected
