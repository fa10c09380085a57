"""`tickpipe run` against a local server that speaks Binance's stream and REST protocols, with
faults: every trade the exchange made is stored exactly once, including those made while the
connection was down (fetched again over REST)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fakes.binance_server import FakeBinanceThread, faulty_session

pytestmark = pytest.mark.slow


def test_run_stores_each_published_binance_trade_exactly_once_through_drops_and_duplicates(
    tmp_path: Path,
) -> None:
    with FakeBinanceThread(symbols=("BTCUSDT", "ETHUSDT"), ping_interval=0.5) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "run", "--quiet", "--data-dir", str(tmp_path),
             "--exchange", "binance", "--endpoint", f"binance={fake.url}",
             "--rest-endpoint", f"binance={fake.rest_url}",
             "--symbol", "BTC-USDT", "--symbol", "ETH-USDT"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert fake.server is not None
            fake.run(fake.server.wait_connections(1, timeout=30), timeout=40)
            fake.run(faulty_session(fake.server), timeout=90)
            published = fake.call(lambda s: list(s.published))
            made = fake.call(lambda s: [e for trades in s.history.values() for e in trades])
            requests = fake.call(lambda s: [p for p, _ in s.rest_requests])
            fake.run(asyncio.sleep(1.5))  # let the last frames travel and flush
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped after" in out

    expected = {(e["s"], str(e["t"])) for e in made}
    assert len(published) > len({(e["s"], e["t"]) for e in published})  # duplicates were sent
    assert len(expected) - len({(e["s"], e["t"]) for e in published}) == 65  # 65 never sent
    assert requests[0] == "/api/v3/exchangeInfo"  # the symbols were checked at start-up
    con = duckdb.connect(str(tmp_path / "tickpipe.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT raw_symbol, trade_id, symbol, exchange FROM trades").fetchall()
        events = con.execute("SELECT kind, detail FROM events").fetchall()
    finally:
        con.close()
    assert len(rows) == len(expected), "a trade was lost or stored twice"
    assert {(raw, tid) for raw, tid, _, _ in rows} == expected
    assert {(sym, ex) for _, _, sym, ex in rows} == {
        ("BTC-USDT", "binance"),
        ("ETH-USDT", "binance"),
    }
    assert "disconnect" in {kind for kind, _ in events}
    gaps = [json.loads(detail) for kind, detail in events if kind == "gap"]
    assert sorted((g["symbol"], g["recovered"]) for g in gaps) == [
        ("BTC-USDT", 40),
        ("ETH-USDT", 25),
    ]

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
