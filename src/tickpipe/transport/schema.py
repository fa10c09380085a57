"""The Kafka message schema of trades and candles, version 1 (docs/schema/*.v1.json).

One trade message carries a small batch of trades of ONE instrument (key `exchange:symbol`),
as columns: per-message costs (headers, keys, Python calls) are paid per batch, not per trade,
and the processor decodes a message straight into TradeBatch columns.

Two encodings, told apart by the first byte:
- JSON (default; `{`...): readable by any Kafka tool (kcat, kafka-console-consumer);
- binary (`\\x00TPB` + version): a msgpack header and the columns as little-endian arrays,
  for when the bytes on the wire and the decode cost matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

from tickpipe.records import Candle, Instrument, TradeBatch

VERSION = 1
ENCODINGS = ("json", "binary")
BINARY_MAGIC = b"\x00TPB"
SIDE_CODES = (-1, 0, 1)  # sell, unknown, buy


class SchemaError(ValueError):
    """A message that is not a valid trade message of a known version (dead-lettered)."""


class TradeMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """JSON form: one instrument's trades as parallel columns."""

    v: int
    source: str
    exchange: str
    symbol: str
    raw_symbol: str = ""
    seq: list[int]
    price: list[float]
    size: list[float]
    side: list[int]  # 1 buy, -1 sell, 0 unknown (the taker's side)
    ts: list[int]  # exchange event time, µs since the epoch (UTC)
    recv_ts: list[int]  # local receipt, µs
    trade_id: list[str] | None = None  # None: every id is the decimal form of `seq`


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
    raise ValueError(f"unknown encoding {encoding!r} (known: {', '.join(ENCODINGS)})")


@dataclass(slots=True)
class DecodedTrades:
    """One decoded message: its trades (one instrument) and where they came from."""

    source: str
    instrument: Instrument
    seq: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray
    ts: np.ndarray
    recv_ts: np.ndarray
    trade_id: np.ndarray | None


def decode_trades(value: bytes) -> DecodedTrades:
    """A trade message of either encoding; SchemaError says what is wrong with it."""
    if not value:
        raise SchemaError("empty message")
    if value[:1] == b"{":
        return _decode_json(value)
    if value.startswith(BINARY_MAGIC):
        return _decode_binary(value)
    raise SchemaError("neither a JSON nor a binary trade message")


def _decode_json(value: bytes) -> DecodedTrades:
    try:
        msg = _json_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"not a trade message: {exc}") from None
    if msg.v != VERSION:
        raise SchemaError(f"unsupported version {msg.v} (this tickpipe reads {VERSION})")
    n = len(msg.seq)
    lengths = {len(msg.price), len(msg.size), len(msg.side), len(msg.ts), len(msg.recv_ts)}
    if msg.trade_id is not None:
        lengths.add(len(msg.trade_id))
    if lengths != {n} or n == 0:
        raise SchemaError("columns are empty or of different lengths")
    side = np.array(msg.side, np.int64)
    if not np.isin(side, SIDE_CODES).all():
        raise SchemaError("side must be 1 (buy), -1 (sell) or 0 (unknown)")
    return _checked(
        DecodedTrades(
            source=msg.source,
            instrument=Instrument(msg.exchange, msg.symbol, msg.raw_symbol),
            seq=np.array(msg.seq, np.int64),
            price=np.array(msg.price, np.float64),
            size=np.array(msg.size, np.float64),
            side=side.astype(np.int8),
            ts=np.array(msg.ts, np.int64),
            recv_ts=np.array(msg.recv_ts, np.int64),
            trade_id=None if msg.trade_id is None else np.array(msg.trade_id, object),
        )
    )


def _decode_binary(value: bytes) -> DecodedTrades:
    if len(value) < 9 or value[4] != VERSION:
        raise SchemaError(f"unsupported binary version (this tickpipe reads {VERSION})")
    size = int.from_bytes(value[5:9], "little")
    try:
        head = _header_decoder.decode(value[9 : 9 + size])
    except msgspec.DecodeError as exc:
        raise SchemaError(f"bad binary header: {exc}") from None
    body = memoryview(value)[9 + size :]
    if head.n < 1 or len(body) != head.n * _ROW_BYTES:
        raise SchemaError("binary columns do not match the trade count")
    if head.trade_id is not None and len(head.trade_id) != head.n:
        raise SchemaError("trade ids do not match the trade count")
    cols = {}
    at = 0
    for name, dtype in _COLUMNS:
        width = np.dtype(dtype).itemsize * head.n
        cols[name] = np.frombuffer(body[at : at + width], dtype).astype(dtype[-2:])
        at += width
    if not np.isin(cols["side"], SIDE_CODES).all():
        raise SchemaError("side must be 1 (buy), -1 (sell) or 0 (unknown)")
    return _checked(
        DecodedTrades(
            source=head.source,
            instrument=Instrument(head.exchange, head.symbol, head.raw_symbol),
            trade_id=None if head.trade_id is None else np.array(head.trade_id, object),
            **cols,
        )
    )


def _checked(d: DecodedTrades) -> DecodedTrades:
    if not d.source or not d.instrument.exchange or not d.instrument.symbol:
        raise SchemaError("source, exchange and symbol must not be empty")
    if not (np.isfinite(d.price).all() and np.isfinite(d.size).all()):
        raise SchemaError("price and size must be finite numbers")
    return d


def to_batch(parts: list[DecodedTrades]) -> TradeBatch:
    """One TradeBatch from decoded messages of one source (instruments shared)."""
    index: dict[Instrument, int] = {}
    codes = [
        np.full(len(p.seq), index.setdefault(p.instrument, len(index)), np.int32) for p in parts
    ]
    any_ids = any(p.trade_id is not None for p in parts)
    return TradeBatch(
        source=parts[0].source,
        instruments=list(index),
        instrument=np.concatenate(codes),
        seq=np.concatenate([p.seq for p in parts]),
        price=np.concatenate([p.price for p in parts]),
        size=np.concatenate([p.size for p in parts]),
        side=np.concatenate([p.side for p in parts]),
        ts=np.concatenate([p.ts for p in parts]),
        recv_ts=np.concatenate([p.recv_ts for p in parts]),
        trade_id=(
            np.concatenate(
                [
                    p.seq.astype(str).astype(object) if p.trade_id is None else p.trade_id
                    for p in parts
                ]
            )
            if any_ids
            else None
        ),
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
