"""WebSocket abuse: a bounded number of subscriptions (and so of store lookups) per
connection, nothing done for a client that has left, and deep or huge messages closed with a
close code instead of a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.exposure import WS_POLICY
from tickpipe.serve.live import Hub
from tickpipe.serve.settings import ServeConfig
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread

LIMIT = 20


class CountingStore(DuckDBStore):
    """The stored file, counting the symbol lookups a subscription costs."""

    lookups = 0

    def has_instrument(self, exchange: str, symbol: str) -> bool:
        self.lookups += 1
        return super().has_instrument(exchange, symbol)


@pytest.fixture(params=[LIMIT])
def served(
    stored_path: tuple[Path, int], request: pytest.FixtureRequest
) -> Iterator[tuple[str, CountingStore]]:
    """The live URL of an API allowing `request.param` subscriptions, and its store."""
    store = CountingStore(stored_path[0], read_only=True)
    serve = ServeConfig(max_subscriptions=request.param)
    api = ApiThread(create_app(ApiContext(store, hub=Hub()), serve=serve))
    try:
        yield api.url.replace("http://", "ws://") + "/api/live", store
    finally:
        api.stop()
        store.close()


def unknown(i: int) -> str:
    return json.dumps({"subscribe": {"exchange": "alpha", "symbol": f"NO{i}-USDT"}})


def closed_by_server(url: str, messages: list[str | bytes]) -> websockets.frames.Close:
    """Send everything at once, then read until the server closes; its close frame."""

    async def attempt() -> websockets.frames.Close:
        async with websockets.connect(url, max_size=None) as ws:
            for message in messages:
                await ws.send(message)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None, "the server dropped the socket unclosed"
            return closed.value.rcvd

    return asyncio.run(asyncio.wait_for(attempt(), 30))


def test_subscriptions_per_connection_are_bounded_and_so_are_the_lookups(
    served: tuple[str, CountingStore],
) -> None:
    url, store = served
    close = closed_by_server(url, [unknown(i) for i in range(2_000)])
    assert close.code == WS_POLICY
    assert f"too many subscriptions: at most {LIMIT} per connection" in close.reason
    assert store.lookups <= LIMIT


@pytest.mark.parametrize("served", [10_000], indirect=True)
def test_a_client_that_left_costs_no_more_lookups(served: tuple[str, CountingStore]) -> None:
    url, store = served

    async def flood_and_leave() -> None:
        ws = await websockets.connect(url)
        for i in range(5_000):
            await ws.send(unknown(i))
        while not store.lookups:
            await asyncio.sleep(0.01)
        ws.transport.abort()  # gone without a goodbye, 5,000 subscribes still queued

    asyncio.run(asyncio.wait_for(flood_and_leave(), 30))
    time.sleep(0.5)
    settled = store.lookups
    time.sleep(1.0)
    assert store.lookups == settled < 5_000


def test_a_deeply_nested_message_is_closed_with_1008_without_a_traceback(
    served: tuple[str, CountingStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    close = closed_by_server(served[0], ["[" * 5_000 + "]" * 5_000])
    assert close.code == WS_POLICY and "nested too deep" in close.reason
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_nested_value_in_a_subscription_is_an_error_not_a_crash(
    served: tuple[str, CountingStore],
) -> None:
    async def attempt() -> dict:
        async with websockets.connect(served[0]) as ws:
            deep = "[" * 500 + "]" * 500
            await ws.send(f'{{"subscribe": {{"exchange": {deep}, "symbol": "BTC-USDT"}}}}')
            return json.loads(await ws.recv())

    answer = asyncio.run(asyncio.wait_for(attempt(), 10))
    assert answer["type"] == "error" and "exchange must be text" in answer["reason"]


def test_a_huge_message_is_closed_with_1009(
    served: tuple[str, CountingStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    close = closed_by_server(served[0], ["x" * 1_000_000])
    assert close.code == 1009
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_trades_in_a_subscription_is_true_or_false_and_anything_else_is_refused(
    served: tuple[str, CountingStore],
) -> None:
    key = {"exchange": "alpha", "symbol": "BTC-USDT", "interval": "1m"}

    async def attempt() -> list[dict]:
        async with websockets.connect(served[0]) as ws:
            answers = []
            for trades in ("no", 1, None, False, True):
                await ws.send(json.dumps({"subscribe": {**key, "trades": trades}}))
                answers.append(json.loads(await ws.recv()))
            return answers

    answers = asyncio.run(asyncio.wait_for(attempt(), 10))
    for answer, given in zip(answers[:3], ("'no'", "1", "None"), strict=True):
        assert answer["type"] == "error" and answer["reason"].startswith(f"trades={given}:")
    subscribed = {"type": "subscribed", "keys": [["alpha", "BTC-USDT", "1m"]]}
    assert answers[3:] == [subscribed, subscribed]
