"""Tiingo's crypto ticker list, for rejecting unknown symbols at start-up."""

from __future__ import annotations

from typing import Any

from tickpipe.sources.aggregated import redact
from tickpipe.sources.rest import RestClient, RestConfig, RestError
from tickpipe.symbols import SymbolError, normalize_symbol


async def fetch_tiingo_symbols(
    rest_url: str, token: str | None, config: RestConfig | None = None
) -> dict[str, str]:
    """`BASE-QUOTE` -> Tiingo ticker, from the meta list (`ticker`, `baseCurrency`,
    `quoteCurrency`) that `/tiingo/crypto` returns."""
    if not token:
        raise ValueError("tiingo needs an API token: set TIINGO_TOKEN")
    headers = {"Authorization": f"Token {token}"}
    try:
        async with RestClient(rest_url, config, headers=headers) as client:
            rows: Any = await client.get_json("tiingo/crypto")
    except RestError as exc:  # the body of an error answer could quote the token
        reason = str(exc).removeprefix(f"GET {exc.url}: ")
        raise RestError(redact(exc.url, token), redact(reason, token), exc.status) from None
    out: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        ticker, base, quote = row.get("ticker"), row.get("baseCurrency"), row.get("quoteCurrency")
        if not all(isinstance(v, str) and v for v in (ticker, base, quote)):
            continue
        try:
            out.setdefault(normalize_symbol(f"{base}-{quote}"), str(ticker))
        except SymbolError:
            continue
    return out
