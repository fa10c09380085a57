"""`tickpipe serve --kafka`: the distributed mode's live feed, end to end with real servers.

ingest (simulated market) -> Kafka -> process -> PostgreSQL + candles topic -> serve --kafka ->
a WebSocket client on /api/live. What the client gets must be the live updates of the candle it
subscribed to, as the processor produced them (they are also in PostgreSQL by then).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import websockets

pytestmark = pytest.mark.slow


def tickpipe(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", *args],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(predicate, timeout: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    text = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))
    pytest.fail(f"timed out waiting for {what}\n{text}")


def test_serve_pushes_live_candles_from_the_candles_topic(kafka, postgres_dsn, tmp_path):
    topic = kafka.create_topic(f"feed-{uuid.uuid4().hex[:8]}", 2)
    candles_topic = kafka.create_topic(f"{topic}.candles", 2, **{"cleanup.policy": "compact"})
    config = tmp_path / "tickpipe.toml"
    config.write_text('intervals = ["1s", "5s"]\nallowed_lateness = "200ms"\n'
                      'provisional_every = "100ms"\nflush_every = "50ms"\n')  # fmt: skip
    common = ["--config", str(config), "--kafka", kafka.bootstrap]
    procs = [
        tickpipe("process", *common, "--topic", topic, "--store", postgres_dsn,
                 "--candles-topic", candles_topic, "--data-dir", str(tmp_path / "p"),
                 log=tmp_path / "process.log"),
        tickpipe("ingest", *common, "--topic", topic, "--simulated", "--symbols", "2",
                 "--rate", "400", "--duration", "60", "--data-dir", str(tmp_path / "i"),
                 log=tmp_path / "ingest.log"),
    ]  # fmt: skip
    try:

        def stored_instrument():
            try:
                with psycopg.connect(postgres_dsn) as con:
                    return con.execute("SELECT exchange, symbol FROM candles LIMIT 1").fetchone()
            except psycopg.Error:
                return None

        exchange, symbol = wait_for(stored_instrument, 60, "stored candles", tmp_path)
        serve_log = tmp_path / "serve.log"
        procs.append(
            tickpipe("serve", "--config", str(config), "--store", postgres_dsn, "--port", "0",
                     "--kafka", kafka.bootstrap, "--candles-topic", candles_topic,
                     log=serve_log)
        )  # fmt: skip
        url = wait_for(
            lambda: re.search(r"API at (http://\S+)", serve_log.read_text()), 30, "serve", tmp_path
        ).group(1)
        received = asyncio.run(subscribe(url, exchange, symbol, seconds=4.0))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    candles = [m for m in received if m["type"] == "candle"]
    assert len(candles) >= 3, received[:5]
    assert {(m["exchange"], m["symbol"], m["interval"]) for m in candles} == {
        (exchange, symbol, "1s")
    }
    now_us = time.time_ns() // 1000
    assert all(now_us - m["updated_at"] < 30_000_000 for m in candles), "live, not history"
    assert len({m["start"] for m in candles}) >= 2, "updates of successive 1s candles"


async def subscribe(url: str, exchange: str, symbol: str, seconds: float) -> list[dict]:
    ws_url = url.replace("http://", "ws://").rstrip("/") + "/api/live"
    out: list[dict] = []
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"subscribe": {"exchange": exchange, "symbol": symbol,
                                                "interval": "1s"}}))  # fmt: skip
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["type"] == "subscribed", answer
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                out.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
            except TimeoutError:
                break
    return out
