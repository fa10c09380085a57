"""`tickpipe export` and `tickpipe verify --lake` as a user runs them: real subprocesses over a
DuckDB store, a local lake and an S3 one (moto's server)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from pyarrow import fs
from servers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from test_cli import _store_with_candles, one_line_usage_error, tickpipe


def lake_count(lake: Path, kind: str = "trades") -> int:
    """Rows of a local lake, read as DuckDB reads any Hive-partitioned Parquet directory."""
    glob = f"'{lake}/{kind}/**/*.parquet'"
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet({glob}, hive_partitioning = true)")
    return rows.fetchall()[0][0]


def test_export_to_a_directory_writes_the_lake_with_progress_then_verify_lake_passes(
    tmp_path: Path,
) -> None:
    _store_with_candles(tmp_path)
    lake = tmp_path / "lake"

    export = tickpipe("export", "--data-dir", str(tmp_path), "--since", "1970-01-01",
                      "--to", str(lake))  # fmt: skip
    check = tickpipe("verify", "--lake", lake.as_uri())

    assert export.returncode == 0, export.stderr
    assert "export: 1/1 ex BTC-USDT: 40 trades" in export.stderr  # progress, one line each
    assert "export: 40 trades and" in export.stdout
    assert lake_count(lake) == 40
    assert lake_count(lake, "candles") > 0
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches, 0 duplicate trades" in check.stdout
    assert "40 lake trades" in check.stdout


def test_exporting_again_writes_nothing_twice(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)
    lake = tmp_path / "lake"
    args = ("export", "--data-dir", str(tmp_path), "--since", "1970-01-01", "--to", str(lake))
    assert tickpipe(*args).returncode == 0
    candles = lake_count(lake, "candles")

    again = tickpipe(*args)

    assert again.returncode == 0, again.stderr
    assert "export: 0 trades and 0 final candles" in again.stdout
    assert (lake_count(lake), lake_count(lake, "candles")) == (40, candles)


def test_export_until_leaves_later_trades_out(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)  # a trade every 150 ms from the epoch on
    lake = tmp_path / "lake"

    export = tickpipe("export", "--data-dir", str(tmp_path), "--since", "1970-01-01",
                      "--until", "1970-01-01T00:00:03", "--to", str(lake))  # fmt: skip

    assert export.returncode == 0, export.stderr
    assert lake_count(lake) == 20


def test_export_to_s3_then_verify_lake_with_the_endpoint_and_credentials_from_the_environment(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    _store_with_candles(tmp_path)
    env = {
        "TICKPIPE_LAKE_ENDPOINT": f"http://{s3_server.endpoint}",
        "TICKPIPE_LAKE_REGION": REGION,
        "TICKPIPE_LAKE_ACCESS_KEY_ID": ACCESS_KEY,
        "TICKPIPE_LAKE_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    url = f"s3://{s3_bucket}/history"

    export = tickpipe("export", "--data-dir", str(tmp_path), "--since", "1970-01-01",
                      "--to", url, env=env)  # fmt: skip
    check = tickpipe("verify", "--lake", url, env=env)

    assert export.returncode == 0, export.stderr
    assert SECRET_KEY not in export.stdout + export.stderr
    selector = fs.FileSelector(f"{s3_bucket}/history/trades", recursive=True)
    listed = s3_server.filesystem().get_file_info(selector)
    assert any(i.path.endswith(".parquet") and "/date=1970-01-01/" in i.path for i in listed)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "40 lake trades; 0 mismatches" in check.stdout


def test_a_lake_url_of_another_scheme_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    line = one_line_usage_error(
        tickpipe("demo", "--duration", "1", "--data-dir", str(tmp_path), "--lake", "ftp://x/y")
    )
    assert line.startswith("config error: lake = 'ftp://...' (from the command line)")
    assert "s3://bucket/prefix or file:///absolute/path" in line


def test_a_bad_roll_size_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    result = tickpipe("export", "--data-dir", str(tmp_path), "--since", "2026-01-01",
                      "--to", lake, env={"TICKPIPE_LAKE_ROLL_BYTES": "10"})  # fmt: skip
    assert "lake_roll_bytes = 10 (from TICKPIPE_LAKE_ROLL_BYTES): must be at least 1024" in (
        one_line_usage_error(result)
    )


def test_an_unreachable_s3_endpoint_is_one_line_naming_the_lake(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)
    env = {"TICKPIPE_LAKE_ENDPOINT": "http://127.0.0.1:9", "TICKPIPE_LAKE_REGION": REGION}

    export = tickpipe("export", "--data-dir", str(tmp_path), "--since", "1970-01-01",
                      "--to", "s3://history/ticks", env=env)  # fmt: skip
    check = tickpipe("verify", "--lake", "s3://history/ticks", env=env)

    for result in (export, check):
        assert one_line_usage_error(result).startswith("lake s3://history/ticks: cannot read: ")
