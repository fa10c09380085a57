"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a temp dir, a free port.

One cluster per test session (initdb takes a few seconds); each test that wants a database gets
a fresh one (`postgres_dsn`), dropped afterwards. PostgreSQL refuses to run as root, and CI runs
as root, so the cluster then runs as the `postgres` OS user, owning its temp dir.

Fault tests may `stop()`, `start()` or `restart()` the session's server: it keeps its port and
data, and every later test finds it running again.

`secured_postgres` is a second cluster set up as a deployment should be: TLS on with a
certificate from a test authority (`servers/certs.py`), SCRAM password hashes, and a pg_hba that
lets in only TLS connections with a password on 127.0.0.1, for a role `tickpipe` that owns its
database. Tests that use it are marked `secured`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.certs import TlsFiles, make_tls
from servers.process import free_port
from servers.require import server_missing

START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """One cluster: `dsn` (database `postgres`), `dsn_for(name)`, `stop()`, `start()`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="tickpipe-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.running = False
        self._user = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=self.dir)

    def init(self) -> None:
        # trust: a throwaway cluster that listens on 127.0.0.1 only, for the test session.
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=128MB "
            "-c max_connections=50"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(START_TIMEOUT), "-o", options,
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects clients cleanly, `immediate` is a crash."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""


SECURED_USER = "tickpipe"


class SecuredPostgresServer(PostgresServer):
    """A cluster that lets in over TCP only TLS connections of tickpipe's role with a SCRAM
    password, from 127.0.0.1. The tests administer it as `postgres` over its Unix socket
    (`dsn`)."""

    def __init__(self, bin_dir: Path, tls: TlsFiles) -> None:
        super().__init__(bin_dir)
        self.tls = tls
        # Characters a URL must escape, so the password's way into the store URL is tested too.
        self.password = f"{secrets.token_urlsafe(12)}/@:%"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.dir}&port={self.port}"

    def init(self) -> None:
        super().init()
        # PostgreSQL reads its key only when the server's OS user owns it with mode 0600.
        for source, name in ((self.tls.cert, "server.pem"), (self.tls.key, "server.key")):
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self._user:
                shutil.chown(target, self._user, self._user)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        (self.data / "pg_hba.conf").write_text(
            f"local all postgres trust\nhostssl all {SECURED_USER} 127.0.0.1/32 scram-sha-256\n"
        )

    def add_role(self) -> None:
        """The role tickpipe connects as, its password stored as a SCRAM verifier."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(SECURED_USER), sql.Literal(self.password)
                )
            )


@dataclasses.dataclass(frozen=True)
class SecuredPostgres:
    """Where a test reaches the secured cluster as tickpipe's role, and the TLS files."""

    host: str
    port: int
    user: str
    password: str
    database: str
    tls: TlsFiles
    server: SecuredPostgresServer

    def url(self, sslmode: str = "verify-full", rootcert: Path | None = None) -> str:
        """The store URL a user writes: the user but no password (that comes from
        TICKPIPE_STORE_PASSWORD), certificates checked against `rootcert` (the test CA)."""
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"
            f"?sslmode={sslmode}&sslrootcert={rootcert or self.tls.ca}"
        )


def _started(server: PostgresServer) -> PostgresServer:
    """`server` initialised and running, or server_missing() (after cleaning it up)."""
    try:
        server.init()
        server.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        server.close()
        server_missing(f"PostgreSQL could not start: {detail.strip()[-500:]}")
    return server


def _bin_dir() -> Path:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        server_missing("PostgreSQL is not installed (run scripts/setup/postgresql.sh)")
    assert bin_dir is not None  # server_missing() does not return
    return bin_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL, started once; skipped (or failed in CI) when not installed."""
    server = _started(PostgresServer(_bin_dir()))
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def owned_database(server: PostgresServer, owner: str) -> Iterator[str]:
    """A new, empty database on `server` owned by `owner` (its name), dropped on exit even if
    still in use."""
    import psycopg
    from psycopg import sql

    if not server.running:  # a fault test left it stopped
        server.start()
    name = f"t_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(owner)
    )
    with psycopg.connect(server.dsn, autocommit=True) as con:
        con.execute(create)
    try:
        yield name
    finally:
        if not server.running:
            server.start()
        with psycopg.connect(server.dsn, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on `server` (its DSN), dropped on exit even if still in use."""
    with owned_database(server, "postgres") as name:
        yield server.dsn_for(name)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's server, dropped after the test."""
    with fresh_database(postgres_server) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def secured_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPostgres]:
    """The session's TLS-only, SCRAM-only PostgreSQL with tickpipe's role and a database it
    owns; skipped (or failed in CI) when PostgreSQL is not installed."""
    tls = make_tls(tmp_path_factory.mktemp("postgres-tls"))
    server = _started(SecuredPostgresServer(_bin_dir(), tls))
    try:
        server.add_role()
        with owned_database(server, SECURED_USER) as name:
            yield SecuredPostgres(
                "127.0.0.1", server.port, SECURED_USER, server.password, name, tls, server
            )
    finally:
        server.close()


@pytest.fixture
def secured_database(secured_postgres: SecuredPostgres) -> Iterator[SecuredPostgres]:
    """The secured cluster with a fresh, empty database owned by tickpipe's role."""
    with owned_database(secured_postgres.server, SECURED_USER) as name:
        yield dataclasses.replace(secured_postgres, database=name)
