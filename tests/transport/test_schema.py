"""Trade and candle messages: both encodings carry every field, JSON matches the committed JSON
Schema, and anything else is refused with a SchemaError (the processor dead-letters it)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import numpy as np
import pytest

from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.transport.schema import (
    ENCODINGS,
    SchemaError,
    candle_key,
    decode_candle,
    decode_trades,
    encode_candle,
    encode_heartbeat,
    encode_trades,
    is_heartbeat,
    split_by_instrument,
    to_batch,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schema"


def schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


def simulated(n: int = 3000, symbols: int = 4) -> TradeBatch:
    return MarketSimulator(symbols, 1000.0, seed=3, exchange="sim", source="sim").trades(
        n, 1_700_000_000_000_000
    )


def string_ids() -> TradeBatch:
    trades = [
        Trade(source="tiingo", exchange="kraken", symbol="BTC-USD", raw_symbol="XBT/USD",
              trade_id=f"t-{i}", seq=i, price=100.0 + i, size=0.5, side=side,
              ts=1_700_000_000_000_000 + i, recv_ts=1_700_000_000_000_100 + i)
        for i, side in enumerate(["buy", "sell", "unknown", "buy"])
    ]  # fmt: skip
    return TradeBatch.from_trades(trades)


def rows(batch: TradeBatch) -> list[Trade]:
    return sorted(batch.to_trades(), key=lambda t: (t.exchange, t.symbol, t.seq))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("make", [simulated, string_ids])
def test_messages_of_either_encoding_decode_to_the_same_trades(encoding, make):
    batch = make()
    parts = list(split_by_instrument(batch, 500))
    assert all(len(p.instruments) == 1 and len(p) <= 500 for p in parts)
    decoded = to_batch([decode_trades(encode_trades(p, encoding)) for p in parts])
    assert rows(decoded) == rows(batch)


def test_split_keeps_each_instruments_trades_in_their_original_order():
    batch = simulated()
    got: dict = {}
    for part in split_by_instrument(batch, 400):
        got.setdefault(part.instruments[0], []).extend(part.seq.tolist())
    for code, inst in enumerate(batch.instruments):
        assert got[inst] == batch.seq[batch.instrument == code].tolist()


@pytest.mark.parametrize("make", [simulated, string_ids])
def test_json_trade_messages_match_the_committed_json_schema(make):
    validator = schema("trade.v1.json")
    for part in split_by_instrument(make(), 700):
        message = json.loads(encode_trades(part, "json"))
        errors = list(validator.iter_errors(message))
        assert not errors, errors[0].message


def test_the_json_schema_refuses_what_the_decoder_refuses():
    validator = schema("trade.v1.json")
    good = json.loads(encode_trades(next(split_by_instrument(string_ids(), 10)), "json"))
    for broken in ({**good, "v": 2}, {**good, "side": [1, 2, 0, 1]}, {**good, "extra": 1},
                   {k: v for k, v in good.items() if k != "ts"}):  # fmt: skip
        assert not validator.is_valid(broken)
        with pytest.raises(SchemaError):
            decode_trades(json.dumps(broken).encode())


def test_candle_messages_match_their_schema_and_key():
    candle = Candle(exchange="sim", symbol="SYM0-USD", interval="1m", start=1_700_000_040_000_000,
                    open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0, quote_volume=4.0,
                    vwap=1.33, mean_price=1.2, trades=7, buy_volume=1.0, sell_volume=2.0,
                    first_seq=1, last_seq=9, final=True, revision=1, updated_at=5)  # fmt: skip
    value = encode_candle(candle)
    assert not list(schema("candle.v1.json").iter_errors(json.loads(value)))
    assert decode_candle(value) == candle
    assert candle_key(candle) == b"sim:SYM0-USD:1m:1700000040000000"


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b'{"v": 1}',
        b"[1, 2, 3]",
        b'{"v": 1, "source": "s", "exchange": "e", "symbol": "A-B", "seq": [1, 2], '
        b'"price": [1.0], "size": [1.0], "side": [1], "ts": [1], "recv_ts": [1]}',
        b'{"v": 1, "source": "s", "exchange": "e", "symbol": "A-B", "seq": [], '
        b'"price": [], "size": [], "side": [], "ts": [], "recv_ts": []}',
        b'{"v": 1, "source": "", "exchange": "e", "symbol": "A-B", "seq": [1], '
        b'"price": [1.0], "size": [1.0], "side": [1], "ts": [1], "recv_ts": [1]}',
        b"\x00TPB\x01\x05\x00\x00\x00garbage",
        b"\x00TPB\x09",
    ],
)
def test_malformed_trade_messages_raise_a_schema_error(value):
    with pytest.raises(SchemaError):
        decode_trades(value)


def test_a_truncated_binary_message_is_refused():
    value = encode_trades(next(split_by_instrument(simulated(), 100)), "binary")
    with pytest.raises(SchemaError):
        decode_trades(value[:-3])


def test_a_nan_price_is_refused():
    part = next(split_by_instrument(simulated(), 50))
    part.price[3] = np.nan
    with pytest.raises(SchemaError):
        decode_trades(encode_trades(part, "binary"))
    raw = msgspec.json.decode(encode_trades(part, "json"))
    assert raw["price"][3] is None  # JSON has no NaN: the decoder must not take null either
    with pytest.raises(SchemaError):
        decode_trades(msgspec.json.encode(raw))


def test_heartbeat_matches_its_schema_and_is_told_apart_from_trade_messages():
    value = encode_heartbeat(1_700_000_000_123_456, "ingest")
    schema("heartbeat.v1.json").validate(json.loads(value))
    assert json.loads(value)["event_ts"] == 1_700_000_000_123_456
    assert is_heartbeat(value)
    with pytest.raises(SchemaError):
        decode_trades(value)  # a consumer that does not know heartbeats dead-letters them
    for encoding in ENCODINGS:
        for part in split_by_instrument(simulated(50, 2), 20):
            assert not is_heartbeat(encode_trades(part, encoding))
