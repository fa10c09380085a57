"""What the connector packages' `fetch_symbols` share: asking the exchange's public symbol list
and reading it into normalized symbol -> the exchange's spelling.

Each package keeps what is its own: the path, the answer's shape, and which fields of a row
name the pair and the spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tickpipe.sources.rest import RestClient
from tickpipe.symbols import SymbolError, normalize_symbol


async def symbol_list(rest_url: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
    """The decoded answer of the exchange's symbol list at `rest_url` + `path`."""
    async with RestClient(rest_url) as client:
        return await client.get_json(path, params)


def spellings(
    rows: Iterable[Any], pick: Callable[[dict[str, Any]], tuple[Any, Any] | None]
) -> dict[str, str]:
    """Normalized symbol -> spelling for each row that `pick` reads as (pair, spelling); rows
    that are not objects, not strings, or not a pair tickpipe can read are left out."""
    out: dict[str, str] = {}
    for row in rows:
        picked = pick(row) if isinstance(row, dict) else None
        if picked is None or not all(isinstance(part, str) for part in picked):
            continue
        pair, spelling = picked
        try:
            out[normalize_symbol(pair)] = spelling
        except SymbolError:
            continue
    return out
