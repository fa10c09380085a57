"""The Kafka transport against a real broker: keys, partitions, order, both encodings; and the
pass-through client settings, whose errors name the setting."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from servers.certs import make_tls

from tickpipe.config import ConfigError, load_config
from tickpipe.runtime.clock import ManualClock
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.transport.kafka import (
    Heartbeats,
    TradePublisher,
    check_properties,
    ensure_topic,
    replication_for,
)
from tickpipe.transport.schema import decode_trades, is_heartbeat, to_batch
from tickpipe.transport.settings import KafkaConfig


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([topic])
    out = []
    try:
        import time

        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(m for m in consumer.consume(500, 0.5) if m.error() is None)
    finally:
        consumer.close()
    return out


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_published_trades_come_back_keyed_one_partition_per_symbol_in_order(kafka, encoding):
    topic = kafka.create_topic(f"t-{uuid.uuid4().hex[:8]}", 3)
    batch = MarketSimulator(8, 5000.0, seed=5, exchange="sim", source="sim").trades(
        20_000, 1_700_000_000_000_000
    )
    publisher = TradePublisher(
        KafkaConfig(bootstrap=kafka.bootstrap, trades_topic=topic, encoding=encoding,
                    message_trades=300)
    )  # fmt: skip
    publisher.publish(batch)
    assert publisher.flush(30) == 0 and publisher.error is None
    messages = consume_all(kafka.bootstrap, topic, publisher.sent_messages)
    assert len(messages) == publisher.sent_messages
    partitions: dict[str, set[int]] = {}
    seqs: dict[str, list[int]] = {}
    for m in messages:
        decoded = decode_trades(m.value())
        key = f"{decoded.instrument.exchange}:{decoded.instrument.symbol}"
        assert m.key().decode() == key
        partitions.setdefault(key, set()).add(m.partition())
        seqs.setdefault(key, []).extend(np.asarray(decoded.seq).tolist())
    assert all(len(p) == 1 for p in partitions.values()), "a symbol must stay in one partition"
    assert len({p for ps in partitions.values() for p in ps}) > 1, "8 symbols, 3 partitions"
    for code, inst in enumerate(batch.instruments):
        # within its partition, a symbol's trades arrive in the order they were published
        assert (
            seqs[f"{inst.exchange}:{inst.symbol}"] == batch.seq[batch.instrument == code].tolist()
        )
    back = to_batch([decode_trades(m.value()) for m in messages])
    assert sorted(back.seq.tolist()) == sorted(batch.seq.tolist())


@pytest.mark.parametrize(
    ("line", "named", "why"),
    [('"no.such.thing" = "1"', "no.such.thing", "No such configuration property"),
     # SASL_SSL without sasl.mechanism asks for GSSAPI, which this librdkafka lacks
     ('"security.protocol" = "SASL_SSL"', "security.protocol", "GSSAPI")],
)  # fmt: skip
def test_a_refused_client_property_stops_start_up_naming_it(tmp_path, line, named, why):
    path = tmp_path / "t.toml"
    path.write_text(f'[kafka.properties]\n"linger.ms" = "5"\n{line}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert f"kafka.properties.{named}" in message and "\n" not in message
    assert why in message


def test_a_bad_client_property_value_stops_start_up_naming_it(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[kafka.properties]\n"compression.type" = "rar"\n')
    with pytest.raises(ConfigError, match=r"kafka\.properties\.compression\.type"):
        load_config(path, env={})


def sasl_ssl(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "tickpipe", "sasl.password": "pw",
            "ssl.ca.location": str(make_tls(tmp_path).ca), **more}  # fmt: skip


def test_a_sasl_ssl_scram_configuration_is_accepted(tmp_path):
    """The properties only make sense together: SASL_SSL alone asks for GSSAPI, which this
    librdkafka lacks, so each checked on its own would refuse a good configuration."""
    assert check_properties(sasl_ssl(tmp_path)) is None


def test_a_sasl_login_without_its_password_says_where_the_password_goes(tmp_path):
    properties = sasl_ssl(tmp_path)
    del properties["sasl.password"]
    path = tmp_path / "t.toml"
    path.write_text(
        "[kafka.properties]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in properties.items())
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "kafka.properties.sasl.password" in str(err.value)
    assert "TICKPIPE_KAFKA_SASL_PASSWORD_FILE" in str(err.value)
    assert load_config(path, env={"TICKPIPE_KAFKA_SASL_PASSWORD": "pw"}).kafka.properties == {
        **properties,
        "sasl.password": "pw",
    }


def test_a_missing_ca_file_is_named_not_the_protocol(tmp_path):
    problem = check_properties(sasl_ssl(tmp_path, **{"ssl.ca.location": "/no/ca.pem"}))
    assert problem is not None and problem[0] == "ssl.ca.location", problem


@pytest.mark.parametrize("name", ["enable.auto.commit", "acks", "enable.idempotence", "group.id"])
def test_properties_exactly_once_depends_on_cannot_be_overridden(tmp_path, name):
    path = tmp_path / "t.toml"
    path.write_text(f'[kafka.properties]\n"{name}" = "1"\n')
    with pytest.raises(ConfigError, match="set by tickpipe"):
        load_config(path, env={})


def test_secret_property_values_are_not_printed_in_errors(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[kafka.properties]\n"sasl.password.typo" = "hunter2"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "kafka.properties.sasl.password.typo" in str(err.value)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [("TICKPIPE_KAFKA_BOOTSTRAP", "nohost", "kafka.bootstrap"),
     ("TICKPIPE_KAFKA_ENCODING", "xml", "kafka.encoding"),
     ("TICKPIPE_KAFKA_MESSAGE_TRADES", "0", "kafka.message_trades")],
)  # fmt: skip
def test_bad_kafka_settings_name_the_key(key, value, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(env={key: value})


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)),
                                                    (5, (3, 2))])  # fmt: skip
def test_topics_are_replicated_by_the_clusters_size_unless_configured(brokers, expected):
    replication = replication_for(KafkaConfig(), brokers)
    assert (replication.factor, replication.min_insync) == expected
    configured = replication_for(KafkaConfig(replication_factor=2, min_insync_replicas=2), 5)
    assert (configured.factor, configured.min_insync) == (2, 2)


@pytest.mark.parametrize(
    ("env", "named"),
    [({"TICKPIPE_KAFKA_REPLICATION_FACTOR": "-1"}, "kafka.replication_factor"),
     ({"TICKPIPE_KAFKA_PARTITIONS": "0"}, "kafka.partitions"),
     ({"TICKPIPE_KAFKA_REPLICATION_FACTOR": "2", "TICKPIPE_KAFKA_MIN_INSYNC_REPLICAS": "3"},
      "kafka.min_insync_replicas")],
)  # fmt: skip
def test_bad_replication_settings_name_the_key(env, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as err:
        load_config(env=env)
    assert "\n" not in str(err.value)


def test_a_topic_the_single_broker_holds_once_is_not_under_replicated(kafka):
    topic = kafka.create_topic(f"t-{uuid.uuid4().hex[:8]}", 2)
    config = KafkaConfig(bootstrap=kafka.bootstrap, trades_topic=topic)
    assert ensure_topic(config, topic, {}) is None
    made = ensure_topic(config, f"{topic}.new", {}, partitions=3)
    assert made is None and replication_of(kafka.bootstrap, f"{topic}.new") == ({1}, "1")


def replication_of(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """(replica counts of the topic's partitions, its min.insync.replicas), once every broker
    asked knows the topic (a new topic reaches a cluster's brokers within moments)."""
    import time

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + 30
    while True:
        try:
            entries = admin.describe_configs([resource])[resource].result(10)
            partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
            if partitions:
                return {len(p.replicas) for p in partitions}, entries["min.insync.replicas"].value
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_heartbeats_reach_every_partition_with_the_event_clock_moved_on_only_when_quiet(kafka):
    topic = kafka.create_topic(f"t-{uuid.uuid4().hex[:8]}", 3)
    clock = ManualClock()
    publisher = TradePublisher(KafkaConfig(bootstrap=kafka.bootstrap, trades_topic=topic),
                               clock=clock)  # fmt: skip
    beats = Heartbeats(publisher, every_s=1.0, idle_s=2.0)
    assert not beats.step(), "no trade published yet: no clock to send"
    batch = MarketSimulator(2, 100.0, seed=1, exchange="sim", source="sim").trades(
        50, 1_700_000_000_000_000
    )
    newest = int(batch.ts.max())
    publisher.publish(batch)
    clock.advance(1.5)  # trades came 1.5 s ago: not quiet yet
    assert beats.step()
    assert not beats.step(), "one round per second"
    clock.advance(1.5)  # 3 s without a trade: the clock moves on by the wall time
    assert beats.step()
    assert publisher.flush(30) == 0
    messages = consume_all(kafka.bootstrap, topic, publisher.sent_messages + 6)
    beats_seen = [m for m in messages if is_heartbeat(m.value())]
    assert sorted(m.partition() for m in beats_seen) == [0, 0, 1, 1, 2, 2]
    clocks = sorted({json.loads(m.value())["event_ts"] for m in beats_seen})
    assert clocks == [newest, newest + 3_000_000]
