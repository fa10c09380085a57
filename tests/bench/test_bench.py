"""`tickpipe bench` reports every figure, and its two paths compute the same candles.

No timing is asserted: figures depend on the machine. What must hold anywhere is that the
command runs, yields every field with a sane value, and that the naive baseline and tickpipe,
fed the same frames, end with the same candles, so the comparison is apples to apples.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickpipe.bench.compare import diff_candles, duckdb_candles, sqlite_candles
from tickpipe.bench.framefile import read_chunks
from tickpipe.bench.frames import binance_symbols, write_frames
from tickpipe.bench.naive import run_naive
from tickpipe.bench.tickpipe_path import run_tickpipe
from tickpipe.engine.windows import parse_window
from tickpipe.sources.binance.parse import InstrumentIndex, parse_frames

INTERVALS = ["1s", "5s", "1m", "5m", "1h"]


@pytest.mark.slow
def test_quick_json_run_yields_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe", "bench", "--quick", "--json", "--trades", "20000",
         "--symbols", "200", "--runs", "2"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert "naive baseline" in done.stderr  # progress went to stderr, JSON alone to stdout

    assert results["input"]["trades"] == 20_000
    assert results["input"]["symbols"] == 200
    assert results["input"]["intervals"] == INTERVALS
    assert results["one_core"]["duckdb_threads"] == 1
    cpu = results["one_core"]["cpu"]
    for name in ("read", "naive", "tickpipe"):
        path = results["paths"][name]
        assert path["cpus"] == [cpu], name  # every one-core figure ran pinned to one CPU
        assert path["trades"] == 20_000, name
        assert path["seconds"] > 0, name
        assert path["trades_per_s"] > 0, name
        assert path["peak_rss_mb"] > 0, name
        assert 0 < path["main_cpu_s"] <= path["cpu_s"] + 0.01, name  # main: one of the threads
        assert path["cpu_us_per_trade"] == path["cpu_s"] / 20_000 * 1e6, name
    runs = results["paths"]["tickpipe"]["runs"]
    assert len(runs) == 2
    assert results["paths"]["tickpipe"]["trades_per_s"] in [r["trades_per_s"] for r in runs]
    for name in ("naive", "tickpipe"):
        assert results["paths"][name]["stored_trades"] == 20_000, name
    tick = results["paths"]["tickpipe"]
    assert tick["rejected"] == tick["late"] == tick["duplicates"] == 0
    assert tick["db_threads"] == 1
    assert results["ratio_vs_naive"] > 0
    assert results["same_candles"]["equal"], results["same_candles"]["differences"]

    first = results["first_candle"]
    assert first["exit_code"] == 0
    assert 0 < first["lower_bound_s"] <= first["first_candle_s"]
    assert first["import_s"] > 0
    assert {t["name"] for t in results["targets"]} == {
        "end-to-end throughput, one core",
        "speed-up over the naive baseline, same core",
        "tickpipe peak RSS",
        "`tickpipe demo` start to first stored candle",
    }
    for target in results["targets"]:
        assert target["measured"] is not None and target["measured"] > 0
        assert isinstance(target["met"], bool)


def test_frames_are_binance_combined_stream_trades(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "f.bin", 5_000, 40, event_rate=2_000, chunk=700)
    chunks = list(read_chunks(frames.path))
    assert [len(c) for c in chunks] == [700] * 7 + [100]
    first = json.loads(chunks[0][0])
    assert set(first) == {"stream", "data"}
    data = first["data"]
    assert set(data) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
    assert first["stream"] == data["s"].lower() + "@trade"
    assert data["e"] == "trade" and data["E"] >= data["T"]
    assert isinstance(data["p"], str) and len(data["p"].split(".")[1]) == 8
    assert 2.0 <= frames.event_span_s <= 2.5  # 5,000 trades at 2,000 trades/s

    index = InstrumentIndex.for_symbols(binance_symbols(40))
    ids: dict[str, list[int]] = {}
    for chunk in chunks:
        batch, rejects, *_ = parse_frames(chunk, 0, index)
        assert not rejects and len(batch) == len(chunk)
        assert (batch.price > 0).all() and (batch.size > 0).all()
        for code, seq in zip(batch.instrument.tolist(), batch.seq.tolist(), strict=True):
            ids.setdefault(index.instruments[code].symbol, []).append(seq)
    for seqs in ids.values():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # increasing per symbol


@pytest.mark.parametrize("event_rate", [200.0, 50_000.0])
def test_naive_and_tickpipe_store_the_same_candles(tmp_path: Path, event_rate: float) -> None:
    # 200 trades/s spans 100 s of market: many windows of each symbol close and reopen.
    frames = write_frames(tmp_path / "f.bin", 20_000, 60, event_rate, chunk=2_000, seed=7)
    windows = tuple(parse_window(w) for w in INTERVALS)
    naive_db, tickpipe_db = tmp_path / "naive.sqlite", tmp_path / "tickpipe.duckdb"

    assert run_naive(read_chunks(frames.path), naive_db, windows) == 20_000
    counts = run_tickpipe(
        read_chunks(frames.path), tickpipe_db, binance_symbols(60), INTERVALS, threads=1
    )
    assert counts.trades == 20_000 and counts.rejected == counts.late == 0

    naive, tickpipe = sqlite_candles(naive_db), duckdb_candles(tickpipe_db)
    assert diff_candles(tickpipe, naive) == []
    assert {key[2] for key in naive} == set(INTERVALS)
    per_interval = {i: sum(1 for k in naive if k[2] == i) for i in INTERVALS}
    assert per_interval["1s"] >= per_interval["1h"] > 0
    if frames.event_span_s > 60:
        assert per_interval["1s"] > 20 * per_interval["1h"]  # windows did close and reopen


def test_candle_diff_reports_a_changed_candle() -> None:
    key = ("binance", "BTC-USDT", "1m", 0)
    candle = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "trades": 3, "first_seq": 1,
              "last_seq": 3, "volume": 0.3, "quote_volume": 0.45, "vwap": 1.5,
              "mean_price": 1.5, "buy_volume": 0.1, "sell_volume": 0.2}  # fmt: skip
    rounded = {**candle, "volume": 0.1 + 0.2}  # a different summation order: still equal
    assert diff_candles({key: candle}, {key: rounded}) == []
    problems = diff_candles({key: candle}, {key: {**candle, "close": 1.4}})
    assert problems == [f"{key} close: 1.5 != 1.4"]
    assert diff_candles({key: candle}, {}) == [f"{key}: only in the first"]
