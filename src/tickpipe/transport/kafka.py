"""Apache Kafka as the transport between `tickpipe ingest` and `tickpipe process`.

confluent-kafka (librdkafka) does the protocol work; this module only chooses the settings the
design relies on (idempotent producer with acks=all, manual offset commits) and turns trade
batches into messages and back (transport/schema.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tickpipe.records import Candle, TradeBatch
from tickpipe.transport.schema import (
    candle_key,
    encode_candle,
    encode_trades,
    split_by_instrument,
    trade_key,
)

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from tickpipe.transport.settings import KafkaConfig

# Settings exactly-once depends on: a pass-through property may not change them.
PRODUCER_FIXED = {"enable.idempotence": True, "acks": "all"}
CONSUMER_FIXED = {"enable.auto.commit": False, "enable.auto.offset.store": False}
PRODUCER_DEFAULTS = {
    "compression.type": "lz4",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.kbytes": 262_144,
    "message.max.bytes": 4_000_000,
}
CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1_000,
    "fetch.max.bytes": 16_000_000,
    "partition.assignment.strategy": "range",  # eager: a rebalance revokes, then assigns
}
_SECRET_WORDS = ("password", "secret", "key", "token", "credential")


def is_secret(name: str) -> bool:
    """Properties whose values must never be printed (SASL passwords, SSL keys)."""
    return any(word in name.lower() for word in _SECRET_WORDS)


def check_properties(properties: dict[str, str]) -> tuple[str, str] | None:
    """(name, why) of the first property librdkafka refuses, or None when all are fine.

    Each is tried on its own in a client that is never started, so the error names it.
    """
    if not properties:
        return None  # spares every command importing librdkafka
    from confluent_kafka import KafkaException, Producer

    for name, value in properties.items():
        if name in PRODUCER_FIXED or name in CONSUMER_FIXED or name == "group.id":
            return name, "set by tickpipe (exactly-once depends on it); remove it"
        if name == "bootstrap.servers":
            return name, "use kafka.bootstrap (or --kafka HOST:PORT)"
        try:
            Producer({"log_level": 0, name: value})  # log_level 0: no warnings printed
        except KafkaException as exc:
            text = str(exc.args[0].str() if exc.args else exc)
            return name, f"librdkafka refuses it: {text}"
        except (TypeError, ValueError) as exc:
            return name, f"librdkafka refuses it: {exc}"
    return None


def producer_settings(kafka: KafkaConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap,
        **PRODUCER_DEFAULTS,
        **kafka.properties,
        **PRODUCER_FIXED,
    }


def consumer_settings(kafka: KafkaConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap,
        "group.id": kafka.group,
        **CONSUMER_DEFAULTS,
        **kafka.properties,
        **CONSUMER_FIXED,
    }


def _admin(kafka: KafkaConfig, **extra: Any) -> Any:
    """An admin client with the connection settings (security included) of the producer."""
    from confluent_kafka.admin import AdminClient

    settings = {k: v for k, v in producer_settings(kafka).items() if k not in PRODUCER_DEFAULTS}
    for key in PRODUCER_FIXED:
        settings.pop(key, None)
    return AdminClient({**settings, **extra})


def require_broker(kafka: KafkaConfig, timeout_s: float = 10.0) -> None:
    """Raise a `Fault` naming the broker when none answers within `timeout_s`.

    Unchecked, librdkafka retries for ever: `process` would wait for partitions and `ingest`
    for deliveries, then end as if they had run.
    """
    from confluent_kafka import KafkaException

    from tickpipe.faults import Fault

    try:
        _admin(kafka, log_level=0).list_topics(timeout=timeout_s)  # 0: no retry noise
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args else str(exc)
        raise Fault(
            f"kafka {kafka.bootstrap} unreachable: {reason} (is the broker running? "
            f"give its address with --kafka HOST:PORT)"
        ) from exc


def ensure_topic(
    kafka: KafkaConfig, name: str, config: dict[str, str], timeout: float = 10.0
) -> str | None:
    """Create topic `name` with `config` when it does not exist yet (as many partitions as the
    trades topic). Returns a warning line when that cannot be done (a broker that creates
    topics on first use then makes it with its defaults)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(kafka)
    try:
        topics = admin.list_topics(timeout=timeout).topics
        if name in topics:
            return None
        trades = topics.get(kafka.trades_topic)
        partitions = len(trades.partitions) if trades is not None and trades.partitions else 1
        admin.create_topics([NewTopic(name, partitions, config=config)])[name].result(timeout)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return None  # another replica was first
        return f"warning: cannot create topic {name}: {exc}"
    return None


class TradePublisher:
    """What `tickpipe ingest` emits through: trade batches to the trades topic.

    `emit` is a source's `ctx.emit`: it splits a batch per instrument into messages of at most
    `message_trades` trades, keyed exchange:symbol. A full librdkafka queue makes it wait
    (backpressure, as with the in-process queue); a failed delivery is kept and raised.
    """

    def __init__(self, kafka: KafkaConfig, producer: Producer | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = kafka.trades_topic
        self.encoding = kafka.encoding
        self.message_trades = kafka.message_trades
        self.producer = producer or Producer(producer_settings(kafka))
        self.sent_trades = 0
        self.sent_messages = 0
        self.delivered = 0
        self.waits = 0
        self.error: str | None = None

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.error = str(err)
        else:
            self.delivered += 1

    def publish(self, batch: TradeBatch) -> None:
        """Queue the batch's messages; raises BufferError when librdkafka's queue is full."""
        for part in split_by_instrument(batch, self.message_trades):
            value = encode_trades(part, self.encoding)
            self.producer.produce(
                self.topic, value, trade_key(part.instruments[0]), on_delivery=self._on_delivery
            )
            self.sent_messages += 1
            self.sent_trades += len(part)
        self.producer.poll(0)

    async def emit(self, batch: TradeBatch) -> None:
        if self.error is not None:
            raise RuntimeError(f"kafka delivery failed: {self.error}")
        for part in split_by_instrument(batch, self.message_trades):
            while True:
                try:
                    self.publish(part)
                    break
                except BufferError:
                    self.waits += 1
                    self.producer.poll(0)
                    await asyncio.sleep(0.01)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every queued message's delivery; returns how many are still undelivered."""
        return self.producer.flush(timeout)


class CandlePublisher:
    """Candle updates to the compacted candles topic, keyed exchange:symbol:interval:start."""

    def __init__(self, topic: str, producer: Producer) -> None:
        self.topic = topic
        self.producer = producer
        self.error: str | None = None
        self.sent = 0

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.error = str(err)

    def publish(self, candles: list[Candle]) -> None:
        produce = self.producer.produce
        for candle in candles:
            while True:
                try:
                    produce(
                        self.topic, encode_candle(candle), candle_key(candle),
                        on_delivery=self._on_delivery,
                    )  # fmt: skip
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.sent += len(candles)
        self.producer.poll(0)
