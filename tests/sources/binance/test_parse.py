"""Binance frames become exact trade columns; anything else is rejected without stopping a batch."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument
from tickpipe.sources.binance.parse import InstrumentIndex, parse_frames

INDEX = InstrumentIndex.for_symbols(["BTC-USDT", "ETH-USDT"])
RECV = 1_700_000_000_123_456


def trade_frame(symbol: str = "BTCUSDT", trade_id: int = 12345, **fields: object) -> bytes:
    data = {
        "e": "trade",
        "E": 1_700_000_000_100,
        "s": symbol,
        "t": trade_id,
        "p": "0.00100000",
        "q": "100.00000000",
        "T": 1_700_000_000_050,
        "m": True,
        "M": True,
    }
    data.update(fields)
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).encode()


def test_instruments_name_the_exchange_and_both_spellings() -> None:
    assert INDEX.instruments == [
        Instrument("binance", "BTC-USDT", "BTCUSDT"),
        Instrument("binance", "ETH-USDT", "ETHUSDT"),
    ]
    assert InstrumentIndex.for_symbols(["btcusdt", "BTC-USDT"]).instruments == INDEX.instruments[:1]


def test_trade_frame_becomes_exact_columns() -> None:
    batch, rejects, *_ = parse_frames(
        [trade_frame(), trade_frame("ETHUSDT", 7, p="2500.5", q="0.25", T=1_700_000_001_000)],
        RECV,
        INDEX,
    )
    assert rejects == []
    assert batch.source == "binance"
    assert batch.instruments is INDEX.instruments
    assert batch.instrument.tolist() == [0, 1]
    assert batch.seq.tolist() == [12345, 7]
    assert batch.price.tolist() == [0.001, 2500.5]
    assert batch.size.tolist() == [100.0, 0.25]
    assert batch.ts.tolist() == [1_700_000_000_050_000, 1_700_000_001_000_000]  # trade time, µs
    assert batch.recv_ts.tolist() == [RECV, RECV]
    assert batch.trade_id is None  # numeric ids: derived from seq
    assert batch.trade_ids().tolist() == ["12345", "7"]
    assert [c.dtype for c in (batch.instrument, batch.seq, batch.price, batch.side, batch.ts)] == [
        np.int32,
        np.int64,
        np.float64,
        np.int8,
        np.int64,
    ]


def test_taker_side_is_sell_when_buyer_is_maker() -> None:
    batch, _, *_ = parse_frames([trade_frame(m=True)], RECV, INDEX)
    assert batch.side.tolist() == [SIDE_SELL]
    assert batch.to_trades()[0].side == "sell"


def test_taker_side_is_buy_when_seller_is_maker() -> None:
    batch, _, *_ = parse_frames([trade_frame(m=False)], RECV, INDEX)
    assert batch.side.tolist() == [SIDE_BUY]
    assert batch.to_trades()[0].side == "buy"


def test_subscription_ack_is_neither_trade_nor_reject() -> None:
    batch, rejects, *_ = parse_frames(
        [b'{"result":null,"id":1}', trade_frame(), b'{"result":["btcusdt@trade"],"id":2}'],
        RECV,
        INDEX,
    )
    assert rejects == []
    assert batch.seq.tolist() == [12345]


def test_server_shutdown_notice_is_not_a_reject() -> None:
    notices = [
        b'{"e":"serverShutdown","E":1700000000000}',
        b'{"event":{"e":"serverShutdown","E":1700000000000}}',
    ]
    batch, rejects, *_ = parse_frames(notices, RECV, INDEX)
    assert len(batch) == 0
    assert rejects == []


def test_malformed_frames_are_rejected_with_a_reason_and_the_batch_goes_on() -> None:
    bad = {
        b"not json": "invalid JSON",
        b"[1, 2]": "not a JSON object",
        b'{"stream":"btcusdt@trade"}': "no trade data",
        b'{"code": 2, "msg": "Invalid request", "id": 3}': "error reply from exchange",
        trade_frame(p="abc"): "bad trade",
        trade_frame(t="x"): "bad trade",
        trade_frame(p="NaN"): "bad trade",
        trade_frame(p="inf"): "bad trade",
        trade_frame(q="0"): "bad trade",
        trade_frame(p="-1"): "bad trade",
        trade_frame(t=-5): "bad trade",
        trade_frame(t=2**64): "bad trade",
        trade_frame(T=2**62): "bad trade",
        json.dumps({"data": {"e": "trade", "s": "BTCUSDT", "t": 1}}).encode(): "bad trade",
        trade_frame(e="kline"): "unexpected event 'kline'",
        trade_frame("DOGEUSDT"): "unknown symbol 'DOGEUSDT'",
    }
    frames = [trade_frame(trade_id=0)]
    for n, frame in enumerate(bad, 1):
        frames += [frame, trade_frame(trade_id=n)]
    batch, rejects, *_ = parse_frames(frames, RECV, INDEX)
    assert batch.seq.tolist() == list(range(len(bad) + 1))
    assert [r.payload for r in rejects] == list(bad)
    for reject, reason in zip(rejects, bad.values(), strict=True):
        assert reject.reason.startswith(reason), reject


def test_aggregate_trade_uses_the_aggregate_id_as_seq() -> None:
    frame = json.dumps(
        {
            "stream": "btcusdt@aggTrade",
            "data": {
                "e": "aggTrade",
                "E": 1_672_515_782_136,
                "s": "BTCUSDT",
                "a": 26129,
                "p": "0.01633102",
                "q": "4.70443515",
                "f": 27781,
                "l": 27781,
                "T": 1_672_515_782_136,
                "m": False,
                "M": True,
            },
        }
    ).encode()
    batch, rejects, *_ = parse_frames([frame], RECV, INDEX)
    assert rejects == []
    assert batch.seq.tolist() == [26129]
    assert batch.side.tolist() == [SIDE_BUY]


def test_empty_input_gives_an_empty_batch() -> None:
    batch, rejects, *_ = parse_frames([], RECV, INDEX)
    assert len(batch) == 0
    assert rejects == []


trades = st.lists(
    st.tuples(
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.integers(0, 2**62),
        st.decimals(min_value="0.00000001", max_value="1000000", places=8),
        st.decimals(min_value="0.00000001", max_value="100000", places=8),
        st.integers(0, 4_102_444_800_000),
        st.booleans(),
    ),
    max_size=40,
)


@given(trades, st.lists(st.binary(max_size=40), max_size=5), st.randoms())
def test_every_trade_frame_is_decoded_exactly_and_junk_never_stops_a_batch(
    rows: list[tuple], junk: list[bytes], rng: object
) -> None:
    frames = [
        trade_frame(s, t, p=f"{p:.8f}", q=f"{q:.8f}", T=ts, m=m) for s, t, p, q, ts, m in rows
    ]
    good = list(frames)
    mixed = frames + junk
    rng.shuffle(mixed)  # type: ignore[attr-defined]
    batch, rejects, *_ = parse_frames(mixed, RECV, INDEX)
    assert len(batch) + len(rejects) == len(mixed)
    expected = sorted(
        (INDEX.codes[s], t, float(f"{p:.8f}"), float(f"{q:.8f}"), ts * 1000, -1 if m else 1)
        for s, t, p, q, ts, m in rows
    )
    got = sorted(
        zip(
            batch.instrument.tolist(),
            batch.seq.tolist(),
            batch.price.tolist(),
            batch.size.tolist(),
            batch.ts.tolist(),
            batch.side.tolist(),
            strict=True,
        )
    )
    assert got == expected
    assert len(good) == len(batch)
