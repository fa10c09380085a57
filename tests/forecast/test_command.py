"""`tickpipe forecast --evaluate` and `demo --forecast` as a user runs them: real
subprocesses, real exit status, one line on stderr when something is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

# river made unimportable, as on an install without the `forecast` extra.
NO_RIVER = "import sys; sys.modules['river'] = None; from tickpipe.cli import main; main()"


def tickpipe(*args: str, without_river: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    head = ["-c", NO_RIVER] if without_river else ["-m", "tickpipe"]
    return subprocess.run(
        [sys.executable, *head, *args], capture_output=True, text=True, timeout=120, env=env,
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("forecast-command")
    made = tickpipe("demo", "--quiet", "--no-serve", "--duration", "8", "--symbols", "2",
                    "--interval", "1s", "--hopping", "1m/5s", "--data-dir", str(path))  # fmt: skip
    assert made.returncode == 0, made.stderr
    return path


def test_evaluate_prints_the_scoreboard_of_every_stored_final_candle(data_dir: Path) -> None:
    result = tickpipe("forecast", "--evaluate", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    con = duckdb.connect(str(data_dir / "tickpipe.duckdb"), read_only=True)
    (finals,) = con.execute(
        "SELECT count(*) FROM candles WHERE final AND interval = '1s'"
    ).fetchone()
    symbols = [
        s for (s,) in con.execute("SELECT DISTINCT symbol FROM candles ORDER BY 1").fetchall()
    ]
    con.close()
    # The hopping interval is left out: its candles overlap.
    assert f"{finals:,} final candles of 1s replayed" in result.stdout
    for symbol in symbols:
        assert symbol in result.stdout
    assert "beats last close" in result.stdout and "1m/5s" not in result.stdout
    assert "µs of CPU per candle" in result.stdout


def test_a_missing_river_is_one_line_saying_how_to_install_it(data_dir: Path) -> None:
    result = tickpipe("forecast", "--evaluate", "--data-dir", str(data_dir), without_river=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "tickpipe forecast: forecasts need river: pip install 'tickpipe[forecast]' "
        "(or: pip install river)"
    ]
    demo = tickpipe("demo", "--forecast", "--no-serve", "--duration", "1", "--data-dir",
                    str(data_dir / "other"), without_river=True)  # fmt: skip
    assert demo.returncode == 2
    assert len(demo.stderr.splitlines()) == 1 and "Traceback" not in demo.stderr
    assert "forecast = true: forecasts need river: pip install" in demo.stderr


def test_forecast_without_an_action_says_what_to_give(data_dir: Path) -> None:
    result = tickpipe("forecast", "--data-dir", str(data_dir))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        "tickpipe forecast: error: say what to do: --evaluate (replay the stored candles)"
    )
