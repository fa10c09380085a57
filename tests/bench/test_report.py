"""What `tickpipe bench` prints of repeated runs and of more cores: the spread of each figure
and the targets that compare two cores with one (from made-up figures; no run needed)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tickpipe.bench.report import print_report
from tickpipe.bench.run import _targets, spread


def path(rate: float, cpu_us: float, runs: list[tuple[float, float]] | None = None) -> dict:
    row: dict[str, Any] = {
        "cpus": [1], "trades": 1_000, "seconds": 1_000 / rate, "trades_per_s": rate,
        "cpu_us_per_trade": cpu_us, "main_cpu_s": cpu_us * 1_000 / 2e6, "cpu_s": cpu_us / 1e3,
        "peak_rss_mb": 100.0, "stored_trades": 1_000, "stored_candles": 10, "rss_before_mb": 50.0,
    }  # fmt: skip
    if runs is not None:
        row["runs"] = [
            {"trades_per_s": r, "cpu_us_per_trade": c, "load_avg": [1.5, 2.5]} for r, c in runs
        ]
    return row


def results(one: dict, two: dict | None = None) -> dict[str, Any]:
    paths = {"read": path(1e7, 0.1), "naive": path(50_000, 20.0), "tickpipe": one}
    if two is not None:
        paths["tickpipe_2_cores"] = two
    out: dict[str, Any] = {
        "machine": {"cpu_model": "", "cpus_available": [0, 1], "python": "3.11"},
        "input": {"trades": 1_000, "frames_mb": 1.0, "symbols": 10, "intervals": ["1s"],
                  "event_rate": 1e6, "event_span_s": 0.001, "chunk": 100},
        "one_core": {"cpu": 1, "duckdb_threads": 1},
        "paths": paths,
        "same_candles": {"equal": True, "tickpipe": 10, "naive": 10, "differences": []},
        "first_candle": {"first_candle_s": 0.5, "lower_bound_s": 0.4, "start_line_s": 0.3,
                         "import_s": 0.2, "command": "tickpipe demo", "exit_code": 0},
        "ratio_vs_naive": one["trades_per_s"] / 50_000,
    }  # fmt: skip
    out["targets"] = _targets(out)
    return out


def test_spread_is_min_median_max_with_a_run_s_own_figure_as_the_median() -> None:
    assert spread([3.0, 1.0, 2.0]) == (1.0, 2.0, 3.0)
    assert spread([4.0, 1.0, 3.0, 2.0]) == (1.0, 2.0, 4.0)  # the lower middle: a measured run
    assert spread([7.0]) == (7.0, 7.0, 7.0)


def test_repeated_runs_are_printed_as_min_median_max_of_rate_and_cpu_per_trade() -> None:
    runs = [(300_000.0, 2.5), (100_000.0, 3.5), (200_000.0, 3.0)]
    console = Console(record=True, width=250)
    print_report(results(path(200_000, 3.0, runs)), console)
    text = console.export_text()
    row = next(
        line for line in text.splitlines() if line.startswith("│ tickpipe") and " / " in line
    )
    assert "100,000 / 200,000 / 300,000" in row
    assert "2.50 / 3.00 / 3.50" in row
    assert "1.5 - 2.5" in row  # the load averages seen around the runs
    assert "CPU µs/trade" in text


def test_two_cores_are_held_to_their_own_rate_and_to_beating_one_core() -> None:
    def met(one_rate: float, two_rate: float) -> dict[str, bool]:
        targets = _targets(results(path(one_rate, 2.0), path(two_rate, 2.0)))
        return {t["name"]: t["met"] for t in targets}

    slower = met(400_000, 390_000)
    assert slower["more cores beat one core"] is False
    assert slower["end-to-end throughput, 2 cores"] is False
    faster = met(400_000, 1_100_000)
    assert faster["more cores beat one core"] is True
    assert faster["end-to-end throughput, 2 cores"] is True
    assert faster["end-to-end throughput, one core"] is False  # 400,000 < 600,000
    assert "more cores beat one core" not in {t["name"] for t in results(path(1, 1))["targets"]}
