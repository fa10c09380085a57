"""A real single-node Apache Cassandra 5.0 for the Cassandra store tests.

The jars come from Maven Central through scripts/setup/cassandra.sh into a cache outside git;
the node runs as a child process (Java 17, 512 MB heap) with the committed
scripts/cassandra/cassandra.yaml, on free 127.0.0.1 ports with its data in a temp dir, for the
whole test session. Each test that wants a keyspace gets a fresh one (`cassandra_keyspace`,
replication factor 1), dropped afterwards; the contract suite, which wants a whole empty store
per test, takes a keyspace of a `KeyspacePool` instead (its tables kept and emptied, ~0.2 s
where a new keyspace and schema take ~2 s). `node.stop()`/`node.start()` restart it on the same
ports and data (fault tests).

`secured_cassandra_node` is a second node, started only by the tests that ask for it: the same
config with PasswordAuthenticator and client-to-node TLS required (a PEM certificate from
servers.certs), and a login role `tickpipe` whose password the tests pass as a secret.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "scripts" / "cassandra" / "pom.xml"
CONFIG = ROOT / "scripts" / "cassandra" / "cassandra.yaml"
HEAP = "512m"

# What Cassandra's own conf/jvm17-server.options opens up for Java 17: its off-heap memory,
# memory measurement (jamm), attach and JMX internals need these, or start-up fails.
JAVA17_OPTIONS = [
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={module}=ALL-UNNAMED"
        for module in (
            "java.base/jdk.internal.misc",
            "java.base/java.lang.ref",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={module}=ALL-UNNAMED"
        for module in (
            "java.base/java.io",
            "java.base/java.lang",
            "java.base/java.lang.module",
            "java.base/java.lang.reflect",
            "java.base/java.util",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.util.jar",
            "java.base/sun.nio.ch",
            "jdk.compiler/com.sun.tools.javac",
            "jdk.management/com.sun.management.internal",
        )
    ),
    # Netty's direct buffers through Unsafe, as Cassandra's own options set.
    "-Dio.netty.tryReflectionSetAccessible=true",
]

LOGBACK = """<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %-5level [%thread] %logger{24}: %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="OUT"/></root>
</configuration>
"""


def cassandra_libs() -> Path:
    """Where scripts/setup/cassandra.sh puts the node's jars."""
    version = pinned_version(POM, r"<cassandra.version>([^<]+)</cassandra.version>")
    return cache_dir() / f"cassandra-{version}" / "libs"


class CassandraNode(ServerProcess):
    """One node that is its own seed: `host`, `port` (CQL), `cluster()` of cassandra-driver."""

    name = "Cassandra"
    start_timeout_s = 120.0  # a cold JVM on a busy 2-core machine; ~7 s when idle

    def __init__(
        self, root: Path, libs: Path, config: Path = CONFIG, extra: tuple[str, ...] = ()
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.storage_port = free_port()
        (root / "logback.xml").write_text(LOGBACK)
        cmd = [
            # A heap that grows from small, one GC thread and the quick compiler only: ~400 MB
            # resident instead of ~850 MB with the whole heap up front, same start-up time.
            "java", "-Xms64m", f"-Xmx{HEAP}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError", *JAVA17_OPTIONS,
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.config={config.as_uri()}", *extra,
            f"-Dcassandra.storagedir={root / 'data'}",
            f"-Dcassandra.logdir={root}",
            f"-Dcassandra.native_transport_port={self.port}",
            f"-Dcassandra.storage_port={self.storage_port}",
            # One node, its own seed: nothing to wait for, and nobody to tell of a shutdown
            # (a clean stop waited 2 s announcing it).
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.shutdown_announce_in_ms=0",
            # The memtable's per-row overhead, estimated from 1,000 sample rows instead of
            # 100,000: ~2 s less per start with the quick compiler, and only memtable size
            # accounting (when to flush) reads it.
            "-Dcassandra.memtable_row_overhead_computation_step=1000",
            f"-Dlogback.configurationFile={root / 'logback.xml'}",
            "-cp", f"{libs}/*", "org.apache.cassandra.service.CassandraDaemon",
        ]  # fmt: skip
        super().__init__(cmd, root / "cassandra.log", cwd=root)

    def ready(self) -> bool:
        # The CQL port opens last in start-up; a query on it proves the node serves.
        if not port_open(self.port):
            return False
        try:
            with self.cluster() as cluster:
                cluster.connect().execute("SELECT release_version FROM system.local").one()
        except Exception:
            return False
        return True

    def cluster(self, **options: Any) -> Any:
        """A cassandra-driver Cluster on this node (a context manager that shuts it down)."""
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import RoundRobinPolicy

        # One known node: no datacenter discovery, no warning about a guessed local DC.
        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
        options.setdefault("execution_profiles", {EXEC_PROFILE_DEFAULT: profile})
        options.setdefault("protocol_version", 5)
        return Cluster([self.host], port=self.port, **options)


class SecuredCassandraNode(CassandraNode):
    """A node that takes only TLS clients that log in: `tls` (its certificate files), `user`
    and `password` (a login role made at start-up, not a superuser); `cluster()` logs in as
    the default superuser cassandra/cassandra over TLS."""

    name = "Cassandra (TLS, PasswordAuthenticator)"
    user = "tickpipe"

    def __init__(self, root: Path, libs: Path) -> None:
        self.tls: TlsFiles = make_tls(root / "tls")
        self.password = secrets.token_urlsafe(16)
        plain = CONFIG.read_text()
        assert "authenticator: AllowAllAuthenticator" in plain, f"{CONFIG}: authenticator moved"
        config = root / "cassandra.yaml"
        config.write_text(
            plain.replace(
                "authenticator: AllowAllAuthenticator", "authenticator: PasswordAuthenticator"
            )
            + SECURED_CONFIG.format(keystore=self.tls.chain)
        )
        # The default superuser is made at once, not after the usual 10 s wait for a cluster.
        super().__init__(root, libs, config, ("-Dcassandra.superuser_setup_delay_ms=0",))

    def cluster(self, **options: Any) -> Any:
        from cassandra.auth import PlainTextAuthProvider

        options.setdefault("auth_provider", PlainTextAuthProvider("cassandra", "cassandra"))
        options.setdefault("ssl_context", ssl.create_default_context(cafile=str(self.tls.ca)))
        return super().cluster(**options)

    def start(self) -> None:
        super().start()
        with self.cluster() as cluster:
            cluster.connect().execute(
                f"CREATE ROLE IF NOT EXISTS {self.user} WITH PASSWORD = %s AND LOGIN = true",
                [self.password],
            )

    def set_password(self, role: str, password: str) -> None:
        """Change a role's password (a test changes the store's and puts it back)."""
        with self.cluster() as cluster:
            cluster.connect().execute(f"ALTER ROLE {role} WITH PASSWORD = %s", [password])


# Client-to-node TLS only (`optional: false`: a plain client is turned away), with the server's
# key and certificate in one PEM file; clients show no certificate of their own.
SECURED_CONFIG = """
client_encryption_options:
  enabled: true
  optional: false
  require_client_auth: false
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: {keystore}
"""


def _node_or_missing() -> Path:
    """The jars' directory, once cassandra-driver, java and the jars are all there."""
    try:
        import cassandra.cluster  # noqa: F401
    except ImportError:
        server_missing("cassandra-driver is not installed (pip install -e '.[test]')")
    libs = cassandra_libs()
    if shutil.which("java") is None:
        server_missing("java is not installed (scripts/setup/cassandra.sh installs it)")
    if not list(libs.glob("cassandra-all-*.jar")):
        server_missing(f"no Cassandra jars in {libs} (run scripts/setup/cassandra.sh)")
    return libs


@pytest.fixture(scope="session")
def cassandra_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraNode]:
    """The session's node, started once; skipped (or failed in CI) when not installed."""
    node = CassandraNode(tmp_path_factory.mktemp("cassandra"), _node_or_missing())
    with serving(node, kill_at_end=True):  # throwaway data: a clean drain only adds ~5 s
        yield node


@pytest.fixture(scope="session")
def secured_cassandra_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SecuredCassandraNode]:
    """The session's secured node (TLS required, passwords checked), started on first use."""
    node = SecuredCassandraNode(tmp_path_factory.mktemp("cassandra-secured"), _node_or_missing())
    with serving(node, kill_at_end=True):
        yield node


@contextlib.contextmanager
def fresh_keyspace(node: CassandraNode) -> Iterator[str]:
    """A new keyspace (replication factor 1) on `node`, running; dropped on exit."""
    node.ensure_running()  # a fault test may have left it stopped
    name = f"t_{uuid.uuid4().hex[:12]}"
    with node.cluster() as cluster:
        cluster.connect().execute(
            f"CREATE KEYSPACE {name} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
    try:
        yield name
    finally:
        node.ensure_running()
        with node.cluster() as cluster:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {name}")


class KeyspacePool:
    """Keyspaces handed out empty and taken back for the next user, on one kept session.

    Creating a keyspace and a store's tables in it is a schema change of ~1.5 s (one more to
    drop it); emptying the tables a store left takes ~0.2 s. A keyspace is taken back with its
    tables; before it is handed out again, each of its tables that holds a row is TRUNCATEd
    (a table is probed first: truncating an empty one costs as much as a full one), so the
    user starts from empty tables, as in a new keyspace, whatever the last user left.
    """

    def __init__(self, node: CassandraNode) -> None:
        self.node = node
        self._free: list[str] = []
        self._cluster: Any = None
        self._session: Any = None

    def _execute(self, statement: str) -> Any:
        """`statement` on the kept session; a session broken by a node restart is made anew."""
        for attempt in (1, 2):
            if self._session is None:
                self._cluster = self.node.cluster()
                self._session = self._cluster.connect()
            try:
                return self._session.execute(statement)
            except Exception:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _emptied(self, name: str) -> str:
        tables = self._execute(
            f"SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{name}'"
        )
        for (table,) in [tuple(row) for row in tables]:
            if self._execute(f"SELECT * FROM {name}.{table} LIMIT 1").one() is not None:
                self._execute(f"TRUNCATE {name}.{table}")
        return name

    @contextlib.contextmanager
    def keyspace(self) -> Iterator[str]:
        """A keyspace (replication factor 1) on the running node whose tables, if any, are
        empty; taken back on exit."""
        self.node.ensure_running()  # a fault test may have left it stopped
        if self._free:
            name = self._emptied(self._free.pop())
        else:
            name = f"t_{uuid.uuid4().hex[:12]}"
            self._execute(
                f"CREATE KEYSPACE {name} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"
            )
        try:
            yield name
        finally:
            self._free.append(name)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None


@pytest.fixture(scope="session")
def cassandra_keyspaces(cassandra_node: CassandraNode) -> Iterator[KeyspacePool]:
    """The session's pool of emptied keyspaces on the session's node (the node's data is
    thrown away at the end: nothing to drop)."""
    pool = KeyspacePool(cassandra_node)
    yield pool
    pool.close()


@pytest.fixture
def cassandra_keyspace(cassandra_node: CassandraNode) -> Iterator[str]:
    """A fresh keyspace (replication factor 1) on the session's node, running; dropped after."""
    with fresh_keyspace(cassandra_node) as name:
        yield name
