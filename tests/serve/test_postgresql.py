"""The API over PostgreSQL: what only PostgreSQL shows. That every route answers as it does
over DuckDB is the contract suite's (tests/stores/contract/test_api.py), for every store."""

from __future__ import annotations

import httpx

from tickpipe.serve.app import ApiContext, create_app
from tickpipe.stores.postgresql import PostgresStore

from .conftest import ApiThread


def test_health_names_the_database_without_a_password(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn.replace("postgres@", "postgres:secret@"))
    api = ApiThread(create_app(ApiContext(store)))
    try:
        body = httpx.get(api.url + "/api/health", timeout=10).json()
    finally:
        api.stop()
        store.close()
    assert body["status"] == "ok"
    assert body["store"].startswith("postgresql://postgres@127.0.0.1:")
    assert "secret" not in str(body)
