"""What to ingest: `[run]` (exchanges, symbols, replay), `[demo]` (the simulated market) and
`[exchanges.<name>]` (endpoint overrides, feed variant, poll interval), with their checks.

The poll interval arrives decoded, in seconds (`tickpipe.durations`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import msgspec

from tickpipe.durations import Seconds, allowing
from tickpipe.settings import Fail
from tickpipe.sources.registry import EXCHANGES, connector
from tickpipe.symbols import SymbolError, normalize_symbol

# `tickpipe run` with no --exchange: Binance and, where its connector is installed, Coinbase.
DEFAULT_EXCHANGES = tuple(name for name in ("binance", "coinbase") if name in EXCHANGES)
_SYMBOL_SEPARATOR = re.compile(r"[-/_]")


class ExchangeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[exchanges.<name>]`: endpoint overrides and the feed variant of one exchange."""

    url: str = ""  # WebSocket endpoint; "" = the exchange's own
    rest_url: str = ""  # REST endpoint (symbol lists, backfill, polling); "" = the exchange's own
    stream: str = ""  # feed variant; "" = the first the exchange lists
    # how often REST polling streams (e.g. binance `ticker`) ask
    poll_every_s: Annotated[Seconds, allowing("not a duration (use e.g. 1s, 5s, 1m)")] = (
        msgspec.field(name="poll_every", default=Seconds(5.0))
    )


class RunConfig(msgspec.Struct, forbid_unknown_fields=True):
    exchanges: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCHANGES))
    # BASE-QUOTE applies to every exchange, `coinbase:BTC-USD` to one; none: each exchange's own
    symbols: list[str] = msgspec.field(default_factory=list)
    check_symbols: bool = True  # look each symbol up in the exchange's symbol list at start-up
    replay: str = ""
    speed: float = 1.0


class DemoConfig(msgspec.Struct, forbid_unknown_fields=True):
    symbols: int = 20
    rate: float = 2000.0
    seed: int = 0


def split_symbol(text: str) -> tuple[str | None, str]:
    """`coinbase:BTC-USD` -> ("coinbase", "BTC-USD"); `BTC-USDT` and `BTC:USDT` -> (None, text).

    The part before a colon is an exchange when it names one, or when what follows is itself
    a separated pair (so `mtgox:BTC-USD` reads as an unknown exchange, not a bad symbol).
    """
    head, sep, rest = text.partition(":")
    name = head.strip().lower()
    if sep and (name in EXCHANGES or _SYMBOL_SEPARATOR.search(rest)):
        return name, rest.strip()
    return None, text


def check_run(run: RunConfig, fail: Fail) -> None:
    """Known exchanges, readable symbols each on a chosen exchange, a replay file that exists.

    `fail(key, value, why)` raises the one-line config error (so do the other checks here).
    """
    supported = ", ".join(EXCHANGES)
    if not run.exchanges:
        fail("run.exchanges", run.exchanges, f"choose at least one of {supported}")
    for i, name in enumerate(run.exchanges):
        if name not in EXCHANGES:
            fail(f"run.exchanges[{i}]", name, f"unknown exchange (supported: {supported})")
    given: set[str | None] = set()
    for i, text in enumerate(run.symbols):
        exchange, symbol = split_symbol(text)
        if exchange is not None and exchange not in EXCHANGES:
            fail(
                f"run.symbols[{i}]", text, f"unknown exchange {exchange!r} (supported: {supported})"
            )
        if exchange is not None and exchange not in run.exchanges:
            fail(
                f"run.symbols[{i}]", text,
                f"{exchange} is not among run.exchanges ({', '.join(run.exchanges)}); "
                f"add --exchange {exchange}",
            )  # fmt: skip
        try:
            normalize_symbol(symbol)
        except SymbolError as exc:
            fail(f"run.symbols[{i}]", text, str(exc).split(f"{symbol!r} ", 1)[-1])
        given.add(exchange)
    if run.symbols and None not in given:
        for name in run.exchanges:
            if name not in given:
                fail(
                    "run.symbols", run.symbols,
                    f"no symbol for {name}: add {name}:BASE-QUOTE, or a BASE-QUOTE for every "
                    f"exchange",
                )  # fmt: skip
    if not math.isfinite(run.speed) or run.speed < 0:
        fail("run.speed", run.speed, "1 = original speed, 10 = ten times faster, 0 = max")
    if run.replay and not Path(run.replay).is_file():
        fail("run.replay", run.replay, "no such file")


def check_demo(demo: DemoConfig, fail: Fail) -> None:
    """A market size and trade rate the simulator can keep up."""
    if not 1 <= demo.symbols <= 100_000:
        fail("demo.symbols", demo.symbols, "must be between 1 and 100000")
    if not 0 < demo.rate <= 20_000_000:
        fail("demo.rate", demo.rate, "trades/s must be above 0 and at most 20000000")


def check_exchanges(sections: dict[str, ExchangeConfig], fail: Fail) -> None:
    """Endpoint schemes and a feed variant the exchange has."""
    for name, section in sections.items():
        key = f"exchanges.{name}"
        if section.url and not section.url.startswith(("ws://", "wss://")):
            fail(f"{key}.url", section.url, "must start with ws:// or wss://")
        if section.rest_url and not section.rest_url.startswith(("http://", "https://")):
            fail(f"{key}.rest_url", section.rest_url, "must start with http:// or https://")
        if section.stream:
            streams = connector(name).INFO.streams
            if section.stream not in streams:
                fail(f"{key}.stream", section.stream, f"{name} streams: {', '.join(streams)}")
