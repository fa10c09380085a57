"""A real MongoDB wire-protocol server for the MongoDB store tests: FerretDB 1.x over SQLite.

No MongoDB server package is reachable here, so FerretDB stands in for MongoDB: our own small
main over FerretDB's embeddable package (scripts/ferretdb/), built by scripts/setup/ferretdb.sh
into a cache outside git. It runs as a child process on a free 127.0.0.1 port with its SQLite
files in a temp dir, for the whole test session. Each test that wants a database gets a fresh
one (`mongodb_database`), dropped afterwards. `server.stop()`/`server.start()` restart it on
the same port and data (fault tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.process import ServerProcess, cache_dir, free_port, pinned_version, port_open, serving
from servers.require import server_missing

GO_MOD = Path(__file__).resolve().parents[2] / "scripts" / "ferretdb" / "go.mod"


def ferretdb_binary() -> Path:
    """Where scripts/setup/ferretdb.sh builds the server."""
    version = pinned_version(GO_MOD, r"^require github.com/FerretDB/FerretDB v(\S+)")
    return cache_dir() / f"ferretdb-{version}" / "ferretdb-for-tests"


class FerretDBServer(ServerProcess):
    """One FerretDB process: `uri` (mongodb://127.0.0.1:PORT/), `client()` of pymongo."""

    name = "FerretDB"
    start_timeout_s = 30.0  # it answers within a second when idle

    def __init__(self, root: Path, binary: Path) -> None:
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        cmd = [str(binary), "-listen", f"127.0.0.1:{self.port}", "-data", str(root / "data")]
        super().__init__(cmd, root / "ferretdb.log", cwd=root)

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with self.client(serverSelectionTimeoutMS=1000) as client:
                client.admin.command("ping")
        except Exception:
            return False
        return True

    def client(self, **options: Any) -> Any:
        """A pymongo MongoClient on this server (a context manager that closes it)."""
        from pymongo import MongoClient

        options.setdefault("serverSelectionTimeoutMS", 10_000)
        return MongoClient(self.uri, **options)


@pytest.fixture(scope="session")
def ferretdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDBServer]:
    """The session's server, started once; skipped (or failed in CI) when not installed."""
    try:
        import pymongo  # noqa: F401
    except ImportError:
        server_missing("pymongo is not installed (pip install -e '.[test]')")
    binary = ferretdb_binary()
    if not binary.exists():
        server_missing(f"no FerretDB server at {binary} (run scripts/setup/ferretdb.sh)")
    server = FerretDBServer(tmp_path_factory.mktemp("ferretdb"), binary)
    with serving(server):
        yield server


@pytest.fixture
def mongodb_database(ferretdb_server: FerretDBServer) -> Iterator[str]:
    """The name of a fresh database on the session's server, running; dropped after the test."""
    ferretdb_server.ensure_running()
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        ferretdb_server.ensure_running()
        with ferretdb_server.client() as client:
            client.drop_database(name)
