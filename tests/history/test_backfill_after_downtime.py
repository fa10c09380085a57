"""The daily job's case end to end: `tickpipe run` stopped for a while (a hole in the stored
Binance ids), `tickpipe backfill --gaps` fills it, `tickpipe verify` agrees, and the next
`tickpipe run` restarts on the backfilled store without undoing its candles."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.binance_server import FakeBinance, FakeBinanceThread

from tickpipe.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.slow


async def _publish(server: FakeBinance, count: int) -> None:
    for _ in range(count):
        server.publish("BTCUSDT")
        await asyncio.sleep(0.003)


def _run(tmp_path: Path, fake: FakeBinanceThread, count: int) -> None:
    """`tickpipe run` while the exchange publishes `count` trades, then Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "run", "--quiet", "--no-serve", "--data-dir",
         str(tmp_path), "--exchange", "binance", "--symbol", "BTC-USDT", "--no-symbol-check",
         "--endpoint", f"binance={fake.url}", "--rest-endpoint", f"binance={fake.rest_url}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert fake.server is not None
        server = fake.server
        fake.run(server.wait_for(lambda: bool(server.open_connections()), 30), timeout=40)
        fake.run(_publish(fake.server, count), timeout=60)
        fake.run(asyncio.sleep(1.5))  # the last frames travel and are stored
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    fake.run(server.wait_for(lambda: not server.open_connections(), 10))


def _verify(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_gaps_of_a_downtime_are_filled_and_survive_the_next_restart(tmp_path):
    with FakeBinanceThread(symbols=["BTCUSDT"], ping_interval=0.5) as fake:
        _run(tmp_path, fake, 200)
        fake.call(lambda server: server.skip("BTCUSDT", 150))  # traded while tickpipe was down
        _run(tmp_path, fake, 200)
        out = subprocess.run(
            [sys.executable, "-m", "tickpipe", "backfill", "--gaps", "--data-dir", str(tmp_path),
             "--rest-endpoint", f"binance={fake.rest_url}", "--requests-per-second", "100"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "backfill: OK - 1 holes" in out.stdout and "150 new stored" in out.stdout
        _verify(tmp_path)
        _run(tmp_path, fake, 50)  # a restart on the backfilled store, then more trades
        made = fake.call(lambda server: sorted(e["t"] for e in server.history["BTCUSDT"]))
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        stored = sorted(int(t.trade_id) for b in store.trade_batches() for t in b.to_trades())
    finally:
        store.close()
    assert stored == made  # 600 trades, each once
    _verify(tmp_path)
