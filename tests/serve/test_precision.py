"""An instrument's price and size precision: read off its newest trades, kept once settled,
and served with every symbol of /api/exchanges."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.serve.precision import (
    PRECISION_TRADES,
    SETTLED_TRADES,
    UNKNOWN_PRICE_DECIMALS,
    PrecisionCache,
    decimals,
)

from .conftest import Served


@given(st.integers(1, 10**7).filter(lambda k: k % 10), st.integers(0, 12))
def test_a_value_on_a_grid_of_d_decimals_needs_exactly_d(k: int, d: int) -> None:
    # k / 10**d is the float a decimal string with d places parses to, and k ends in a digit.
    assert decimals([k / 10**d]) == d
    assert decimals([k / 10**d, 1.0, 70_000.0]) == d


def test_a_sub_cent_coin_and_a_six_figure_price_get_their_own_places() -> None:
    assert decimals([0.0000119938, 0.000012, 0.00001]) == 10
    assert decimals([104_523.7, 104_523.0, 99_999.9]) == 1
    assert decimals([65_000.0, 64_000.0]) == 0
    assert decimals([0.1 + 0.2]) == 12  # float noise is capped, not followed to 17 places


def test_the_precision_is_kept_once_enough_trades_gave_it() -> None:
    calls: list[int] = []
    stored: list[dict[str, Any]] = []

    async def newest(exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        calls.append(limit)
        return stored[:limit]

    cache = PrecisionCache()
    first = asyncio.run(cache.of("x", "PEPE-USDT", newest))
    assert first.price_decimals == UNKNOWN_PRICE_DECIMALS and first.inferred_from == 0
    stored.extend({"price": 0.0000119938, "size": 1500.0} for _ in range(SETTLED_TRADES))
    settled = asyncio.run(cache.of("x", "PEPE-USDT", newest))
    assert (settled.price_decimals, settled.size_decimals) == (10, 0)
    stored.clear()  # the store is not read again: the precision was kept
    assert asyncio.run(cache.of("x", "PEPE-USDT", newest)) == settled
    assert calls == [PRECISION_TRADES, PRECISION_TRADES]


def _places(values: list[float]) -> int:
    return max(max(0, -Decimal(repr(v)).normalize().as_tuple().exponent) for v in values)


def test_every_listed_symbol_carries_the_precision_of_its_newest_trades(served: Served) -> None:
    listed = httpx.get(served.url + "/api/exchanges", timeout=30).json()["exchanges"]
    checked = 0
    for exchange in listed:
        for entry in exchange["symbols"]:
            newest = served.store.query(
                "SELECT price, size FROM trades WHERE exchange = ? AND symbol = ? "
                "ORDER BY ts DESC, seq DESC LIMIT ?",
                [exchange["name"], entry["symbol"], PRECISION_TRADES],
            )
            assert entry["price_decimals"] == _places([p for p, _ in newest]), entry
            assert entry["size_decimals"] == _places([s for _, s in newest]), entry
            assert entry["tick_size"] == 10.0 ** -entry["price_decimals"]
            assert entry["lot_size"] == 10.0 ** -entry["size_decimals"]
            checked += 1
    assert checked >= 3
