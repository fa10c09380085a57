"""`[kafka]`: the distributed mode's broker, topics and client settings, and their checks."""

from __future__ import annotations

import msgspec

from tickpipe.settings import Fail


class KafkaConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[kafka]`: the distributed mode (`ingest`, `process`, `serve --kafka`)."""

    bootstrap: str = "127.0.0.1:9092"  # HOST:PORT[,HOST:PORT...]
    trades_topic: str = "tickpipe.trades"
    candles_topic: str = "tickpipe.candles"  # compacted; "" = publish no candles
    dead_letter_topic: str = "tickpipe.dead-letters"  # malformed trade messages; "" = none
    # of trade messages: json (any Kafka tool reads it), binary, or avro (the Confluent wire
    # format, schemas in the registry below; candles then go in Avro too)
    encoding: str = "json"
    schema_registry: str = ""  # http(s)://HOST:PORT of the schema registry (avro), "" = none
    group: str = "tickpipe-process"  # the processors' consumer group
    message_trades: int = 1000  # at most this many trades (of one symbol) per message
    # `ingest` sends a watermark heartbeat to every partition this often (0: none); see
    # transport/schema.py. The Spark job needs them to close the windows of quiet symbols.
    heartbeat_ms: int = 1000
    # Topics tickpipe creates when missing: the trades topic's partitions (the most processors
    # that can share the work); copies of each partition (0: from the cluster's size, 3 from
    # three brokers up, else one per broker); how many copies must hold a message before it
    # counts as produced (0: one less than the copies, at least 1).
    partitions: int = 6
    replication_factor: int = 0
    min_insync_replicas: int = 0
    # librdkafka settings passed through as they are (SASL/SSL, timeouts...), e.g.
    # "security.protocol" = "SASL_SSL"; a secret one (sasl.password) is refused here: it comes
    # from TICKPIPE_KAFKA_SASL_PASSWORD or its _FILE twin (`tickpipe.credentials`)
    properties: dict[str, str] = msgspec.field(default_factory=dict)


def check_kafka(kafka: KafkaConfig, fail: Fail) -> None:
    """Addresses, topics, encoding, batch size, and the librdkafka properties (never shown
    when secret). `fail(key, value, why)` raises the one-line config error."""
    # Imported here: the message schema needs numpy, and reading a config does not.
    from tickpipe.transport.kafka import check_properties, is_secret
    from tickpipe.transport.schema import ENCODINGS, WITH_REGISTRY

    for i, address in enumerate(kafka.bootstrap.split(",")):
        host, sep, port = address.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            fail("kafka.bootstrap", kafka.bootstrap, f"address {i + 1} is not HOST:PORT")
    if not kafka.trades_topic.strip():
        fail("kafka.trades_topic", kafka.trades_topic, "give a topic name")
    if kafka.encoding not in ENCODINGS + WITH_REGISTRY:
        fail("kafka.encoding", kafka.encoding, f"one of {', '.join(ENCODINGS + WITH_REGISTRY)}")
    registry = kafka.schema_registry
    if registry and not registry.startswith(("http://", "https://")):
        fail("kafka.schema_registry", registry, "an http:// or https:// URL")
    if kafka.encoding == "avro" and not registry:
        fail("kafka.encoding", kafka.encoding, "avro needs kafka.schema_registry (its URL)")
    if not kafka.group.strip():
        fail("kafka.group", kafka.group, "give a consumer group name")
    if not 1 <= kafka.message_trades <= 100_000:
        fail("kafka.message_trades", kafka.message_trades, "must be between 1 and 100000")
    if not 0 <= kafka.heartbeat_ms <= 3_600_000:
        fail("kafka.heartbeat_ms", kafka.heartbeat_ms, "0 (none) or up to 3600000")
    if not 1 <= kafka.partitions <= 10_000:
        fail("kafka.partitions", kafka.partitions, "must be between 1 and 10000")
    if kafka.replication_factor < 0:
        fail("kafka.replication_factor", kafka.replication_factor, "0 (from the cluster) or more")
    if kafka.min_insync_replicas < 0:
        fail("kafka.min_insync_replicas", kafka.min_insync_replicas, "0 (automatic) or more")
    if kafka.replication_factor and kafka.min_insync_replicas > kafka.replication_factor:
        fail(
            "kafka.min_insync_replicas", kafka.min_insync_replicas,
            f"at most kafka.replication_factor ({kafka.replication_factor})",
        )  # fmt: skip
    problem = check_properties(kafka.properties)
    if problem is not None:
        name, why = problem
        value = "***" if is_secret(name) else kafka.properties.get(name)
        fail(f"kafka.properties.{name}", value, why)
