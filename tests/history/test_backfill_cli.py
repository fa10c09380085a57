"""`tickpipe backfill` as a scheduler runs it: killed (SIGKILL) in the middle and started again,
it ends with exactly the exchange's trades and exact candles; a re-run changes nothing; exit
statuses and the one-line summary a script reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from fakes.binance_server import FakeBinanceThread

from history.test_backfill import live
from tickpipe.records import Disconnect
from tickpipe.stores.duckdb import DuckDBStore

T0_MS = 1_780_000_000_000 - 1_780_000_000_000 % 3_600_000
SINCE, UNTIL = "2026-05-28T20:00", "2026-05-29T00:00"  # T0 is 2026-05-28T20:00 UTC


def backfill(tmp_path: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tickpipe", "backfill", "--data-dir", str(tmp_path),
        "--exchange", "binance", "--symbol", "BTC-USDT", "--rest-endpoint", f"binance={url}",
        "--since", SINCE, "--until", UNTIL, *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_killed_backfill_resumes_and_ends_exact(tmp_path):
    with FakeBinanceThread(symbols=["BTCUSDT"]) as fake:

        def make(server):
            for k in range(6000):
                server.trade("BTCUSDT", trade_time=T0_MS + k * 2_000)
            server.rest_page_limit = 50
            return [(e["t"], e["T"]) for e in server.history["BTCUSDT"]]

        published = fake.call(make)
        state = tmp_path / "backfill-state.json"
        proc = subprocess.Popen(
            backfill(tmp_path, fake.rest_url, "--chunk", "500", "--requests-per-second", "25"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until a few chunks are stored
            if state.exists() and json.loads(state.read_text() or "{}"):
                task = next(iter(json.loads(state.read_text()).values()))
                if task["trades"] >= 1500:
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed_at = next(iter(json.loads(state.read_text()).values()))
        assert not killed_at["done"] and killed_at["cursor"]  # it was stopped in the middle
        asked = fake.call(lambda server: len(server.rest_requests))
        done = subprocess.run(backfill(tmp_path, fake.rest_url, "--requests-per-second", "1000"),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        summary = done.stdout.strip().splitlines()[-1]
        assert summary.startswith("backfill: OK - 1 symbols") and "0 failed" in summary
        # It went on from the saved cursor, not from the start (6000 / 50 = 120 pages).
        assert fake.call(lambda server: len(server.rest_requests)) - asked < 120 - 20
        store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
        try:
            rows = sorted((int(t.trade_id), t.ts // 1000) for b in store.trade_batches()
                          for t in b.to_trades())  # fmt: skip
        finally:
            store.close()
        assert rows == published  # all 6000 (T0 + 12,000 s lies inside the range), once each
        check = subprocess.run(
            [sys.executable, "-m", "tickpipe", "verify", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        again = subprocess.run(backfill(tmp_path, fake.rest_url), capture_output=True, text=True,
                               timeout=120)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "0 new stored" in again.stdout and "1 already done" in again.stdout


def test_an_exchange_without_history_stops_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tickpipe", "backfill", "--data-dir", str(tmp_path),
         "--exchange", "bybit", "--symbol", "BTC-USDT", "--since", SINCE],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tickpipe backfill: bybit:"), out.stderr


def test_a_range_is_required_unless_gaps(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tickpipe", "backfill", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "--since" in out.stderr and "Traceback" not in out.stderr


def test_gaps_from_the_command_line_fills_the_holes_and_names_those_it_cannot(tmp_path):
    with FakeBinanceThread(symbols=["BTCUSDT"]) as fake:

        def make(server):
            for k in range(1200):
                server.trade("BTCUSDT", trade_time=T0_MS + k * 1_000)
            return [
                (str(e["t"]), float(e["p"]), float(e["q"]), e["T"] * 1000,
                 "sell" if e["m"] else "buy")
                for e in server.history["BTCUSDT"]
            ]  # fmt: skip

        published = fake.call(make)
        kept = [r for n, r in enumerate(published) if not 300 <= n < 420 and n != 700]
        store = DuckDBStore(tmp_path / "tickpipe.duckdb")
        live(store, kept)
        # Bybit's ids skip across symbols: its disconnect marks the hole, which it cannot fill.
        lost = Disconnect(source="bybit", ts=T0_MS * 1000 + 5, reason="dropped")
        bybit = [("7", 10.0, 1.0, T0_MS * 1000, "buy"), ("9", 10.0, 1.0, T0_MS * 1000 + 9, "buy")]
        live(store, bybit, "bybit", "BTC-USDT")
        detail = msgspec.json.encode(lost).decode()
        store.write(events=[(lost.ts, "disconnect", "bybit", detail)])
        store.close()
        out = subprocess.run(
            [sys.executable, "-m", "tickpipe", "backfill", "--gaps", "--data-dir", str(tmp_path),
             "--rest-endpoint", f"binance={fake.rest_url}", "--requests-per-second", "1000"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("backfill: OK - 2 holes, ")
    assert "121 new stored" in out.stdout
    assert "backfill: bybit BTC-USDT: hole left: bybit:" in out.stderr
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        rows = sorted(
            (t.trade_id, t.price, t.size, t.ts, t.side)
            for b in store.trade_batches() for t in b.to_trades() if t.exchange == "binance"
        )  # fmt: skip
    finally:
        store.close()
    assert rows == sorted(published)


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_keeps_what_is_stored(tmp_path):
    with FakeBinanceThread(symbols=["BTCUSDT"]) as fake:

        def make(server):
            for k in range(3000):
                server.trade("BTCUSDT", trade_time=T0_MS + k * 2_000)
            server.rest_page_limit = 50

        fake.call(make)
        state = tmp_path / "backfill-state.json"
        proc = subprocess.Popen(
            backfill(tmp_path, fake.rest_url, "--chunk", "200", "--requests-per-second", "20"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert (
        err.strip().splitlines()[-1].startswith("backfill: interrupted;") and "Traceback" not in err
    )
    assert not next(iter(json.loads(state.read_text()).values()))["done"]
