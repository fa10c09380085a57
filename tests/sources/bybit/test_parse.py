"""Bybit publicTrade frames become exact trade columns; anything else is rejected, never fatal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument
from tickpipe.sources.bybit.parse import (
    ArrivalOrder,
    InstrumentIndex,
    parse_frames,
    parse_recent_trades,
)

INDEX = InstrumentIndex.for_symbols(["BTC-USDT", "ethusdt"])
RECV = 1_700_000_000_123_456


def trade(symbol: str = "BTCUSDT", trade_id: str = "2290000000036455162", **fields: object) -> dict:
    data = {
        "T": 1672304486865,
        "s": symbol,
        "S": "Buy",
        "v": "0.001",
        "p": "16578.50",
        "i": trade_id,
        "BT": False,
        "RPI": False,
        "seq": 1783284617,
    }
    data.update(fields)
    return data


def frame(*trades: dict) -> bytes:
    topic = f"publicTrade.{trades[0]['s']}" if trades else "publicTrade.BTCUSDT"
    return json.dumps(
        {"topic": topic, "type": "snapshot", "ts": 1672304486868, "data": list(trades)}
    ).encode()


def test_instruments_name_the_exchange_and_both_spellings() -> None:
    assert INDEX.instruments == [
        Instrument("bybit", "BTC-USDT", "BTCUSDT"),
        Instrument("bybit", "ETH-USDT", "ETHUSDT"),
    ]


def test_trade_frame_becomes_exact_columns_with_ids_kept_as_given() -> None:
    batch, rejects, *_ = parse_frames(
        [
            frame(trade(), trade(trade_id="2290000000036455170", S="Sell", v="2.5", p="1")),
            frame(trade("ETHUSDT", "7", T=1672304487000)),
        ],
        RECV,
        INDEX,
        ArrivalOrder(),
    )
    assert rejects == []
    assert batch.source == "bybit" and batch.instruments is INDEX.instruments
    assert batch.instrument.tolist() == [0, 0, 1]
    assert batch.trade_id is not None
    assert batch.trade_id.tolist() == ["2290000000036455162", "2290000000036455170", "7"]
    assert batch.seq.tolist() == [2290000000036455162, 2290000000036455170, 7]
    assert batch.price.tolist() == [16578.5, 1.0, 16578.5]
    assert batch.size.tolist() == [0.001, 2.5, 0.001]
    assert batch.side.tolist() == [SIDE_BUY, SIDE_SELL, SIDE_BUY]  # `S` is the taker's side
    assert batch.ts.tolist() == [1672304486865000, 1672304486865000, 1672304487000000]
    assert batch.recv_ts.tolist() == [RECV] * 3


def test_non_numeric_ids_keep_their_text_and_get_arrival_order() -> None:
    arrival = ArrivalOrder()
    batch, _, *_ = parse_frames(
        [frame(trade(trade_id="20f43950-d8dd-5b31-9112-a178eb6023af"), trade(trade_id="x"))],
        RECV,
        INDEX,
        arrival,
    )
    assert batch.trade_id is not None
    assert batch.trade_id.tolist() == ["20f43950-d8dd-5b31-9112-a178eb6023af", "x"]
    assert batch.seq.tolist() == [2**62, 2**62 + 1]


def test_acks_and_pongs_are_dropped_silently() -> None:
    frames = [
        b'{"success":true,"ret_msg":"subscribe","conn_id":"c-1","req_id":"1","op":"subscribe"}',
        b'{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e","op":"ping"}',
        frame(trade()),
    ]
    batch, rejects, *_ = parse_frames(frames, RECV, INDEX, ArrivalOrder())
    assert rejects == [] and len(batch) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"topic":"publicTrade.BTCUSDT","data":[{"T"', "invalid JSON"),
        (b"[1]", "not a JSON object"),
        (frame(trade(p="abc")), "bad trade message"),
        (frame(trade(v="0")), "bad trade message"),
        (frame(trade(S="buy")), "bad trade message"),
        (frame(trade(i="")), "bad trade message"),
        (frame(trade(T=-5)), "bad trade message"),
        (frame(trade("SOLUSDT")), "unknown symbol 'SOLUSDT'"),
        (b'{"topic":"orderbook.1.BTCUSDT","data":{}}', "unexpected message"),
        (
            b'{"success":false,"ret_msg":"Invalid symbol :[publicTrade.X]","conn_id":"c",'
            b'"op":"subscribe"}',
            "subscribe refused: Invalid symbol :[publicTrade.X]",
        ),
    ],
)
def test_bad_frame_is_rejected_with_reason_and_the_rest_of_the_batch_survives(
    payload: bytes, reason: str
) -> None:
    batch, rejects, *_ = parse_frames(
        [frame(trade()), payload, frame(trade(trade_id="9"))], RECV, INDEX, ArrivalOrder()
    )
    assert batch.seq.tolist() == [2290000000036455162, 9]
    assert len(rejects) == 1
    assert rejects[0].payload == payload and reason in rejects[0].reason


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BTCUSDT", "ETHUSDT"]),
            st.integers(0, 2**63 - 1),
            st.decimals(min_value="0.00000001", max_value="1e9", places=8),
            st.decimals(min_value="0.00000001", max_value="1e9", places=8),
            st.sampled_from(["Buy", "Sell"]),
            st.integers(0, 4_102_444_800_000),
        ),
        max_size=30,
    )
)
def test_any_valid_trades_round_trip_exactly(rows: list[tuple]) -> None:
    frames = [
        frame(trade(s, str(i), p=str(p), v=str(v), S=side, T=ms)) for s, i, p, v, side, ms in rows
    ]
    batch, rejects, *_ = parse_frames(frames, RECV, INDEX, ArrivalOrder())
    assert rejects == []
    assert batch.seq.tolist() == [r[1] for r in rows]
    assert batch.price.tolist() == [float(r[2]) for r in rows]
    assert batch.size.tolist() == [float(r[3]) for r in rows]
    assert batch.ts.tolist() == [r[5] * 1000 for r in rows]
    assert batch.side.tolist() == [SIDE_BUY if r[4] == "Buy" else SIDE_SELL for r in rows]


def test_recent_trades_answer_is_read_oldest_first() -> None:
    answer = {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "category": "spot",
            "list": [
                {"execId": "2100000000007764263", "symbol": "BTCUSDT", "price": "16618.49",
                 "size": "0.00012", "side": "Buy", "time": "1672052955758",
                 "isBlockTrade": False},
                {"execId": "2100000000007764262", "symbol": "BTCUSDT", "price": "16618.5",
                 "size": "1", "side": "Sell", "time": "1672052955757", "isBlockTrade": False},
            ],
        },
        "retExtInfo": {},
        "time": 1672053054358,
    }  # fmt: skip
    trades = parse_recent_trades(answer)
    assert [(t.id, t.time, t.price, t.size, t.side) for t in trades] == [
        ("2100000000007764262", 1672052955757, 16618.5, 1.0, "Sell"),
        ("2100000000007764263", 1672052955758, 16618.49, 0.00012, "Buy"),
    ]


def test_recent_trades_error_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="retCode 10001"):
        parse_recent_trades({"retCode": 10001, "retMsg": "params error", "result": {}})
