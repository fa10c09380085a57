"""The recording's files and its faults: frames kept byte for byte (binary ones too), files
rolled by size, a tail cut off by a crash read up to it, and a full disk that ends
`tickpipe run --record` with one line naming the file."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.binance_server import FakeBinanceThread

from tickpipe.history.recording import (
    SUFFIX,
    End,
    FrameRecorder,
    FramesRecord,
    Header,
    RecordedSource,
    RecordingError,
    RefillRecord,
    merged,
    read_file,
)
from tickpipe.records import Trade, TradeBatch
from tickpipe.runtime.clock import ManualClock

SOURCE = RecordedSource("binance", "binance", None, "ws://x", [("binance", "BTC-USDT", "BTCUSDT")])


def _record(directory: Path, deliveries: list[list[bytes]], **kwargs) -> FrameRecorder:
    recorder = FrameRecorder(directory, clock=ManualClock(), **kwargs)
    recorder.add(SOURCE)
    recorder.start()

    async def feed() -> None:
        for n, frames in enumerate(deliveries):
            await recorder.frames_received("binance", 1000 + n, 0, 1, frames)

    asyncio.run(feed())
    recorder.close()
    return recorder


def test_frames_come_back_byte_for_byte_in_order_with_their_times(tmp_path: Path) -> None:
    deliveries = [[b'{"a":1}', b"\xff\x00\n binary"], [b""], [b"not json\n\n", b"{}"]]
    _record(tmp_path, deliveries)
    records = [record for _, record in merged(tmp_path)]
    kept = [(r.t, r.frames) for r in records if isinstance(r, FramesRecord)]
    assert kept == [(1000 + n, frames) for n, frames in enumerate(deliveries)]
    assert isinstance(records[-1], End)
    header = next(iter(merged(tmp_path)))[0]
    assert isinstance(header, Header)
    assert header.instruments == [("binance", "BTC-USDT", "BTCUSDT")]


def test_files_roll_by_size_and_each_starts_with_a_header(tmp_path: Path) -> None:
    deliveries = [[os.urandom(3000)] for _ in range(30)]
    recorder = _record(tmp_path, deliveries, roll_bytes=20_000)
    files = sorted((tmp_path / "binance").glob(f"*{SUFFIX}"))
    assert len(files) == recorder.files_written > 3
    for path in files:
        assert isinstance(next(read_file(path)), Header)
    kept = [r.frames for _, r in merged(tmp_path) if isinstance(r, FramesRecord)]
    assert kept == deliveries


def test_refilled_trades_are_recorded_as_trades(tmp_path: Path) -> None:
    trade = Trade(
        source="binance", exchange="binance", symbol="BTC-USDT", raw_symbol="BTCUSDT",
        trade_id="7", seq=7, price=1.5, size=2.0, side="buy", ts=5, recv_ts=6,
    )  # fmt: skip
    recorder = FrameRecorder(tmp_path, clock=ManualClock())
    recorder.add(SOURCE)
    recorder.start()
    asyncio.run(recorder.refilled("binance", [TradeBatch.from_trades([trade])]))
    recorder.close()
    refills = [r for _, r in merged(tmp_path) if isinstance(r, RefillRecord)]
    assert [r.trades for r in refills] == [[trade]]


def test_a_tail_cut_off_by_a_crash_is_read_up_to_it(tmp_path: Path) -> None:
    deliveries = [[os.urandom(40_000)] for _ in range(60)]  # several zstd blocks
    _record(tmp_path, deliveries)
    (path,) = (tmp_path / "binance").glob(f"*{SUFFIX}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    cut: list[Path] = []
    kept = [r.frames for _, r in merged(tmp_path, cut.append) if isinstance(r, FramesRecord)]
    assert cut == [path]
    assert 0 < len(kept) < len(deliveries)
    assert kept == deliveries[: len(kept)]
    with pytest.raises(RecordingError, match="cut off"):
        list(merged(tmp_path))


def test_a_directory_without_a_recording_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no recorded frames"):
        list(merged(tmp_path))
    (tmp_path / "binance").mkdir()
    (tmp_path / "binance" / f"x{SUFFIX}").write_bytes(b"plain text")
    with pytest.raises(RecordingError, match="not a zstd recording"):
        list(merged(tmp_path))


@pytest.mark.slow
def test_a_full_disk_while_recording_ends_the_run_with_one_line_naming_the_file(
    tmp_path: Path,
) -> None:
    """Under a file-size limit (as `test_faults` simulates a full disk) that the recording
    reaches long before the DuckDB file: large incompressible frames."""
    limit = 3 * 1024 * 1024

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    with FakeBinanceThread(symbols=("BTCUSDT",), ping_interval=0.5) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "run", "--quiet", "--no-serve",
             "--no-symbol-check", "--data-dir", str(tmp_path / "data"),
             "--record", str(tmp_path / "raw"), "--exchange", "binance",
             "--endpoint", f"binance={fake.url}", "--rest-endpoint", f"binance={fake.rest_url}",
             "--symbol", "BTC-USDT"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
            preexec_fn=limit_files,
        )  # fmt: skip
        try:
            assert fake.server is not None
            fake.run(fake.server.wait_connections(1, timeout=30), timeout=40)
            for _ in range(40):  # 40 x 200 kB of random text: over the limit
                pad = base64.b64encode(os.urandom(150_000)).decode()
                fake.call(lambda s, pad=pad: s.send_raw('{"result":null,"id":"' + pad + '"}'))
                fake.call(lambda s: s.publish("BTCUSDT"))
            out, err = proc.communicate(timeout=60)  # the run stops by itself
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tickpipe: error: recording stopped: disk full: "), lines[0]
    assert str(tmp_path / "raw" / "binance") in lines[0]


def test_record_refuses_a_file_replay_in_one_line(tmp_path: Path) -> None:
    from test_cli import one_line_usage_error, tickpipe

    trades = tmp_path / "trades.jsonl"
    trades.write_text(
        '{"source":"f","exchange":"ex","symbol":"BTC-USDT","trade_id":"1","seq":1,'
        '"price":1.0,"size":1.0,"side":"buy","ts":1000000,"recv_ts":1000000}\n'
    )
    result = tickpipe("run", "--quiet", "--no-serve", "--data-dir", str(tmp_path / "data"),
                      "--replay", str(trades), "--record", str(tmp_path / "raw"))  # fmt: skip
    line = one_line_usage_error(result)
    assert "--record" in line and "a file replay has no raw frames to record" in line
    assert not (tmp_path / "raw").exists()


def test_replay_raw_of_a_directory_without_a_recording_is_one_line(tmp_path: Path) -> None:
    from test_cli import tickpipe

    result = tickpipe("replay-raw", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no recorded frames" in lines[0], result.stderr
    assert not (tmp_path / "data").exists()  # no store opened for nothing


def test_files_roll_by_age_and_keep_every_frame_in_order(tmp_path: Path) -> None:
    clock = ManualClock()
    recorder = FrameRecorder(tmp_path, roll_s=60.0, clock=clock)
    recorder.add(SOURCE)
    recorder.start()

    async def feed() -> None:
        for n in range(6):
            await recorder.frames_received("binance", 1000 + n, 0, 1, [str(n).encode()])
            if n % 2:
                await asyncio.sleep(0.05)
                clock.advance(61.0)  # an hour-long file, in a test's minute

    asyncio.run(feed())
    recorder.close()
    files = sorted((tmp_path / "binance").glob(f"*{SUFFIX}"))
    assert len(files) >= 3, files
    assert all(isinstance(next(read_file(p)), Header) for p in files)
    kept = [r.frames for _, r in merged(tmp_path) if isinstance(r, FramesRecord)]
    assert kept == [[str(n).encode()] for n in range(6)]
