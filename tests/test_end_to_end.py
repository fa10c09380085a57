"""tickpipe as a user runs it: real subprocesses, a real DuckDB file, then `tickpipe verify`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from servers.demo import DemoServer

from tickpipe.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.slow

TICKPIPE = [sys.executable, "-m", "tickpipe"]


def tickpipe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TICKPIPE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def stored(data_dir: Path, sql: str) -> tuple:
    con = duckdb.connect(str(data_dir / "tickpipe.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def test_demo_for_ten_seconds_then_verify_reports_zero_mismatches(tmp_path: Path) -> None:
    demo = tickpipe("demo", "--duration", "10", "--quiet", "--data-dir", str(tmp_path))
    assert demo.returncode == 0, demo.stderr
    assert "tickpipe.duckdb" in demo.stdout

    check = tickpipe("verify", "--data-dir", str(tmp_path))

    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches" in check.stdout
    trades, symbols = stored(tmp_path, "SELECT count(*), count(DISTINCT symbol) FROM trades")
    assert trades > 5_000  # the default demo rate is 2,000 trades/s
    assert symbols >= 15  # a few of the 20 are quiet symbols that may not trade in 10 s
    intervals = stored(tmp_path, "SELECT list(DISTINCT interval ORDER BY interval) FROM candles")
    assert intervals[0] == ["1h", "1m", "1s", "5m", "5s"]


def kill_9_mid_demo(tmp_path: Path) -> int:
    """Run a fast demo into `tmp_path` until it has written a while, SIGKILL it, and return
    the time of the kill (µs)."""
    victim = DemoServer(tmp_path, "--rate", "20000")
    victim.start()
    try:
        wal = tmp_path / "tickpipe.duckdb.wal"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not wal.exists() or wal.stat().st_size < 500_000):
            assert victim.running, victim.log_tail()
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        code = victim.end(signal.SIGKILL, timeout_s=30)
    assert code == -signal.SIGKILL
    return time.time_ns() // 1000


def test_kill_9_mid_demo_then_restart_keeps_every_trade_once_and_verify_passes(
    tmp_path: Path,
) -> None:
    data = str(tmp_path)
    killed_at_us = kill_9_mid_demo(tmp_path)

    before = stored(tmp_path, "SELECT count(*), max(ts) FROM trades")
    assert before[0] > 0, "the killed demo stored nothing: the test proves nothing"

    restart = tickpipe("demo", "--duration", "4", "--quiet", "--data-dir", data)
    assert restart.returncode == 0, restart.stderr

    after = stored(
        tmp_path,
        f"SELECT count(*) FILTER (WHERE ts <= {before[1]}), count(*) FILTER (WHERE ts > "
        f"{killed_at_us}), count(*) - count(DISTINCT (exchange, symbol, trade_id)) FROM trades",
    )
    assert after[0] == before[0], "trades stored before the kill were lost or doubled"
    assert after[1] > 0, "the restarted demo stored nothing new"
    assert after[2] == 0
    check = tickpipe("verify", "--data-dir", data)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches" in check.stdout


WINDOW_US = {
    "1s": 1_000_000,
    "5s": 5_000_000,
    "1m": 60_000_000,
    "5m": 300_000_000,
    "1h": 3_600_000_000,
}


def lagging_provisional_candles(data_dir: Path) -> int:
    """Count, straight from the stored rows, the provisional candles that hold fewer trades
    than the store has in their window: what verify must name as stale, not as mismatches."""
    length = " ".join(f"WHEN '{name}' THEN {us}" for name, us in WINDOW_US.items())
    return stored(
        data_dir,
        f"""SELECT count(*) FROM candles c WHERE NOT c.final AND c.trades < (
                SELECT count(DISTINCT t.trade_id) FROM trades t
                WHERE t.exchange = c.exchange AND t.symbol = c.symbol AND t.ts >= c.start
                  AND t.ts < c.start + CASE c.interval {length} END)""",
    )[0]


def test_verify_right_after_a_kill_9_passes_naming_the_stale_provisional_candles(
    tmp_path: Path,
) -> None:
    kill_9_mid_demo(tmp_path)
    assert stored(tmp_path, "SELECT count(*) FROM candles WHERE NOT final")[0] > 0, (
        "no window was open at the kill: the test proves nothing"
    )
    # Whether the kill fell between a store transaction's trades and the next provisional
    # update of their candles is up to timing; verify must count exactly those that lag.
    lagging = lagging_provisional_candles(tmp_path)

    check = tickpipe("verify", "--data-dir", str(tmp_path))

    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches" in check.stdout
    found = re.search(r"([\d,]+) stale provisional candles", check.stdout)
    named = int(found[1].replace(",", "")) if found else 0
    assert named == lagging, check.stdout
    if lagging:
        assert "a restart of the pipeline rebuilds them" in check.stdout

    restart = tickpipe("demo", "--duration", "3", "--quiet", "--data-dir", str(tmp_path))
    assert restart.returncode == 0, restart.stderr
    assert lagging_provisional_candles(tmp_path) == 0
    again = tickpipe("verify", "--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "stale" not in again.stdout


def test_sigterm_stops_demo_cleanly_with_a_summary(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*TICKPIPE, "demo", "--quiet", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "writing to" in first
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after" in out
    check = tickpipe("verify", "--data-dir", str(tmp_path))
    assert check.returncode == 0, check.stdout + check.stderr


def test_replaying_the_stored_trades_of_a_demo_rebuilds_the_same_final_candles(
    tmp_path: Path,
) -> None:
    live, replayed = tmp_path / "live", tmp_path / "replayed"
    demo = tickpipe("demo", "--duration", "5", "--quiet", "--data-dir", str(live))
    assert demo.returncode == 0, demo.stderr
    export = tmp_path / "trades.parquet"
    con = duckdb.connect(str(live / "tickpipe.duckdb"), read_only=True)
    try:
        con.execute(f"COPY (SELECT * FROM trades ORDER BY recv_ts) TO '{export}' (FORMAT parquet)")
    finally:
        con.close()

    run = tickpipe(
        "run", "--replay", str(export), "--speed", "0", "--quiet", "--data-dir", str(replayed)
    )
    assert run.returncode == 0, run.stderr

    query = (
        "SELECT exchange, symbol, interval, start, open, high, low, close, trades, first_seq, "
        "last_seq, round(volume, 6) FROM candles WHERE final ORDER BY ALL"
    )
    con = duckdb.connect(str(replayed / "tickpipe.duckdb"), read_only=True)
    try:
        con.execute(f"ATTACH '{live / 'tickpipe.duckdb'}' AS live (READ_ONLY)")
        replayed_finals = con.execute(query).fetchall()
        live_finals = con.execute(query.replace("FROM candles", "FROM live.candles")).fetchall()
        replayed_trades = con.execute("SELECT count(*) FROM trades").fetchone()[0]
        live_trades = con.execute("SELECT count(*) FROM live.trades").fetchone()[0]
    finally:
        con.close()
    assert replayed_trades == live_trades
    assert len(live_finals) > 20  # enough closed windows for the comparison to mean something
    # Every window the replay closed is the live one, exactly; the replay closes fewer at
    # the end (no wall clock runs on past the last replayed trade).
    assert set(replayed_finals) <= set(live_finals)
    assert len(replayed_finals) >= 0.8 * len(live_finals)


def test_ctrl_c_during_the_restore_stops_at_once_and_keeps_the_store(tmp_path: Path) -> None:
    # 4M stored trades of the last 20 minutes: seconds of restore, which the signal cuts short.
    trades = 4_000_000
    DuckDBStore(tmp_path / "tickpipe.duckdb").close()  # the schema
    now_us = time.time_ns() // 1000
    con = duckdb.connect(str(tmp_path / "tickpipe.duckdb"))
    con.execute(
        "INSERT INTO trade_rows SELECT 'simulated', 'simulated', 'S' || (i % 10) || '-USD', "
        "'S' || (i % 10) || 'USD', NULL, i, 100 + (i % 97) * 0.01, 1.0, 'buy', "
        "$now - ($n - i) * 300, $now - ($n - i) * 300 FROM range($n) t(i)",
        {"now": now_us, "n": trades},
    )
    con.close()
    proc = subprocess.Popen(
        [*TICKPIPE, "demo", "--quiet", "--port", "0", "--duration", "60",
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    assert "restoring the open windows of 10 instruments" in lines[1], lines
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "Ctrl-C did not stop the restore"
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.strip() == "", err
    assert "stopped during the restore" in out
    assert stored(tmp_path, "SELECT count(*), count(DISTINCT seq) FROM trades") == (trades, trades)
    assert stored(tmp_path, "SELECT count(*) FROM candles") == (0,)  # no half-restored window
