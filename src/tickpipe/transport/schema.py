"""The Kafka message schema of trades and candles, version 1 (docs/schema/*.v1.json).

One trade message carries a small batch of trades of ONE instrument (key `exchange:symbol`),
as columns: per-message costs (headers, keys, Python calls) are paid per batch, not per trade,
and the processor decodes a message straight into TradeBatch columns.

Three encodings, told apart by the first bytes:
- JSON (default; `{`...): readable by any Kafka tool (kcat, kafka-console-consumer);
- binary (`\\x00TPB` + version): a msgpack header and the columns as little-endian arrays,
  for when the bytes on the wire and the decode cost matter;
- Avro (`\\x00` + a schema id: the Confluent wire format), for the tools that read through a
  schema registry (transport/avro.py; it needs the registry, so `codecs` chooses it).

A fourth kind of message, the watermark heartbeat (`{"v":1,"kind":"heartbeat",...}`,
docs/schema/heartbeat.v1.json), carries no trades: `tickpipe ingest` sends one to every
partition every `kafka.heartbeat_ms` (JSON and binary encodings; not with Avro), holding its
event-time clock, so a consumer with one watermark per query (the Spark job) sees event time
move on while every symbol is quiet. `tickpipe process` skips it (its idle timer does that
work).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Annotated

import msgspec
import numpy as np

from tickpipe.records import Candle, Instrument, TradeBatch

VERSION = 1
ENCODINGS = ("json", "binary")  # what needs nothing but the message
WITH_REGISTRY = ("avro",)  # what needs a schema registry (transport/codecs.py)
BINARY_MAGIC = b"\x00TPB"


class SchemaError(ValueError):
    """A message that is not a valid trade message of a known version (dead-lettered)."""


# Checked while msgspec decodes (in C): a side code, and floats that are real numbers (JSON has
# no NaN; a huge literal such as 1e999 would decode to infinity).
Side = Annotated[int, msgspec.Meta(ge=-1, le=1)]
Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
NonEmpty = msgspec.Meta(min_length=1)


class TradeMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """JSON form: one instrument's trades as parallel columns."""

    v: int
    source: Annotated[str, NonEmpty]
    exchange: Annotated[str, NonEmpty]
    symbol: Annotated[str, NonEmpty]
    raw_symbol: str = ""
    seq: Annotated[list[int], NonEmpty]
    price: list[Finite]
    size: list[Finite]
    side: list[Side]  # 1 buy, -1 sell, 0 unknown (the taker's side)
    ts: list[int]  # exchange event time, µs since the epoch (UTC)
    recv_ts: list[int]  # local receipt, µs
    trade_id: list[str] | None = None  # None: every id is the decimal form of `seq`


class Heartbeat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A watermark heartbeat: `event_ts` (µs) is the publisher's event-time clock (the newest
    trade it published, moved on by the wall time since when every symbol is quiet)."""

    v: int
    kind: str
    event_ts: int
    source: str = ""


HEARTBEAT_PREFIX = b'{"v":1,"kind":"heartbeat",'


def encode_heartbeat(event_ts: int, source: str = "") -> bytes:
    """A heartbeat message (fields in this order: `is_heartbeat` looks at the first ones)."""
    return _json_encoder.encode(Heartbeat(v=VERSION, kind="heartbeat", event_ts=event_ts,
                                          source=source))  # fmt: skip


def is_heartbeat(value: bytes | None) -> bool:
    return value is not None and value.startswith(HEARTBEAT_PREFIX)


class BinaryHeader(msgspec.Struct, array_like=True):
    """Binary form: this header (msgpack), then the columns' raw little-endian bytes."""

    v: int
    source: str
    exchange: str
    symbol: str
    raw_symbol: str
    n: int
    trade_id: list[str] | None


_COLUMNS = (("seq", "<i8"), ("price", "<f8"), ("size", "<f8"), ("side", "i1"),
            ("ts", "<i8"), ("recv_ts", "<i8"))  # fmt: skip
_ROW_BYTES = sum(np.dtype(d).itemsize for _, d in _COLUMNS)
_json_decoder = msgspec.json.Decoder(TradeMessage)
_header_decoder = msgspec.msgpack.Decoder(BinaryHeader)
_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def trade_key(instrument: Instrument) -> bytes:
    return f"{instrument.exchange}:{instrument.symbol}".encode()


def candle_key(candle: Candle) -> bytes:
    return f"{candle.exchange}:{candle.symbol}:{candle.interval}:{candle.start}".encode()


def split_by_instrument(batch: TradeBatch, max_trades: int) -> Iterator[TradeBatch]:
    """Per instrument, chunks of at most `max_trades` trades (each becomes one message)."""
    if not len(batch):
        return
    order = np.argsort(batch.instrument, kind="stable")
    codes = batch.instrument[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    for part in np.split(order, bounds):
        code = int(batch.instrument[part[0]])
        for lo in range(0, len(part), max_trades):
            chunk = batch.take(part[lo : lo + max_trades])
            yield TradeBatch(
                source=chunk.source,
                instruments=[batch.instruments[code]],
                instrument=np.zeros(len(chunk), np.int32),
                seq=chunk.seq, price=chunk.price, size=chunk.size, side=chunk.side,
                ts=chunk.ts, recv_ts=chunk.recv_ts, trade_id=chunk.trade_id,
            )  # fmt: skip


def encode_trades(batch: TradeBatch, encoding: str = "json") -> bytes:
    """One message from a batch of one instrument (see `split_by_instrument`)."""
    if len(batch.instruments) != 1:
        raise ValueError("a trade message carries exactly one instrument")
    inst = batch.instruments[0]
    ids = None if batch.trade_id is None else [str(i) for i in batch.trade_id]
    if encoding == "json":
        return _json_encoder.encode(
            TradeMessage(
                v=VERSION,
                source=batch.source,
                exchange=inst.exchange,
                symbol=inst.symbol,
                raw_symbol=inst.raw_symbol,
                seq=batch.seq.tolist(),
                price=batch.price.tolist(),
                size=batch.size.tolist(),
                side=batch.side.tolist(),
                ts=batch.ts.tolist(),
                recv_ts=batch.recv_ts.tolist(),
                trade_id=ids,
            )
        )
    if encoding == "binary":
        header = BinaryHeader(
            VERSION, batch.source, inst.exchange, inst.symbol, inst.raw_symbol, len(batch), ids
        )
        head = _msgpack_encoder.encode(header)
        parts = [BINARY_MAGIC, bytes([VERSION]), len(head).to_bytes(4, "little"), head]
        parts.extend(np.ascontiguousarray(getattr(batch, n), d).tobytes() for n, d in _COLUMNS)
        return b"".join(parts)
    if encoding == "avro":
        raise ValueError("Avro messages need a schema registry: use codecs.trade_encoder")
    raise ValueError(f"unknown encoding {encoding!r} (known: {', '.join(ENCODINGS)})")


@dataclass(slots=True)
class DecodedTrades:
    """One decoded message: its trades (one instrument) and where they came from.

    Columns are Python lists (JSON) or arrays (binary): `to_batch` builds each column once
    for many messages, which costs far less than one array per column per message.
    """

    source: str
    instrument: Instrument
    seq: list | np.ndarray
    price: list | np.ndarray
    size: list | np.ndarray
    side: list | np.ndarray
    ts: list | np.ndarray
    recv_ts: list | np.ndarray
    trade_id: list | None
    max_ts: int


def decode_trades(value: bytes) -> DecodedTrades:
    """A trade message of either encoding; SchemaError says what is wrong with it."""
    if not value:
        raise SchemaError("empty message")
    if value[:1] == b"{":
        return _decode_json(value)
    if value.startswith(BINARY_MAGIC):
        return _decode_binary(value)
    if is_avro(value):
        raise SchemaError(
            f"an Avro message (schema id {int.from_bytes(value[1:5], 'big')}): reading it "
            f"needs the schema registry (kafka.schema_registry)"
        )
    raise SchemaError("neither a JSON nor a binary trade message")


def is_avro(value: bytes) -> bool:
    """Whether `value` has the Confluent wire format's header (a zero byte and a schema id)."""
    return len(value) > 5 and value[:1] == b"\x00" and not value.startswith(BINARY_MAGIC)


def _decode_json(value: bytes) -> DecodedTrades:
    try:
        msg = _json_decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"not a trade message: {exc}") from None
    return checked(msg)


def checked(msg: TradeMessage) -> DecodedTrades:
    """A decoded JSON (or Avro) message's columns, once their version and lengths agree."""
    if msg.v != VERSION:
        raise SchemaError(f"unsupported version {msg.v} (this tickpipe reads {VERSION})")
    n = len(msg.seq)
    if not (
        len(msg.price) == len(msg.size) == len(msg.side) == len(msg.ts) == n
        and len(msg.recv_ts) == n
        and (msg.trade_id is None or len(msg.trade_id) == n)
    ):
        raise SchemaError("columns of different lengths")  # fmt: skip
    return DecodedTrades(
        source=msg.source, instrument=Instrument(msg.exchange, msg.symbol, msg.raw_symbol),
        seq=msg.seq, price=msg.price, size=msg.size, side=msg.side, ts=msg.ts,
        recv_ts=msg.recv_ts, trade_id=msg.trade_id, max_ts=max(msg.ts),
    )  # fmt: skip


def _decode_binary(value: bytes) -> DecodedTrades:
    if len(value) < 9 or value[4] != VERSION:
        raise SchemaError(f"unsupported binary version (this tickpipe reads {VERSION})")
    size = int.from_bytes(value[5:9], "little")
    try:
        head = _header_decoder.decode(value[9 : 9 + size])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"bad binary header: {exc}") from None
    body = memoryview(value)[9 + size :]
    if head.n < 1 or len(body) != head.n * _ROW_BYTES:
        raise SchemaError("binary columns do not match the trade count")
    if head.trade_id is not None and len(head.trade_id) != head.n:
        raise SchemaError("trade ids do not match the trade count")
    if not head.source or not head.exchange or not head.symbol:
        raise SchemaError("source, exchange and symbol must not be empty")
    cols = {}
    at = 0
    for name, dtype in _COLUMNS:
        width = np.dtype(dtype).itemsize * head.n
        cols[name] = np.frombuffer(body[at : at + width], dtype).astype(dtype[-2:])
        at += width
    side = cols["side"]
    if side.min() < -1 or side.max() > 1:
        raise SchemaError("side must be 1 (buy), -1 (sell) or 0 (unknown)")
    if not (np.isfinite(cols["price"]).all() and np.isfinite(cols["size"]).all()):
        raise SchemaError("price and size must be finite numbers")
    return DecodedTrades(
        source=head.source, instrument=Instrument(head.exchange, head.symbol, head.raw_symbol),
        trade_id=head.trade_id, max_ts=int(cols["ts"].max()), **cols,
    )  # fmt: skip


def _column(values: list, dtype: type) -> np.ndarray:
    if all(type(v) is list for v in values):
        return np.array(list(chain.from_iterable(values)), dtype)
    return np.concatenate([np.asarray(v, dtype) for v in values])


def to_batch(parts: list[DecodedTrades]) -> TradeBatch:
    """One TradeBatch from decoded messages of one source (instruments shared)."""
    index: dict[Instrument, int] = {}
    codes = [index.setdefault(p.instrument, len(index)) for p in parts]
    lengths = [len(p.seq) for p in parts]
    trade_id = None
    if any(p.trade_id is not None for p in parts):
        ids = [
            p.trade_id if p.trade_id is not None else [str(s) for s in np.asarray(p.seq).tolist()]
            for p in parts
        ]
        trade_id = np.array(list(chain.from_iterable(ids)), object)
    return TradeBatch(
        source=parts[0].source,
        instruments=list(index),
        instrument=np.repeat(np.array(codes, np.int32), lengths),
        seq=_column([p.seq for p in parts], np.int64),
        price=_column([p.price for p in parts], np.float64),
        size=_column([p.size for p in parts], np.float64),
        side=_column([p.side for p in parts], np.int8),
        ts=_column([p.ts for p in parts], np.int64),
        recv_ts=_column([p.recv_ts for p in parts], np.int64),
        trade_id=trade_id,
    )


def encode_candle(candle: Candle) -> bytes:
    """A candle message: the candle's fields as JSON plus `v` (docs/schema/candle.v1.json)."""
    return _json_encoder.encode({"v": VERSION, **msgspec.structs.asdict(candle)})


def decode_candle(value: bytes) -> Candle:
    try:
        raw = msgspec.json.decode(value)
        if not isinstance(raw, dict) or raw.pop("v", None) != VERSION:
            raise SchemaError("not a version-1 candle message")
        return msgspec.convert(raw, Candle)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"not a candle message: {exc}") from None
