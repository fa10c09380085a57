"""Which exchanges tickpipe speaks, what each supports, and how to build its source.

Each exchange is a package `tickpipe.sources.<name>` whose `__init__` defines `INFO` (an
`ExchangeInfo`) and `make_source(symbols, options)`; heavy modules (parsers, clients) load only
when a source is built. The list below is the one place that names them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tickpipe.sources import Source

EXCHANGES = (
    "binance", "coinbase", "kraken", "bybit", "okx", "bitstamp", "finnhub", "tiingo", "ccxt",
)  # fmt: skip


@dataclass(frozen=True)
class ExchangeOptions:
    """Per-exchange settings from the configuration (`[exchanges.<name>]`)."""

    url: str | None = None  # WebSocket endpoint override (testnets, tests)
    rest_url: str | None = None  # REST endpoint override (symbol lists, backfill)
    stream: str | None = None  # feed variant, e.g. binance `trade` or `aggTrade`
    token: str | None = None  # API token, read from the environment (never from files)
    poll_every: float | None = None  # seconds between requests of REST polling streams


@dataclass(frozen=True)
class ExchangeInfo:
    """What an exchange's connector supports, as `tickpipe exchanges` and the README list it."""

    name: str
    title: str
    streams: tuple[str, ...]  # feed variants; the first is the default
    default_symbols: tuple[str, ...]
    gaps: str  # how lost trades are detected, or why they cannot be
    backfill: str  # how lost trades are fetched again, or why they cannot be
    token_env: str | None = None  # environment variable holding the API token, if one is needed


class Connector(Protocol):
    """An exchange package. It may also define `async def fetch_symbols(options)` returning
    normalized symbol -> the exchange's spelling from its public symbol list; start-up uses it
    to reject unknown symbols (`has_symbol_list` tells whether a connector has one)."""

    INFO: ExchangeInfo

    def make_source(self, symbols: Sequence[str], options: ExchangeOptions) -> Source: ...


class UnknownExchange(ValueError):
    """An exchange name tickpipe does not support."""


def connector(name: str) -> Connector:
    """The connector package of `name`; UnknownExchange lists the supported ones."""
    if name not in EXCHANGES:
        raise UnknownExchange(f"unknown exchange {name!r} (supported: {', '.join(EXCHANGES)})")
    return importlib.import_module(f"tickpipe.sources.{name}")


def exchange_info(name: str) -> ExchangeInfo:
    return connector(name).INFO


def has_symbol_list(name: str) -> bool:
    """Whether the connector of `name` can fetch the exchange's symbol list."""
    return callable(getattr(connector(name), "fetch_symbols", None))
