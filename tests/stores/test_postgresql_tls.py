"""The PostgreSQL store against a server set up as a deployment should be (TLS only,
scram-sha-256, `sslmode=verify-full` against the test authority): it works over TLS, and each
way the connection can be refused is one line naming the cause, given at once, never retried."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from servers.postgres import PostgresServer, SecuredPostgres

from stores.rows import T0, candle, trade
from tickpipe.records import TradeBatch
from tickpipe.stores.base import StoreError
from tickpipe.stores.postgresql import PostgresStore

pytestmark = pytest.mark.secured

TLS_OF_TICKPIPE = (
    "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
    "WHERE a.usename = %s AND a.datname = %s"
)


def with_password(url: str, password: str) -> str:
    """`url` with the password in it, as the store receives it (escaped as a URL needs)."""
    return url.replace("@", f":{quote(password, safe='')}@", 1)


def dsn(db: SecuredPostgres, password: str | None = None, rootcert: Path | None = None) -> str:
    """The store's DSN for `db`: verify-full against `rootcert` (the test authority)."""
    return with_password(db.url(rootcert=rootcert), db.password if password is None else password)


def tls_of_tickpipe(db: SecuredPostgres) -> list[tuple]:
    """What the server says about the TLS of tickpipe's connections to `db`."""
    with psycopg.connect(db.server.dsn) as con:
        return con.execute(TLS_OF_TICKPIPE, [db.user, db.database]).fetchall()


def refused(url: str) -> str:
    """The one line a store opened on `url` fails with."""
    with pytest.raises(StoreError) as info:
        PostgresStore(url, connect_timeout=5)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_the_store_works_over_tls_and_the_server_sees_every_connection_encrypted(
    secured_database: SecuredPostgres,
) -> None:
    # channel_binding=require: the SCRAM exchange is bound to this TLS session as well.
    store = PostgresStore(dsn(secured_database) + "&channel_binding=require")
    try:
        store.write([TradeBatch.from_trades([trade(1, T0)])], candles=[candle(T0)])
        assert store.totals()["stored_trades"] == 1
        connections = tls_of_tickpipe(secured_database)
        assert len(connections) >= 2  # the writer's and a reader's
        assert all(ssl and version.startswith("TLS") for ssl, version in connections)
    finally:
        store.close()


def test_a_wrong_password_is_one_line_naming_it(secured_database: SecuredPostgres) -> None:
    message = refused(dsn(secured_database, password="not-the-password"))
    where = f"postgresql://tickpipe@127.0.0.1:{secured_database.port}/{secured_database.database}"
    cause = "password authentication failed for user tickpipe"
    assert message == f"cannot connect to PostgreSQL at {where}: {cause}"


def test_an_untrusted_certificate_is_one_line_naming_the_root_certificate(
    secured_database: SecuredPostgres,
) -> None:
    other_ca = secured_database.tls.other_ca
    message = refused(dsn(secured_database, rootcert=other_ca))
    assert message.endswith(f": the server's certificate is not trusted (sslrootcert {other_ca})")
    assert secured_database.password not in message


def test_a_certificate_for_another_name_is_refused_under_verify_full(
    secured_database: SecuredPostgres,
) -> None:
    # Connect to 127.0.0.1 but expect the certificate to name db.example, which it does not.
    url = dsn(secured_database).replace("127.0.0.1", "db.example") + "&hostaddr=127.0.0.1"
    message = refused(url)
    cause = "the server's certificate does not carry the name db.example"
    assert message.endswith(f": {cause} (sslmode=verify-full checks it)")


def test_a_server_without_tls_is_refused_when_verify_full_requires_it(
    postgres_server: PostgresServer, secured_postgres: SecuredPostgres
) -> None:
    url = (
        f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
        f"?sslmode=verify-full&sslrootcert={secured_postgres.tls.ca}"
    )
    message = refused(url)
    assert message.endswith(": the server does not offer TLS but sslmode=verify-full requires it")


def test_a_connection_without_tls_is_refused_by_the_server(
    secured_database: SecuredPostgres,
) -> None:
    url = with_password(
        f"postgresql://tickpipe@127.0.0.1:{secured_database.port}/{secured_database.database}"
        "?sslmode=disable",
        secured_database.password,
    )
    message = refused(url)
    assert (
        ": the server takes no connection without TLS from 127.0.0.1 for user tickpipe" in message
    )
    assert message.endswith("use sslmode=verify-full")
    assert secured_database.password not in message


def test_a_user_pg_hba_conf_does_not_let_in_is_one_line(secured_database: SecuredPostgres) -> None:
    url = dsn(secured_database).replace("postgresql://tickpipe:", "postgresql://postgres:", 1)
    message = refused(url)
    assert message.endswith(
        ": the server's pg_hba.conf lets in no connection from 127.0.0.1 for postgres to "
        f"{secured_database.database}"
    )


def test_no_password_is_one_line_saying_where_to_put_it(
    secured_database: SecuredPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))  # no password from ~/.pgpass
    monkeypatch.delenv("PGPASSWORD", raising=False)
    message = refused(secured_database.url())
    assert message.endswith(
        ": the server asks for a password and none was given "
        "(set TICKPIPE_STORE_PASSWORD or TICKPIPE_STORE_PASSWORD_FILE)"
    )


def test_a_missing_root_certificate_file_is_one_line_naming_it(
    secured_database: SecuredPostgres, tmp_path: Path
) -> None:
    missing = tmp_path / "ca.pem"
    message = refused(dsn(secured_database, rootcert=missing))
    assert f": sslrootcert file {missing} does not exist (sslmode=verify-full needs " in message


def test_a_refusal_while_running_fails_the_write_at_once_without_retrying(
    secured_database: SecuredPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The password changed under a running store and its connection dropped: the drop is
    retried, but reconnecting cannot succeed, so the write fails with the cause at once
    instead of retrying for `retry_for`."""
    store = PostgresStore(dsn(secured_database), retry_for=20)
    try:
        with psycopg.connect(secured_database.server.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(secured_database.user), sql.Literal("rotated-elsewhere")
                )
            )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = %s AND datname = %s",
                [secured_database.user, secured_database.database],
            )
        with caplog.at_level(logging.WARNING, logger="tickpipe"), pytest.raises(StoreError) as info:
            store.write([TradeBatch.from_trades([trade(1, T0)])])
        assert str(info.value).endswith(": password authentication failed for user tickpipe")
        # Retried once, for the dropped connection; the refusal that followed, never.
        retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
        assert len(retries) == 1 and "terminating connection" in retries[0], retries
    finally:
        store.close()
        with psycopg.connect(secured_database.server.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(secured_database.user), sql.Literal(secured_database.password)
                )
            )
