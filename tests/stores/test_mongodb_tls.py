"""The MongoDB store against a secured server (FerretDB 1.x, TLS only, SCRAM passwords checked):
`tickpipe demo` and `tickpipe verify` over `tls=true&tlsCAFile=CA` with the password from
TICKPIPE_STORE_PASSWORD_FILE, and one line naming the cause, at once, for a wrong password, an
untrusted certificate and a client without TLS."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlencode

import pytest
from servers.certs import make_tls
from servers.ferretdb import SecuredFerretDBServer, fresh_database

from stores.rows import T0, trade
from stores.secured import FAULTS, demo_and_verify, fault_case, refused_demo
from tickpipe.credentials import with_password
from tickpipe.records import TradeBatch
from tickpipe.stores.base import StoreError
from tickpipe.stores.mongodb import MongoStore

pytestmark = [pytest.mark.secured]


def store_url(server: SecuredFerretDBServer, database: str, ca: Path | None) -> str:
    """The URL a user writes: a user, no password, the CA to verify the server with."""
    tls = {"tls": "true", "tlsCAFile": str(ca)} if ca else {}
    query = urlencode({**tls, "authSource": "admin"})
    return f"mongodb://{server.user}@127.0.0.1:{server.port}/{database}?{query}"


@pytest.mark.slow
def test_demo_over_tls_stores_trades_and_verify_passes(
    secured_ferretdb_server: SecuredFerretDBServer, tmp_path: Path
) -> None:
    server = secured_ferretdb_server
    with fresh_database(server) as database:
        demo_and_verify(store_url(server, database, server.tls.ca), server.password, tmp_path)
        with server.client() as client:
            assert client[database].trades.count_documents({}) > 1_000


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_each_security_fault_is_one_line_naming_the_cause_without_the_password(
    secured_ferretdb_server: SecuredFerretDBServer, tmp_path: Path, fault: str
) -> None:
    server = secured_ferretdb_server
    ca, password, words = fault_case(fault, server.tls, server.password, "tlsCAFile")
    with fresh_database(server) as database:
        url = store_url(server, database, ca)
        line = refused_demo(url, password, tmp_path, server.password)
    assert words in line and f"127.0.0.1:{server.port}" in line


def test_a_certificate_no_longer_trusted_fails_the_write_at_once_not_after_retry_for(
    secured_ferretdb_server: SecuredFerretDBServer, tmp_path: Path
) -> None:
    """The server comes back from a restart with a certificate of another authority: the
    store's next write fails with the certificate line, not after an hour of "server
    unreachable" retries (the test's own timeout would end it first)."""
    server = secured_ferretdb_server
    tls = server.tls
    kept = tmp_path / "kept"
    kept.mkdir()
    for path in (tls.cert, tls.key):
        shutil.copy2(path, kept / path.name)
    with fresh_database(server) as database:
        url = with_password(store_url(server, database, tls.ca), server.password)
        store = MongoStore(url, retry_for=3600.0)
        try:
            store.write([TradeBatch.from_trades([trade(1, T0)])])
            impostor = make_tls(tmp_path / "impostor")
            shutil.copy2(impostor.cert, tls.cert)
            shutil.copy2(impostor.key, tls.key)
            server.stop()
            server.start()
            with pytest.raises(StoreError, match="certificate is not trusted") as caught:
                store.write([TradeBatch.from_trades([trade(2, T0 + 1)])])
            assert "\n" not in str(caught.value)
        finally:
            store.close()
            server.stop()
            for path in (tls.cert, tls.key):
                shutil.copy2(kept / path.name, path)
            server.ensure_running()
