"""Faults of the machine, not of tickpipe, as the one line the command ends with.

A full disk, a read-only data directory or a damaged DuckDB file reach the command as an
`OSError` or a DuckDB error, often wrapped (the store writer re-raises on the pipeline's
thread). `fault_line` finds the cause in the chain and names it with its path, so the user
reads "disk full: ./tickpipe-data/tickpipe.duckdb.wal" instead of a traceback about a
transaction. A `StoreError` already says what it is in one line (the command prints it as it
is), and anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from tickpipe.stores.base import StoreError

# EFBIG: the file-size limit (RLIMIT_FSIZE) behaves as a full disk for the file it stops.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "File too large")
READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
READ_ONLY_TEXT = ("Read-only file system", "Permission denied", "Operation not permitted")
DAMAGED_TEXT = ("Corrupt database file", "Could not read enough bytes", "not a valid DuckDB")
# DuckDB's `memory_limit` reached; read through an Arrow stream it comes as an OSError.
OUT_OF_MEMORY_TEXT = "Out of Memory Error"
_QUOTED_PATH = re.compile(r'file "([^"]+)"')


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 300 else line[:297] + "..."


def os_fault(exc: OSError) -> str:
    """`disk full: PATH (reason)`, `cannot write PATH: reason`, or `reason: PATH`."""
    path = exc.filename if exc.filename is not None else "?"
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE:
        return f"disk full: {path} ({reason})"
    if exc.errno in READ_ONLY:
        return f"cannot write {path}: {reason} (a read-only or foreign directory?)"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"{path}: {reason} (check --data-dir)"
    return f"{path}: {reason}"


class Fault(Exception):
    """A machine fault, named in one line (the message); the command exits 1 with it."""


def store_fault(text: str, path: str) -> str:
    """A DuckDB error text, with the file it names (else `path`), as one line."""
    named = _QUOTED_PATH.search(text)
    where = named.group(1) if named else path
    first = _first_line(text)
    if any(t in text for t in NO_SPACE_TEXT):
        return f"disk full: {where} ({first})"
    if any(t in text for t in READ_ONLY_TEXT):
        return f"cannot write {where}: {first}"
    if OUT_OF_MEMORY_TEXT in text:
        return (
            f"out of memory reading {where}: DuckDB's memory limit was reached; raise "
            f"duckdb_memory_limit (TICKPIPE_DUCKDB_MEMORY_LIMIT, e.g. 256MB; `tickpipe "
            f"verify`: duckdb_verify_memory_limit) ({first})"
        )
    if any(t in text for t in DAMAGED_TEXT):
        return (
            f"{where} is damaged (truncated or not a DuckDB file): move it aside and start "
            f"again, or restore a copy ({first})"
        )
    return f"the store {where} failed: {first}"


def fault_line(exc: BaseException, store_path: str) -> str | None:
    """The one line naming a machine fault in `exc`'s chain of causes; None for anything else.

    `store_path`: the DuckDB file, named when DuckDB's own text names none.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreError | Fault):  # its own one line already says it
            return None
        if isinstance(current, OSError) and current.errno is not None:
            return os_fault(current)
        if isinstance(current, duckdb.Error) or (
            isinstance(current, OSError) and OUT_OF_MEMORY_TEXT in str(current)
        ):
            return store_fault(str(current), store_path)
        # `raise ... from None` means the new error says it all (a config error, say)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return None


@contextmanager
def faults_named(store_path: str) -> Iterator[None]:
    """Re-raise a machine fault from inside as a `Fault` that names it; bugs pass unchanged."""
    try:
        yield
    except Exception as exc:
        line = fault_line(exc, store_path)
        if line is None:
            raise
        raise Fault(line) from exc
