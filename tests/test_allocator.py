"""Freed large buffers leave the process once `limit_retained_memory` has run.

Run in a fresh interpreter: the setting is process-wide. The scenario is what made a restart's
memory stay high: one large array freed (glibc would raise its mmap threshold to its size),
then many medium arrays, each followed by a small object that stays alive (so their freed
space is never at the heap's top, where glibc would give it back anyway).
"""

from __future__ import annotations

import subprocess
import sys

SCENARIO = """
import numpy as np
from pathlib import Path
from tickpipe.allocator import limit_retained_memory

def rss_mb():
    text = Path("/proc/self/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0]) / 1024

limit_retained_memory()
big = np.ones(8 << 17)  # 8 MiB
del big
arrays, pins = [], []
for _ in range(50):
    arrays.append(np.ones(2 << 17))  # 2 MiB each, 100 MiB in all
    pins.append(bytearray(1024))
held = rss_mb()
del arrays
print(held - rss_mb())
"""


def test_freed_medium_arrays_leave_the_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True
    )
    given_back_mb = float(out.stdout.strip())
    assert given_back_mb >= 90, f"only {given_back_mb:.0f} of 100 MB freed left the process"
