"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper) for the distributed-mode tests.

The jars come from Maven Central through scripts/setup/kafka.sh into a cache outside git. The
broker runs as a child process on free 127.0.0.1 ports with its log directory in a temp dir,
for the whole test session; `stop()`/`start()` restart it on the same ports and data (the
broker-restart test).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.require import server_missing

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0  # seconds; a cold JVM on a busy 2-core machine is slow


def kafka_version() -> str:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert found, "scripts/kafka/pom.xml names no kafka.version"
    return found.group(1)


def kafka_libs() -> Path:
    """Where scripts/setup/kafka.sh puts the broker's jars."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tickpipe" / f"kafka-{kafka_version()}" / "libs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KafkaBroker:
    """One broker that is also its own KRaft controller."""

    def __init__(self, root: Path, libs: Path) -> None:
        self.root = root
        self.libs = libs
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = root / "broker.log"
        self.proc: subprocess.Popen | None = None
        self._config = root / "server.properties"
        self._write_config()
        self._format()

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
        (self.root / "log4j2.properties").write_text(
            "rootLogger.level = WARN\nrootLogger.appenderRef.file.ref = FILE\n"
            "appender.file.type = File\nappender.file.name = FILE\n"
            f"appender.file.fileName = {self.root / 'server.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = %d %p %c: %m%n\n"
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

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self._config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka broker exited: {self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"kafka broker did not start in {START_TIMEOUT:g}s: {self.log_tail()}")

    def _ready(self) -> bool:
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

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, chars: int = 2000) -> str:
        texts = []
        for path in (self.log_path, self.root / "server.log"):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts)

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
    try:
        broker.start()
    except RuntimeError as exc:
        broker.stop()
        server_missing(f"cannot start a Kafka broker: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka(kafka_broker: KafkaBroker) -> KafkaBroker:
    """The session's broker, running (a test that stopped it gets it started again)."""
    if kafka_broker.proc is None or kafka_broker.proc.poll() is not None:
        kafka_broker.proc = None
        kafka_broker.start()
    return kafka_broker
