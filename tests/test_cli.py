"""The `tickpipe` command as a user runs it: a real subprocess, real exit status and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore

S = 1_000_000


def tickpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


def one_line_usage_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a run that stopped with exit status 2 before doing anything."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("run", ["--exchange", "--symbol", "--interval", "--hopping", "--data-dir", "--config",
                 "--duration", "--replay", "--speed", "--binance-url", "--quiet"]),
        ("demo", ["--rate", "--symbols", "--seed", "--interval", "--data-dir", "--duration",
                  "--config", "--quiet"]),
        ("verify", ["--data-dir", "--interval", "--show", "--config"]),
    ],
)  # fmt: skip
def test_help_of_each_command_lists_its_options(command: str, options: list[str]) -> None:
    result = tickpipe(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"{command} [OPTIONS]" in result.stdout
    for option in options:
        assert option in result.stdout, option
    assert "default" in result.stdout


def test_top_level_help_lists_the_commands() -> None:
    result = tickpipe("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "verify"):
        assert f"  {command} " in result.stdout


def test_bad_rate_names_the_option(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("demo", "--rate", "abc", "--data-dir", str(tmp_path)))
    assert "--rate" in line
    assert "'abc'" in line


def test_negative_duration_names_the_option(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("demo", "--duration", "-3", "--data-dir", str(tmp_path)))
    assert "--duration" in line
    assert "above 0" in line


def test_unreadable_duration_names_the_option_and_the_units(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("demo", "--duration", "soon", "--data-dir", str(tmp_path)))
    assert "--duration" in line
    assert "5s" in line


def test_unknown_symbol_names_the_setting(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("run", "--symbol", "NOPE", "--data-dir", str(tmp_path)))
    assert "symbols" in line
    assert "'NOPE'" in line
    assert "BASE-QUOTE" in line


def test_unknown_exchange_names_the_setting_and_the_supported_ones(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("run", "--exchange", "mtgox", "--data-dir", str(tmp_path)))
    assert "exchanges" in line
    assert "'mtgox'" in line
    assert "binance" in line.split("mtgox", 1)[1]


def test_bad_interval_flag_names_the_setting(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("demo", "--interval", "7x", "--data-dir", str(tmp_path)))
    assert "intervals[0]" in line
    assert "'7x'" in line
    assert "command line" in line


def test_bad_interval_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    result = tickpipe(
        "demo", "--data-dir", str(tmp_path), "--duration", "1", env={"TICKPIPE_INTERVALS": "7x"}
    )
    line = one_line_usage_error(result)
    assert "TICKPIPE_INTERVALS" in line
    assert "'7x'" in line


def test_bad_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[demo]\nrate = 'fast'\n")
    line = one_line_usage_error(
        tickpipe("demo", "--config", str(config), "--data-dir", str(tmp_path))
    )
    assert "demo.rate" in line
    assert "bad.toml" in line


def test_unknown_option_is_a_one_line_usage_error(tmp_path: Path) -> None:
    line = one_line_usage_error(tickpipe("demo", "--bogus", "--data-dir", str(tmp_path)))
    assert "--bogus" in line


def test_verify_without_data_says_where_it_looked(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_usage_error(tickpipe("verify", "--data-dir", str(empty)))
    assert str(empty) in line
    assert "tickpipe demo" in line
    assert not (empty / "tickpipe.duckdb").exists()  # verify never creates a store


def test_verify_with_a_bad_interval_names_the_option(tmp_path: Path) -> None:
    DuckDBStore(tmp_path / "tickpipe.duckdb").close()
    line = one_line_usage_error(tickpipe("verify", "--data-dir", str(tmp_path), "--interval", "7x"))
    assert "--interval" in line or "interval" in line
    assert "'7x'" in line


def test_verify_while_another_process_writes_the_store_says_so(tmp_path: Path) -> None:
    writer = DuckDBStore(tmp_path / "tickpipe.duckdb")
    try:
        line = one_line_usage_error(tickpipe("verify", "--data-dir", str(tmp_path)))
    finally:
        writer.close()
    assert "cannot open" in line
    assert str(tmp_path) in line


def _store_with_candles(data_dir: Path) -> None:
    engine = CandleEngine(EngineConfig(windows=(parse_window("1s"), parse_window("2s/1s"))))
    trades = [
        Trade(source="t", exchange="ex", symbol="BTC-USDT", trade_id=str(i), seq=i,
              price=100.0 + i % 7, size=0.5 + i % 3, side="buy" if i % 2 else "sell",
              ts=i * 150_000, recv_ts=i * 150_000)
        for i in range(40)
    ]  # fmt: skip
    out = engine.process(TradeBatch.from_trades(trades), 10 * S)
    store = DuckDBStore(data_dir / "tickpipe.duckdb")
    store.write(trades=[out.accepted], candles=[*out.candles, *engine.flush(10 * S)])
    store.close()


def test_verify_exits_0_with_a_summary_on_a_consistent_store(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)
    result = tickpipe("verify", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "40 stored trades" in result.stdout
    assert "0 mismatches" in result.stdout


def test_verify_exits_1_naming_the_field_that_differs(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    store.query("UPDATE candles SET high = high + 1 WHERE interval = '1s' AND start = 2000000")
    store.close()
    result = tickpipe("verify", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "FAILED" in result.stderr
    assert "start=2000000: high" in result.stderr
    assert "recomputed=" in result.stderr
