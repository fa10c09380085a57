"""Refetch trades lost in a gap from Kraken's public REST `GET /0/public/Trades`.

`since` is a time cursor (nanoseconds; the answer's `last` is the next one), not a trade id, so
a gap is fetched from the time of the last trade seen before it and the answer is cut to the
missing ids. The REST entries carry the same per-pair trade id as the v2 feed's `trade_id`,
which is what lets the engine de-duplicate backfilled trades against live ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from tickpipe.records import Instrument, TradeBatch
from tickpipe.sources.feed import Refill
from tickpipe.sources.kraken.parse import parse_rest_trades, to_kraken_rest
from tickpipe.sources.parsing import trade_batch
from tickpipe.sources.rest import RestClient, RestError

TRADES_PATH = "/0/public/Trades"


async def backfill_gap(
    client: RestClient,
    gap: Refill,
    instruments: Sequence[Instrument],
    source: str,
    *,
    page_size: int = 1000,
    max_pages: int = 20,
) -> tuple[TradeBatch, int, str]:
    """The missing trades of `gap` as a batch, how many came back, and a sentence saying so."""
    instrument = instruments[gap.code]
    pair = to_kraken_rest(instrument.symbol)
    since = max(gap.after_ts * 1000 - 1000, 0)  # 1 µs early: trades at the same time come too
    found: dict[int, tuple[int, float, float, int, int]] = {}
    missing = gap.last - gap.first + 1
    reason = ""
    pages = 0
    try:
        while pages < max_pages:
            pages += 1
            answer = await client.get_json(
                TRADES_PATH, {"pair": pair, "since": since, "count": page_size}
            )
            page = parse_rest_trades(answer)
            if page.error:
                reason = f"Kraken answered: {page.error}"
                break
            for trade in page.trades:
                if gap.first <= trade[0] <= gap.last:
                    found[trade[0]] = trade
            newest = max((t[0] for t in page.trades), default=-1)
            if newest >= gap.last or len(found) == missing:
                break
            if not page.trades or page.last is None or page.last <= since:
                reason = "the REST history ended before the gap did"
                break
            since = page.last
        else:
            reason = f"stopped after {max_pages} pages"
    except (RestError, ValueError) as exc:
        reason = f"REST backfill failed: {exc}"
    rows = [found[i] for i in sorted(found)]
    n = len(rows)
    ids, prices, sizes, sides, ts = zip(*rows, strict=True) if rows else ((),) * 5
    side = np.fromiter(sides, np.int8, n)
    now = time.time_ns() // 1000
    batch = trade_batch(source, list(instruments), gap.code, ids, prices, sizes, side, ts, now)
    if n == missing:
        detail = f"backfilled all {missing} missing trades over REST"
    else:
        unrecovered = missing - n
        detail = (
            f"backfilled {n} of {missing} missing trades over REST; {unrecovered} not "
            f"recovered ({reason or 'not in the REST answer'})"
        )
    return batch, n, detail
