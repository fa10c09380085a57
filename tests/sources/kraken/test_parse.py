"""Kraken v2 frames become exact trade columns; anything else is rejected or ignored, not fatal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument
from tickpipe.sources.kraken.parse import (
    InstrumentIndex,
    parse_frames,
    parse_rest_trades,
    to_kraken,
    to_kraken_rest,
)

INDEX = InstrumentIndex.for_symbols(["BTC-USD", "ETH/USD"])
RECV = 1_700_000_000_123_456


def trade(symbol: str = "BTC/USD", trade_id: int = 4665846, **fields: object) -> dict:
    data = {
        "symbol": symbol,
        "side": "buy",
        "price": 0.5147,
        "qty": 6423.46326,
        "ord_type": "limit",
        "trade_id": trade_id,
        "timestamp": "2023-09-25T07:48:36.925533Z",
    }
    data.update(fields)
    return data


def frame(*trades: dict, kind: str = "update") -> bytes:
    return json.dumps({"channel": "trade", "type": kind, "data": list(trades)}).encode()


def test_symbols_use_v2_spelling_and_rest_altnames() -> None:
    assert INDEX.instruments == [
        Instrument("kraken", "BTC-USD", "BTC/USD"),
        Instrument("kraken", "ETH-USD", "ETH/USD"),
    ]
    assert InstrumentIndex.for_symbols(["XBT/USD", "xbtusd", "BTC-USD"]).instruments == [
        Instrument("kraken", "BTC-USD", "BTC/USD")
    ]
    assert to_kraken("XBT/USD") == "BTC/USD"
    assert to_kraken_rest("BTC-USD") == "XBTUSD"
    assert to_kraken_rest("DOGE-USD") == "XDGUSD"


def test_trade_frame_becomes_exact_columns() -> None:
    batch, rejects, *_ = parse_frames(
        [
            frame(trade(), trade(trade_id=4665847, side="sell", price=2.5, qty=0.25)),
            frame(trade("ETH/USD", 7, timestamp="2023-09-25T07:48:37Z"), kind="snapshot"),
        ],
        RECV,
        INDEX,
    )
    assert rejects == []
    assert batch.source == "kraken" and batch.instruments is INDEX.instruments
    assert batch.instrument.tolist() == [0, 0, 1]
    assert batch.seq.tolist() == [4665846, 4665847, 7]
    assert batch.trade_id is None  # ids are the decimal form of seq
    assert batch.price.tolist() == [0.5147, 2.5, 0.5147]
    assert batch.size.tolist() == [6423.46326, 0.25, 6423.46326]
    assert batch.side.tolist() == [SIDE_BUY, SIDE_SELL, SIDE_BUY]  # `side` is the taker's
    assert batch.ts.tolist() == [1695628116925533, 1695628116925533, 1695628117000000]
    assert batch.recv_ts.tolist() == [RECV] * 3


def test_legacy_xbt_spelling_in_a_frame_still_maps_to_btc() -> None:
    batch, rejects, *_ = parse_frames([frame(trade("XBT/USD"))], RECV, INDEX)
    assert rejects == [] and batch.instrument.tolist() == [0]


def test_heartbeat_status_acks_and_pong_are_dropped_silently() -> None:
    frames = [
        b'{"channel":"heartbeat"}',
        b'{"channel":"status","data":[{"api_version":"v2","connection_id":13834774380200032777,'
        b'"system":"online","version":"2.0.0"}],"type":"update"}',
        b'{"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},'
        b'"success":true,"time_in":"2023-09-25T09:04:31.742599Z",'
        b'"time_out":"2023-09-25T09:04:31.742648Z"}',
        b'{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z",'
        b'"time_out":"2023-09-24T14:10:23.799703Z"}',
        frame(trade()),
    ]
    batch, rejects, *_ = parse_frames(frames, RECV, INDEX)
    assert rejects == [] and batch.seq.tolist() == [4665846]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"channel":"trade","type":"update","data":[{"symbol"', "invalid JSON"),
        (b"[1,2]", "not a JSON object"),
        (frame(trade(price="abc")), "bad trade message"),
        (frame(trade(price=-1)), "bad trade message"),
        (frame(trade(side="both")), "bad trade message"),
        (frame(trade(timestamp="yesterday")), "bad trade message"),
        (frame(trade(timestamp="2023-09-25T07:48:36.925533")), "without a time zone"),
        (frame(trade("DOGE/USD")), "unknown symbol 'DOGE/USD'"),
        (b'{"channel":"book","type":"update","data":[]}', "unexpected channel 'book'"),
        (
            b'{"error":"Currency pair not supported XYZ/USD","method":"subscribe",'
            b'"success":false,"symbol":"XYZ/USD"}',
            "error reply to subscribe: Currency pair not supported XYZ/USD",
        ),
    ],
)
def test_bad_frame_is_rejected_with_reason_and_the_rest_of_the_batch_survives(
    payload: bytes, reason: str
) -> None:
    batch, rejects, *_ = parse_frames(
        [frame(trade()), payload, frame(trade(trade_id=9))], RECV, INDEX
    )
    assert batch.seq.tolist() == [4665846, 9]
    assert len(rejects) == 1
    assert rejects[0].payload == payload and reason in rejects[0].reason


def test_frame_with_one_bad_trade_is_rejected_whole() -> None:
    payload = frame(trade(trade_id=1), trade("LTC/USD", trade_id=2))
    batch, rejects, *_ = parse_frames([payload], RECV, INDEX)
    assert len(batch) == 0 and [r.payload for r in rejects] == [payload]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BTC/USD", "ETH/USD"]),
            st.integers(0, 2**63 - 1),
            st.floats(1e-8, 1e9),
            st.floats(1e-8, 1e9),
            st.sampled_from(["buy", "sell"]),
            st.integers(0, 4_102_444_800_000_000),  # up to 2100
        ),
        max_size=30,
    )
)
def test_any_valid_trades_round_trip_exactly(rows: list[tuple]) -> None:
    from fakes.kraken_server import rfc3339

    frames = [
        frame(trade(s, i, price=p, qty=q, side=side, timestamp=rfc3339(us)))
        for s, i, p, q, side, us in rows
    ]
    batch, rejects, *_ = parse_frames(frames, RECV, INDEX)
    assert rejects == []
    assert batch.seq.tolist() == [r[1] for r in rows]
    assert batch.price.tolist() == [r[2] for r in rows]
    assert batch.size.tolist() == [r[3] for r in rows]
    assert batch.ts.tolist() == [r[5] for r in rows]
    assert batch.side.tolist() == [SIDE_BUY if r[4] == "buy" else SIDE_SELL for r in rows]
    assert batch.instrument.dtype == np.int32


def test_rest_trades_page_is_read_with_ids_sides_and_cursor() -> None:
    answer = {
        "error": [],
        "result": {
            "XXBTZUSD": [
                ["30243.40000", "0.34507674", 1688669597.8277369, "b", "m", "", 61044952],
                ["30243.30000", "0.00376960", 1688669598.280411, "s", "l", "", 61044953],
            ],
            "last": "1688671969993150842",
        },
    }
    page = parse_rest_trades(answer)
    assert page.error == "" and page.last == 1688671969993150842
    assert page.trades == [
        (61044952, 30243.4, 0.34507674, SIDE_BUY, 1688669597827737),
        (61044953, 30243.3, 0.0037696, SIDE_SELL, 1688669598280411),
    ]


def test_rest_error_list_and_bad_entries_are_reported() -> None:
    assert parse_rest_trades({"error": ["EGeneral:Too many requests"]}).error == (
        "EGeneral:Too many requests"
    )
    bad = {"error": [], "result": {"XXBTZUSD": [["x", "1", 1.0, "b", "m", "", 1]], "last": "1"}}
    with pytest.raises(ValueError, match="bad trade entry"):
        parse_rest_trades(bad)
