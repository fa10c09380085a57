"""A real MongoDB wire-protocol server for the MongoDB store tests: FerretDB 1.x over SQLite.

No MongoDB server package is reachable here, so FerretDB stands in for MongoDB: our own small
main over FerretDB's embeddable package (scripts/ferretdb/), built by scripts/setup/ferretdb.sh
into a cache outside git. It runs as a child process on a free 127.0.0.1 port with its SQLite
files in a temp dir, for the whole test session. Each test that wants a database gets a fresh
one (`mongodb_database`), dropped afterwards. `server.stop()`/`server.start()` restart it on
the same port and data (fault tests).

`secured_ferretdb_server` is a second server, started only by the tests that ask for it, that
serves TLS clients only (a certificate from servers.certs). It checks no password: FerretDB
1.x's embeddable package, which our main is built on, has no authentication of its own (the
SCRAM users of its "new authentication" are switched on only by its released command's
experimental flag), and with the SQLite backend the credentials a client sends are not checked.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.certs import TlsFiles, make_tls
from servers.process import ServerProcess, cache_dir, free_port, pinned_version, port_open, serving
from servers.require import server_missing

GO_MOD = Path(__file__).resolve().parents[2] / "scripts" / "ferretdb" / "go.mod"


def ferretdb_binary() -> Path:
    """Where scripts/setup/ferretdb.sh builds the server."""
    version = pinned_version(GO_MOD, r"^require github.com/FerretDB/FerretDB v(\S+)")
    return cache_dir() / f"ferretdb-{version}" / "ferretdb-for-tests"


class FerretDBServer(ServerProcess):
    """One FerretDB process: `uri` (mongodb://127.0.0.1:PORT/), `client()` of pymongo.

    With `tls`, it listens for TLS clients only, and `uri` says tls=true with the CA."""

    name = "FerretDB"
    start_timeout_s = 30.0  # it answers within a second when idle

    def __init__(self, root: Path, binary: Path, tls: TlsFiles | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        address = f"127.0.0.1:{self.port}"
        self.uri = f"mongodb://{address}/"
        listen = ["-listen", address]
        if tls is not None:
            self.name = "FerretDB (TLS)"
            self.uri += f"?tls=true&tlsCAFile={tls.ca}"
            listen = ["-listen", "", "-listen-tls", address,
                      "-tls-cert", str(tls.cert), "-tls-key", str(tls.key)]  # fmt: skip
        cmd = [str(binary), *listen, "-data", str(root / "data")]
        super().__init__(cmd, root / "ferretdb.log", cwd=root)

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        # Serving is enough: whether a client trusts the certificate is the tests' business.
        trust_any = {"tlsAllowInvalidCertificates": True} if self.tls else {}
        try:
            with self.client(serverSelectionTimeoutMS=1000, **trust_any) as client:
                client.admin.command("ping")
        except Exception:
            return False
        return True

    def client(self, **options: Any) -> Any:
        """A pymongo MongoClient on this server (a context manager that closes it)."""
        from pymongo import MongoClient

        options.setdefault("serverSelectionTimeoutMS", 10_000)
        return MongoClient(self.uri, **options)


def _binary_or_missing() -> Path:
    """The server's binary, once pymongo and the binary are both there."""
    try:
        import pymongo  # noqa: F401
    except ImportError:
        server_missing("pymongo is not installed (pip install -e '.[test]')")
    binary = ferretdb_binary()
    if not binary.exists():
        server_missing(f"no FerretDB server at {binary} (run scripts/setup/ferretdb.sh)")
    return binary


@pytest.fixture(scope="session")
def ferretdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDBServer]:
    """The session's server, started once; skipped (or failed in CI) when not installed."""
    server = FerretDBServer(tmp_path_factory.mktemp("ferretdb"), _binary_or_missing())
    with serving(server):
        yield server


@pytest.fixture(scope="session")
def secured_ferretdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDBServer]:
    """The session's TLS-only server, started on first use."""
    root = tmp_path_factory.mktemp("ferretdb-tls")
    server = FerretDBServer(root, _binary_or_missing(), make_tls(root / "tls"))
    with serving(server):
        yield server


@contextlib.contextmanager
def fresh_database(server: FerretDBServer) -> Iterator[str]:
    """The name of a new database on `server` (running), dropped on exit."""
    server.ensure_running()
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        server.ensure_running()
        with server.client() as client:
            client.drop_database(name)


@pytest.fixture
def mongodb_database(ferretdb_server: FerretDBServer) -> Iterator[str]:
    """The name of a fresh database on the session's server, running; dropped after the test."""
    with fresh_database(ferretdb_server) as name:
        yield name
