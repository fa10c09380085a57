"""Which exchanges tickpipe speaks, what each supports, and how to build its source.

Each exchange is a package `tickpipe.sources.<name>` whose `__init__` defines `INFO` (an
`ExchangeInfo`, which also holds the exchange's own `Endpoints`) and `make_source(symbols,
options)`; `INFO.url(options)`, `INFO.rest_url(options)` and `INFO.stream(options)` give what a
source is built with: the configuration's override, else the exchange's own. Heavy modules
(parsers, clients) load only when a source is built. The list below is the one place that names
them all.
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
class Endpoints:
    """Where an exchange's connector connects unless the configuration overrides it."""

    url: str = ""  # WebSocket endpoint; "" where the source picks it (per stream) or has none
    rest_url: str = ""  # REST endpoint (symbol lists, backfill); "" where it has none


@dataclass(frozen=True)
class ExchangeInfo:
    """What an exchange's connector supports, as `tickpipe exchanges` and the README list it,
    and the endpoints it connects to unless the configuration overrides them."""

    name: str
    title: str
    streams: tuple[str, ...]  # feed variants; the first is the default
    default_symbols: tuple[str, ...]
    gaps: str  # how lost trades are detected, or why they cannot be
    backfill: str  # how lost trades are fetched again, or why they cannot be
    token_env: str | None = None  # environment variable holding the API token, if one is needed
    endpoints: Endpoints = Endpoints()

    def url(self, options: ExchangeOptions) -> str:
        """The WebSocket endpoint `options` set, else the exchange's own."""
        return options.url or self.endpoints.url

    def rest_url(self, options: ExchangeOptions) -> str:
        """The REST endpoint `options` set, else the exchange's own."""
        return options.rest_url or self.endpoints.rest_url

    def stream(self, options: ExchangeOptions) -> str:
        """The feed variant `options` chose, else the default (the first of `streams`)."""
        return options.stream or self.streams[0]


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
