"""`tickpipe demo --lake` as a user runs it: killed mid-way, restarted, and the lake then holds
every stored trade exactly once (the catch-up rule of tickpipe.stores.lake)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
from servers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from test_cli_lake import lake_count
from test_end_to_end import TICKPIPE, stored, tickpipe

pytestmark = pytest.mark.slow


def test_kill_9_mid_demo_with_a_lake_then_restart_leaves_every_stored_trade_in_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, lake = tmp_path / "data", tmp_path / "lake"
    monkeypatch.setenv("TICKPIPE_LAKE_ROLL_EVERY", "1s")
    run = ["demo", "--quiet", "--data-dir", str(data), "--lake", lake.as_uri()]
    victim = subprocess.Popen(
        [*TICKPIPE, *run, "--rate", "20000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(lake.rglob("*.parquet"))) < 20:
            assert victim.poll() is None, victim.stderr.read() if victim.stderr else ""
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    in_store, in_lake = stored(data, "SELECT count(*) FROM trades")[0], lake_count(lake)
    assert 0 < in_lake < in_store, "the lake did not lag the store: the restart proves nothing"

    restart = tickpipe(*run, "--duration", "4")
    assert restart.returncode == 0, restart.stderr

    total, unique = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)) FROM read_parquet("
        f"'{lake}/trades/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    assert total == unique, "a trade was written to the lake twice"
    assert total == stored(data, "SELECT count(*) FROM trades")[0] > in_store
    check = tickpipe("verify", "--lake", lake.as_uri())
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches, 0 duplicate trades" in check.stdout


def test_demo_with_an_s3_lake_stores_every_trade_in_it_and_verify_lake_passes(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "TICKPIPE_LAKE_ENDPOINT": f"http://{s3_server.endpoint}",
        "TICKPIPE_LAKE_REGION": REGION,
        "TICKPIPE_LAKE_ACCESS_KEY_ID": ACCESS_KEY,
        "TICKPIPE_LAKE_SECRET_ACCESS_KEY": SECRET_KEY,
        "TICKPIPE_LAKE_ROLL_EVERY": "1s",
    }.items():
        monkeypatch.setenv(name, value)
    url = f"s3://{s3_bucket}/ticks"

    demo = tickpipe("demo", "--duration", "4", "--quiet", "--data-dir", str(tmp_path),
                    "--lake", url)  # fmt: skip
    check = tickpipe("verify", "--lake", url)

    assert demo.returncode == 0, demo.stderr
    assert SECRET_KEY not in demo.stdout + demo.stderr
    trades = ds.dataset(f"{s3_bucket}/ticks/trades", filesystem=s3_server.filesystem(),
                        format="parquet", partitioning="hive")  # fmt: skip
    assert trades.count_rows() == stored(tmp_path, "SELECT count(*) FROM trades")[0] > 0
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches, 0 duplicate trades" in check.stdout
