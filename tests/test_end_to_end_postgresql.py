"""tickpipe over PostgreSQL as a user runs it: real subprocesses (`demo --store`, `verify
--store`, `serve --store`) against the real server, which is restarted and killed under them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.slow

TICKPIPE = [sys.executable, "-m", "tickpipe"]


def tickpipe(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TICKPIPE, *args], capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def stored(dsn: str, sql: str) -> tuple:
    with psycopg.connect(dsn) as con:
        return con.execute(sql).fetchone()


def wait_for_trades(dsn: str, more_than: int, proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        try:
            (count,) = stored(dsn, "SELECT count(*) FROM trades")
        except psycopg.Error:  # the schema is not there yet
            count = 0
        if count > more_than:
            return count
        time.sleep(0.2)
    raise AssertionError(f"no more than {more_than} trades stored after {timeout}s")


def demo(dsn: str, data_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*TICKPIPE, "demo", "--quiet", "--no-serve", "--store", dsn, "--data-dir", str(data_dir),
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_demo_over_postgresql_then_verify_reports_zero_mismatches(postgres_dsn, tmp_path):
    run = tickpipe("demo", "--duration", "6", "--quiet", "--no-serve", "--store", postgres_dsn,
                   "--data-dir", str(tmp_path))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "postgresql://postgres@127.0.0.1:" in run.stdout
    assert not (tmp_path / "tickpipe.duckdb").exists()  # the data went to PostgreSQL

    check = tickpipe("verify", "--store", postgres_dsn)

    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches, 0 duplicate trades" in check.stdout
    trades, symbols = stored(postgres_dsn, "SELECT count(*), count(DISTINCT symbol) FROM trades")
    assert trades > 3_000 and symbols >= 15
    assert f"from {trades:,} stored trades" in check.stdout


def test_verify_over_postgresql_names_a_tampered_candle(postgres_dsn, tmp_path):
    run = tickpipe("demo", "--duration", "3", "--quiet", "--no-serve", "--store", postgres_dsn,
                   "--data-dir", str(tmp_path), "--interval", "1s")  # fmt: skip
    assert run.returncode == 0, run.stderr
    with psycopg.connect(postgres_dsn) as con:
        con.execute(
            "UPDATE candles SET close = close + 1 WHERE (exchange, symbol, start) IN "
            "(SELECT exchange, symbol, start FROM candles ORDER BY start LIMIT 1)"
        )

    check = tickpipe("verify", "--store", postgres_dsn)

    assert check.returncode == 1
    assert "verify: FAILED - 1 mismatching candles" in check.stderr
    assert re.search(r"start=\d+: close\n", check.stderr), check.stderr


def test_postgresql_restarted_mid_demo_loses_and_doubles_nothing(
    postgres_server, postgres_dsn, tmp_path
):
    proc = demo(postgres_dsn, tmp_path, "--rate", "4000")
    try:
        before = wait_for_trades(postgres_dsn, 2_000, proc)
        postgres_server.stop("fast")
        time.sleep(2.0)  # the writer's flushes fail and retry; the demo keeps producing
        restarted_at = time.time_ns() // 1000
        postgres_server.start()
        wait_for_trades(postgres_dsn, before + 8_000, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "postgresql: write failed (server unreachable" in err  # said, not silent
    assert "retry 1 in" in err
    assert "stopped after" in out

    count, distinct, after = stored(
        postgres_dsn,
        "SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)), "
        f"count(*) FILTER (WHERE ts > {restarted_at}) FROM trades",
    )
    assert count == distinct
    assert after > 0
    match = re.search(r"trades ([\d,]+) ", out)
    assert match and int(match.group(1).replace(",", "")) == count  # every accepted trade
    check = tickpipe("verify", "--store", postgres_dsn)
    assert check.returncode == 0, check.stdout + check.stderr


def test_postgresql_away_longer_than_the_retry_deadline_stops_the_demo_with_one_line(
    postgres_server, postgres_dsn, tmp_path
):
    proc = subprocess.Popen(
        [*TICKPIPE, "demo", "--quiet", "--no-serve", "--store", postgres_dsn, "--data-dir",
         str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TICKPIPE_STORE_RETRY_FOR": "3s"},
    )  # fmt: skip
    try:
        wait_for_trades(postgres_dsn, 0, proc)
        postgres_server.stop("fast")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        postgres_server.start()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("postgresql: write failed") for line in lines[:-1]), err
    assert re.match(
        r"tickpipe: the store writer failed: PostgreSQL at postgresql://postgres@127\.0\.0\.1:"
        r"\d+/\w+: write failed for 3s \(\d+ attempts\): connection failed",
        lines[-1],
    ), lines[-1]


def test_kill_9_mid_demo_then_restart_over_postgresql_keeps_every_trade_once(
    postgres_dsn, tmp_path
):
    victim = demo(postgres_dsn, tmp_path, "--rate", "10000")
    try:
        wait_for_trades(postgres_dsn, 5_000, victim)
        time.sleep(0.5)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    killed_at_us = time.time_ns() // 1000
    before = stored(postgres_dsn, "SELECT count(*), max(ts) FROM trades")

    restart = tickpipe("demo", "--duration", "4", "--quiet", "--no-serve", "--store",
                       postgres_dsn, "--data-dir", str(tmp_path))  # fmt: skip
    assert restart.returncode == 0, restart.stderr

    after = stored(
        postgres_dsn,
        f"SELECT count(*) FILTER (WHERE ts <= {before[1]}), "
        f"count(*) FILTER (WHERE ts > {killed_at_us}), "
        "count(*) - count(DISTINCT (exchange, symbol, trade_id)) FROM trades",
    )
    assert after[0] == before[0], "trades stored before the kill were lost or doubled"
    assert after[1] > 0, "the restarted demo stored nothing new"
    assert after[2] == 0
    check = tickpipe("verify", "--store", postgres_dsn)
    assert check.returncode == 0, check.stdout + check.stderr


def test_serve_over_postgresql_answers_from_the_database(postgres_dsn, tmp_path):
    run = tickpipe("demo", "--duration", "3", "--quiet", "--no-serve", "--store", postgres_dsn,
                   "--data-dir", str(tmp_path))  # fmt: skip
    assert run.returncode == 0, run.stderr
    proc = subprocess.Popen(
        [*TICKPIPE, "serve", "--store", postgres_dsn, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"API at (http://\S+) over (\S+)", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        url, where = match.groups()
        assert where.startswith("postgresql://postgres@127.0.0.1:")
        kpis = httpx.get(url + "/api/kpis", timeout=10).json()
        (trades,) = stored(postgres_dsn, "SELECT count(*) FROM trades")
        assert kpis["stored_trades"] == trades > 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_run_with_an_unreachable_database_stops_with_one_line():
    result = tickpipe("demo", "--duration", "2", "--no-serve", "--store",
                      "postgresql://tp@127.0.0.1:1/tickpipe",
                      env={"TICKPIPE_STORE_PASSWORD": "secret"})  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cannot connect to PostgreSQL at postgresql://tp@127.0.0.1:1/")
    assert "secret" not in result.stderr + result.stdout
