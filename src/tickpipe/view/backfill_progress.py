"""`tickpipe backfill`'s progress on stderr: a rich bar per task on a terminal (how much of the
range is covered, trades fetched, trades/s, time left), plain lines elsewhere (a log, CI, the
Airflow task log: one every `every_s` seconds and one per finished task)."""

from __future__ import annotations

from typing import TextIO

from rich.progress import BarColumn, TaskID, TextColumn, TimeRemainingColumn

from tickpipe.history.backfill import TaskProgress
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.view.progress import StderrProgress


class BackfillProgress(StderrProgress):
    """A backfill progress callback; use it as a context manager (the bars are cleared)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        tty: bool | None = None,
    ) -> None:
        columns = (
            TextColumn("backfill {task.description}"),
            BarColumn(bar_width=20),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[trades]:,} trades"),
            TextColumn("{task.fields[rate]:,.0f} trades/s"),
            TimeRemainingColumn(),
        )
        super().__init__(columns, stream, every_s, clock, tty)
        self._tasks: dict[int, TaskID] = {}
        self._finished: set[int] = set()

    def __call__(self, done: TaskProgress) -> None:
        now_s = self.clock.monotonic_s()
        key = id(done)
        started = done.started_s
        rate = done.fetched / max(now_s - started, 1e-3)
        task = done.task
        name = f"{task.exchange} {task.symbol}"
        span = max(task.until_us - task.since_us, 1)
        covered = max(done.reached_us - task.since_us, 0)
        if self._bar is not None:
            if key not in self._tasks:
                self._tasks[key] = self._bar.add_task(name, total=span, trades=0, rate=0.0)
            self._bar.update(self._tasks[key], completed=covered, trades=done.fetched, rate=rate)
            return
        ended = done.error or done.fraction >= 1.0
        if ended and key in self._finished:
            return
        if not ended and self._shown_s is not None and now_s - self._shown_s < self.every_s:
            return
        self._shown_s = now_s
        if ended:
            self._finished.add(key)
        left = (1 - done.fraction) * (now_s - started) / max(done.fraction, 1e-9)
        eta = f", about {left:,.0f}s left" if 0 < done.fraction < 1 else ""
        print(
            f"backfill: {name}: {done.fraction:.0%} of the range, {done.fetched:,} trades "
            f"fetched ({rate:,.0f} trades/s), {done.new:,} new{eta}",
            file=self.stream,
            flush=True,
        )
