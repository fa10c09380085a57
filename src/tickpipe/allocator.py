"""Process-wide allocator settings that keep freed memory from staying resident.

A restart (snapshot load, replay, DuckDB reads) and each engine step allocate large,
short-lived buffers: numpy columns, sort keys, Arrow batches. Two allocators kept them:

- glibc raises its mmap threshold (up to 32 MB) each time a large block is freed, so later
  large numpy arrays come from the heap and arenas, which fragment and are rarely given back.
  A fixed threshold keeps every block of 512 KiB or more its own mapping, unmapped when freed.
  Not glibc's 128 KiB: an engine step's columns (20,000 trades of 8 bytes) would then be
  mapped and faulted in anew each step: `tickpipe bench` ran about 40% slower.
- pyarrow's default pool (mimalloc) keeps freed pages for reuse. The system pool hands them
  to glibc, whose large blocks are now mappings.

Measured on a 1M-trade snapshot restart of `tickpipe demo`: peak RSS 351 MB before, 291 - 305
MB after; about 2% more CPU per trade on the bench's path (README, Operations, "Memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MMAP_THRESHOLD_BYTES = 512 * 1024  # any fixed value stops glibc's growth of it


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
