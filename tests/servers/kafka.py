"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper) for the distributed-mode tests.

The jars come from Maven Central through scripts/setup/kafka.sh into a cache outside git. The
broker runs as a child process on free 127.0.0.1 ports with its log directory in a temp dir,
for the whole test session; `stop()`/`start()` restart it on the same ports and data (the
broker-restart test).
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.process import ServerProcess, cache_dir, free_port, pinned_version, serving
from servers.require import server_missing

POM = Path(__file__).resolve().parents[2] / "scripts" / "kafka" / "pom.xml"


def kafka_libs() -> Path:
    """Where scripts/setup/kafka.sh puts the broker's jars."""
    version = pinned_version(POM, r"<kafka.version>([^<]+)</kafka.version>")
    return cache_dir() / f"kafka-{version}" / "libs"


class KafkaBroker(ServerProcess):
    """One broker that is also its own KRaft controller."""

    name = "Kafka broker"
    start_timeout_s = 90.0  # a cold JVM on a busy 2-core machine is slow

    def __init__(self, root: Path, libs: Path) -> None:
        self.root = root
        self.libs = libs
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._config = root / "server.properties"
        self._write_config()
        self._format()
        super().__init__(self._java("kafka.Kafka", str(self._config)), root / "broker.log")

    def _write_config(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.root / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Fast tests: a dead consumer is noticed within seconds, not 45 s.
            "group.consumer.session.timeout.ms": "6000",
            "group.consumer.min.session.timeout.ms": "3000",
            "group.min.session.timeout.ms": "1000",
            "log.cleaner.backoff.ms": "1000",
        }
        self._config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        # The broker logs to its stdout: one log file (broker.log) for the failure messages.
        (self.root / "log4j2.properties").write_text(
            "rootLogger.level = WARN\nrootLogger.appenderRef.out.ref = OUT\n"
            "appender.out.type = Console\nappender.out.name = OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = %d %p %c: %m%n\n"
        )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]  # fmt: skip

    def _format(self) -> None:
        # A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = self._java(
            "kafka.tools.StorageTool", "format", "--standalone", "-t", cid, "-c", str(self._config)
        )
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"kafka storage format failed: {done.stderr or done.stdout}")

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:
            return False

    def create_topic(self, name: str, partitions: int = 1, **config: str) -> str:
        """Create `name` with `partitions` partitions (replication factor 1); wait until it is."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
        futures[name].result(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                return name
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} was not ready in time")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's broker; tests create their own topics (unique names) on it."""
    libs = kafka_libs()
    if shutil.which("java") is None:
        server_missing("java is not installed (scripts/setup/kafka.sh installs it)")
    if not list(libs.glob("kafka_2.13-*.jar")):
        server_missing(f"no Kafka jars in {libs} (run scripts/setup/kafka.sh)")
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), libs)
    with serving(broker):
        yield broker


@pytest.fixture
def kafka(kafka_broker: KafkaBroker) -> KafkaBroker:
    """The session's broker, running (a test that stopped it gets it started again)."""
    kafka_broker.ensure_running()
    return kafka_broker
