"""The Parquet data lake (tickpipe.stores.lake) on a local directory and on S3 (moto's server,
tests/servers/s3.py, reached through pyarrow's S3FileSystem as the lake is), read back as a
Hive-partitioned dataset by pyarrow and DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import msgspec
import polars
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow import fs
from servers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

from stores.rows import T0, M, S, candle, trade
from tickpipe.records import TradeBatch
from tickpipe.stores.base import Store, StoreError
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.lake.layout import CANDLES, DAY_US, TRADES, Lake
from tickpipe.stores.lake.location import ACCESS_KEY_ENV, SECRET_KEY_ENV, LakeSettings, open_lake
from tickpipe.stores.lake.sync import catch_up, copy_to_lake, verify_lake
from tickpipe.stores.lake.writer import LakeWriter
from tickpipe.stores.postgresql import PostgresStore
from tickpipe.verify import Checked

CREDENTIALS = {ACCESS_KEY_ENV: ACCESS_KEY, SECRET_KEY_ENV: SECRET_KEY}
DAY2 = T0 + DAY_US  # the same time of the next day


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


# -- a lake on each file system ------------------------------------------------------------


@pytest.fixture(params=["file", "s3"])
def lake_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LakeSettings]:
    """The settings of an empty lake: a local directory, or a prefix in a fresh S3 bucket."""
    if request.param == "file":
        yield LakeSettings(f"file://{tmp_path}/lake", roll_every_s=3600.0)
        return
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    yield LakeSettings(f"s3://{bucket}/lake", endpoint=f"http://{server.endpoint}",
                       region=REGION, roll_every_s=3600.0)  # fmt: skip


def make_lake(settings: LakeSettings, **changes: object) -> Lake:
    values = {**settings.__dict__, **changes}
    return open_lake(LakeSettings(**values), env=CREDENTIALS)  # type: ignore[arg-type]


def batch(*trades) -> TradeBatch:
    return TradeBatch.from_trades(list(trades))


def files(lake: Lake, kind: str) -> list[str]:
    selector = fs.FileSelector(lake.path(kind), recursive=True, allow_not_found=True)
    infos = lake.fs.get_file_info(selector)
    return sorted(i.path[len(lake.root) + 1 :] for i in infos if i.type == fs.FileType.File)


def lake_rows(lake: Lake, kind: str) -> list[dict]:
    dataset = lake.dataset(kind)
    return [] if dataset is None else dataset.to_table().to_pylist()


def test_trades_and_final_candles_land_hive_partitioned_by_exchange_symbol_and_date(
    lake_settings: LakeSettings,
) -> None:
    lake = make_lake(lake_settings)
    lake.add_trades(batch(trade(1, T0), trade(2, T0 + S), trade(3, DAY2),
                          trade(7, T0, exchange="other", symbol="ETH-USDT")))  # fmt: skip
    lake.add_candles([candle(T0, final=True), candle(T0 + M, final=False),
                      candle(DAY2, interval="1s", final=True)])  # fmt: skip
    lake.flush()

    day1, day2 = "date=2023-11-14", "date=2023-11-15"
    assert [p.rsplit("/", 1)[0] for p in files(lake, TRADES)] == [
        "trades/exchange=ex/symbol=BTC-USDT/" + day1,
        "trades/exchange=ex/symbol=BTC-USDT/" + day2,
        "trades/exchange=other/symbol=ETH-USDT/" + day1,
    ]
    assert [p.rsplit("/", 1)[0] for p in files(lake, CANDLES)] == [
        "candles/exchange=ex/symbol=BTC-USDT/" + day1,
        "candles/exchange=ex/symbol=BTC-USDT/" + day2,
    ]
    trades = lake_rows(lake, TRADES)
    assert sorted((t["exchange"], t["symbol"], t["date"], t["trade_id"]) for t in trades) == [
        ("ex", "BTC-USDT", "2023-11-14", "1"), ("ex", "BTC-USDT", "2023-11-14", "2"),
        ("ex", "BTC-USDT", "2023-11-15", "3"), ("other", "ETH-USDT", "2023-11-14", "7"),
    ]  # fmt: skip
    first = next(t for t in trades if t["trade_id"] == "1")
    assert (first["price"], first["side"], first["ts"]) == (100.0, "buy", T0)
    assert first["recv_ts"] == T0 + 1234
    # Provisional candles are not the lake's: only the two final ones.
    candles = sorted((c["interval"], c["start"], c["final"]) for c in lake_rows(lake, CANDLES))
    assert candles == [("1m", T0, True), ("1s", DAY2, True)]
    # The files themselves hold no partition column (as Spark writes them) ...
    one = files(lake, TRADES)[0]
    assert "exchange" not in pq.read_schema(f"{lake.root}/{one}", filesystem=lake.fs).names
    # ... and DuckDB scans the whole lake as one table through pyarrow.
    con = duckdb.connect().register("lake_trades", lake.dataset(TRADES))
    assert con.sql(
        "SELECT exchange, count(*) FROM lake_trades GROUP BY ALL ORDER BY 1"
    ).fetchall() == [("ex", 3), ("other", 1)]


def test_duckdb_read_parquet_with_hive_partitioning_reads_a_local_lake_as_is(
    tmp_path: Path,
) -> None:
    lake = make_lake(LakeSettings(f"file://{tmp_path}"))
    lake.add_trades(batch(trade(1, T0), trade(2, DAY2, price=101.0)))
    lake.flush()

    rows = duckdb.sql(
        f"SELECT exchange, symbol, CAST(date AS VARCHAR), price FROM read_parquet("
        f"'{tmp_path}/trades/**/*.parquet', hive_partitioning = true) ORDER BY ts"
    ).fetchall()

    assert rows == [
        ("ex", "BTC-USDT", "2023-11-14", 100.0),
        ("ex", "BTC-USDT", "2023-11-15", 101.0),
    ]


def test_polars_reads_a_local_lake_as_is(tmp_path: Path) -> None:
    lake = make_lake(LakeSettings(f"file://{tmp_path}"))
    lake.add_trades(batch(trade(1, T0), trade(2, T0 + S)))
    lake.flush()

    frame = polars.read_parquet(f"{tmp_path}/trades/**/*.parquet", hive_partitioning=True)

    assert frame.height == 2 and set(frame["symbol"].to_list()) == {"BTC-USDT"}


def test_a_partition_rolls_into_a_new_file_at_roll_bytes_and_after_roll_every(
    lake_settings: LakeSettings,
) -> None:
    by_size = make_lake(lake_settings, roll_bytes=1024)
    for i in range(100):  # tens of Arrow bytes a trade: a file every few dozen trades
        by_size.add_trades(batch(trade(i, T0 + i * S)))
    rolled = len(files(by_size, TRADES))
    by_size.flush()
    assert 3 <= rolled < 50
    assert len(lake_rows(by_size, TRADES)) == 100

    by_age = make_lake(lake_settings, url=lake_settings.url + "-age", roll_every_s=10.0)
    by_age.add_trades(batch(trade(1, T0)), now_s=100.0)
    by_age.add_trades(batch(trade(2, T0 + S)), now_s=105.0)
    assert by_age.roll(now_s=109.9) == 0
    assert files(by_age, TRADES) == []  # nothing visible before its file is written
    assert by_age.roll(now_s=110.0) == 1
    assert len(files(by_age, TRADES)) == 1
    assert len(lake_rows(by_age, TRADES)) == 2


def test_an_unfinished_temporary_file_is_never_read(tmp_path: Path) -> None:
    lake = make_lake(LakeSettings(f"file://{tmp_path}"))
    lake.add_trades(batch(trade(1, T0)))
    lake.flush()
    (written,) = files(lake, TRADES)
    folder = tmp_path / written.rsplit("/", 1)[0]
    # What a crash in the middle of a write leaves: half a file under the temporary name.
    data = (tmp_path / written).read_bytes()
    (folder / ".part-1-2-0000000000000000.parquet.tmp").write_bytes(data[: len(data) // 2])

    assert [t["trade_id"] for t in lake_rows(lake, TRADES)] == ["1"]
    glob = f"'{tmp_path}/trades/**/*.parquet'"
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet({glob})").fetchall() == [(1,)]


def test_the_same_rows_written_again_replace_their_file_instead_of_adding_one(
    lake_settings: LakeSettings,
) -> None:
    lake = make_lake(lake_settings)
    for _ in range(2):
        lake.add_trades(batch(trade(1, T0), trade(2, T0 + S)))
        lake.flush()

    assert len(files(lake, TRADES)) == 1
    assert len(lake_rows(lake, TRADES)) == 2


# -- copying from the store: export and the catch-up at start-up ---------------------------


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The primary store the lake is copied from: any store (only protocol methods are read)."""
    if request.param == "duckdb":
        s: Store = DuckDBStore(tmp_path / "store" / "tickpipe.duckdb")
    else:
        s = PostgresStore(request.getfixturevalue("postgres_dsn"))
    yield s
    s.close()


def test_copying_writes_only_what_the_lake_lacks_and_a_second_copy_writes_nothing(
    lake_settings: LakeSettings, store: Store
) -> None:
    trades = [trade(i, T0 + i * S) for i in range(10)] + [trade(10, DAY2)]
    finals = [candle(T0, final=True), candle(DAY2, final=True), candle(DAY2 + M)]
    store.write([batch(*trades)], finals)
    lake = make_lake(lake_settings)
    lake.add_trades(batch(*trades[:4]))  # the lake holds some of them already
    lake.add_candles(finals[:1])
    lake.flush()

    first = copy_to_lake(store, lake, T0, DAY2 + DAY_US)
    again = copy_to_lake(store, lake, T0, DAY2 + DAY_US)

    assert (first.trades, first.candles) == (7, 1)
    assert (again.trades, again.candles) == (0, 0)
    ids = [t["trade_id"] for t in lake_rows(lake, TRADES)]
    assert sorted(ids, key=int) == [str(i) for i in range(11)]
    starts = sorted(c["start"] for c in lake_rows(lake, CANDLES))
    assert starts == [T0, DAY2]  # the provisional candle stays out


def test_copying_writes_a_corrected_revision_of_a_final_candle_the_lake_holds(
    lake_settings: LakeSettings, store: Store
) -> None:
    first, corrected = candle(T0, final=True, revision=1), candle(T0, final=True, revision=2)
    store.write([batch(trade(1, T0))], [first])
    lake = make_lake(lake_settings)
    copy_to_lake(store, lake)
    store.write(candles=[corrected])  # a late trade within the horizon corrected it

    report = copy_to_lake(store, lake)

    assert report.candles == 1
    assert sorted(c["revision"] for c in lake_rows(lake, CANDLES)) == [1, 2]


# Stopping at --until leaves the store's read early: it must close cleanly, not on collection.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_copying_keeps_to_since_and_until(lake_settings: LakeSettings, store: Store) -> None:
    store.write([batch(*(trade(i, T0 + i * M) for i in range(5)))])
    lake = make_lake(lake_settings)

    report = copy_to_lake(store, lake, T0 + M, T0 + 3 * M)

    assert report.trades == 2
    assert sorted(t["ts"] for t in lake_rows(lake, TRADES)) == [T0 + M, T0 + 2 * M]


def test_catch_up_after_a_crash_between_the_store_commit_and_the_lake_write_writes_the_rest_once(
    lake_settings: LakeSettings, store: Store
) -> None:
    horizon = 5 * M
    early = [trade(i, T0 + i * S) for i in range(20)]
    late = trade(99, T0 + 5 * S)  # arrived late, within the horizon, before the crash
    lost = [trade(i, T0 + i * S) for i in range(20, 30)]
    store.write([batch(*early, late, *lost)], [candle(T0, final=True)])
    lake = make_lake(lake_settings)
    # The lake wrote the early trades; the store committed the rest, then the process died.
    lake.add_trades(batch(*early))
    lake.flush()

    report = catch_up(store, lake, horizon)
    again = catch_up(store, lake, horizon)

    assert (report.trades, report.candles) == (11, 1)
    assert (again.trades, again.candles) == (0, 0)
    ids = sorted(int(t["trade_id"]) for t in lake_rows(lake, TRADES))
    assert ids == [*range(30), 99]
    assert verify_lake(lake).duplicate_trades == 0


def test_catch_up_copies_everything_of_an_instrument_the_lake_has_never_seen(
    lake_settings: LakeSettings, store: Store
) -> None:
    store.write([batch(trade(1, T0), trade(2, DAY2), trade(3, T0, symbol="ETH-USDT"))])
    lake = make_lake(lake_settings)
    lake.add_trades(batch(trade(1, T0)))
    lake.flush()

    catch_up(store, lake, horizon_us=M)

    rows = sorted((t["symbol"], t["trade_id"]) for t in lake_rows(lake, TRADES))
    assert rows == [("BTC-USDT", "1"), ("BTC-USDT", "2"), ("ETH-USDT", "3")]


# Two trades and the 1m candle they make, exactly.
TWO_TRADES = (trade(1, T0, price=100.0), trade(2, T0 + S, price=102.0))
THEIR_CANDLE = candle(
    T0, interval="1m", final=True, open=100.0, high=102.0, low=100.0, close=102.0, volume=2.0,
    quote_volume=202.0, vwap=101.0, mean_price=101.0, trades=2, buy_volume=2.0, sell_volume=0.0,
    first_seq=1, last_seq=2,
)  # fmt: skip


def consistent_lake(settings: LakeSettings) -> Lake:
    lake = make_lake(settings)
    lake.add_trades(batch(*TWO_TRADES))
    lake.add_candles([THEIR_CANDLE])
    lake.flush()
    assert verify_lake(lake).ok
    return lake


def test_verify_lake_reports_progress_over_every_instrument_and_trade(
    lake_settings: LakeSettings,
) -> None:
    lake = make_lake(lake_settings)
    trades = [trade(i, T0 + i * S, symbol=("BTC-USDT", "ETH-USDT", "SOL-USDT")[i % 3])
              for i in range(1, 31)]  # fmt: skip
    lake.add_trades(batch(*trades))
    lake.flush()
    seen: list[tuple[int, int, int, int]] = []

    def progress(c: Checked) -> None:
        seen.append((c.trades, c.expected_trades, c.instruments_done, c.instruments))

    report = verify_lake(lake, progress=progress)
    assert report.ok and report.trades == len(trades)
    assert seen[-1] == (len(trades), len(trades), 3, 3)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)


def test_verify_lake_finds_a_final_candle_that_its_trades_do_not_make(
    lake_settings: LakeSettings,
) -> None:
    lake = consistent_lake(lake_settings)

    lake.add_candles([candle(T0, interval="1s", final=True, high=999.0)])
    lake.flush()
    report = verify_lake(lake)

    assert not report.ok
    assert [(m.interval, m.start) for m in report.mismatches] == [("1s", T0)]


def test_verify_lake_finds_a_final_candle_written_twice(lake_settings: LakeSettings) -> None:
    lake = consistent_lake(lake_settings)

    lake.add_candles([THEIR_CANDLE, candle(T0 + 5 * M, final=True)])  # another file
    lake.flush()
    report = verify_lake(lake)

    problems = {(m.start, m.problem.split(":")[0]) for m in report.mismatches}
    assert (T0, "duplicate") in problems


@pytest.mark.parametrize("newest_right", [True, False])
def test_verify_lake_checks_the_newest_revision_of_a_candle(
    lake_settings: LakeSettings, newest_right: bool
) -> None:
    lake = make_lake(lake_settings)
    lake.add_trades(batch(*TWO_TRADES))
    right = msgspec.structs.replace(THEIR_CANDLE, revision=2 if newest_right else 1)
    wrong = msgspec.structs.replace(THEIR_CANDLE, high=999.0, revision=1 if newest_right else 2)
    lake.add_candles([right])
    lake.flush()
    lake.add_candles([wrong])  # another file
    lake.flush()

    assert verify_lake(lake).ok == newest_right


# -- the live path's writer ----------------------------------------------------------------


def test_the_lake_writer_writes_final_candles_and_trades_on_its_thread_at_close(
    lake_settings: LakeSettings,
) -> None:
    writer = LakeWriter(make_lake(lake_settings))
    writer.offer([batch(trade(1, T0))], [candle(T0, final=True), candle(T0 + M)])
    writer.close()

    assert len(lake_rows(writer.lake, TRADES)) == 1
    assert [c["start"] for c in lake_rows(writer.lake, CANDLES)] == [T0]
    assert writer.dropped_trades == 0


def test_a_lake_writer_behind_an_unreachable_server_drops_and_counts_instead_of_blocking(
    tmp_path: Path,
) -> None:
    dead = LakeSettings("s3://nobody/lake", endpoint="http://127.0.0.1:9", region=REGION,
                        roll_bytes=1024, retry_for_s=2.0)  # fmt: skip
    writer = LakeWriter(make_lake(dead), max_queued=2)
    big = batch(*(trade(i, T0 + i) for i in range(100)))  # over roll_bytes: a write at once
    for _ in range(10):
        writer.offer([big], [])

    assert writer.dropped_trades >= 500  # the thread holds one, the queue two: the rest dropped
    with pytest.raises(RuntimeError, match="lake s3://nobody/lake: cannot write") as failed:
        writer.close()
    assert isinstance(failed.value.__cause__, StoreError)
