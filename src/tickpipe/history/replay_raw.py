"""`tickpipe replay-raw DIR`: recorded raw frames through the same parsers and engine again.

Each file's header names the connector, stream and instruments it was recorded with; the same
connector is built again (its REST history off: what refills brought back live is in the
recording), and every delivery of frames goes through its `parse` and `hand_on_parsed` as it
did live, in the order received, then through the engine stage into the store. Time is the
recording's: the engine's clock reads each record's receipt time, and the idle timer ticks
every `TICK_SECONDS` of recorded time in between (and up to the recorded stop), as the live
loop did (a quiet spell longer than a minute is skipped to its last tick, to the same
effect). So the stored trades equal the live run's row by row (receipt times included) and
the candles equal its candles; after a parser fix, the same command applies it to history.

Where the store already holds trades of the replayed windows (from elsewhere), the replayed
candles are computed from the recording's trades only: replay into a fresh data directory
or store, or into the one the recording was made with (its rows are upserted unchanged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.history.recording import (
    End,
    FramesRecord,
    Header,
    RecordingError,
    RefillRecord,
    merged,
    recording_files,
)
from tickpipe.records import TradeBatch
from tickpipe.runtime.stage import TICK_SECONDS, EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.sources import SourceContext, SourceStats
from tickpipe.sources.feed import ShardedFeed, hand_on

TICK_US = round(TICK_SECONDS * 1_000_000)
QUIET_US = 60_000_000  # recorded quiet time ticked through one tick at a time, then skipped


class RecordedClock:
    """The recording's time: both readings follow the records, and never go back."""

    def __init__(self) -> None:
        self._now_us = 0

    def now_us(self) -> int:
        return self._now_us

    def monotonic_s(self) -> float:
        return self._now_us / 1e6

    def move_to(self, us: int) -> None:
        self._now_us = max(self._now_us, us)


@dataclass
class ReplayReport:
    """What a replay read and stored."""

    records: int = 0  # deliveries of frames and refills
    frames: int = 0
    refilled: int = 0  # trades recorded from REST refills
    trades: int = 0  # accepted by the engine (stored)
    candles: int = 0  # candle updates stored
    malformed: int = 0  # frames the parsers rejected (dead letters)
    sources: set[str] = field(default_factory=set)
    truncated: list[Path] = field(default_factory=list)  # files cut off by a crash
    seconds: float = 0.0


def build_feed(header: Header) -> ShardedFeed:
    """The connector the header names, with its stream and instruments, its REST off."""
    from tickpipe.sources.registry import ExchangeOptions, UnknownExchange, connector

    symbols = [symbol for _, symbol, _ in header.instruments]
    # Aggregators refuse to be built without a token; a replay never connects.
    options = ExchangeOptions(url=header.url, stream=header.stream, token="replay")
    try:
        feed = connector(header.connector).make_source(symbols, options)
    except (UnknownExchange, ValueError) as exc:
        raise RecordingError(f"{header.source}: cannot rebuild its connector: {exc}") from None
    if not isinstance(feed, ShardedFeed):
        raise RecordingError(f"{header.source}: {header.connector} is not a WebSocket feed")
    built = [(i.exchange, i.symbol, i.raw_symbol) for i in feed.instruments]
    if built != [tuple(i) for i in header.instruments]:
        raise RecordingError(
            f"{header.source}: the connector now builds other instruments than were recorded "
            f"({built} != {header.instruments})"
        )
    feed.rest_url = None  # refills: recorded as trades
    return feed


async def replay_raw(
    config: Config, directory: Path, progress: Callable[[ReplayReport], None] | None = None
) -> ReplayReport:
    """Replay the recording in `directory` into the configured store; what it did."""
    recording_files(directory)  # nothing to replay: said before any store is opened
    started = time.monotonic()
    report = ReplayReport()
    clock = RecordedClock()
    engine = CandleEngine(config.engine_config())
    dead_letters = DeadLetters(config.dead_letter_path)
    store = config.open_store()
    writer = StoreWriter(store, config.flush_every_s)
    stage = EngineStage(engine, writer, dead_letters, clock, config.snapshot_every_s)
    out: list[TradeBatch] = []

    async def emit(batch: TradeBatch) -> None:
        out.append(batch)

    stats = SourceStats()
    ctx = SourceContext(emit=emit, dead_letters=dead_letters, stats=stats)
    feeds: dict[str, tuple[tuple, ShardedFeed]] = {}
    connects: dict[tuple[str, int], int] = {}
    next_tick: int | None = None
    try:
        for header, record in merged(directory, report.truncated.append):
            t = record.t
            if next_tick is None:
                next_tick = t
            while next_tick <= t:  # the live loop's idle tick, on recorded time
                clock.move_to(next_tick)
                stage.tick()
                next_tick += TICK_US
                if t - next_tick > QUIET_US:
                    # A long quiet spell (a stop between two runs): a tick raises watermarks
                    # by the time since each instrument's last trade, so one late tick does
                    # what all those in between would have.
                    next_tick = t - (t - next_tick) % TICK_US
            clock.move_to(t)
            if isinstance(record, End):
                continue
            feed = _feed(feeds, header)
            report.sources.add(header.source)
            report.records += 1
            if isinstance(record, FramesRecord):
                key = (header.source, record.conn)
                seen = connects.get(key)
                if seen is not None and record.connects > seen and record.conn < len(feed.shards):
                    feed.reconnected(feed.shards[record.conn], ctx)
                connects[key] = record.connects
                frames = record.frames
                report.frames += len(frames)
                await feed.hand_on_parsed(feed.parse(frames, t), ctx)
            elif isinstance(record, RefillRecord):
                report.refilled += len(record.trades)
                batch = TradeBatch.from_trades(record.trades, feed.name)
                await hand_on(ctx, feed.name, [batch], [])
            for batch in out:
                stage.process(batch)
            out.clear()
            while stage.behind:
                await asyncio.sleep(0.005)  # the store is behind
            if progress is not None and report.records % 10_000 == 0:
                report.trades = stage.counters.trades
                progress(report)
        stage.finish()
    finally:
        try:
            writer.close()
        finally:
            store.close()
            dead_letters.close()
    report.trades = stage.counters.trades
    report.candles = stage.counters.candles
    report.malformed = stats.malformed
    report.seconds = time.monotonic() - started
    return report


def _feed(feeds: dict[str, tuple[tuple, ShardedFeed]], header: Header) -> ShardedFeed:
    """The source's connector as this header's run built it (a new one for a new run)."""
    key = (header.run_us, header.connector, header.stream, header.url, header.instruments)
    known = feeds.get(header.source)
    if known is not None and known[0] == key:
        return known[1]
    feed = build_feed(header)
    feeds[header.source] = (key, feed)
    return feed
