"""Apache Kafka as the transport between `tickpipe ingest` and `tickpipe process`.

confluent-kafka (librdkafka) does the protocol work; this module only chooses the settings the
design relies on (idempotent producer with acks=all, manual offset commits) and turns trade
batches into messages and back (transport/schema.py).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tickpipe.records import Candle, TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.transport.codecs import trade_encoder
from tickpipe.transport.schema import (
    candle_key,
    encode_candle,
    encode_heartbeat,
    split_by_instrument,
    trade_key,
)

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Producer

    from tickpipe.transport.settings import KafkaConfig

# Settings exactly-once depends on: a pass-through property may not change them.
PRODUCER_FIXED = {"enable.idempotence": True, "acks": "all"}
CONSUMER_FIXED = {"enable.auto.commit": False, "enable.auto.offset.store": False}
PRODUCER_DEFAULTS = {
    # 0: no delivery timeout. While brokers are down a message waits (the queue bound below
    # then holds the sources back) rather than being dropped after 5 minutes.
    "message.timeout.ms": 0,
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
    # Cooperative: a rebalance revokes and assigns only the partitions that change owner, so
    # the others go on without a replay (runners/kafka_processor.py).
    "partition.assignment.strategy": "cooperative-sticky",
}
_SECRET_WORDS = ("password", "secret", "key", "token", "credential")


def is_secret(name: str) -> bool:
    """Properties whose values must never be printed (SASL passwords, SSL keys)."""
    return any(word in name.lower() for word in _SECRET_WORDS)


def _refused(properties: dict[str, Any]) -> str | None:
    """librdkafka's reason for refusing `properties` in a client that is never started."""
    from confluent_kafka import KafkaException, Producer

    try:
        Producer({"log_level": 0, **properties})  # log_level 0: no warnings printed
    except KafkaException as exc:
        return f"librdkafka refuses it: {exc.args[0].str() if exc.args else exc}"
    except (TypeError, ValueError) as exc:
        return f"librdkafka refuses it: {exc}"
    return None


def _names(text: str, name: str) -> bool:
    """Whether librdkafka's `text` names property `name` (not one it is the start of)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", text) is not None


def check_properties(properties: dict[str, str]) -> tuple[str, str] | None:
    """(name, why) of the first property librdkafka refuses, or None when all are fine.

    They are tried together (security.protocol = SASL_SSL alone is refused: its default
    mechanism, GSSAPI, is not built in); when refused, the property librdkafka's reason names,
    else the first refused on its own, else the one without which the others pass.
    """
    if not properties:
        return None  # spares every command importing librdkafka
    for name in properties:
        if name in PRODUCER_FIXED or name in CONSUMER_FIXED or name == "group.id":
            return name, "set by tickpipe (exactly-once depends on it); remove it"
        if name == "bootstrap.servers":
            return name, "use kafka.bootstrap (or --kafka HOST:PORT)"
    together = _refused(properties)
    if together is None:
        return None
    from tickpipe.credentials import KAFKA_SECRET_PROPERTIES, kafka_env, where_secret_goes

    for secret in KAFKA_SECRET_PROPERTIES:  # "sasl.username and sasl.password must be set"
        if _names(together, secret) and secret not in properties:
            return secret, f"{together}; {where_secret_goes(kafka_env(secret))}"
    named = [name for name in properties if _names(together, name)]
    if named:
        return max(named, key=len), together
    for name, value in properties.items():
        alone = _refused({name: value})
        if alone is not None:
            return name, alone
    for name in properties:
        if _refused({k: v for k, v in properties.items() if k != name}) is None:
            return name, together
    return next(iter(properties)), together


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


class _Heard:
    """What librdkafka reported while connecting (its `error_cb` and `logger`), kept to say
    why a connection failed: its exceptions only say "transport failure"."""

    def __init__(self) -> None:
        self.errors: list[KafkaError] = []
        self.lines: list[str] = []

    def error(self, err: KafkaError) -> None:
        self.errors.append(err)

    def log(self, _level: int, fmt: str, *args: object) -> None:
        self.lines.append(fmt % args)


def _after_colon(text: str, marker: str) -> str:
    """The reason librdkafka gives after `marker`, without its "(after N ms in state X)"."""
    reason = text.split(marker, 1)[-1]
    return reason.split(" (after ", 1)[0].strip()


_AUTH_ERRORS = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED")


def _refusal(kafka: KafkaConfig, heard: _Heard) -> str | None:
    """Why the broker refused the connection, in a line naming the setting to check, when
    librdkafka's errors and logs show it: failed authentication, an untrusted certificate, or
    a security.protocol the listener does not speak. None when nothing says (unreachable)."""
    from tickpipe.credentials import kafka_env

    protocol = str(kafka.properties.get("security.protocol", "plaintext")).upper()
    mechanism = kafka.properties.get("sasl.mechanism", "GSSAPI")
    for err in heard.errors:
        text, code = err.str(), err.name()  # librdkafka's error names (KafkaError attributes)
        if code in _AUTH_ERRORS and "Unsupported SASL mechanism" in text:
            offered = _after_colon(text, "supported mechanisms:")
            return (f"the broker does not offer sasl.mechanism = {mechanism} (it offers "
                    f"{offered})")  # fmt: skip
        if code in _AUTH_ERRORS:
            user = kafka.properties.get("sasl.username", "")
            return (
                f"authentication failed for SASL user {user!r} ({mechanism}): check "
                f"sasl.username and the password ({kafka_env('sasl.password')}(_FILE))"
            )
        if code == "_SSL" and "certificate verify failed" in text:
            ca = kafka.properties.get("ssl.ca.location", "the system's authorities")
            return (
                f"the broker's TLS certificate is not trusted (certificate verify failed): "
                f"check ssl.ca.location = {ca} (the CA that signed it) and that it names "
                f"the host in the bootstrap address"
            )
        if code == "_SSL":
            reason = _after_colon(text, "SSL handshake failed:")
            return f"TLS handshake failed ({reason}): does the listener speak TLS?"
    closed = [line for line in heard.lines if "connection closed by peer" in line]
    if closed and "SSL" not in protocol:
        return (
            f"the broker closed the connection at the first request: security.protocol = "
            f"{protocol} does not match its listener (one that wants TLS, e.g. SASL_SSL?)"
        )
    if closed and "SASL" not in protocol:
        return (
            f"the broker closed the connection after the TLS handshake: security.protocol = "
            f"{protocol} does not match its listener (one that wants SASL, e.g. SASL_SSL?)"
        )
    return None


def require_broker(kafka: KafkaConfig, timeout_s: float = 10.0) -> None:
    """Raise a `Fault` naming the broker, and the cause when librdkafka tells it (see
    `_refusal`), when none answers within `timeout_s`.

    Unchecked, librdkafka retries for ever: `process` would wait for partitions and `ingest`
    for deliveries, then end as if they had run.
    """
    from confluent_kafka import KafkaException

    from tickpipe.faults import Fault

    heard = _Heard()
    # The logger keeps librdkafka's retry noise off stderr; its lines may name the cause.
    admin = _admin(kafka, error_cb=heard.error, logger=heard)
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=min(1.0, max(0.1, deadline_s - time.monotonic())))
            return
        except KafkaException as exc:
            admin.poll(0)  # serves the error and log callbacks
            why = _refusal(kafka, heard)
            if why is not None:
                raise Fault(f"kafka {kafka.bootstrap}: {why}") from None
            if time.monotonic() >= deadline_s:
                reason = exc.args[0].str() if exc.args else str(exc)
                raise Fault(
                    f"kafka {kafka.bootstrap} unreachable: {reason} (is the broker running? "
                    f"give its address with --kafka HOST:PORT)"
                ) from exc


@dataclass(frozen=True)
class Replication:
    """Copies of each partition of a topic, and how many must hold a message before the
    producer's acks=all is answered (fewer in sync: the broker refuses to take messages)."""

    factor: int
    min_insync: int


def replication_for(kafka: KafkaConfig, brokers: int) -> Replication:
    """The configured replication, else the default for a cluster of `brokers`: 3 copies, 2
    in sync from three brokers up (one broker may be lost without stopping producing or
    losing a message); 1 and 1 for a single broker."""
    factor = kafka.replication_factor or max(1, min(3, brokers))
    return Replication(factor, kafka.min_insync_replicas or max(1, factor - 1))


def under_replicated(name: str, topic: Any, factor: int) -> str | None:
    """A one-line warning when partitions of `topic` (its metadata) have fewer than `factor`
    replicas in sync: a broker is down, or the topic was created with fewer copies."""
    partitions = list(topic.partitions.values())
    short = [p for p in partitions if len(p.isrs) < factor]
    if not short:
        return None
    fewest = min(len(p.isrs) for p in short)
    return (
        f"warning: topic {name} is under-replicated: {len(short)} of {len(partitions)} "
        f"partitions have {fewest} replica(s) in sync, {factor} wanted (a broker down, or the "
        f"topic created with fewer copies; see kafka.replication_factor)"
    )


def ensure_topic(
    kafka: KafkaConfig, name: str, config: dict[str, str], partitions: int | None = None,
    timeout: float = 10.0,
) -> str | None:  # fmt: skip
    """Create topic `name` with `config` when it does not exist yet, with `partitions` (else
    as many as the trades topic) and the cluster's `replication_for`. Returns a warning line
    when that cannot be done (a broker that creates topics on first use then makes it with its
    defaults) or when the topic is under-replicated."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(kafka)
    try:
        metadata = admin.list_topics(timeout=timeout)
        replication = replication_for(kafka, len(metadata.brokers))
        topics = metadata.topics
        if name in topics:
            return under_replicated(name, topics[name], replication.factor)
        if partitions is None:
            trades = topics.get(kafka.trades_topic)
            partitions = len(trades.partitions) if trades is not None and trades.partitions else 1
        settings = {**config, "min.insync.replicas": str(replication.min_insync)}
        new = NewTopic(name, partitions, replication.factor, config=settings)
        admin.create_topics([new])[name].result(timeout)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return None  # another replica was first
        return f"warning: cannot create topic {name}: {exc}"
    return None


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def stall_cause(kafka: KafkaConfig, timeout: float = 5.0) -> str:
    """Why the trades topic takes no messages, in one line, from the cluster's metadata and
    which brokers accept a connection: not enough in-sync replicas, partitions without a
    leader, or no broker at all. librdkafka retries such produce errors without a word."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource

    topic = kafka.trades_topic
    admin = _admin(kafka, log_level=0)
    try:
        metadata = admin.list_topics(topic, timeout=timeout)
        partitions = list(metadata.topics[topic].partitions.values())
    except (KafkaException, KeyError):
        return f"no Kafka broker answers ({kafka.bootstrap})"
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout)
        min_insync = int(entries["min.insync.replicas"].value)
    except (KafkaException, TimeoutError, KeyError, ValueError):
        # A cluster without its controller quorum may not answer: tickpipe's own rule for a
        # topic of that many copies.
        copies = max((len(p.replicas) for p in partitions), default=1)
        min_insync = replication_for(kafka, copies).min_insync
    brokers = metadata.brokers.values()
    up = {b.id for b in brokers if _reachable(b.host, b.port)}
    reachable = f"{len(up)} of {len(brokers)} brokers reachable"
    short = [p for p in partitions if len(set(p.isrs) & up) < min_insync]
    if short:
        return (
            f"not enough in-sync replicas: {len(short)} of {len(partitions)} partitions of "
            f"{topic} have fewer than min.insync.replicas={min_insync} in-sync replicas on a "
            f"reachable broker ({reachable}); waiting for brokers to return"
        )
    leaderless = [p for p in partitions if p.leader not in up]
    if leaderless:
        return f"{len(leaderless)} partitions of {topic} have no reachable leader ({reachable})"
    return f"the brokers do not acknowledge ({reachable})"


class TradePublisher:
    """What `tickpipe ingest` emits through: trade batches to the trades topic.

    `emit` is a source's `ctx.emit`: it splits a batch per instrument into messages of at most
    `message_trades` trades, keyed exchange:symbol. A full librdkafka queue makes it wait
    (backpressure, as with the in-process queue); a failed delivery is kept and raised.
    `stalled_s` says how long messages have waited with none delivered (brokers down).
    """

    def __init__(
        self, kafka: KafkaConfig, producer: Producer | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        from confluent_kafka import Producer

        self.kafka = kafka
        self.topic = kafka.trades_topic
        self.encoding = kafka.encoding
        self.encode = trade_encoder(kafka)  # registers the Avro schema (or stops) now
        self.message_trades = kafka.message_trades
        self.producer = producer or Producer(producer_settings(kafka))
        self.sent_trades = 0
        self.sent_messages = 0
        self.delivered = 0
        self.waits = 0
        self.error: str | None = None
        self.clock = clock
        self._progress_s = clock.monotonic_s()  # the last delivery, or when the wait began
        self.max_ts: int | None = None  # the newest event time published (heartbeats)
        self.max_ts_at_s = 0.0  # when it was (monotonic)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        self._progress_s = self.clock.monotonic_s()
        if err is not None:
            self.error = str(err)
        else:
            self.delivered += 1

    def stalled_s(self) -> float:
        """Seconds since the last delivery while messages wait for one; 0 when none waits."""
        if len(self.producer) == 0:
            self._progress_s = self.clock.monotonic_s()
            return 0.0
        return self.clock.monotonic_s() - self._progress_s

    def publish(self, batch: TradeBatch) -> None:
        """Queue the batch's messages; raises BufferError when librdkafka's queue is full."""
        if len(batch):
            newest = int(batch.ts.max())
            if self.max_ts is None or newest > self.max_ts:
                self.max_ts, self.max_ts_at_s = newest, self.clock.monotonic_s()
        for part in split_by_instrument(batch, self.message_trades):
            value = self.encode(part)
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


class Heartbeats:
    """Watermark heartbeats (transport/schema.py): every `every_s`, one message to each
    partition of the trades topic holding the publisher's event-time clock: the newest event
    time published, moved on by the wall time since once no trade has come for `idle_s` (the
    engine's idle-timer rule). None before the first trade."""

    def __init__(self, publisher: TradePublisher, every_s: float, idle_s: float) -> None:
        self.publisher = publisher
        self.every_s = every_s
        self.idle_s = idle_s
        self.sent = 0
        self._next_s = publisher.clock.monotonic_s()
        self._partitions: list[int] = []

    def event_ts(self) -> int | None:
        p = self.publisher
        if p.max_ts is None:
            return None
        quiet_s = p.clock.monotonic_s() - p.max_ts_at_s
        return p.max_ts + (round(quiet_s * 1e6) if quiet_s >= self.idle_s else 0)

    def step(self) -> bool:
        """Send the heartbeats when due; whether they were sent."""
        p = self.publisher
        now_s = p.clock.monotonic_s()
        event_ts = self.event_ts()
        if now_s < self._next_s or event_ts is None:
            return False
        self._next_s = now_s + self.every_s
        if not self._partitions:
            topic = p.producer.list_topics(p.topic, timeout=5).topics.get(p.topic)
            self._partitions = sorted(topic.partitions) if topic is not None else []
        value = encode_heartbeat(event_ts, "ingest")
        try:
            for partition in self._partitions:
                p.producer.produce(p.topic, value, b"", partition=partition)
        except BufferError:
            return False  # the queue is full of trades: they move the clock on anyway
        self.sent += 1
        return True


class CandlePublisher:
    """Candle updates to the compacted candles topic, keyed exchange:symbol:interval:start."""

    def __init__(
        self, topic: str, producer: Producer, encode: Callable[[Candle], bytes] = encode_candle
    ) -> None:
        self.topic = topic
        self.producer = producer
        self.encode = encode
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
                        self.topic, self.encode(candle), candle_key(candle),
                        on_delivery=self._on_delivery,
                    )  # fmt: skip
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.sent += len(candles)
        self.producer.poll(0)
