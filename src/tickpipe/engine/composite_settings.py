"""`[composite]`: the consolidated cross-venue price (see `engine/composite.py`).

Durations arrive decoded (`tickpipe.durations`); `check_composite` holds what their types
cannot say, and `CompositeSettings.composite_config` gives the engine's `CompositeConfig`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import msgspec

from tickpipe.durations import Micros, allowing
from tickpipe.settings import Fail

_QUOTE = re.compile(r"[A-Z0-9]{2,12}")
COMPOSITE = "composite"  # the exchange name of composite candles
MAX_BAND_PCT = 50.0  # beyond this the band keeps everything: no venue would ever be left out


@dataclass(frozen=True)
class CompositeConfig:
    """`[composite]` as the engine uses it (times in µs)."""

    enabled: bool = True
    band_pct: float = 1.0  # venues within this percent of the median make the composite
    stale_after_us: int = 60_000_000  # a venue silent this long is left out of the live price
    min_venues: int = 2  # an asset gets a composite once this many venues traded it
    equivalent_quotes: tuple[tuple[str, ...], ...] = ()  # e.g. (("USD", "USDT", "USDC"),)

    def group(self, symbol: str) -> str | None:
        """The composite symbol `symbol` belongs to (None: not `BASE-QUOTE`)."""
        base, sep, quote = symbol.partition("-")
        if not sep or not base or not quote:
            return None
        for names in self.equivalent_quotes:
            if quote in names:
                return f"{base}-{names[0]}"
        return symbol


class CompositeSettings(msgspec.Struct, forbid_unknown_fields=True):
    """`[composite]`."""

    enabled: bool = True
    band_pct: float = msgspec.field(name="band", default=1.0)  # percent around the median
    stale_after_us: Annotated[Micros, allowing("not a duration (e.g. 30s, 1m)")] = msgspec.field(
        name="stale_after", default=Micros(60_000_000)
    )
    min_venues: int = 2
    # Quotes that count as one, each entry NAME/NAME/...: the first names the composite
    # (e.g. "USD/USDT/USDC": Binance's BTC-USDT and Coinbase's BTC-USD make BTC-USD).
    equivalent_quotes: list[str] = msgspec.field(default_factory=list)

    def composite_config(self) -> CompositeConfig:
        return CompositeConfig(
            enabled=self.enabled, band_pct=self.band_pct, stale_after_us=self.stale_after_us,
            min_venues=self.min_venues,
            equivalent_quotes=tuple(tuple(e.upper().split("/")) for e in self.equivalent_quotes),
        )  # fmt: skip


def check_composite(settings: CompositeSettings, fail: Fail) -> None:
    """`fail(key, value, why)` raises the one-line config error."""
    if not 0 < settings.band_pct <= MAX_BAND_PCT:
        fail("composite.band", settings.band_pct, f"a percent above 0, at most {MAX_BAND_PCT:g}")
    if settings.min_venues < 1:
        fail("composite.min_venues", settings.min_venues, "at least 1 (2 to compare venues)")
    seen: dict[str, int] = {}
    for i, entry in enumerate(settings.equivalent_quotes):
        key = f"composite.equivalent_quotes[{i}]"
        names = entry.upper().split("/")
        if len(names) < 2 or not all(_QUOTE.fullmatch(n) for n in names):
            fail(key, entry, "two or more quote currencies joined by '/', e.g. USD/USDT/USDC")
        for name in names:
            if name in seen:
                fail(key, entry, f"{name} is already in equivalent_quotes[{seen[name]}]")
            seen[name] = i
