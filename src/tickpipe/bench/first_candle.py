"""Time from starting `tickpipe demo` to its first candle in the store, watched from outside.

The real command runs as a subprocess, untouched (no hooks). DuckDB lets one process hold the
file, so the watcher never opens it: whenever the database file or its write-ahead log changes,
it copies both and opens the copy, which replays the log like crash recovery would. The first
copy that holds a candle bounds the moment the candle was committed:
- upper bound (reported): when that copy had been read, measured from just before the process
  was started, so interpreter start-up, imports and opening the store are all included;
- lower bound: when the change that copy picked up was first seen.
The demo's start line (printed once the pipeline is built) is timestamped on the way too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

DB_NAME = "tickpipe.duckdb"  # Config.db_path inside --data-dir


@dataclass
class FirstCandle:
    """Seconds since just before the demo process was started."""

    command: str
    first_candle_s: float | None  # first candle seen in the stored file (upper bound)
    lower_bound_s: float | None  # the file change that carried it was first seen
    start_line_s: float | None  # the demo printed its start line: the pipeline was built
    import_s: float  # `python -c "import tickpipe.cli"`, start to exit, for comparison
    exit_code: int | None
    copies: int  # how many times the watcher copied and opened the file

    def as_dict(self) -> dict:
        return asdict(self)


def measure_first_candle(duration: float = 5.0, timeout: float = 60.0) -> FirstCandle:
    """Run `python -m tickpipe demo --quiet` in a temporary data dir and watch its file."""
    import_s = _time_import()
    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        copies_dir = Path(tmp) / "copies"
        copies_dir.mkdir()
        argv = [sys.executable, "-m", "tickpipe", "demo", "--quiet",
                "--data-dir", str(data_dir), "--duration", f"{duration:g}"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
        start_line: list[float] = []
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        reader = threading.Thread(target=_read_lines, args=(proc, start_line), daemon=True)
        reader.start()
        try:
            found, lower, copies = _watch(data_dir / DB_NAME, copies_dir, proc, t0, timeout)
            exit_code = proc.wait(timeout=duration + timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
    command = " ".join(["python", *argv[1:6], "<tmp>", *argv[7:]])
    return FirstCandle(
        command=command,
        first_candle_s=None if found is None else found - t0,
        lower_bound_s=None if lower is None else lower - t0,
        start_line_s=start_line[0] - t0 if start_line else None,
        import_s=import_s,
        exit_code=exit_code,
        copies=copies,
    )


def _time_import() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import tickpipe.cli"], check=True)
    return time.monotonic() - t0


def _read_lines(proc: subprocess.Popen, start_line: list[float]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if not start_line and line.strip():
            start_line.append(time.monotonic())


def _signature(db: Path) -> tuple[tuple[int, int] | None, ...]:
    out: list[tuple[int, int] | None] = []
    for path in (db, db.with_name(db.name + ".wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def _watch(
    db: Path, copies_dir: Path, proc: subprocess.Popen, t0: float, timeout: float
) -> tuple[float | None, float | None, int]:
    """Poll until a copy of the store holds a candle; (found at, lower bound, copies made).

    The lower bound is the last moment the files were seen as they were when the last copy
    without a candle was taken: the commit that stored the first candle changed them later.
    """
    copies = 0
    lower = t0
    while time.monotonic() - t0 < timeout:
        before = time.monotonic()
        sig = _signature(db)
        if sig[0] is not None:
            if _has_candle(db, copies_dir / f"copy{copies}.duckdb"):
                return time.monotonic(), lower, copies + 1
            copies += 1
        lower = before
        if proc.poll() is not None:
            return None, None, copies  # the demo ended without storing a candle
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            now = time.monotonic()
            if _signature(db) != sig:
                break
            lower = now
            time.sleep(0.001)
    return None, None, copies


def _has_candle(db: Path, copy: Path) -> bool:
    """Copy the file and its log and look for a candle; a torn copy just counts as no."""
    try:
        shutil.copyfile(db, copy)
        wal = db.with_name(db.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        con = duckdb.connect(str(copy))
        try:
            row = con.execute("SELECT count(*) FROM candles").fetchone()
            return row is not None and bool(row[0])
        finally:
            con.close()
    except (OSError, duckdb.Error):
        return False
