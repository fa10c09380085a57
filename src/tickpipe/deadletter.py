"""The dead-letter file: every message tickpipe could not use, kept with the reason why."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import msgspec


class DeadLetter(msgspec.Struct, kw_only=True):
    ts: int
    source: str
    reason: str
    payload: str


class DeadLetters:
    """Appends rejected messages as JSON lines and counts them by (source, reason).

    Thread-safe because sources, the engine and the store writer all reject things.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab", buffering=0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def write(self, source: str, reason: str, payload: bytes | str) -> None:
        """Keep one rejected message; the pipeline goes on."""
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        line = self._encoder.encode(
            DeadLetter(ts=time.time_ns() // 1000, source=source, reason=reason, payload=payload)
        )
        with self._lock:
            self.counts[(source, reason)] += 1
            if self._file is not None:
                self._file.write(line + b"\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
