"""Benchmark input: raw Binance combined-stream trade frames, generated once, read in chunks.

Frames are generated before any timing from the simulated market (its Zipf-like activity,
random-walk prices and heavy-tailed sizes) and spelled exactly as Binance sends them. They go
to a file (see `framefile`) and the measured paths read them back one chunk at a time, as a
WebSocket reader would hand them over, so the measuring process never holds the whole input:
its peak memory is the pipeline's, not the benchmark's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tickpipe.bench.framefile import write_chunk
from tickpipe.records import SIDE_SELL
from tickpipe.sources.simulated import MarketSimulator, symbol_names
from tickpipe.symbols import to_binance

START_TS = 1_717_372_800_000_000  # 2024-06-03 00:00:00 UTC, in µs: fixed, so runs repeat
START_TRADE_ID = 3_600_000_000  # about where Binance's busiest spot ids are
_GENERATE_STEP = 200_000  # trades per simulator call: bounds the generator's memory


@dataclass(frozen=True)
class FrameFile:
    """What was generated: enough for a measuring process to find and decode it."""

    path: Path
    trades: int
    symbols: int
    chunk: int
    event_rate: float
    first_ts: int
    last_ts: int
    bytes: int

    @property
    def event_span_s(self) -> float:
        return (self.last_ts - self.first_ts) / 1e6


def binance_symbols(count: int) -> list[str]:
    """The normalized symbols of a benchmark market (BTC-USDT, ..., SYM999-USDT)."""
    return symbol_names(count)


def write_frames(
    path: Path,
    trades: int,
    symbols: int,
    event_rate: float,
    chunk: int = 20_000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> FrameFile:
    """Generate `trades` frames arriving at `event_rate` trades/s of event time into `path`."""
    if trades < 1 or symbols < 1 or chunk < 1:
        raise ValueError("trades, symbols and chunk must be at least 1")
    sim = MarketSimulator(
        symbols, event_rate, seed, exchange="binance", source="binance", start_seq=START_TRADE_ID
    )
    raw = [to_binance(s) for s in sim.symbols]
    streams = [f"{s.lower()}@trade" for s in raw]
    pending: list[bytes] = []
    done = 0
    ts = START_TS
    first_ts = last_ts = START_TS
    size = 0
    with path.open("wb") as out:
        while done < trades:
            n = min(_GENERATE_STEP, trades - done)
            span = max(1, round(n / event_rate * 1e6))
            batch = sim.trades(n, ts, span)
            ts += span
            if done == 0:
                first_ts = int(batch.ts[0])
            last_ts = int(batch.ts[-1])
            pending.extend(_encode(batch.instrument, batch.seq, batch.price, batch.size,
                                   batch.side, batch.ts, batch.recv_ts, raw, streams))  # fmt: skip
            done += n
            while len(pending) >= chunk or (done == trades and pending):
                size += write_chunk(out, pending[:chunk])
                del pending[:chunk]
            if progress is not None:
                progress(done)
    return FrameFile(path, trades, symbols, chunk, event_rate, first_ts, last_ts, size)


def _encode(instrument, seq, price, size, side, ts, recv_ts, raw, streams) -> list[bytes]:
    """Frames as Binance spells them: decimals as 8-place strings, times in milliseconds."""
    maker = (side == SIDE_SELL).tolist()  # the buyer rested on the book: the taker sold
    trade_ms = (ts // 1000).tolist()
    event_ms = np.maximum(recv_ts // 1000, ts // 1000).tolist()
    return [
        (
            f'{{"stream":"{streams[i]}","data":{{"e":"trade","E":{e},"s":"{raw[i]}","t":{t},'
            f'"p":"{p:.8f}","q":"{q:.8f}","T":{tm},"m":{"true" if m else "false"},"M":true}}}}'
        ).encode()
        for i, t, p, q, tm, e, m in zip(
            instrument.tolist(), seq.tolist(), price.tolist(), size.tolist(), trade_ms,
            event_ms, maker, strict=True,
        )
    ]  # fmt: skip
