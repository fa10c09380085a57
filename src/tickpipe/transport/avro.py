"""Avro messages with their schemas in a schema registry (`--encoding avro`).

For the tools that read Kafka through a schema registry (Kafka Connect, ksqlDB, Flink, Spark):
each message is in the Confluent wire format (a zero magic byte, the schema's 4-byte id, the
Avro body), written and read by confluent-kafka's own `SchemaRegistryClient`, `AvroSerializer`
and `AvroDeserializer`. The schemas are registered under the topic's subject
(TopicNameStrategy: `<topic>-value`), so the registry checks each new version against the
subject's compatibility level; tickpipe registers at start-up, and a refusal stops the command
with one line (`RegistryRefused`) instead of failing on the first message.

A trade message keeps the columns of the JSON and binary forms (one instrument, parallel
arrays); times are plain longs of microseconds since the epoch (UTC), not logical timestamps,
so a reader gets the numbers the other encodings carry. Only the `avro` extra needs fastavro.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from tickpipe.faults import Fault
from tickpipe.records import Candle, TradeBatch
from tickpipe.transport.schema import VERSION, DecodedTrades, SchemaError, TradeMessage, checked

NAMESPACE = "io.tickpipe"
TRADE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "TradeMessage",
    "namespace": NAMESPACE,
    "doc": "Trades of one instrument as parallel columns (docs/schema/trade.v1.json).",
    "fields": [
        {"name": "source", "type": "string", "doc": "the feed the trades came through"},
        {"name": "exchange", "type": "string", "doc": "the venue"},
        {"name": "symbol", "type": "string", "doc": "normalized BASE-QUOTE"},
        {"name": "raw_symbol", "type": "string", "default": ""},
        {"name": "seq", "type": {"type": "array", "items": "long"}},
        {"name": "price", "type": {"type": "array", "items": "double"}},
        {"name": "size", "type": {"type": "array", "items": "double"}},
        {"name": "side", "type": {"type": "array", "items": "int"},
         "doc": "taker side: 1 buy, -1 sell, 0 unknown"},
        {"name": "ts", "type": {"type": "array", "items": "long"},
         "doc": "exchange event time, microseconds since the epoch (UTC)"},
        {"name": "recv_ts", "type": {"type": "array", "items": "long"},
         "doc": "local receipt, microseconds since the epoch (UTC)"},
        {"name": "trade_id", "type": ["null", {"type": "array", "items": "string"}],
         "default": None, "doc": "null: every id is the decimal form of seq"},
    ],
}  # fmt: skip
_CANDLE_TYPES = {str: "string", int: "long", float: "double", bool: "boolean"}
CANDLE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Candle",
    "namespace": NAMESPACE,
    "doc": "One candle update (docs/schema/candle.v1.json); start and updated_at in µs.",
    "fields": [
        {"name": f.name, "type": _CANDLE_TYPES[f.type]} for f in msgspec.structs.fields(Candle)
    ],
}


def subject_of(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


class RegistryRefused(Fault):
    """The registry refused a schema (incompatible, invalid) or could not be reached."""


def _registry_line(url: str, subject: str, exc: Exception) -> str:
    """One line for a registry error: what was refused, under which subject, and why."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        why = exc.error_message.strip().splitlines()[0] if exc.error_message else "refused"
        if exc.http_status_code == 409:
            return (
                f"schema registry {url}: the schema tickpipe writes is incompatible with the "
                f"one registered under {subject} ({why}); register a compatible version, or "
                f"relax the subject's compatibility level (PUT /config/{subject})"
            )
        return f"schema registry {url}: subject {subject}: {why} (code {exc.error_code})"
    return f"schema registry {url} unreachable: {exc} (is it running? see kafka.schema_registry)"


class AvroCodec:
    """Avro trade and candle messages for one registry and the topics of one config."""

    def __init__(self, url: str, trades_topic: str, candles_topic: str = "") -> None:
        try:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
            from confluent_kafka.serialization import MessageField, SerializationContext
        except ImportError as exc:  # fastavro and friends come with the `avro` extra
            raise Fault(
                f"--encoding avro needs the avro extra ({exc.name} is missing): "
                f"pip install 'tickpipe[avro]'"
            ) from None
        self.url = url
        self.client = SchemaRegistryClient({"url": url})
        self._schema = Schema
        self._trades_ctx = SerializationContext(trades_topic, MessageField.VALUE)
        self._candles_ctx = SerializationContext(candles_topic or trades_topic, MessageField.VALUE)
        conf = {"auto.register.schemas": True}
        self._write_trades = AvroSerializer(self.client, json.dumps(TRADE_SCHEMA), conf=conf)
        self._write_candle = AvroSerializer(self.client, json.dumps(CANDLE_SCHEMA), conf=conf)
        # The writer's schema comes from the registry by the message's id.
        self._read = AvroDeserializer(self.client)

    def register(self, topic: str, schema: dict[str, Any]) -> int:
        """Register `schema` under the topic's subject (idempotent); its id. A refusal
        (incompatible, invalid) or an unreachable registry raises `RegistryRefused`."""
        subject = subject_of(topic)
        try:
            return self.client.register_schema(subject, self._schema(json.dumps(schema), "AVRO"))
        except Exception as exc:  # SchemaRegistryError, or httpx's connection errors
            raise RegistryRefused(_registry_line(self.url, subject, exc)) from None

    def register_trades(self) -> int:
        return self.register(self._trades_ctx.topic, TRADE_SCHEMA)

    def register_candles(self) -> int:
        return self.register(self._candles_ctx.topic, CANDLE_SCHEMA)

    def encode_trades(self, batch: TradeBatch) -> bytes:
        """One message from a batch of one instrument (see `schema.split_by_instrument`)."""
        if len(batch.instruments) != 1:
            raise ValueError("a trade message carries exactly one instrument")
        inst = batch.instruments[0]
        record = {
            "source": batch.source, "exchange": inst.exchange, "symbol": inst.symbol,
            "raw_symbol": inst.raw_symbol, "seq": batch.seq.tolist(),
            "price": batch.price.tolist(), "size": batch.size.tolist(),
            "side": batch.side.tolist(), "ts": batch.ts.tolist(),
            "recv_ts": batch.recv_ts.tolist(),
            "trade_id": None if batch.trade_id is None else [str(i) for i in batch.trade_id],
        }  # fmt: skip
        value = self._write_trades(record, self._trades_ctx)
        assert value is not None
        return value

    def decode_trades(self, value: bytes) -> DecodedTrades:
        """An Avro trade message; SchemaError (dead-lettered) when it is not one."""
        record = self._decode(value, self._trades_ctx)
        try:
            message = msgspec.convert({"v": VERSION, **record}, TradeMessage)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"not a trade message: {exc}") from None
        return checked(message)

    def encode_candle(self, candle: Candle) -> bytes:
        value = self._write_candle(msgspec.structs.asdict(candle), self._candles_ctx)
        assert value is not None
        return value

    def decode_candle(self, value: bytes) -> Candle:
        record = self._decode(value, self._candles_ctx)
        try:
            return msgspec.convert(record, Candle)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"not a candle message: {exc}") from None

    def _decode(self, value: bytes, ctx: Any) -> dict[str, Any]:
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.serialization import SerializationError

        try:
            record = self._read(value, ctx)
        except SchemaRegistryError as exc:
            raise SchemaError(f"schema id not in the registry: {exc.error_message}") from None
        except (SerializationError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise SchemaError(f"not an Avro message: {exc}") from None
        except Exception as exc:  # the registry cannot be asked (httpx's connection errors):
            # stop with one line rather than dead-letter good messages; a restart replays them
            subject = subject_of(ctx.topic)
            raise RegistryRefused(_registry_line(self.url, subject, exc)) from None
        if not isinstance(record, dict):
            raise SchemaError("an Avro message that is not a record")
        return record
