"""`--encoding avro`: trades and candles in the Confluent wire format through a real broker, with
their schemas in a schema registry (the local fake, tests/fakes/schema_registry.py, speaking the
registry's REST protocol). A consumer that knows only the registry reads them; a schema change
the subject's compatibility level refuses stops `tickpipe ingest` with one line."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fakes.schema_registry import FakeSchemaRegistry

from tickpipe.records import Candle
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.transport.avro import CANDLE_SCHEMA, TRADE_SCHEMA, RegistryRefused
from tickpipe.transport.codecs import candle_encoder, trade_decoder
from tickpipe.transport.kafka import CandlePublisher, TradePublisher
from tickpipe.transport.schema import (
    SchemaError,
    decode_trades,
    encode_trades,
    split_by_instrument,
    to_batch,
)
from tickpipe.transport.settings import KafkaConfig
from transport.test_kafka import consume_all


@pytest.fixture(scope="module")
def registry() -> Iterator[FakeSchemaRegistry]:
    with FakeSchemaRegistry() as fake:
        yield fake


def simulated(n: int = 6000):
    sim = MarketSimulator(5, 5000.0, seed=11, exchange="sim", source="sim")
    return sim.trades(n, 1_700_000_000_000_000)


def avro_config(kafka, registry, topic: str) -> KafkaConfig:
    return KafkaConfig(bootstrap=kafka.bootstrap, trades_topic=topic, encoding="avro",
                       schema_registry=registry.url, message_trades=400,
                       candles_topic=f"{topic}.candles")  # fmt: skip


def test_avro_trades_round_trip_through_a_real_broker_in_the_wire_format(kafka, registry):
    topic = kafka.create_topic(f"avro-{uuid.uuid4().hex[:8]}", 3)
    config = avro_config(kafka, registry, topic)
    batch = simulated()
    publisher = TradePublisher(config)
    publisher.publish(batch)
    assert publisher.flush(30) == 0 and publisher.error is None
    messages = consume_all(kafka.bootstrap, topic, publisher.sent_messages)
    assert len(messages) == publisher.sent_messages
    # The registry holds the schema under the topic's subject; every message names its id.
    [registered] = registry.registry.subjects[f"{topic}-value"]
    for m in messages:
        value = m.value()
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == registered.id
        with pytest.raises(SchemaError, match="schema registry"):
            decode_trades(value)  # without the registry: a clear reason, dead-lettered
    decode = trade_decoder(config)
    back = to_batch([decode(m.value()) for m in messages])

    def key(t):
        return (t.exchange, t.symbol, t.seq)

    assert sorted(back.to_trades(), key=key) == sorted(batch.to_trades(), key=key)
    # The same reader takes the other encodings on the same topic (told apart by their bytes).
    other = MarketSimulator(2, 1000.0, seed=12, exchange="other", source="other").trades(
        500, 1_700_000_000_000_000
    )
    for encoding in ("json", "binary"):
        values = [encode_trades(p, encoding) for p in split_by_instrument(other, 100)]
        mixed = to_batch([decode(v) for v in values])
        assert sorted(mixed.to_trades(), key=key) == sorted(other.to_trades(), key=key)


def test_a_consumer_that_knows_only_the_registry_reads_trades_and_candles(kafka, registry):
    """Plain confluent-kafka (DeserializingConsumer + AvroDeserializer), no tickpipe code."""
    from confluent_kafka import DeserializingConsumer, Producer
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    topic = kafka.create_topic(f"avro-{uuid.uuid4().hex[:8]}", 2)
    kafka.create_topic(f"{topic}.candles", 1)
    config = avro_config(kafka, registry, topic)
    batch = simulated(3000)
    publisher = TradePublisher(config)
    publisher.publish(batch)
    assert publisher.flush(30) == 0
    candles = [
        Candle(exchange="sim", symbol=f"S{i}-USDT", interval="1m", start=60_000_000 * i,
               open=1.5, high=2.0, low=1.0, close=1.75, volume=3.0, quote_volume=4.5,
               vwap=1.5, mean_price=1.6, trades=7, buy_volume=2.0, sell_volume=1.0,
               first_seq=10, last_seq=16, final=i % 2 == 0, revision=i, updated_at=123 + i)
        for i in range(4)
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    CandlePublisher(config.candles_topic, producer, candle_encoder(config)).publish(candles)
    assert producer.flush(30) == 0

    def read(name: str, expected: int) -> list[dict]:
        consumer = DeserializingConsumer({
            "bootstrap.servers": kafka.bootstrap, "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": registry.url})),
        })  # fmt: skip
        consumer.subscribe([name])
        out: list[dict] = []
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg.value())
            if len(out) == expected:
                break
        consumer.close()
        return out

    records = read(topic, publisher.sent_messages)
    assert len(records) == publisher.sent_messages
    for code, inst in enumerate(batch.instruments):
        mine = batch.instrument == code
        if not mine.any():
            continue
        rows = [r for r in records if r["symbol"] == inst.symbol]
        assert {r["exchange"] for r in rows} == {"sim"}
        assert [s for r in rows for s in r["seq"]] == batch.seq[mine].tolist()
        assert [p for r in rows for p in r["price"]] == batch.price[mine].tolist()
        assert [t for r in rows for t in r["ts"]] == batch.ts[mine].tolist()
        assert [s for r in rows for s in r["side"]] == batch.side[mine].tolist()
    got = read(config.candles_topic, len(candles))
    assert sorted(got, key=lambda c: c["start"]) == [msgspec.structs.asdict(c) for c in candles]


def test_an_incompatible_schema_change_stops_ingest_with_one_line(kafka, registry):
    topic = kafka.create_topic(f"avro-{uuid.uuid4().hex[:8]}", 1)
    # An earlier version under the subject wrote `seq` as strings: the trade schema's longs
    # cannot read that data, so BACKWARD compatibility refuses the trade schema.
    older = json.loads(json.dumps(TRADE_SCHEMA))
    for f in older["fields"]:
        if f["name"] == "seq":
            f["type"] = {"type": "array", "items": "string"}
    client = SchemaRegistryClient({"url": registry.url})
    client.register_schema(f"{topic}-value", Schema(json.dumps(older), "AVRO"))
    run = subprocess.run(
        [sys.executable, "-m", "tickpipe", "ingest", "--kafka", kafka.bootstrap, "--topic", topic,
         "--encoding", "avro", "--schema-registry", registry.url, "--simulated",
         "--duration", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "incompatible" in lines[0] and f"{topic}-value" in lines[0] and "/seq" in lines[0]
    assert len(registry.registry.subjects[f"{topic}-value"]) == 1, "nothing was registered"


def test_avro_without_a_registry_url_is_a_one_line_config_error(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tickpipe", "ingest", "--encoding", "avro", "--simulated"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode != 0
    [line] = run.stderr.strip().splitlines()
    assert "kafka.encoding" in line and "avro needs kafka.schema_registry" in line


def test_the_registry_checks_evolution_at_the_subjects_compatibility_level(registry):
    """The fake's rules, through confluent-kafka's client: a field added with a default is a
    compatible new version; one without a default, or a type that cannot be promoted, is not;
    FORWARD turns the first around."""
    client = SchemaRegistryClient({"url": registry.url})
    subject = f"evolve-{uuid.uuid4().hex[:8]}-value"
    v1 = client.register_schema(subject, Schema(json.dumps(CANDLE_SCHEMA), "AVRO"))
    assert client.register_schema(subject, Schema(json.dumps(CANDLE_SCHEMA), "AVRO")) == v1

    def with_field(field: dict) -> Schema:
        schema = json.loads(json.dumps(CANDLE_SCHEMA))
        schema["fields"].append(field)
        return Schema(json.dumps(schema), "AVRO")

    defaulted = with_field({"name": "venue", "type": "string", "default": ""})
    required = with_field({"name": "venue", "type": "string"})
    assert client.test_compatibility(subject, defaulted)
    assert not client.test_compatibility(subject, required)
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, required)
    assert refused.value.http_status_code == 409
    v2 = client.register_schema(subject, defaulted)
    assert v2 != v1 and client.get_latest_version(subject).version == 2
    promoted = json.loads(json.dumps(CANDLE_SCHEMA))
    for f in promoted["fields"]:
        if f["name"] == "trades":
            f["type"] = "double"  # long -> double: a promotion readers may make
    assert client.test_compatibility(subject, Schema(json.dumps(promoted), "AVRO"), version=1)
    for f in promoted["fields"]:
        if f["name"] == "trades":
            f["type"] = "int"  # long -> int: not
    assert not client.test_compatibility(subject, Schema(json.dumps(promoted), "AVRO"), 1)
    from confluent_kafka.schema_registry import ConfigCompatibilityLevel, ServerConfig

    # Dropping `close` is BACKWARD-compatible (new readers ignore it), not FORWARD: readers of
    # version 2 need it and it has no default.
    dropped = json.loads(json.dumps(CANDLE_SCHEMA))
    dropped["fields"] = [f for f in dropped["fields"] if f["name"] != "close"]
    assert client.test_compatibility(subject, Schema(json.dumps(dropped), "AVRO"))
    client.set_config(subject, ServerConfig(compatibility=ConfigCompatibilityLevel.FORWARD))
    assert not client.test_compatibility(subject, Schema(json.dumps(dropped), "AVRO"))
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema(subject, Schema('{"type": "record"}', "AVRO"))
    assert invalid.value.error_code == 42201
    with pytest.raises(SchemaRegistryError) as unknown:
        client.get_schema(10_000)
    assert unknown.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_latest_version("no-such-subject")
    assert missing.value.error_code == 40401


def test_an_unreachable_registry_is_one_line(kafka):
    config = KafkaConfig(bootstrap=kafka.bootstrap, trades_topic="t", encoding="avro",
                         schema_registry="http://127.0.0.1:9")  # fmt: skip
    with pytest.raises(RegistryRefused, match=r"schema registry http://127\.0\.0\.1:9 unreachable"):
        TradePublisher(config)


def test_a_processor_reads_avro_trades_and_writes_avro_candles_equal_to_the_batch(
    kafka, registry, tmp_path
):
    """`tickpipe process --encoding avro`: the stored candles equal the batch recomputation of
    the published trades, and the candles topic carries them in Avro, as a registry-only
    consumer reads them."""
    import duckdb
    from confluent_kafka import DeserializingConsumer
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from engine.reference import assert_candles_equal, batch_candles

    topic = kafka.create_topic(f"avro-{uuid.uuid4().hex[:8]}", 2)
    kafka.create_topic(f"{topic}.candles", 2, **{"cleanup.policy": "compact"})
    config = avro_config(kafka, registry, topic)
    batch = simulated(4000)
    publisher = TradePublisher(config)
    publisher.publish(batch)
    assert publisher.flush(30) == 0
    (tmp_path / "tickpipe.toml").write_text(
        'intervals = ["1s", "5s"]\nallowed_lateness = "300ms"\nidle_timeout = "500ms"\n'
        'flush_every = "50ms"\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "tickpipe", "process", "--config", str(tmp_path / "tickpipe.toml"),
         "--kafka", kafka.bootstrap, "--topic", topic, "--candles-topic", config.candles_topic,
         "--encoding", "avro", "--schema-registry", registry.url, "--group", f"g-{topic}",
         "--data-dir", str(tmp_path / "data"), "--duration", "8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{len(batch):,} trades stored" in run.stdout, run.stdout
    fields = ", ".join(Candle.__struct_fields__)
    with duckdb.connect(str(tmp_path / "data" / "tickpipe.duckdb"), read_only=True) as con:
        cursor = con.execute(f"SELECT {fields} FROM candles")
        names = [d[0] for d in cursor.description]
        stored = [Candle(**dict(zip(names, row, strict=True))) for row in cursor.fetchall()]
    got = {(c.exchange, c.symbol, c.interval, c.start): c for c in stored}
    windows = [("1s", 1_000_000, 1_000_000), ("5s", 5_000_000, 5_000_000)]
    assert_candles_equal(got, batch_candles(batch.to_trades(), windows))

    consumer = DeserializingConsumer({
        "bootstrap.servers": kafka.bootstrap, "group.id": uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": registry.url})),
    })  # fmt: skip
    consumer.subscribe([config.candles_topic])
    latest: dict = {}
    idle = 0
    while idle < 6:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            idle += 1
            continue
        c = msg.value()
        latest[(c["exchange"], c["symbol"], c["interval"], c["start"])] = Candle(**c)
    consumer.close()
    assert set(latest) == set(got)
    finals = {k: c for k, c in latest.items() if c.final}
    assert finals == {k: got[k] for k in latest if got[k].final}


@pytest.mark.parametrize(("name", "schema"), [("trade", TRADE_SCHEMA), ("candle", CANDLE_SCHEMA)])
def test_the_committed_avro_schemas_are_the_ones_registered(name, schema):
    """docs/schema/*.avsc (for users of Kafka Connect, ksqlDB, Flink) say what is registered,
    and fastavro accepts them as Avro."""
    from pathlib import Path

    from fastavro import parse_schema

    path = Path(__file__).resolve().parents[2] / "docs" / "schema" / f"{name}.v1.avsc"
    committed = json.loads(path.read_text())
    assert committed == schema
    parse_schema(committed)


def test_a_registry_that_cannot_be_asked_for_a_schema_stops_reading_with_one_line():
    """Not a malformed message: dead-lettering good trades would lose them; the processor stops
    with one line, and its restart replays from the committed offset."""
    from tickpipe.transport.codecs import avro_codec

    config = KafkaConfig(trades_topic="t", schema_registry="http://127.0.0.1:9")
    message = b"\x00" + (7).to_bytes(4, "big") + b"\x02\x04"  # wire format, schema id 7
    with pytest.raises(RegistryRefused, match=r"http://127\.0\.0\.1:9 unreachable") as refused:
        avro_codec(config).decode_trades(message)
    assert "\n" not in str(refused.value)


def test_candle_readers_with_a_registry_read_avro_and_json_candles(registry):
    """What `serve --kafka` reads the candles topic with: either encoding, told by its bytes."""
    from tickpipe.transport.codecs import candle_decoder
    from tickpipe.transport.schema import encode_candle

    candle = Candle(exchange="sim", symbol="A-USDT", interval="5s", start=5_000_000, open=1.0,
                    high=3.0, low=0.5, close=2.0, volume=4.0, quote_volume=8.0, vwap=2.0,
                    mean_price=1.9, trades=3, buy_volume=1.0, sell_volume=3.0, first_seq=1,
                    last_seq=3, final=True, revision=2, updated_at=99)  # fmt: skip
    config = KafkaConfig(trades_topic=f"c-{uuid.uuid4().hex[:8]}", candles_topic="cc",
                         encoding="avro", schema_registry=registry.url)  # fmt: skip
    avro = candle_encoder(config)(candle)
    assert avro[0] == 0 and avro != encode_candle(candle)
    decode = candle_decoder(config)
    assert decode(avro) == candle
    assert decode(encode_candle(candle)) == candle
    with pytest.raises(SchemaError):
        decode(b"\x00\x00\x00\x00\x01garbage")  # schema id 1 exists, the body is not a candle
