"""The `tickpipe` command as a user runs it: a real subprocess, real exit status and stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.binance_server import FakeBinanceThread

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Trade, TradeBatch
from tickpipe.sources.registry import EXCHANGES, connector
from tickpipe.stores.duckdb import DuckDBStore

S = 1_000_000
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


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
                 "--duration", "--replay", "--speed", "--endpoint", "--rest-endpoint",
                 "--no-symbol-check", "--quiet"]),
        ("demo", ["--rate", "--symbols", "--seed", "--interval", "--data-dir", "--duration",
                  "--config", "--quiet"]),
        ("verify", ["--data-dir", "--interval", "--show", "--config", "--since", "--until"]),
        ("exchanges", ["--symbols", "--rest-endpoint", "--config"]),
    ],
)  # fmt: skip
def test_help_of_each_command_lists_its_options(command: str, options: list[str]) -> None:
    result = tickpipe(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"{command} [OPTIONS]" in result.stdout
    for option in options:
        assert option in result.stdout, option
    if command != "exchanges":
        assert "default" in result.stdout


def test_top_level_help_lists_the_commands() -> None:
    result = tickpipe("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "verify", "exchanges"):
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


def test_a_prefixed_symbol_of_an_unknown_exchange_names_it(tmp_path: Path) -> None:
    line = one_line_usage_error(
        tickpipe("run", "--symbol", "mtgox:BTC-USD", "--data-dir", str(tmp_path))
    )
    assert "run.symbols[0] = 'mtgox:BTC-USD'" in line
    assert "unknown exchange 'mtgox'" in line


def test_an_endpoint_flag_without_name_is_a_usage_error(tmp_path: Path) -> None:
    line = one_line_usage_error(
        tickpipe("run", "--endpoint", "ws://127.0.0.1:1", "--data-dir", str(tmp_path))
    )
    assert "--endpoint" in line
    assert "NAME=URL" in line


def test_an_endpoint_for_an_unknown_exchange_names_it(tmp_path: Path) -> None:
    line = one_line_usage_error(
        tickpipe("run", "--endpoint", "mtgox=ws://127.0.0.1:1", "--data-dir", str(tmp_path))
    )
    assert "exchanges.mtgox" in line
    assert "command line" in line


def test_a_rest_endpoint_must_be_http(tmp_path: Path) -> None:
    line = one_line_usage_error(
        tickpipe("run", "--rest-endpoint", "binance=ws://x", "--data-dir", str(tmp_path))
    )
    assert "exchanges.binance.rest_url = 'ws://x'" in line


def test_a_missing_token_names_the_environment_variable(tmp_path: Path) -> None:
    line = one_line_usage_error(
        tickpipe("run", "--exchange", "tiingo", "--data-dir", str(tmp_path))
    )
    assert "TIINGO_TOKEN" in line


@pytest.mark.parametrize("command", ["run", "demo", "serve"])
def test_a_token_on_the_command_line_is_refused_with_where_it_goes(
    command: str, tmp_path: Path
) -> None:
    line = one_line_usage_error(
        tickpipe(command, "--token", "hunter2", "--data-dir", str(tmp_path))
    )
    assert "--token" in line and "TICKPIPE_SERVE_TOKEN_FILE" in line
    assert "hunter2" not in line


def test_an_error_line_never_shows_a_secret_read_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2/x+y\n")
    result = tickpipe(
        "demo", "--duration", "1", "--no-serve", "--store", "postgresql://tp@127.0.0.1:1/x",
        env={"TICKPIPE_STORE_PASSWORD_FILE": str(secret)},
    )  # fmt: skip
    assert result.returncode != 0
    assert "hunter2" not in result.stderr + result.stdout


def test_exchanges_lists_every_supported_exchange_with_what_it_does() -> None:
    result = tickpipe("exchanges")
    assert result.returncode == 0, result.stderr
    for name in EXCHANGES:
        info = connector(name).INFO
        assert name in result.stdout
        assert info.streams[0] in result.stdout
    for column in ("streams", "gap detection", "backfill", "token"):
        assert column in result.stdout
    assert "aggTrade" in result.stdout and "ticker" in result.stdout


def test_exchanges_symbols_prints_what_the_exchange_trades() -> None:
    with FakeBinanceThread(symbols=("BTCUSDT", "ETHUSDT")) as fake:
        result = tickpipe(
            "exchanges", "--symbols", "binance", "--rest-endpoint", f"binance={fake.rest_url}"
        )
        requests = fake.call(lambda s: [p for p, _ in s.rest_requests])
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["BTC-USDT", "BTCUSDT"] in rows
    assert ["ETH-BTC", "ETHBTC"] in rows
    assert not any(row[0] == "LUNA-USDT" for row in rows)  # not trading
    assert rows == sorted(rows)
    assert requests == ["/api/v3/exchangeInfo"]


def test_exchanges_symbols_offline_is_one_line_and_exit_1() -> None:
    result = tickpipe("exchanges", "--symbols", "binance", "--rest-endpoint", f"binance={DEAD}")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "binance's symbol list" in result.stderr


def test_exchanges_symbols_of_an_unknown_exchange_is_a_usage_error() -> None:
    line = one_line_usage_error(tickpipe("exchanges", "--symbols", "mtgox"))
    assert "'mtgox'" in line
    assert "binance" in line


def test_an_unknown_symbol_is_rejected_at_start_up_with_close_matches(tmp_path: Path) -> None:
    with FakeBinanceThread() as fake:
        result = tickpipe(
            "run", "--symbol", "BTC-USDX", "--data-dir", str(tmp_path), "--exchange", "binance",
            "--endpoint", f"binance={fake.url}", "--rest-endpoint", f"binance={fake.rest_url}",
        )  # fmt: skip
        connections = fake.call(lambda s: len(s.connections))
    line = one_line_usage_error(result)
    assert line == (
        "config error: run.symbols: 'BTC-USDX' is not traded on binance (close: BTC-USDT, BTC-USDC)"
    )
    assert connections == 0  # stopped before connecting


def test_an_unreachable_symbol_list_is_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    result = tickpipe(
        "run", "--symbol", "BTC-USDX", "--data-dir", str(tmp_path), "--exchange", "binance",
        "--endpoint", "binance=ws://127.0.0.1:9", "--rest-endpoint", f"binance={DEAD}",
        "--duration", "1", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "binance's symbol list" in warnings[0]
    assert "not checked" in warnings[0]


def test_no_symbol_check_asks_no_symbol_list(tmp_path: Path) -> None:
    with FakeBinanceThread() as fake:
        result = tickpipe(
            "run", "--symbol", "BTC-USDX", "--data-dir", str(tmp_path), "--exchange", "binance",
            "--endpoint", f"binance={fake.url}", "--rest-endpoint", f"binance={fake.rest_url}",
            "--no-symbol-check", "--duration", "1", "--quiet",
        )  # fmt: skip
        requests = fake.call(lambda s: list(s.rest_requests))
        paths = fake.call(lambda s: [c.path for c in s.connections])
    assert result.returncode == 0, result.stderr
    assert requests == []
    assert paths == ["/stream?streams=btcusdx@trade"]


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
    assert "--interval" in line
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
    # Off a terminal, progress comes as plain lines on stderr.
    assert "verify: recomputing candles: " in result.stderr
    assert "of 1 instruments done" in result.stderr


def test_verify_checks_a_range_and_counts_the_windows_it_cuts(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)  # trades 0.15 s apart from the epoch on, 1s and 2s/1s
    result = tickpipe("verify", "--data-dir", str(tmp_path), "--since", "1970-01-01T00:00:01.5",
                      "--until", "1970-01-01T00:00:04")  # fmt: skip
    assert result.returncode == 0, result.stderr
    # trades at 1.5 s to 3.9 s; cut: 1s of [1, 2), 2s/1s of [0, 2), [1, 3) and [3, 5)
    assert "from 17 stored trades" in result.stdout
    assert "4 candles of windows the --since/--until range cuts" in result.stdout


def test_verify_with_a_bad_since_says_so_in_one_line(tmp_path: Path) -> None:
    _store_with_candles(tmp_path)
    line = one_line_usage_error(tickpipe("verify", "--data-dir", str(tmp_path), "--since", "soon"))
    assert "--since" in line and "'soon' is not an ISO date or time" in line


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


README = Path(__file__).resolve().parents[1] / "README.md"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_the_readme_activates_the_venv_before_its_first_tickpipe_command() -> None:
    """`tickpipe` lives in ./.venv: a command shown before the activation is "not found"."""
    lines = [line.strip() for block in sh_blocks(README.read_text()) for line in block.splitlines()]
    first_tickpipe = next(i for i, line in enumerate(lines) if line.startswith("tickpipe "))
    activate = lines.index(
        next(line for line in lines if line.startswith("source .venv/bin/activate"))
    )
    setup = next(i for i, line in enumerate(lines) if line.startswith("scripts/run.sh"))
    assert setup < activate < first_tickpipe


def test_the_readme_verify_example_is_what_verify_prints(tmp_path: Path) -> None:
    example = re.search(r"^verify: OK - .*$", README.read_text(), re.M)
    assert example is not None, "the README shows no verify output"
    shape = re.sub(r"\d[\d,]*", r"\\d[\\d,]*", re.escape(example[0]))
    demo = tickpipe("demo", "--duration", "1", "--quiet", "--no-serve", "--data-dir", str(tmp_path))
    assert demo.returncode == 0, demo.stderr
    result = tickpipe("verify", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(shape, result.stdout.strip()), (example[0], result.stdout)
