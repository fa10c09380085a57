"""Heavy API reads cannot starve the pipeline: budgets, the busy answer, and a writer that
writes on while reads run (progress counted in writes, never timed)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from stores.rows import T0, trade

from tickpipe.durations import Seconds
from tickpipe.records import TradeBatch
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.settings import ServeConfig
from tickpipe.stores.base import OverBudget
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread, api_over

ENDLESS = "SELECT count(*) FROM range(10000000000000) a"  # runs until interrupted


class HeldStore(DuckDBStore):
    """The stored file, whose analytics wait at their first read until `release` is set: a
    test can hold heavy reads in progress (the pause is injected; the reads are real)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, read_only=True)
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def candle_totals(self, *args, **kwargs):
        self.entered.release()
        assert self.release.wait(60)
        return super().candle_totals(*args, **kwargs)


def test_a_read_over_its_budget_is_a_503_that_names_the_budget(
    stored_path: tuple[Path, int],
) -> None:
    serve = ServeConfig(read_timeout_s=Seconds(1e-6))
    with api_over(stored_path[0], lambda s: create_app(ApiContext(s), serve=serve)) as url:
        for path in ("/api/analytics/top-exchanges", "/api/analytics/exchange/alpha"):
            answer = httpx.get(url + path, params={"period": "1h"}, timeout=10)
            assert answer.status_code == 503, answer.text
            reason = answer.json()["error"]
            assert reason.startswith("over the time budget") and "read_timeout = 1us" in reason


def test_a_udf_read_over_its_budget_is_a_503_in_udfs_error_shape(
    stored_path: tuple[Path, int],
) -> None:
    serve = ServeConfig(read_timeout_s=Seconds(1e-6))
    with api_over(stored_path[0], lambda s: create_app(ApiContext(s), serve=serve)) as url:
        answer = httpx.get(url + "/udf/search", params={"query": "btc"}, timeout=10)
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["s"] == "error" and "error" not in body
    assert body["errmsg"].startswith("over the time budget")


def test_one_heavy_read_too_many_is_busy_while_kpis_answer(stored_path: tuple[Path, int]) -> None:
    store = HeldStore(stored_path[0])
    serve = ServeConfig(read_timeout_s=Seconds(60.0), heavy_reads=2)
    api = ApiThread(create_app(ApiContext(store), serve=serve))
    path = api.url + "/api/analytics/top-tickers"
    try:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(httpx.get, path, timeout=60) for _ in range(2)]
            for _ in held:
                assert store.entered.acquire(timeout=30)  # both heavy reads are in progress
            extra = httpx.get(path, timeout=10)
            assert extra.status_code == 503
            assert extra.headers["Retry-After"] == "1"
            assert extra.json()["error"].startswith("busy: 2 reads in progress")
            for cheap in ("/api/kpis", "/api/health"):
                assert httpx.get(api.url + cheap, timeout=10).status_code == 200
            store.release.set()
            assert [f.result().status_code for f in held] == [200, 200]
        assert httpx.get(path, timeout=10).status_code == 200  # the slots are free again
    finally:
        store.release.set()
        api.stop()
        store.close()


def test_the_writer_writes_on_while_a_read_runs(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    writes: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            i = len(writes)
            store.write([TradeBatch.from_trades([trade(i, T0 + i)])])
            writes.append(i)

    during: list[int] = []

    def reader() -> None:
        before = len(writes)
        with pytest.raises(OverBudget, match="over the time budget"), store.read_budget(2.0):
            store.query(ENDLESS)
        during.append(len(writes) - before)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        read = threading.Thread(target=reader)
        read.start()
        read.join(60)
        assert not read.is_alive()
    finally:
        stop.set()
        thread.join(60)
    assert during and during[0] >= 10  # a read holding the writer up would leave 0
    ((stored,),) = store.query("SELECT count(*) FROM trades")
    assert stored == len(writes)
    store.close()


def test_a_store_out_of_memory_is_over_the_memory_budget(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", memory_limit="32MB")
    try:
        with pytest.raises(OverBudget, match="over the memory budget"), store.read_budget(30):
            store.query("SELECT list(range) FROM range(20000000)")  # a list cannot spill
        assert store.query("SELECT 42") == [(42,)]  # the store reads on
    finally:
        store.close()
