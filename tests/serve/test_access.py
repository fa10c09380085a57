"""Access control: loopback by default; an access token on HTTP and on the WebSocket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tickpipe.config import ConfigError, load_config
from tickpipe.serve.app import WS_UNAUTHORIZED, ApiContext, create_app
from tickpipe.serve.live import Hub
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(stored_path: tuple[Path, int]) -> Iterator[str]:
    store = DuckDBStore(stored_path[0], read_only=True)
    api = ApiThread(create_app(ApiContext(store, hub=Hub()), token=TOKEN))
    try:
        yield api.url
    finally:
        api.stop()
        store.close()


@pytest.mark.parametrize("path", ["/api/health", "/api/exchanges", "/openapi.json",
                                  "/api/analytics/top-tickers"])  # fmt: skip
def test_http_without_the_token_gets_401_json_with_the_reason(guarded: str, path: str) -> None:
    answer = httpx.get(guarded + path)
    assert answer.status_code == 401
    assert "access token required" in answer.json()["error"]


def test_a_wrong_token_gets_401(guarded: str) -> None:
    answer = httpx.get(guarded + "/api/health", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401


def test_the_token_opens_http_as_a_bearer_header_or_a_query_parameter(guarded: str) -> None:
    by_header = httpx.get(guarded + "/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
    by_query = httpx.get(guarded + "/api/health", params={"token": TOKEN})
    assert by_header.status_code == by_query.status_code == 200


def test_a_websocket_without_the_token_is_closed_with_4401(guarded: str) -> None:
    url = guarded.replace("http://", "ws://") + "/api/live"

    async def attempt() -> websockets.ConnectionClosed:
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return closed.value

    closed = asyncio.run(asyncio.wait_for(attempt(), 10))
    assert closed.rcvd is not None and closed.rcvd.code == WS_UNAUTHORIZED
    assert "access token required" in closed.rcvd.reason


def test_a_websocket_with_the_token_may_subscribe(guarded: str) -> None:
    url = guarded.replace("http://", "ws://") + f"/api/live?token={TOKEN}"

    async def attempt() -> dict:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"subscribe": {"exchange": "alpha", "symbol": "BTC-USDT",
                                                    "interval": "1m"}}))  # fmt: skip
            return json.loads(await ws.recv())

    assert asyncio.run(asyncio.wait_for(attempt(), 10))["type"] == "subscribed"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"subscribe": {"exchange": "alpha", "symbol": "NOPE-USDT", "interval": "1m"}},
         "unknown symbol"),
        ({"subscribe": {"exchange": "alpha", "symbol": "BTC-USDT", "interval": "7m"}},
         "not allowed"),
        ({"hello": 1}, "not a JSON subscribe message"),
        ({"subscribe": []}, "send {"),
    ],
)  # fmt: skip
def test_a_bad_subscription_gets_an_error_message_with_the_reason(
    guarded: str, message: dict, reason: str
) -> None:
    url = guarded.replace("http://", "ws://") + f"/api/live?token={TOKEN}"

    async def attempt() -> dict:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps(message))
            return json.loads(await ws.recv())

    answer = asyncio.run(asyncio.wait_for(attempt(), 10))
    assert answer["type"] == "error"
    assert reason in answer["reason"]


def test_a_stored_file_served_without_a_hub_says_it_has_no_live_pushes(
    stored_path: tuple[Path, int],
) -> None:
    store = DuckDBStore(stored_path[0], read_only=True)
    api = ApiThread(create_app(ApiContext(store)))
    url = api.url.replace("http://", "ws://") + "/api/live"

    async def attempt() -> dict:
        async with websockets.connect(url) as ws:
            return json.loads(await ws.recv())

    try:
        answer = asyncio.run(asyncio.wait_for(attempt(), 10))
    finally:
        api.stop()
        store.close()
    assert answer["type"] == "error" and "no live pushes" in answer["reason"]


def test_a_non_loopback_host_without_a_token_or_insecure_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"serve\.host = '0\.0\.0\.0'.*access token"):
        load_config(env={}, overrides={"serve.host": "0.0.0.0"})


@pytest.mark.parametrize(
    ("overrides", "env"),
    [
        ({"serve.host": "0.0.0.0"}, {"TICKPIPE_SERVE_TOKEN": TOKEN}),
        ({"serve.host": "0.0.0.0", "serve.insecure": True}, {}),
        ({"serve.host": "0.0.0.0", "serve.enabled": False}, {}),
        ({"serve.host": "::1"}, {}),
        ({}, {}),
    ],
)
def test_loopback_a_token_insecure_or_no_server_are_accepted(overrides: dict, env: dict) -> None:
    config = load_config(env=env, overrides=overrides)
    assert config.serve.host == overrides.get("serve.host", "127.0.0.1")  # kept as asked


def test_the_cli_stops_a_non_loopback_host_without_a_token_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "demo", "--host", "0.0.0.0", "--duration", "1",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "serve.host" in result.stderr and "--insecure" in result.stderr
