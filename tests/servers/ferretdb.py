"""A real MongoDB wire-protocol server for the MongoDB store tests: FerretDB 1.x over SQLite.

No MongoDB server package is reachable here, so FerretDB stands in for MongoDB: our own small
main over FerretDB's embeddable package (scripts/ferretdb/), built by scripts/setup/ferretdb.sh
into a cache outside git. It runs as a child process on a free 127.0.0.1 port with its SQLite
files in a temp dir, for the whole test session. Each test that wants a database gets a fresh
one (`mongodb_database`), dropped afterwards. `server.stop()`/`server.start()` restart it on
the same port and data (fault tests).

`secured_ferretdb_server` is a second server, started only by the tests that ask for it:
FerretDB's own command (built beside ours by the same script), serving TLS clients only (a
certificate from servers.certs) and checking passwords with its experimental SCRAM
authentication (`--test-enable-new-auth`), which the embeddable package cannot switch on.
Without it FerretDB 1.x over SQLite checks no password at all. A user `tickpipe` with a
random password is made when it first starts.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.certs import TlsFiles, make_tls
from servers.process import ServerProcess, cache_dir, free_port, pinned_version, port_open, serving
from servers.require import server_missing

GO_MOD = Path(__file__).resolve().parents[2] / "scripts" / "ferretdb" / "go.mod"


def ferretdb_binary(name: str = "ferretdb-for-tests") -> Path:
    """Where scripts/setup/ferretdb.sh builds the server (`ferretdb`: FerretDB's own command)."""
    version = pinned_version(GO_MOD, r"^require github.com/FerretDB/FerretDB v(\S+)")
    return cache_dir() / f"ferretdb-{version}" / name


class FerretDBServer(ServerProcess):
    """One FerretDB process: `uri` (mongodb://127.0.0.1:PORT/), `client()` of pymongo."""

    name = "FerretDB"
    start_timeout_s = 30.0  # it answers within a second when idle
    ready_options: dict[str, Any] = {}  # of the client that asks whether it serves

    def __init__(self, root: Path, binary: Path) -> None:
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        super().__init__(self.command(root, binary), root / "ferretdb.log", cwd=root)

    def command(self, root: Path, binary: Path) -> list[str]:
        return [str(binary), "-listen", f"127.0.0.1:{self.port}", "-data", str(root / "data")]

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with self.client(serverSelectionTimeoutMS=1000, **self.ready_options) as client:
                client.admin.command("ping")
        except Exception:
            return False
        return True

    def client(self, **options: Any) -> Any:
        """A pymongo MongoClient on this server (a context manager that closes it)."""
        from pymongo import MongoClient

        options.setdefault("serverSelectionTimeoutMS", 10_000)
        return MongoClient(self.uri, **options)


class SecuredFerretDBServer(FerretDBServer):
    """TLS clients only, passwords checked: `tls` (its certificate files), `user` and
    `password`; `uri` says tls=true with the CA, and `client()` logs in."""

    name = "FerretDB (TLS, SCRAM)"
    user = "tickpipe"
    # Serving is enough: whether a client trusts the certificate is the tests' business.
    ready_options = {"tlsAllowInvalidCertificates": True}

    def __init__(self, root: Path, binary: Path) -> None:
        self.tls: TlsFiles = make_tls(root / "tls")
        self.password = secrets.token_urlsafe(16)
        super().__init__(root, binary)
        self.uri += f"?tls=true&tlsCAFile={self.tls.ca}"

    def command(self, root: Path, binary: Path) -> list[str]:
        (root / "data").mkdir(exist_ok=True)
        return [
            str(binary), "--handler=sqlite", f"--sqlite-url=file:{root / 'data'}/",
            f"--state-dir={root}", "--telemetry=disable", "--debug-addr=", "--log-level=WARN",
            "--listen-addr=", f"--listen-tls=127.0.0.1:{self.port}",
            f"--listen-tls-cert-file={self.tls.cert}", f"--listen-tls-key-file={self.tls.key}",
            # The user is made on the first start (a throwaway password: the command line is
            # fine for a test server's).
            "--test-enable-new-auth", "--setup-database=admin", f"--setup-username={self.user}",
            f"--setup-password={self.password}",
        ]  # fmt: skip

    def client(self, **options: Any) -> Any:
        options.setdefault("username", self.user)
        options.setdefault("password", self.password)
        return super().client(**options)


def _binary_or_missing(name: str = "ferretdb-for-tests") -> Path:
    """A server binary, once pymongo and the binary are both there."""
    try:
        import pymongo  # noqa: F401
    except ImportError:
        server_missing("pymongo is not installed (pip install -e '.[test]')")
    binary = ferretdb_binary(name)
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
def secured_ferretdb_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SecuredFerretDBServer]:
    """The session's TLS-only, password-checking server, started on first use."""
    root = tmp_path_factory.mktemp("ferretdb-secured")
    server = SecuredFerretDBServer(root, _binary_or_missing("ferretdb"))
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
