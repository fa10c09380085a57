"""Each instrument's price and size precision, inferred from its newest stored trades.

Exchanges quote an instrument on a grid: a tick size for prices, a lot size for sizes. A page
that shows 0.000012 for a price of 0.0000119938, or an axis that repeats one label, hides what a
trader came to see. A stored file carries no exchange symbol list, so the precision is read off
the trades themselves: the most decimal places any of the newest trades needs, written as the
exchange wrote it (a float's shortest spelling is the decimal string it was parsed from). It is
read once per instrument and kept; an instrument with few trades yet is read again next time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PRECISION_TRADES = 1000  # the newest trades whose prices and sizes give the precision
SETTLED_TRADES = 100  # with fewer, the precision is inferred again on the next request
MAX_DECIMALS = 12
# Without stored trades (a symbol the pipeline has just begun): cents and 8 decimals.
UNKNOWN_PRICE_DECIMALS = 2
UNKNOWN_SIZE_DECIMALS = 8


def decimals(values: Iterable[float], most: int = MAX_DECIMALS) -> int:
    """The decimal places the values need (each as its shortest spelling), at most `most`."""
    places = 0
    for value in values:
        exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
        if isinstance(exponent, int):  # not NaN or infinity
            places = max(places, -exponent)
    return min(places, most)


@dataclass(frozen=True, slots=True)
class Precision:
    """Decimal places of an instrument's prices and sizes; its tick and lot as their steps."""

    price_decimals: int
    size_decimals: int
    inferred_from: int  # trades read; 0: none stored yet, the defaults

    def as_json(self) -> dict[str, Any]:
        return {
            "price_decimals": self.price_decimals, "size_decimals": self.size_decimals,
            "tick_size": 10.0**-self.price_decimals, "lot_size": 10.0**-self.size_decimals,
        }  # fmt: skip


def infer(trades: list[dict[str, Any]]) -> Precision:
    """The precision that writes every one of `trades` exactly (their "price" and "size")."""
    if not trades:
        return Precision(UNKNOWN_PRICE_DECIMALS, UNKNOWN_SIZE_DECIMALS, 0)
    return Precision(
        decimals(t["price"] for t in trades), decimals(t["size"] for t in trades), len(trades)
    )


class PrecisionCache:
    """Each instrument's precision, inferred once it has enough trades and then kept."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], Precision] = {}

    async def of(
        self,
        exchange: str,
        symbol: str,
        newest_trades: Callable[[str, str, int], Awaitable[list[dict[str, Any]]]],
    ) -> Precision:
        """The precision of (exchange, symbol); `newest_trades` reads the store when needed."""
        known = self._known.get((exchange, symbol))
        if known is not None:
            return known
        found = infer(await newest_trades(exchange, symbol, PRECISION_TRADES))
        if found.inferred_from >= SETTLED_TRADES:
            self._known[(exchange, symbol)] = found
        return found
