"""The message encoder and decoders a config asks for (`kafka.encoding`, `kafka.schema_registry`).

JSON and binary need nothing but the message (transport/schema.py); Avro needs the schema
registry, so its codec is made once per process from the config and registers its schemas at
start-up (a refusal stops the command with one line). Readers tell the encodings apart by the
first bytes, so a processor reads a topic of mixed encodings; with a registry configured it
also reads Avro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tickpipe.records import Candle, TradeBatch
from tickpipe.transport.schema import (
    DecodedTrades,
    decode_candle,
    decode_trades,
    encode_candle,
    encode_trades,
    is_avro,
)

if TYPE_CHECKING:
    from tickpipe.transport.avro import AvroCodec
    from tickpipe.transport.settings import KafkaConfig


def avro_codec(kafka: KafkaConfig) -> AvroCodec:
    from tickpipe.transport.avro import AvroCodec

    return AvroCodec(kafka.schema_registry, kafka.trades_topic, kafka.candles_topic)


def trade_encoder(kafka: KafkaConfig) -> Callable[[TradeBatch], bytes]:
    """`kafka.encoding`'s encoder of one instrument's batch; Avro's schema is registered now."""
    if kafka.encoding == "avro":
        codec = avro_codec(kafka)
        codec.register_trades()
        return codec.encode_trades
    encoding = kafka.encoding
    return lambda batch: encode_trades(batch, encoding)


def candle_encoder(kafka: KafkaConfig) -> Callable[[Candle], bytes]:
    """Candle messages in Avro when trades are, else JSON (the candles topic's default)."""
    if kafka.encoding == "avro" and kafka.candles_topic:
        codec = avro_codec(kafka)
        codec.register_candles()
        return codec.encode_candle
    return encode_candle


def trade_decoder(kafka: KafkaConfig) -> Callable[[bytes], DecodedTrades]:
    """Any encoding's trade messages; Avro ones only with `kafka.schema_registry` set."""
    if not kafka.schema_registry:
        return decode_trades
    codec = avro_codec(kafka)

    def decode(value: bytes) -> DecodedTrades:
        return codec.decode_trades(value) if is_avro(value) else decode_trades(value)

    return decode


def candle_decoder(kafka: KafkaConfig) -> Callable[[bytes], Candle]:
    """JSON candle messages; Avro ones too with `kafka.schema_registry` set."""
    if not kafka.schema_registry:
        return decode_candle
    codec = avro_codec(kafka)

    def decode(value: bytes) -> Candle:
        return codec.decode_candle(value) if is_avro(value) else decode_candle(value)

    return decode
