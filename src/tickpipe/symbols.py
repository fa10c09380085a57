"""Symbol normalization: every venue's spelling becomes `BASE-QUOTE` (e.g. `BTC-USDT`)."""

from __future__ import annotations

import re

# Quote assets tried longest first when a venue glues base and quote together (BTCUSDT).
QUOTES = (
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USDP", "DAI", "EUR", "USD", "GBP", "TRY", "BRL",
    "JPY", "AUD", "BTC", "ETH", "BNB", "XRP", "DOGE", "SOL", "TRX",
)  # fmt: skip
ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
_SPLIT = re.compile(r"[-/_:]")


class SymbolError(ValueError):
    """A symbol that cannot be read as BASE-QUOTE."""


def normalize_symbol(raw: str) -> str:
    """`BTCUSDT`, `btc/usdt`, `XBT/USD`, `BTC-USD` and `btc_usdt` become `BTC-USDT` / `BTC-USD`."""
    text = raw.strip().upper()
    parts = [p for p in _SPLIT.split(text) if p]
    if len(parts) == 2:
        base, quote = parts
    elif len(parts) == 1:
        base, quote = _split_glued(parts[0], raw)
    else:
        raise SymbolError(f"symbol {raw!r} is not BASE-QUOTE (e.g. BTC-USDT)")
    if not base.isalnum() or not quote.isalnum():
        raise SymbolError(f"symbol {raw!r} is not BASE-QUOTE (e.g. BTC-USDT)")
    return f"{ALIASES.get(base, base)}-{ALIASES.get(quote, quote)}"


def _split_glued(text: str, raw: str) -> tuple[str, str]:
    for alias, name in ALIASES.items():  # XBTUSD: the alias decides where the base ends
        if text.startswith(alias) and len(text) > len(alias):
            text = name + text[len(alias) :]
    for quote in QUOTES:
        if text.endswith(quote) and len(text) > len(quote):
            return text[: -len(quote)], quote
    raise SymbolError(f"symbol {raw!r} has no known quote asset; write it as BASE-QUOTE")


def to_binance(symbol: str) -> str:
    """`BTC-USDT` becomes Binance's `BTCUSDT`."""
    return normalize_symbol(symbol).replace("-", "")
