"""The Cassandra store against a secured node (client-to-node TLS required, PasswordAuthenticator):
`tickpipe demo` and `tickpipe verify` with the password from TICKPIPE_STORE_PASSWORD_FILE, and
one line naming the cause, at once, for a wrong password, an untrusted certificate and a client
without TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from servers.cassandra import SecuredCassandraNode, fresh_keyspace

from stores.rows import T0, trade
from stores.secured import FAULTS, demo_and_verify, fault_case, refused_demo
from tickpipe.credentials import with_password
from tickpipe.records import TradeBatch
from tickpipe.stores.base import StoreError
from tickpipe.stores.cassandra import CassandraStore

pytestmark = [pytest.mark.cassandra, pytest.mark.secured]


@pytest.fixture
def secured_keyspace(secured_cassandra_node: SecuredCassandraNode) -> Iterator[str]:
    with fresh_keyspace(secured_cassandra_node) as name:
        yield name


def store_url(node: SecuredCassandraNode, keyspace: str, ca: Path | None) -> str:
    """The URL a user writes: a user, no password, the CA to verify the node with."""
    query = f"?{urlencode({'tls_ca': str(ca)})}" if ca else ""
    return f"cassandra://{node.user}@{node.host}:{node.port}/{keyspace}{query}"


@pytest.mark.slow
def test_demo_over_tls_with_the_password_from_a_file_stores_trades_and_verify_passes(
    secured_cassandra_node: SecuredCassandraNode, secured_keyspace: str, tmp_path: Path
) -> None:
    node = secured_cassandra_node
    url = store_url(node, secured_keyspace, node.tls.ca)
    demo_and_verify(url, node.password, tmp_path)
    store = CassandraStore(with_password(url, node.password))
    try:
        assert store.totals()["stored_trades"] > 1_000
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_each_security_fault_is_one_line_at_once_without_the_password(
    secured_cassandra_node: SecuredCassandraNode, secured_keyspace: str, tmp_path: Path, fault: str
) -> None:
    node = secured_cassandra_node
    ca, password, words = fault_case(fault, node.tls, node.password, "tls_ca")
    line = refused_demo(store_url(node, secured_keyspace, ca), password, tmp_path, node.password)
    assert words in line and f"{node.host}:{node.port}" in line


def test_a_password_refused_after_a_restart_fails_the_write_at_once_not_after_retry_for(
    secured_cassandra_node: SecuredCassandraNode, secured_keyspace: str
) -> None:
    """The node comes back from a restart with the store's password changed: its next write
    fails with the authentication line, not after an hour of "node unreachable" retries (the
    test's own timeout would end it first); retrying cannot make a wrong password right."""
    node = secured_cassandra_node
    store = CassandraStore(
        with_password(store_url(node, secured_keyspace, node.tls.ca), node.password),
        retry_for=3600.0,
    )
    try:
        store.write([TradeBatch.from_trades([trade(1, T0)])])
        node.set_password(node.user, "changed-" + node.password)
        node.stop()
        node.start()
        with pytest.raises(StoreError, match="authentication failed for user tickpipe") as caught:
            store.write([TradeBatch.from_trades([trade(2, T0 + 1)])])
        assert "\n" not in str(caught.value) and node.password not in str(caught.value)
    finally:
        store.close()
        node.ensure_running()
        node.set_password(node.user, node.password)
