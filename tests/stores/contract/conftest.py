"""The stores the contract suite runs over: one row per store, one fixture per row.

Every test in this folder takes `store` (an open, empty store) and runs once per row of
`STORES`. Adding a store is one row here and one session fixture that opens a new, empty store
of that kind on the server tests/servers/ starts (a context manager: closed and dropped, or
emptied for the next test, on exit); a store that needs a slow server gets that server's marker
(`cassandra`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pytest
from servers.cassandra import KeyspacePool
from servers.ferretdb import FerretDBServer
from servers.ferretdb import fresh_database as fresh_mongodb_database
from servers.postgres import PostgresServer, fresh_database

from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore

Opener = Callable[[], AbstractContextManager[Store]]


@dataclass(frozen=True)
class StoreRow:
    name: str
    opener: str  # the session fixture below: an `Opener` of new, empty stores of this kind
    # Whether the store itself ignores a trade whose (exchange, symbol, trade_id) it holds.
    # DuckDB does not (a unique index would cut its insert speed to a third): there the
    # engine keeps trades unique, and `duplicate_trades` (so `tickpipe verify`) tells.
    ignores_duplicate_trades: bool = True
    marks: tuple[pytest.MarkDecorator, ...] = ()


STORES = [
    StoreRow("duckdb", "duckdb_stores", ignores_duplicate_trades=False),
    StoreRow("postgresql", "postgresql_stores"),
    StoreRow("cassandra", "cassandra_stores", marks=(pytest.mark.cassandra,)),
    StoreRow("mongodb", "mongodb_stores"),
]


@pytest.fixture(scope="session")
def duckdb_stores(tmp_path_factory: pytest.TempPathFactory) -> Opener:
    @contextlib.contextmanager
    def opened() -> Iterator[Store]:
        store = DuckDBStore(tmp_path_factory.mktemp("duckdb") / "tickpipe.duckdb")
        try:
            yield store
        finally:
            store.close()

    return opened


@pytest.fixture(scope="session")
def postgresql_stores(postgres_server: PostgresServer) -> Opener:
    @contextlib.contextmanager
    def opened() -> Iterator[Store]:
        with fresh_database(postgres_server) as dsn:
            store = PostgresStore(dsn)
            try:
                yield store
            finally:
                store.close()

    return opened


@pytest.fixture(scope="session")
def cassandra_stores(cassandra_keyspaces: KeyspacePool) -> Opener:
    node = cassandra_keyspaces.node

    @contextlib.contextmanager
    def opened() -> Iterator[Store]:
        from tickpipe.stores.cassandra import CassandraStore

        # A keyspace whose tables were emptied, not a new one: ~0.2 s instead of ~2 s a test.
        with cassandra_keyspaces.keyspace() as keyspace:
            store = CassandraStore(f"cassandra://{node.host}:{node.port}/{keyspace}")
            try:
                yield store
            finally:
                store.close()

    return opened


@pytest.fixture(scope="session")
def mongodb_stores(ferretdb_server: FerretDBServer) -> Opener:
    from tickpipe.stores.mongodb import MongoStore

    @contextlib.contextmanager
    def opened() -> Iterator[Store]:
        with fresh_mongodb_database(ferretdb_server) as name:
            store = MongoStore(ferretdb_server.uri + name)
            try:
                yield store
            finally:
                store.close()

    return opened


@pytest.fixture(scope="module", params=[pytest.param(r, id=r.name, marks=r.marks) for r in STORES])
def row(request: pytest.FixtureRequest) -> StoreRow:
    return request.param


@pytest.fixture(scope="module")
def opener(row: StoreRow, request: pytest.FixtureRequest) -> Opener:
    return request.getfixturevalue(row.opener)


@pytest.fixture
def store(opener: Opener) -> Iterator[Store]:
    """An open, empty store of each row in turn."""
    with opener() as s:
        yield s
