"""Real Apache Kafka (KRaft, no ZooKeeper) for the distributed-mode tests: a single-node broker,
and a replicated 3-node cluster (the `kafka_cluster` tests).

The jars come from Maven Central through scripts/setup/kafka.sh into a cache outside git. The
broker runs as a child process on free 127.0.0.1 ports with its log directory in a temp dir,
for the whole test session; `stop()`/`start()` restart it on the same ports and data (the
broker-restart test). The cluster is the one scripts/kafka-cluster.sh starts for a user, on
free ports and in a temp dir: one place says how a cluster is configured.

`SecuredKafkaBroker` is the single broker with one client listener, SASL_SSL: TLS from
servers/certs.py and SCRAM-SHA-512 users written into the metadata log at format time. The
broker talks to itself (inter-broker) over that listener too, as its own SCRAM user; only the
KRaft controller listener stays PLAINTEXT, on loopback.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.certs import TlsFiles, make_tls
from servers.process import (
    ServerProcess,
    cache_dir,
    free_port,
    pinned_version,
    port_open,
    serving,
)
from servers.require import server_missing

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
POM = SCRIPTS / "kafka" / "pom.xml"


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

    def client_settings(self) -> dict[str, str]:
        """What a client (the fixture's admin, a test's consumer) needs to connect."""
        return {"bootstrap.servers": self.bootstrap}

    def committed_to_end(self, group: str, topic: str) -> bool:
        """Whether `group` has committed every message of `topic` (a processor commits after
        storing, so all published trades are stored)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self.client_settings(), "group.id": group})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], 10)
            # An empty partition has no committed offset (negative): nothing to catch up there.
            return all(
                max(c.offset, 0) == consumer.get_watermark_offsets(c, 10)[1] for c in committed
            )
        finally:
            consumer.close()

    def _listener_settings(self) -> dict[str, str]:
        return {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        }

    def _format_options(self) -> list[str]:
        return []

    def _write_config(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            **self._listener_settings(),
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
            # A restarted broker is let in after 3 s, not the default 9 s broker session.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
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
        # A KRaft cluster id: 16 random bytes, URL-safe base64 without padding. Given with
        # `=`: an id may start with '-', which would otherwise be read as an option.
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={cid}",
            "-c",
            str(self._config),
            *self._format_options(),
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
        admin = AdminClient(self.client_settings())
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:
            return False

    def create_topic(self, name: str, partitions: int = 1, **config: str) -> str:
        """Create `name` with `partitions` partitions (replication factor 1); wait until it is."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_settings())
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
        futures[name].result(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                return name
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} was not ready in time")


class SecuredKafkaBroker(KafkaBroker):
    """The broker behind SASL_SSL (SCRAM-SHA-512 over TLS) only: clients log in as `user`
    with `password` and trust `tls.ca`."""

    name = "secured Kafka broker"
    user = "tickpipe"
    # Characters a URL or a shell would change (@ / + : % space): a leak in any spelling shows.
    password = "s3cret@ticks/+:% " + uuid.uuid4().hex[:8]
    _broker_user = "broker"  # the broker's own login to itself (inter-broker)

    def __init__(self, root: Path, libs: Path) -> None:
        self._broker_password = uuid.uuid4().hex
        # Unencrypted (mode 0600): Kafka's PEM keystore reads a plain PKCS#8 key when
        # ssl.key.password is unset, and an encrypted one only in a cipher the JVM's
        # SecretKeyFactory knows, which PBES2 (what `cryptography` writes) is not on Java 17.
        self.tls: TlsFiles = make_tls(root / "tls")
        super().__init__(root, libs)

    def client_settings(self) -> dict[str, str]:
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": self.user,
            "sasl.password": self.password,
            "ssl.ca.location": str(self.tls.ca),
        }

    def _listener_settings(self) -> dict[str, str]:
        login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self._broker_user}" password="{self._broker_password}";'
        )
        return {
            "listeners": (
                f"SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.chain),
            "ssl.truststore.type": "PEM",  # for the broker's login to itself
            "ssl.truststore.location": str(self.tls.ca),
            "ssl.client.auth": "none",
        }

    def _format_options(self) -> list[str]:
        return [
            f'--add-scram=SCRAM-SHA-512=[name={name},password="{password}"]'
            for name, password in (
                (self.user, self.password),
                (self._broker_user, self._broker_password),
            )
        ]


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free 127.0.0.1 ports, below the ephemeral range (32768
    up), where the outgoing connections of a busy machine cannot take one meanwhile."""
    rng = random.Random()
    while True:
        first = rng.randrange(20_000, 32_768 - count)
        if not any(port_open(first + i) for i in range(count)) and all(
            _bindable(first + i) for i in range(count)
        ):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie left unreaped by PID 1 does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


class KafkaCluster:
    """Three nodes, each a broker and a KRaft controller (a 3-voter quorum), started and
    restarted by scripts/kafka-cluster.sh; `kill(node)` is the crash (SIGKILL)."""

    nodes = (1, 2, 3)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port_block(2 * len(self.nodes))
        self.env = {**os.environ, "TICKPIPE_KAFKA_CLUSTER_DIR": str(root),
                    "TICKPIPE_KAFKA_CLUSTER_PORT": str(self.port)}  # fmt: skip
        self.bootstrap = ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in self.nodes)

    def broker_port(self, node: int) -> int:
        return self.port + 2 * (node - 1)

    def start(self, *nodes: int) -> None:
        """Start `nodes` (default: every node not running); return once they serve."""
        done = subprocess.run(
            ["bash", str(SCRIPTS / "kafka-cluster.sh"), "start", *map(str, nodes)],
            capture_output=True, text=True, timeout=300, env=self.env,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"kafka-cluster.sh start failed: {done.stderr or done.stdout}")

    def pid(self, node: int) -> int | None:
        path = self.root / f"node{node}" / "pid"
        pid = int(path.read_text()) if path.exists() else None
        return pid if pid is not None and _alive(pid) else None

    def running(self) -> list[int]:
        return [n for n in self.nodes if self.pid(n) is not None]

    def kill(self, node: int) -> None:
        """SIGKILL the node (no chance to flush or hand anything over); return once gone."""
        pid = self.pid(node)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)

    def wait_moved_off(self, topic: str, node: int, timeout_s: float = 60.0) -> None:
        """Return once no partition of `topic` has `node` as leader or in its in-sync replicas:
        the quorum has fenced the node, moved its leaderships and shrunk the replica sets (3 to
        7 s after a kill on a busy machine, more than the 3 s session timeout)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout_s
        while True:
            partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
            if all(p.leader != node and node not in p.isrs for p in partitions):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node} still leads or is in sync for {topic} "
                                     f"after {timeout_s:g} s")  # fmt: skip
            time.sleep(0.1)

    def leaders(self, topic: str) -> Counter[int]:
        """How many partitions of `topic` each node leads."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        return Counter(p.leader for p in partitions)


@pytest.fixture(scope="session")
def kafka_cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """The session's 3-node cluster (started on first use, killed at the end)."""
    if shutil.which("java") is None:
        server_missing("java is not installed (scripts/setup/kafka.sh installs it)")
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        cluster.start()
        yield cluster
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server_missing(f"cannot start the Kafka cluster: {exc}")
    finally:
        for node in cluster.nodes:
            cluster.kill(node)  # its data is thrown away: no clean shutdown needed


@pytest.fixture
def kafka_cluster(kafka_cluster_nodes: KafkaCluster) -> KafkaCluster:
    """The session's cluster with every node running (a test that killed some gets them back)."""
    if len(kafka_cluster_nodes.running()) < len(kafka_cluster_nodes.nodes):
        kafka_cluster_nodes.start()
    return kafka_cluster_nodes


def _jars() -> Path:
    """The broker's jars; java and the jars missing is a missing server."""
    libs = kafka_libs()
    if shutil.which("java") is None:
        server_missing("java is not installed (scripts/setup/kafka.sh installs it)")
    if not list(libs.glob("kafka_2.13-*.jar")):
        server_missing(f"no Kafka jars in {libs} (run scripts/setup/kafka.sh)")
    return libs


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's broker; tests create their own topics (unique names) on it."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), _jars())
    with serving(broker):
        yield broker


@pytest.fixture(scope="session")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafkaBroker]:
    """The session's SASL_SSL broker: `bootstrap`, `user`, `password`, `tls` (the TlsFiles;
    `tls.other_ca` signed nothing it uses). Tests create their own topics on it."""
    broker = SecuredKafkaBroker(tmp_path_factory.mktemp("kafka-secured"), _jars())
    with serving(broker, kill_at_end=True):
        yield broker


@pytest.fixture
def kafka(kafka_broker: KafkaBroker) -> KafkaBroker:
    """The session's broker, running (a test that stopped it gets it started again)."""
    kafka_broker.ensure_running()
    return kafka_broker
