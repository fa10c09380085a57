"""The time budget of the API's reads, kept per store and per reading thread.

The API wraps each read in `store.read_budget(timeout_s)`; the store then cuts off any query of
that thread which runs past the budget, by its own means (DuckDB interrupts the connection,
PostgreSQL sets `statement_timeout`, Cassandra and MongoDB give their client a timeout), and
raises `OverBudget`. Reads outside a budget (a restart, `verify`, tools) run unbounded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from tickpipe.durations import format_duration
from tickpipe.stores.base import OverBudget

MEMORY_REASON = (
    "over the memory budget: the store ran out of memory for this read; ask for a shorter period"
)


class ReadBudget:
    """Deadlines of the reads that threads make inside `within` (one object per store)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def within(self, timeout_s: float) -> Iterator[None]:
        """Reads this thread makes inside may take `timeout_s` seconds in all."""
        self._local.timeout_s = timeout_s
        self._local.deadline = time.monotonic() + timeout_s
        try:
            yield
        finally:
            self._local.timeout_s = None

    def remaining_s(self) -> float | None:
        """Seconds left to this thread's reads (None: no budget); OverBudget once spent."""
        if getattr(self._local, "timeout_s", None) is None:
            return None
        left = float(self._local.deadline - time.monotonic())
        if left <= 0:
            raise self.over()
        return left

    def over(self) -> OverBudget:
        """The error of a read cut off by this thread's budget."""
        timeout_s = getattr(self._local, "timeout_s", None) or 0.0
        spelled = format_duration(max(1, round(timeout_s * 1_000_000)))
        return OverBudget(
            f"over the time budget: the read took longer than serve.read_timeout = {spelled}; "
            "ask for a shorter period"
        )
