"""`tickpipe verify`'s progress on stderr: a bar on a terminal, plain lines elsewhere.

Verifying a store of tens of millions of trades takes minutes; the user should see it move.
On a terminal a rich bar shows trades checked (of an estimate), their rate, instruments done
and the time left. When stderr is a file or a pipe (a log, CI), a plain line every
`every_s` seconds says the same, and nothing redraws.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.verify import Checked


class StderrProgress:
    """What every long command's progress shares: a rich bar of `columns` when the stream is a
    terminal, plain lines (at most one every `every_s` seconds) when it is a log, CI or a
    scheduler's task log. Use it as a context manager: the bar is cleared at exit."""

    def __init__(
        self,
        columns: tuple[ProgressColumn, ...],
        stream: TextIO | None = None,
        every_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        tty: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.clock = clock
        self._shown_s: float | None = None
        self._bar: Progress | None = None
        if self.stream.isatty() if tty is None else tty:
            self._bar = Progress(*columns, console=Console(file=self.stream), transient=True)

    def __enter__(self) -> Self:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


class VerifyProgress(StderrProgress):
    """A `verify` progress callback: trades checked (of an estimate), their rate, instruments
    done and the time left."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        tty: bool | None = None,
    ) -> None:
        columns = (
            TextColumn("verify: {task.description}"),
            BarColumn(bar_width=20),
            TextColumn("{task.completed:,.0f}/~{task.total:,.0f} trades"),
            TextColumn("{task.fields[rate]:,.0f}/s"),
            TextColumn("{task.fields[done]}/{task.fields[instruments]} instruments"),
            TimeRemainingColumn(),
        )
        super().__init__(columns, stream, every_s, clock, tty)
        self.started_s = clock.monotonic_s()
        self._stage = ""
        self._task: TaskID | None = None

    def __call__(self, checked: Checked) -> None:
        now_s = self.clock.monotonic_s()
        rate = checked.trades / max(now_s - self.started_s, 1e-9)
        fields: dict[str, Any] = {"rate": rate, "done": checked.instruments_done,
                  "instruments": checked.instruments}  # fmt: skip
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(checked.stage, total=checked.expected_trades,
                                                **fields)  # fmt: skip
            total = max(checked.expected_trades, checked.trades)
            self._bar.update(self._task, description=checked.stage, completed=checked.trades,
                             total=total, **fields)  # fmt: skip
            return
        if (
            checked.stage == self._stage and self._shown_s is not None
            and now_s - self._shown_s < self.every_s
        ):  # fmt: skip
            return
        self._shown_s, self._stage = now_s, checked.stage
        left = max(checked.expected_trades - checked.trades, 0) / max(rate, 1e-9)
        eta = f", about {left:,.0f}s left" if 0 < checked.trades < checked.expected_trades else ""
        print(
            f"verify: {checked.stage}: {checked.trades:,} of ~{checked.expected_trades:,} "
            f"trades checked ({rate:,.0f} trades/s), {checked.instruments_done:,} of "
            f"{checked.instruments:,} instruments done{eta}",
            file=self.stream,
            flush=True,
        )
