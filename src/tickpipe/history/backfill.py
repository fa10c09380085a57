"""`tickpipe backfill`: trade history of symbols over a time range, fetched page by page from
each exchange's REST API and stored through the engine, resumable after a crash.

A task is one (exchange, symbol, [since, until)). Its pages are gathered into chunks of about
`chunk_trades`; each chunk is applied in one store transaction (`apply.apply_chunk`: new
trades only, candles recomputed and corrected), and only then is the task's cursor saved in
the state file. So a kill at any point loses at most the chunk in flight, which the next run
fetches again; a task that finished is not fetched again, and a re-run of a finished range
changes nothing (idempotent). Requests are paced per exchange (`REQUESTS_PER_S`, inside each
exchange's public limit) and `RestClient` waits out 429/418 answers with their Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tickpipe.engine.candles import EngineConfig
from tickpipe.history.apply import apply_chunk
from tickpipe.history.exchanges import History, history_of
from tickpipe.history.state import BackfillState, TaskState
from tickpipe.records import TradeBatch, concat_batches
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.stores.base import Store

# Requests per second per exchange: Binance 6000 weight a minute (historicalTrades weighs 25:
# 4 a second at most), Kraken's public counter (about 1 a second), OKX 20 per 2 seconds,
# Coinbase Exchange 10 a second, Bitstamp 400 a second (one request per task).
# ccxt paces itself (its rateLimit per exchange).
REQUESTS_PER_S = {
    "binance": 3.0, "kraken": 1.0, "okx": 8.0, "coinbase": 6.0, "bitstamp": 5.0, "ccxt": 1000.0,
}  # fmt: skip


@dataclass(frozen=True)
class Task:
    """One symbol's range. `open_ended`: the range ends "now" (no --until): its progress is
    kept under its start alone, so a killed run resumes the same range whenever it is started
    again, and once one finished, the next run fetches only what traded since its end."""

    exchange: str
    symbol: str
    since_us: int
    until_us: int
    open_ended: bool = False


@dataclass
class TaskProgress:
    """How far one task has come (what the progress bar and the summary show)."""

    task: Task
    reached_us: int
    fetched: int = 0  # trades fetched in this run
    new: int = 0  # of those, stored (not held already)
    candles: int = 0  # candles written (new or corrected)
    corrected: int = 0
    pages: int = 0
    started_s: float = 0.0  # monotonic time the task started (its rate's reference)
    resumed: bool = False  # started from a saved cursor
    skipped: bool = False  # finished in an earlier run
    error: str = ""

    @property
    def fraction(self) -> float:
        span = self.task.until_us - self.task.since_us
        return 1.0 if span <= 0 else min(1.0, (self.reached_us - self.task.since_us) / span)


@dataclass
class Report:
    tasks: list[TaskProgress] = field(default_factory=list)
    rate_limited: int = 0  # 429/418 answers waited out

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.tasks)

    @property
    def failed(self) -> list[TaskProgress]:
        return [t for t in self.tasks if t.error]


Progress = Callable[[TaskProgress], None]


class Backfiller:
    """Runs backfill tasks against one store, keeping their cursors in `state`."""

    def __init__(
        self,
        store: Store,
        engine: EngineConfig,
        state: BackfillState,
        rest_url: Callable[[str], str],
        stream: Callable[[str], str | None] = lambda name: None,
        ccxt_config: Mapping[str, Any] | None = None,
        chunk_trades: int = 50_000,
        requests_per_s: dict[str, float] | None = None,
        rest_config: RestConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.engine = engine
        self.state = state
        self.rest_url = rest_url
        self.stream = stream
        self.ccxt_config = ccxt_config
        self.chunk_trades = chunk_trades
        self.requests_per_s = {**REQUESTS_PER_S, **(requests_per_s or {})}
        self.rest_config = rest_config or RestConfig()
        self.clock = clock

    async def run(self, tasks: list[Task], progress: Progress | None = None) -> Report:
        """Every task in turn; a task that fails is reported and the others go on."""
        report = Report()
        for task in tasks:
            done = TaskProgress(task, task.since_us, started_s=self.clock.monotonic_s())
            report.tasks.append(done)
            try:
                stream = self.stream(task.exchange)
                history = history_of(task.exchange, task.symbol, stream, self.ccxt_config)
                async with RestClient(self.rest_url(task.exchange), self.rest_config) as rest:
                    try:
                        await self._run_task(task, history, rest, done, progress)
                    finally:
                        report.rate_limited += rest.rate_limited
                        close = getattr(history, "aclose", None)
                        if close is not None:
                            await close()
            except Exception as exc:  # one line per failed task; the next one goes on
                done.error = " ".join(str(exc).split()) or type(exc).__name__
            if progress is not None:
                progress(done)
        return report

    async def _run_task(
        self,
        task: Task,
        history: History,
        rest: RestClient,
        done: TaskProgress,
        progress: Progress | None,
    ) -> None:
        end = None if task.open_ended else task.until_us
        key = BackfillState.key(task.exchange, task.symbol, task.since_us, end)
        saved = self.state.get(key)
        since, until = task.since_us, task.until_us
        if task.open_ended and saved.until_us:
            if saved.done:  # the range up to its last end is stored: on from there
                since, saved = saved.until_us, TaskState(trades=saved.trades)
            else:  # the same range as the run that stopped
                since, until = saved.since_us, saved.until_us
        elif saved.done:
            done.skipped, done.reached_us = True, task.until_us
            return
        if since >= until:
            done.skipped, done.reached_us = True, task.until_us
            return
        done.resumed = bool(saved.cursor)
        done.task = task = Task(task.exchange, task.symbol, since, until, task.open_ended)
        done.reached_us = since
        cursor, stored = saved.cursor, saved.trades
        pending: list[TradeBatch] = []
        gap_s = 1.0 / self.requests_per_s.get(task.exchange, 2.0)
        next_at = 0.0
        finished = False
        while not finished:
            wait = next_at - self.clock.monotonic_s()
            if wait > 0:
                await asyncio.sleep(wait)
            next_at = self.clock.monotonic_s() + gap_s
            page = await history.page(rest, since, until, cursor)
            done.pages += 1
            cursor, finished = page.cursor, page.done
            done.reached_us = max(done.reached_us, page.reached_us)
            if len(page.batch):
                pending.append(page.batch)
            if finished or sum(len(b) for b in pending) >= self.chunk_trades:
                batch = concat_batches(pending, task.exchange)
                applied = apply_chunk(self.store, self.engine, batch, self.clock.now_us())
                pending = []
                done.fetched += applied.fetched
                done.new += applied.new
                done.candles += applied.candles
                done.corrected += applied.corrected
                stored += applied.new
                self.state.save(key, TaskState(
                    cursor=cursor, done=finished, trades=stored, since_us=since, until_us=until,
                ))  # fmt: skip
            if progress is not None:
                progress(done)
