"""The Store protocol and `open_store`: the `store` setting picks the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickpipe.stores.base import Store, StoreError, is_postgres_url, open_store
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore


def test_without_a_url_the_store_is_the_duckdb_file(tmp_path: Path) -> None:
    store = open_store("", tmp_path / "tickpipe.duckdb")
    try:
        assert isinstance(store, DuckDBStore)
        assert isinstance(store, Store)
        assert (tmp_path / "tickpipe.duckdb").exists()
    finally:
        store.close()


def test_a_postgresql_url_opens_postgresql_and_no_file(postgres_dsn: str, tmp_path: Path) -> None:
    store = open_store(postgres_dsn, tmp_path / "tickpipe.duckdb", retry_for=7.0)
    try:
        assert isinstance(store, PostgresStore)
        assert isinstance(store, Store)
        assert store.retry_for == 7.0
        assert not (tmp_path / "tickpipe.duckdb").exists()
    finally:
        store.close()


def test_read_only_duckdb_without_data_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no tickpipe data"):
        open_store(None, tmp_path / "missing.duckdb", read_only=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("postgresql://h/db", True), ("postgres://h/db", True), ("duckdb", False),
     ("mysql://h/db", False), ("", False)],
)  # fmt: skip
def test_which_urls_name_postgresql(url: str, expected: bool) -> None:
    assert is_postgres_url(url) is expected
