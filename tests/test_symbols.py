"""Symbol normalization: every venue's spelling becomes BASE-QUOTE."""

from __future__ import annotations

import pytest

from tickpipe.symbols import SymbolError, normalize_symbol, to_binance


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("BTCUSDT", "BTC-USDT"),
        ("btcusdt", "BTC-USDT"),
        ("btc/usdt", "BTC-USDT"),
        ("BTC-USD", "BTC-USD"),
        ("btc_usdt", "BTC-USDT"),
        ("XBT/USD", "BTC-USD"),
        ("XBTUSD", "BTC-USD"),
        ("XDG/USD", "DOGE-USD"),
        ("ETHBTC", "ETH-BTC"),
        ("BNBFDUSD", "BNB-FDUSD"),  # the longest quote wins over USD
        ("BTCTUSD", "BTC-TUSD"),
        ("FETUSDT", "FET-USDT"),
        ("1INCHUSDT", "1INCH-USDT"),
        ("  eth-usdc ", "ETH-USDC"),
        ("SHIB-EUR", "SHIB-EUR"),
        ("NEWCOIN-XYZ", "NEWCOIN-XYZ"),  # explicit separators accept any quote
    ],
)
def test_spellings_normalize_to_base_dash_quote(raw: str, normalized: str) -> None:
    assert normalize_symbol(raw) == normalized


@pytest.mark.parametrize("symbol", ["BTC-USDT", "ETH-BTC", "DOGE-USD"])
def test_normalizing_is_idempotent(symbol: str) -> None:
    assert normalize_symbol(normalize_symbol(symbol)) == normalize_symbol(symbol)


@pytest.mark.parametrize(
    "raw", ["NOPE", "", "   ", "USDT", "BTC-USD-X", "BTC USDT", "BTC/US$", "BTC-", "-USDT"]
)
def test_bad_symbols_raise_symbol_error_naming_the_input(raw: str) -> None:
    with pytest.raises(SymbolError) as info:
        normalize_symbol(raw)
    message = str(info.value)
    assert repr(raw) in message
    assert "BASE-QUOTE" in message


def test_symbol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        normalize_symbol("NOPE")


def test_to_binance_glues_base_and_quote() -> None:
    assert to_binance("BTC-USDT") == "BTCUSDT"
    assert to_binance("xbt/usd") == "BTCUSD"
