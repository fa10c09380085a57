"""One example `PipelineStatus` for the tests of what renders it (terminal view, metrics)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tickpipe.runtime.status import PipelineStatus, SourceStatus

EXAMPLE = PipelineStatus(
    mode="demo",
    uptime_s=3723.0,
    trades=1_234_567,
    candles=20_000,
    trades_written=1_234_000,
    candles_written=12_345,
    late_corrected=3,
    late_rejected=1,
    duplicates=17,
    malformed=2,
    queue_depth=250,
    queue_capacity=1000,
    writer_pending=0,
    sources={
        "binance": SourceStatus(connected=True, reconnects=0, trades=900, malformed=0),
        "coinbase": SourceStatus(connected=False, reconnects=2, trades=300, malformed=2),
    },
)


def example_status(**changes: Any) -> PipelineStatus:
    """`EXAMPLE` with `changes` (instruments, counters) applied."""
    return dataclasses.replace(EXAMPLE, **changes)
