"""The dead-letter file: every message tickpipe could not use, kept with the reason why.

A message may echo a secret back (a feed's error quoting the URL with its token), so letters
are cleaned of every secret the process has read (`credentials.redact`).

A payload is kept up to `MAX_PAYLOAD_CHARS`: a huge garbage line must not fill the disk, so
the rest is cut off, and the letter says how many characters went (`cut`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import msgspec

from tickpipe.credentials import redact

MAX_PAYLOAD_CHARS = 4096  # a trade message is far shorter; enough to see what came


def cut(text: str, limit: int = MAX_PAYLOAD_CHARS) -> tuple[str, int]:
    """`text` up to `limit` characters, and how many characters were left out."""
    return text[:limit], max(0, len(text) - limit)


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    ts: int
    source: str
    reason: str
    payload: str
    cut: int = 0  # characters of the payload left out beyond MAX_PAYLOAD_CHARS


class DeadLetters:
    """Appends rejected messages as JSON lines and counts them by (source, reason).

    Thread-safe because sources, the engine and the store writer all reject things.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[tuple[str, str]] = Counter()
        self.cut = 0  # letters whose payload was cut
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
        kept, left_out = cut(payload)
        line = self._encoder.encode(
            DeadLetter(
                ts=time.time_ns() // 1000, source=source, reason=redact(reason),
                payload=redact(kept),
                cut=left_out,
            )
        )  # fmt: skip
        with self._lock:
            self.counts[(source, reason)] += 1
            self.cut += left_out > 0
            if self._file is not None:
                self._file.write(line + b"\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
