"""deploy/airflow: the `tickpipe_daily` DAG run by real Airflow (`airflow dags test`, SQLite
metadata) against a tickpipe data dir whose store misses a hole of trades that a fake Binance
still serves. Checked from the outside: the store holds exactly the exchange's trade ids, every
task succeeded (verify too), the lake holds the day's trades, retention dropped the old rows and
lake partitions and nothing else, and a second run changes nothing. Airflow lives in a venv of
its own (scripts/setup/airflow.sh), never in tickpipe's."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest
from fakes.binance_server import FakeBinanceThread
from servers.require import server_missing

import tickpipe
from tickpipe.engine.candles import CandleEngine
from tickpipe.engine.settings import EngineSettings
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore

# Airflow starts slowly; on a loaded 2-core machine the shared fixture alone took 130 s.
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "deploy" / "airflow"
LOGICAL_DATE = "2026-05-29"  # the run for 2026-05-29 handles the day before it
DAY = "2026-05-28"
T0_MS = int(datetime(2026, 5, 28, 20, tzinfo=UTC).timestamp() * 1000)
OLD_DAY = "2026-04-19"  # 40 days back: its trades and 1s candles expire, its 1m candles stay
RECENT_DAY = "2026-05-19"  # 10 days back: its trades stay, its 1s candles expire
HOLE = range(300, 420)


def airflow_bin() -> Path:
    venv = Path(
        os.environ.get("TICKPIPE_AIRFLOW_VENV", Path.home() / ".cache/tickpipe/airflow-venv")
    )
    tool = venv / "bin" / "airflow"
    if not tool.exists():
        server_missing(f"Airflow is not installed at {venv} (scripts/setup/airflow.sh)")
    return tool


def day_us(day: str, hour: int = 0) -> int:
    start = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
    return int(start.timestamp() * 1_000_000)


class Airflow:
    """The airflow CLI with its home, SQLite database and settings in a tmp dir."""

    def __init__(self, home: Path, data_dir: Path, rest_url: str) -> None:
        self.tool = airflow_bin()
        self.home = home
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # The DAG's settings, as Airflow reads Variables from the environment.
            "AIRFLOW_VAR_TICKPIPE_BIN": f"{sys.executable} -m tickpipe",
            "AIRFLOW_VAR_TICKPIPE_DATA_DIR": str(data_dir),
            "AIRFLOW_VAR_TICKPIPE_EXCHANGES": "binance",
            "AIRFLOW_VAR_TICKPIPE_REST_ENDPOINTS": f"binance={rest_url}",
            # The tickpipe under test (the worktree's sources, or the installed package).
            "PYTHONPATH": str(Path(tickpipe.__file__).parents[1]),
        }

    def __call__(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.tool), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip

    def task_states(self) -> dict[str, tuple[str, int]]:
        """(state, try number) of each task of the newest run, from Airflow's own database."""
        db = sqlite3.connect(self.home / "airflow.db")
        try:
            (run_id,) = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = 'tickpipe_daily'"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
            rows = db.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE run_id = ?", (run_id,)
            ).fetchall()
        finally:
            db.close()
        return {task: (state, tries) for task, state, tries in rows}


Row = tuple[str, float, float, int, str]


def live(path: Path, rows: list[Row], symbol: str) -> None:
    """Store `rows` as a live pipeline with the default settings (those the DAG's tickpipe
    commands run with) would: the engine's accepted trades and its candles."""
    trades = [
        Trade(source="binance", exchange="binance", symbol=symbol, trade_id=i, seq=int(i),
              price=p, size=s, side=side, ts=ts, recv_ts=ts)
        for i, p, s, ts, side in rows
    ]  # fmt: skip
    engine = CandleEngine(EngineSettings().engine_config())
    now = rows[-1][3] + 3_600_000_000 * 10
    out = engine.process(TradeBatch.from_trades(trades), now)
    candles = {(c.interval, c.start): c for c in out.candles}
    for c in engine.tick(now).candles + engine.flush(now):
        candles[(c.interval, c.start)] = c
    store = DuckDBStore(path)
    try:
        store.write(trades=[out.accepted], candles=candles.values())
    finally:
        store.close()


def old_rows() -> list[Row]:
    """ETH-USDT trades with consecutive ids on the old and the recent day (no hole)."""
    rows = []
    for n in range(120):
        day = OLD_DAY if n < 60 else RECENT_DAY
        ts = day_us(day, 12) + (n % 60) * 1_500_000
        rows.append((str(5000 + n), 2000.0 + n, 0.5, ts, "buy" if n % 2 else "sell"))
    return rows


def stored(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    db = duckdb.connect(str(data_dir / "tickpipe.duckdb"), read_only=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def lake_files(lake: Path) -> dict[str, str]:
    return {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*.parquet"))
    }


def snapshot(data_dir: Path) -> tuple[Any, ...]:
    return (
        stored(data_dir, "SELECT * FROM trades ORDER BY exchange, symbol, seq"),
        stored(data_dir, "SELECT * FROM candles ORDER BY exchange, symbol, interval, start"),
        lake_files(data_dir / "lake"),
    )


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory):
    """One DAG run for LOGICAL_DATE, then a second one (both through `airflow dags test`)."""
    airflow_bin()
    base = tmp_path_factory.mktemp("airflow")
    data_dir = base / "data"
    data_dir.mkdir()
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
        path = data_dir / "tickpipe.duckdb"
        live(path, [r for n, r in enumerate(published) if n not in HOLE], "BTC-USDT")
        live(path, old_rows(), "ETH-USDT")
        before = {
            "candles": stored(data_dir, "SELECT symbol, interval, start FROM candles"),
        }
        # The old day in the lake too, as an earlier run would have left it.
        exported = subprocess.run(
            [sys.executable, "-m", "tickpipe", "export", "--data-dir", str(data_dir),
             "--since", OLD_DAY, "--until", "2026-04-20", "--to", str(data_dir / "lake")],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        assert (data_dir / "lake/trades/exchange=binance/symbol=ETH-USDT/date=2026-04-19").is_dir()

        airflow = Airflow(base / "home", data_dir, fake.rest_url)
        migrated = airflow("db", "migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        first = airflow("dags", "test", "tickpipe_daily", LOGICAL_DATE)
        (base / "first-run.log").write_text(first.stdout + first.stderr)  # kept for a failure
        states = airflow.task_states()
        after_first = snapshot(data_dir)
        second = airflow("dags", "test", "tickpipe_daily", LOGICAL_DATE)
        (base / "second-run.log").write_text(second.stdout + second.stderr)
        states_again = airflow.task_states()
        after_second = snapshot(data_dir)
    # A bad argument (exit 2) fails its task at once: with a retry, `dags test` would wait the
    # 5-minute retry delay and try again.
    airflow.env["AIRFLOW_VAR_TICKPIPE_EXCHANGES"] = "binance,nosuch"
    airflow.env["AIRFLOW_VAR_TICKPIPE_DATA_DIR"] = str(base / "unused")
    bad = airflow("dags", "test", "tickpipe_daily", LOGICAL_DATE)
    states_bad = airflow.task_states()
    return {
        "airflow": airflow, "data_dir": data_dir, "published": published, "before": before,
        "first": first, "states": states, "after_first": after_first, "second": second,
        "states_again": states_again, "after_second": after_second, "bad": bad,
        "states_bad": states_bad,
    }  # fmt: skip


def test_the_dag_imports_without_errors(daily_run):
    airflow = daily_run["airflow"]
    errors = airflow("dags", "list-import-errors", "-o", "json")
    assert errors.returncode == 0, errors.stderr
    assert errors.stdout.strip().splitlines()[-1] == "[]", errors.stdout
    listed = airflow("dags", "list", "-o", "plain")
    assert "tickpipe_daily" in listed.stdout, listed.stdout + listed.stderr


def test_every_task_succeeds_on_the_first_try(daily_run):
    first = daily_run["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert daily_run["states"] == {
        "backfill_gaps": ("success", 1),
        "verify": ("success", 1),
        "export_lake": ("success", 1),
        "retain": ("success", 1),
    }


def test_the_hole_is_filled_with_exactly_the_exchanges_trades(daily_run):
    published = daily_run["published"]
    rows = stored(
        daily_run["data_dir"],
        "SELECT trade_id, price, size, ts, side FROM trades"
        " WHERE exchange = 'binance' AND symbol = 'BTC-USDT' ORDER BY seq",
    )
    assert rows == [(i, p, s, ts, side) for i, p, s, ts, side in published]


def test_the_lake_holds_the_days_trades(daily_run):
    lake = daily_run["data_dir"] / "lake"
    table = ds.dataset(lake / "trades", format="parquet", partitioning="hive").to_table()
    day = sorted(
        (str(r["trade_id"]), r["ts"])
        for r in table.to_pylist()
        if r["symbol"] == "BTC-USDT" and str(r["date"]) == DAY
    )
    assert day == sorted((i, ts) for i, _, _, ts, _ in daily_run["published"])


def test_retention_drops_what_expired_and_nothing_else(daily_run):
    data_dir = daily_run["data_dir"]
    trades_cut, candles_1s_cut = day_us("2026-04-29"), day_us("2026-05-22")  # 30 d, 7 d back
    eth = stored(data_dir, "SELECT trade_id FROM trades WHERE symbol = 'ETH-USDT' ORDER BY seq")
    assert [i for (i,) in eth] == [r[0] for r in old_rows() if r[3] >= trades_cut]
    expected = sorted(
        (interval, start)
        for symbol, interval, start in daily_run["before"]["candles"]
        if symbol == "ETH-USDT" and not (interval == "1s" and start < candles_1s_cut)
    )
    query = "SELECT interval, start FROM candles WHERE symbol = 'ETH-USDT'"
    assert sorted(stored(data_dir, query)) == expected
    assert any(i == "1m" and s < trades_cut for i, s in expected)  # old 1m candles are kept
    assert not any(i == "1s" for i, _ in expected)  # both old days' 1s candles expired
    lake = data_dir / "lake"
    assert not (lake / "trades/exchange=binance/symbol=ETH-USDT/date=2026-04-19").exists()
    candles = ds.dataset(lake / "candles", format="parquet", partitioning="hive").to_table()
    old = {r["interval"] for r in candles.to_pylist() if str(r["date"]) == OLD_DAY}
    assert "1m" in old and "1s" not in old


def test_a_second_run_changes_nothing(daily_run):
    second = daily_run["second"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert {t: s for t, (s, _) in daily_run["states_again"].items()} == dict.fromkeys(
        ("backfill_gaps", "verify", "export_lake", "retain"), "success"
    )
    assert daily_run["after_second"] == daily_run["after_first"]


def test_a_bad_argument_fails_its_task_without_a_retry(daily_run):
    bad = daily_run["bad"]
    assert bad.returncode != 0
    assert "unknown exchange" in bad.stdout + bad.stderr
    states = daily_run["states_bad"]
    assert states["backfill_gaps"] == ("failed", 1)
    assert {states[t][0] for t in ("verify", "export_lake", "retain")} == {"upstream_failed"}
