"""OKX pushes become exact trade columns; anything else is rejected without stopping a batch."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument
from tickpipe.sources.okx.parse import InstrumentIndex, parse_frames

INDEX = InstrumentIndex.for_symbols(["BTC-USDT", "eth/usdt"])
RECV = 1_700_000_000_123_456


def row(inst: str = "BTC-USDT", trade_id: int = 130639474, **fields: object) -> dict:
    data = {
        "instId": inst,
        "tradeId": str(trade_id),
        "px": "42219.9",
        "sz": "0.12060306",
        "side": "buy",
        "source": "0",
        "ts": "1630048897897",
    }
    data.update(fields)
    return data


def push(*rows: dict, channel: str = "trades-all") -> bytes:
    inst = rows[0]["instId"] if rows else "BTC-USDT"
    return json.dumps({"arg": {"channel": channel, "instId": inst}, "data": list(rows)}).encode()


def test_instruments_keep_okx_spelling_which_is_the_normalized_one() -> None:
    assert INDEX.instruments == [
        Instrument("okx", "BTC-USDT", "BTC-USDT"),
        Instrument("okx", "ETH-USDT", "ETH-USDT"),
    ]
    spelled = InstrumentIndex.for_symbols(["XBT/USDT"], spellings={"BTC-USDT": "BTC-USDT"})
    assert spelled.instruments == INDEX.instruments[:1]


def test_push_becomes_exact_columns() -> None:
    frames = [push(row()), push(row("ETH-USDT", 7, px="2500.5", sz="0.25", side="sell", ts="5"))]
    parsed = parse_frames(frames, RECV, INDEX)
    batch = parsed.batch
    assert parsed.rejects == [] and parsed.first_seq is None and not parsed.reconnect
    assert batch.source == "okx"
    assert batch.instrument.tolist() == [0, 1]
    assert batch.seq.tolist() == [130639474, 7]
    assert batch.price.tolist() == [42219.9, 2500.5]
    assert batch.size.tolist() == [0.12060306, 0.25]
    assert batch.side.tolist() == [SIDE_BUY, SIDE_SELL]  # `side` is the taker's side
    assert batch.ts.tolist() == [1_630_048_897_897_000, 5000]
    assert batch.recv_ts.tolist() == [RECV, RECV]
    assert batch.trade_id is None and batch.trade_ids().tolist() == ["130639474", "7"]
    assert [c.dtype for c in (batch.instrument, batch.seq, batch.side, batch.ts)] == [
        np.int32,
        np.int64,
        np.int8,
        np.int64,
    ]


def test_one_push_may_carry_several_trades() -> None:
    parsed = parse_frames([push(row(trade_id=1), row(trade_id=2))], RECV, INDEX)
    assert parsed.batch.seq.tolist() == [1, 2]


def test_aggregated_row_stands_for_count_trades_ending_at_its_trade_id() -> None:
    frames = [push(row(trade_id=123, count="3"), channel="trades"), push(row(trade_id=124))]
    parsed = parse_frames(frames, RECV, INDEX)
    assert parsed.batch.seq.tolist() == [123, 124]
    assert parsed.first_seq is not None and parsed.first_seq.tolist() == [121, 124]


def test_acks_pongs_and_conn_count_are_neither_trades_nor_rejects() -> None:
    frames = [
        b'{"id":"1","event":"subscribe","arg":{"channel":"trades-all","instId":"BTC-USDT"},'
        b'"connId":"a4d3ae55"}',
        b"pong",
        push(row()),
        b'{"event":"channel-conn-count","channel":"trades-all","connCount":"2","connId":"x"}',
    ]
    parsed = parse_frames(frames, RECV, INDEX)
    assert parsed.rejects == [] and not parsed.reconnect
    assert parsed.batch.seq.tolist() == [130639474]


def test_upgrade_notice_asks_for_a_reconnect() -> None:
    notice = b'{"event":"notice","code":"64008","msg":"The connection will soon be closed.",' \
        b'"connId":"a4d3ae55"}'  # fmt: skip
    parsed = parse_frames([notice, push(row())], RECV, INDEX)
    assert parsed.reconnect and parsed.rejects == [] and len(parsed.batch) == 1


def test_malformed_frames_are_rejected_with_a_reason_and_the_batch_goes_on() -> None:
    bad = {
        b"not json": "invalid JSON",
        b"[1, 2]": "not a JSON object",
        b'{"arg":{"channel":"trades-all"}}': "no trade data",
        b'{"event":"error","code":"60012","msg":"Invalid request"}': "error reply from exchange",
        b'{"event":"login","code":"0"}': "unexpected event 'login'",
        push(row(px="abc")): "bad trade",
        push(row(tradeId="x")): "bad trade",
        push(row(px="NaN")): "bad trade",
        push(row(sz="0")): "bad trade",
        push(row(px="-1")): "bad trade",
        push(row(side="both")): "bad trade",
        push(row(tradeId="-5")): "bad trade",
        push(row(ts=str(2**62))): "bad trade",
        push(row(count="0")): "bad trade",
        push({"instId": "BTC-USDT", "tradeId": "1"}): "bad trade",
        push(row("DOGE-USDT")): "unknown symbol 'DOGE-USDT'",
    }
    frames = [push(row(trade_id=0))]
    for n, frame in enumerate(bad, 1):
        frames += [frame, push(row(trade_id=n))]
    parsed = parse_frames(frames, RECV, INDEX)
    assert parsed.batch.seq.tolist() == list(range(len(bad) + 1))
    assert [r.payload for r in parsed.rejects] == list(bad)
    for reject, reason in zip(parsed.rejects, bad.values(), strict=True):
        assert reject.reason.startswith(reason), reject
    assert "60012" in parsed.rejects[3].reason


def test_empty_input_gives_an_empty_batch() -> None:
    parsed = parse_frames([], RECV, INDEX)
    assert len(parsed.batch) == 0 and parsed.rejects == [] and parsed.first_seq is None


rows = st.lists(
    st.tuples(
        st.sampled_from(["BTC-USDT", "ETH-USDT"]),
        st.integers(0, 2**62),
        st.decimals(min_value="0.00000001", max_value="1000000", places=8),
        st.decimals(min_value="0.00000001", max_value="100000", places=8),
        st.integers(0, 4_102_444_800_000),
        st.sampled_from(["buy", "sell"]),
    ),
    max_size=40,
)


@given(rows, st.lists(st.binary(max_size=40), max_size=5), st.randoms())
def test_every_push_is_decoded_exactly_and_junk_never_stops_a_batch(
    trades: list[tuple], junk: list[bytes], rng: object
) -> None:
    frames = [
        push(row(i, t, px=f"{p:.8f}", sz=f"{q:.8f}", ts=str(ts), side=s))
        for i, t, p, q, ts, s in trades
    ]
    mixed = frames + [j for j in junk if j != b"pong"]
    rng.shuffle(mixed)  # type: ignore[attr-defined]
    parsed = parse_frames(mixed, RECV, INDEX)
    assert len(parsed.batch) + len(parsed.rejects) == len(mixed)
    expected = sorted(
        (
            INDEX.codes[i],
            t,
            float(f"{p:.8f}"),
            float(f"{q:.8f}"),
            ts * 1000,
            1 if s == "buy" else -1,
        )
        for i, t, p, q, ts, s in trades
    )
    b = parsed.batch
    got = sorted(
        zip(b.instrument.tolist(), b.seq.tolist(), b.price.tolist(), b.size.tolist(),
            b.ts.tolist(), b.side.tolist(), strict=True)
    )  # fmt: skip
    assert got == expected
