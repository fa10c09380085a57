"""The data lake's S3: moto's server (tests/servers/s3.py), reached through pyarrow's
S3FileSystem as the lake will be, and read back as a Hive-partitioned Parquet dataset."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from servers.s3 import S3Server


def test_a_parquet_file_written_through_pyarrow_s3_reads_back_as_a_partitioned_dataset(
    s3_server: S3Server, s3_bucket: str
) -> None:
    s3 = s3_server.filesystem()
    trades = pa.table({"ts_us": [1_000_000, 2_000_000], "price": [97_000.5, 97_001.0]})
    root = f"{s3_bucket}/trades"
    pq.write_table(trades, f"{root}/exchange=binance/symbol=BTC-USDT/part-0.parquet", filesystem=s3)

    dataset = ds.dataset(root, filesystem=s3, format="parquet", partitioning="hive")
    read = dataset.to_table().sort_by("ts_us")
    # DuckDB scans the pyarrow dataset itself (its httpfs extension is not reachable here).
    total = duckdb.sql("SELECT count(*), max(price) FROM dataset").fetchall()

    assert read.column("price").to_pylist() == [97_000.5, 97_001.0]
    assert read.column("exchange").to_pylist() == ["binance", "binance"]
    assert read.column("symbol").to_pylist() == ["BTC-USDT", "BTC-USDT"]
    assert total == [(2, 97_001.0)]
