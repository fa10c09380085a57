"""`tickpipe run` against a local server that speaks Binance's stream protocol, with faults."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fakes.binance_server import FakeBinance, FakeBinanceThread

pytestmark = pytest.mark.slow


async def _script(server: FakeBinance) -> None:
    """Trades, duplicates, reordering, a malformed frame and a dropped connection."""
    for _ in range(150):
        server.publish("BTCUSDT")
        server.publish("ETHUSDT")
        await asyncio.sleep(0.002)
    first, second = server.trade("BTCUSDT"), server.trade("BTCUSDT")
    server.send(second, first, first, second)  # out of order, and each twice
    server.send_raw(b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"x"}}')
    server.send_raw(b"not json at all")
    for _ in range(50):
        server.publish("ETHUSDT")
    await asyncio.sleep(0.3)
    server.drop_all("scripted drop mid-stream")
    await server.wait_connections(2, timeout=30)
    for _ in range(150):
        server.publish("BTCUSDT")
        server.publish("ETHUSDT")
        await asyncio.sleep(0.002)


def test_run_stores_each_published_binance_trade_exactly_once_through_drops_and_duplicates(
    tmp_path: Path,
) -> None:
    with FakeBinanceThread(symbols=("BTCUSDT", "ETHUSDT"), ping_interval=0.5) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "run", "--quiet", "--data-dir", str(tmp_path),
             "--binance-url", fake.url, "--symbol", "BTC-USDT", "--symbol", "ETH-USDT"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert fake.server is not None
            fake.run(fake.server.wait_connections(1, timeout=30), timeout=40)
            fake.run(_script(fake.server), timeout=90)
            published = fake.call(lambda s: list(s.published))
            fake.run(asyncio.sleep(1.5))  # let the last frames travel and flush
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped after" in out

    expected = {(e["s"], str(e["t"])) for e in published}
    assert len(published) > len(expected)  # the script really sent duplicates
    con = duckdb.connect(str(tmp_path / "tickpipe.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT raw_symbol, trade_id, symbol, exchange FROM trades").fetchall()
        events = con.execute("SELECT kind FROM events").fetchall()
    finally:
        con.close()
    assert len(rows) == len(expected), "a trade was lost or stored twice"
    assert {(raw, tid) for raw, tid, _, _ in rows} == expected
    assert {(sym, ex) for _, _, sym, ex in rows} == {
        ("BTC-USDT", "binance"),
        ("ETH-USDT", "binance"),
    }
    assert ("disconnect",) in events

    letters = [
        json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()
    ]
    payloads = [letter["payload"] for letter in letters]
    assert "not json at all" in payloads
    assert any('"p":"x"' in p for p in payloads)

    check = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
