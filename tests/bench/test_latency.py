"""`python benchmarks/latency.py` runs end to end and reports sane figures.

No timing is asserted (figures depend on the machine): the fake exchange, `tickpipe run` and
the live client must work together, every figure must be present and plausible, and each live
candle update must be matched with the pushed trade it names as its newest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LATENCY = Path(__file__).resolve().parents[2] / "benchmarks" / "latency.py"

pytestmark = pytest.mark.slow


def test_latency_bench_reports_sane_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(LATENCY), "--rate", "200", "--seconds", "3",
         "--warmup", "0.5", "--json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert result["symbols"] == ["BTC-USDT", "ETH-USDT"]
    assert result["fed_trades"] > 0
    assert result["fed_rate"] > 0
    assert 0 < result["pushed_trades"] <= result["fed_trades"]
    assert result["dropped"] == 0
    assert result["unmatched_candles"] == 0
    for name in ("live_updates", "source_to_emit", "emit_to_client", "trades", "trade_to_candle"):
        stats = result[name]
        assert stats["count"] > 0, name
        assert stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"], name
        assert stats["max_ms"] < 60_000, name  # one clock, within one short run
    live = result["live_updates"]
    assert live["p50_ms"] > 0  # a candle update cannot reach the client before its trade
    assert result["trades"]["p50_ms"] > 0
    assert isinstance(result["meets_target"], bool)
    assert result["meets_target"] == (live["p99_ms"] <= result["target_p99_ms"])


def test_latency_bench_prints_a_report() -> None:
    done = subprocess.run(
        [sys.executable, str(LATENCY), "--rate", "100", "--seconds", "2",
         "--warmup", "0.5"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "live (open-candle) updates" in done.stdout
    assert "verdict: target p99 <= 5 ms" in done.stdout
