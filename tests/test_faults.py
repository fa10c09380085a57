"""Faults of the machine end a command with one line naming the cause, a non-zero exit and
no traceback, and what was stored before stays readable.

A full disk is simulated without root: the command runs under a file-size limit
(RLIMIT_FSIZE, with SIGXFSZ ignored), so DuckDB's writes fail with EFBIG as they would with
ENOSPC. A read-only data directory is mode 0555, and immutable (`chattr +i`) when the tests
run as root, whom modes do not stop.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tickpipe.faults import fault_line
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.base import StoreError
from tickpipe.stores.duckdb import DuckDBStore

S = 1_000_000


def tickpipe(*args: str, file_limit: int | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        assert file_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [sys.executable, "-m", "tickpipe", *args], capture_output=True, text=True, timeout=90,
        env=environ, preexec_fn=limit_files if file_limit else None,
    )  # fmt: skip


def one_line_fault(result: subprocess.CompletedProcess, status: int = 1) -> str:
    """The only stderr line of a command that stopped on a fault (exit 1) or on a bad input
    (exit 2), with no traceback."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def stored_trades(path: Path) -> int:
    store = DuckDBStore(path, read_only=True)
    try:
        return store.query("SELECT count(*) FROM trades")[0][0]
    finally:
        store.close()


# -- the one line, from the exception chain ------------------------------------------------


def test_a_full_disk_says_disk_full_with_the_path() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/dead-letters.jsonl")
    wrapped = RuntimeError("the store writer failed")
    wrapped.__cause__ = full
    assert fault_line(wrapped, "/data/tickpipe.duckdb") == (
        "disk full: /data/dead-letters.jsonl (No space left on device)"
    )


def test_duckdbs_disk_full_names_the_file_it_could_not_write() -> None:
    error = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file "/d/t.duckdb.wal": '
        "No space left on device"
    )
    line = fault_line(error, "/d/t.duckdb")
    assert line is not None and line.startswith("disk full: /d/t.duckdb.wal (")


def test_a_corrupt_file_without_a_path_in_the_text_is_named_by_the_store_path() -> None:
    error = duckdb.Error("Corrupt database file: computed checksum 1 does not match")
    line = fault_line(error, "/d/t.duckdb")
    assert line is not None and line.startswith("/d/t.duckdb is damaged")


def test_duckdb_out_of_memory_in_an_arrow_stream_says_to_raise_the_memory_limit() -> None:
    # DuckDB's error, read through an Arrow record batch reader, arrives as a bare OSError.
    error = OSError(
        "Out of Memory Error: failed to pin block of size 256.0 KiB (60.9 MiB/61.0 MiB used)"
    )
    line = fault_line(error, "/d/t.duckdb")
    assert line is not None and line.startswith("out of memory reading /d/t.duckdb")
    assert "duckdb_memory_limit" in line


def test_a_bug_is_not_a_fault_and_keeps_its_traceback() -> None:
    assert fault_line(KeyError("x"), "/d/t.duckdb") is None


def test_an_error_raised_from_none_keeps_its_own_line() -> None:
    try:
        try:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        except OSError:
            raise ValueError("config error: serve.port = 8050: cannot listen") from None
    except ValueError as error:
        assert fault_line(error, "/d/t.duckdb") is None


def test_a_store_error_keeps_its_own_line() -> None:
    error = StoreError("cannot open /d/t.duckdb: Conflicting lock is held")
    error.__cause__ = duckdb.IOException("IO Error: Could not set lock on file")
    assert fault_line(error, "/d/t.duckdb") is None


# -- the command ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_ends_the_run_with_disk_full_and_keeps_what_was_stored(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    started = time.monotonic()
    result = tickpipe(
        "demo", "--quiet", "--no-serve", "--rate", "20000", "--duration", "60",
        "--data-dir", str(data), file_limit=3_000_000,
    )  # fmt: skip
    line = one_line_fault(result)
    assert line.startswith(f"tickpipe: error: disk full: {data / 'tickpipe.duckdb'}"), line
    assert time.monotonic() - started < 45, "the run went on after the disk was full"
    assert stored_trades(data / "tickpipe.duckdb") > 0  # the committed flushes are intact


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ro"
    path.mkdir()
    path.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        path.chmod(0o755)
        pytest.skip("running as root without chattr: cannot make a read-only directory")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


@pytest.mark.slow
def test_a_read_only_data_dir_is_one_line_naming_it(read_only_dir: Path) -> None:
    result = tickpipe("demo", "--quiet", "--no-serve", "--duration", "1",
                      "--data-dir", str(read_only_dir))  # fmt: skip
    line = one_line_fault(result)
    assert line.startswith(f"tickpipe: error: cannot write {read_only_dir}/"), line


@pytest.mark.slow
def test_a_truncated_duckdb_file_is_one_line_saying_it_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "tickpipe.duckdb"
    store = DuckDBStore(path)
    trades = [
        Trade(source="sim", exchange="sim", symbol="BTC-USDT", trade_id=f"t{i}", seq=i,
              price=100.0 + i % 7, size=1.0, side="buy", ts=i * 1000, recv_ts=i * 1000)
        for i in range(200_000)
    ]  # fmt: skip
    store.write([TradeBatch.from_trades(trades)], [])
    store.close()
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)
    for command in (["verify"], ["demo", "--quiet", "--no-serve", "--duration", "1"]):
        result = tickpipe(*command, "--data-dir", str(tmp_path))
        # exit 2 when opening the file finds the damage, 1 when reading it does
        line = one_line_fault(result, result.returncode if result.returncode in (1, 2) else 1)
        assert line.removeprefix("tickpipe: error: ").startswith(f"{path} is damaged"), line


@pytest.mark.slow
def test_verify_over_the_duckdb_memory_limit_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    trades = [
        Trade(source="sim", exchange="sim", symbol=f"S{i % 50}-USDT", trade_id=f"t{i}", seq=i,
              price=100.0 + i % 7, size=1.0, side="buy", ts=i * 1000, recv_ts=i * 1000)
        for i in range(300_000)
    ]  # fmt: skip
    store.write([TradeBatch.from_trades(trades)], [])
    store.close()
    config = tmp_path / "tickpipe.toml"
    config.write_text('duckdb_memory_limit = "1MB"\nduckdb_verify_memory_limit = "1MB"\n')

    result = tickpipe("verify", "--config", str(config), "--data-dir", str(tmp_path))

    line = one_line_fault(result)
    assert "out of memory reading" in line and "duckdb_verify_memory_limit" in line, line


BAD_FILES = {
    "missing.csv": (b"exchange,symbol,trade_id,price,ts\nbinance,BTC-USDT,1,100.0,1\n",
                    "has no column size"),
    "empty.parquet": (b"", "not a readable Parquet file"),
    "garbage.parquet": (bytes(range(256)) * 8, "not a readable Parquet file"),
    "trades.txt": (b"exchange,symbol\n", "suffix '.txt' is not one of"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_replay_file_tickpipe_cannot_read_is_one_line_naming_it(
    tmp_path: Path, name: str
) -> None:
    content, reason = BAD_FILES[name]
    (tmp_path / name).write_bytes(content)
    result = tickpipe("run", "--quiet", "--no-serve", "--replay", str(tmp_path / name),
                      "--data-dir", str(tmp_path / "data"))  # fmt: skip
    line = one_line_fault(result, 2)
    assert line.startswith(f"config error: run.replay = {str(tmp_path / name)!r}: "), line
    assert reason in line


@pytest.mark.slow
@pytest.mark.parametrize(("args", "key"), [
    (["--data-dir", "{file}"], "data_dir = "), (["--speed", "nan"], "run.speed = nan"),
])  # fmt: skip
def test_a_data_dir_that_is_a_file_or_a_speed_of_nan_is_one_line(
    tmp_path: Path, args: list[str], key: str
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "t.csv").write_text("exchange,symbol,trade_id,price,size,ts\n")
    args = [a.format(file=tmp_path / "file") for a in args]
    result = tickpipe("run", "--quiet", "--no-serve", "--replay", str(tmp_path / "t.csv"), *args)
    assert key in one_line_fault(result, 2)
