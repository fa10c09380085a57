"""The API over Cassandra answers every route as it does over DuckDB, for the same data.

The DuckDB store the engine filled (conftest) is copied into a fresh keyspace on the real node;
both are served by real uvicorn servers and asked the questions the PostgreSQL test asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers.cassandra import CassandraNode

from tickpipe.serve.app import ApiContext, create_app
from tickpipe.stores.cassandra import CassandraStore
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread, Served
from .test_api import BAD
from .test_postgresql import _approx, _questions, copy_store

pytestmark = pytest.mark.cassandra


@pytest.fixture(scope="module")
def both(
    stored_path: tuple[Path, int], cassandra_node: CassandraNode
) -> Iterator[tuple[Served, Served]]:
    path, end = stored_path
    duck = DuckDBStore(path, read_only=True)
    cassandra_node.ensure_running()
    url = f"cassandra://{cassandra_node.host}:{cassandra_node.port}/serve_{id(duck)}"
    store = CassandraStore(url)
    copy_store(duck, store)
    apis = [ApiThread(create_app(ApiContext(s))) for s in (duck, store)]
    try:
        yield Served(apis[0].url, duck, end), Served(apis[1].url, store, end)
    finally:
        for api in apis:
            api.stop()
        store.close()
        duck.close()


@pytest.mark.parametrize("index", range(len(_questions(0))))
def test_every_route_answers_the_same_over_cassandra(
    both: tuple[Served, Served], index: int
) -> None:
    duck, cassandra = both
    path, params = _questions(duck.end)[index]
    answers = [httpx.get(s.url + path, params=params, timeout=60) for s in (duck, cassandra)]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    expected, got = answers[0].json(), answers[1].json()
    assert got == _approx(expected)
    assert got not in ({}, [], None)


def test_health_names_the_keyspace(both: tuple[Served, Served]) -> None:
    _, cassandra = both
    body = httpx.get(cassandra.url + "/api/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["store"].startswith("cassandra://127.0.0.1:")


@pytest.mark.parametrize(("path", "params", "status", "reason"), BAD)
def test_a_bad_parameter_gets_the_same_4xx_over_cassandra(
    both: tuple[Served, Served], path: str, params: dict, status: int, reason: str
) -> None:
    duck, cassandra = both
    answers = [httpx.get(s.url + path, params=params, timeout=10) for s in (duck, cassandra)]
    assert answers[1].status_code == status
    assert answers[1].json() == answers[0].json()
