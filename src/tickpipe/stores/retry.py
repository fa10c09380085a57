"""The retry of a store whose server went away: capped, growing pauses until a deadline.

Every networked store (PostgreSQL, Cassandra, MongoDB) retries a lost write whole the same
way: one warning line per attempt, then, once `store_retry_for` has passed, one `StoreError`
line. What counts as "the server went away" is each store's own; the pacing is here.
"""

from __future__ import annotations

import logging
import time

from tickpipe.stores.base import StoreError

log = logging.getLogger("tickpipe")


class Backoff:
    """The pauses of one retried call: 0.1 s, doubling, at most 2 s, until `deadline_s`."""

    def __init__(self, store: str, where: str, what: str, deadline_s: float) -> None:
        self.store, self.where, self.what = store, where, what
        self.deadline_s = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.pause, self.attempt = 0.1, 0

    def wait(self, exc: BaseException, reason: str, why: str) -> None:
        """Sleep before the next attempt, saying so; past the deadline, raise the one line
        (`reason`: the error, one line; `why`: what happened, e.g. "server unreachable")."""
        self.attempt += 1
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StoreError(
                f"{self.store} at {self.where}: {self.what} failed for {self.deadline_s:g}s "
                f"({self.attempt} attempts): {reason}"
            ) from exc
        log.warning(
            "%s: %s failed (%s: %s); retry %d in %.1fs",
            self.store.lower(), self.what, why, reason, self.attempt, min(self.pause, left),
        )  # fmt: skip
        time.sleep(min(self.pause, left))
        self.pause = min(self.pause * 2, 2.0)
