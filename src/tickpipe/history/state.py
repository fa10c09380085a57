"""Where a backfill has got to: one small JSON file beside the store, so a killed backfill
restarts where it stopped.

One entry per task (exchange, symbol and the requested range): the exchange's cursor after
the last chunk that the store holds (trades and candles of one chunk land in one
transaction first, the cursor is saved after), and whether the task is done. A crash between
the two refetches one chunk, which the de-duplication against the store then drops. The file
is replaced atomically (write, fsync, rename), so a kill never leaves half of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class TaskState(msgspec.Struct, kw_only=True):
    cursor: str = ""  # the exchange's own paging cursor ("" = from the start of the range)
    done: bool = False
    trades: int = 0  # new trades stored by this task so far
    since_us: int = 0  # the range being fetched (an open-ended task's changes per run)
    until_us: int = 0


class BackfillState:
    """The per-task progress of every backfill run against one store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tasks: dict[str, TaskState] = {}
        if path.exists():
            try:
                self._tasks = msgspec.json.decode(path.read_bytes(), type=dict[str, TaskState])
            except msgspec.DecodeError:
                self._tasks = {}  # unreadable: start over (the store de-duplicates)

    @staticmethod
    def key(exchange: str, symbol: str, since_us: int, until_us: int | None) -> str:
        """A task's key; `until_us` None: open-ended (up to now, whenever it runs)."""
        return f"{exchange}:{symbol}:{since_us}:{'now' if until_us is None else until_us}"

    def get(self, key: str) -> TaskState:
        return self._tasks.get(key) or TaskState()

    def forget(self, key: str) -> None:
        """Drop a task's progress (`--fresh`): it is fetched again from its start."""
        if self._tasks.pop(key, None) is not None:
            self.save_all()

    def save(self, key: str, task: TaskState) -> None:
        """Record `task` durably (atomic replace of the file)."""
        self._tasks[key] = task
        self.save_all()

    def save_all(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(self._tasks))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
