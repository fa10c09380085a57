"""What every exchange parser shares: the reject record and the instrument index.

A parser maps each frame's raw symbol to an instrument code with one dict lookup; the index
holds those codes. Exchanges differ only in how they spell a symbol, which each passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from tickpipe.records import Instrument
from tickpipe.symbols import normalize_symbol


class Reject(NamedTuple):
    """A frame that carried no usable trade, with the reason (goes to the dead-letter file)."""

    payload: bytes
    reason: str


class InstrumentIndex:
    """The instruments of one source and the code of each raw spelling (`BTCUSDT` -> 0)."""

    def __init__(self, instruments: Iterable[Instrument], key_prefix: str = "") -> None:
        self.instruments: list[Instrument] = list(instruments)
        self.codes: dict[str, int] = {
            key_prefix + i.raw_symbol: n for n, i in enumerate(self.instruments)
        }
        if len(self.codes) != len(self.instruments):
            raise ValueError("instruments repeat a raw symbol")

    @classmethod
    def spelled(
        cls,
        symbols: Iterable[str],
        exchange: str,
        spell: Callable[[str], str],
        spellings: dict[str, str] | None = None,
        **kwargs: str,
    ) -> InstrumentIndex:
        """Instruments for any spelling of `symbols`, each raw symbol from `spellings`
        (normalized -> the exchange's spelling, from its symbol list) or else `spell`."""
        out: dict[str, Instrument] = {}
        for text in symbols:
            symbol = normalize_symbol(text)
            raw = (spellings or {}).get(symbol) or spell(symbol)
            out.setdefault(symbol, Instrument(exchange, symbol, raw))
        return cls(out.values(), **kwargs)
