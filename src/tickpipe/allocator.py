"""Process-wide allocator settings that keep freed memory from staying resident.

A restart (snapshot load, replay, DuckDB reads) and each engine step allocate large,
short-lived buffers: numpy columns, sort keys, Arrow batches. Two allocators kept them:

- glibc raises its mmap threshold (up to 32 MB) each time a large block is freed, so later
  large numpy arrays come from the heap and arenas, which fragment and are rarely given back.
  A fixed threshold keeps every block of 128 KiB or more its own mapping, unmapped when freed.
- pyarrow's default pool (mimalloc) keeps freed pages for reuse. The system pool hands them
  to glibc, whose large blocks are now mappings.

Measured on a 1M-trade snapshot restart of `tickpipe demo` (benchmarks/restart.py): peak RSS
351 MB before, 297 MB after, CPU to live and `tickpipe bench` CPU per trade unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own initial value; fixing it stops its growth


def limit_retained_memory() -> None:
    """Make large freed buffers go back to the OS (call once, at process start)."""
    pa.set_memory_pool(pa.system_memory_pool())
    name = ctypes.util.find_library("c")
    if name is None:  # not glibc-like: nothing to set
        return
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)  # musl has none
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
