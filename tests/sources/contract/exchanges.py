"""Every exchange's part in the connector contract: how to start its fake, build its source
through the public constructor, make and send trades, and what it supports.

A `Venue` is data only; `test_contract.py` turns each capability into the scenarios that hold
for it, so a venue that cannot have a behaviour (REST refill for a feed with no trade history,
say) gets no test for it rather than a skipped one. `expected_*` say what a trade the fake made
must become, field for field; the per-exchange tests use them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from fakes.base import FakeExchange
from fakes.binance_server import FakeBinance
from fakes.bitstamp_server import FakeBitstamp
from fakes.bybit_server import FakeBybit
from fakes.coinbase_server import FakeCoinbase
from fakes.finnhub_server import FakeFinnhub
from fakes.kraken_server import FakeKraken
from fakes.okx_server import FakeOkx
from fakes.tiingo_server import FakeTiingo

from tickpipe.sources import Source
from tickpipe.sources.binance.source import BinanceSource
from tickpipe.sources.bitstamp.source import BitstampSource
from tickpipe.sources.bybit.source import BybitSource
from tickpipe.sources.coinbase.source import CoinbaseSource
from tickpipe.sources.finnhub.source import FinnhubSource
from tickpipe.sources.kraken.source import KrakenSource
from tickpipe.sources.okx.source import OkxSource
from tickpipe.sources.tiingo.source import TiingoSource
from tickpipe.sources.ws import WsConfig

# Timers in tenths of a second, so a scenario that waits for one stays short.
FAST = WsConfig(
    connect_timeout=2.0,
    idle_timeout=1.0,
    data_timeout=2.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    stable_after=0.5,
)
TOKEN = "s3cr3t-Token+/="  # characters that URL-quoting changes


# -- what a made trade must become ---------------------------------------------------------


def expected_binance(events: Sequence[dict[str, Any]]) -> list[tuple]:
    return [
        ("binance", "binance", f"{e['s'][:-4]}-{e['s'][-4:]}", e["s"], str(e["t"]), e["t"],
         float(e["p"]), float(e["q"]), "sell" if e["m"] else "buy", e["T"] * 1000)
        for e in events
    ]  # fmt: skip


def expected_coinbase(trades: Sequence[dict[str, Any]]) -> list[tuple]:
    """The taker side is the opposite of the maker's, which Coinbase reports."""
    return [
        ("coinbase", "coinbase", t["product_id"], t["product_id"], str(t["trade_id"]),
         t["trade_id"], float(t["price"]), float(t["size"]),
         "buy" if t["side"] == "sell" else "sell", t["time_us"])
        for t in trades
    ]  # fmt: skip


def expected_kraken(events: Sequence[dict[str, Any]]) -> list[tuple]:
    return [
        ("kraken", "kraken", e["symbol"].replace("/", "-"), e["symbol"], str(e["trade_id"]),
         e["trade_id"], e["price"], e["qty"], e["side"], e["_us"])
        for e in events
    ]  # fmt: skip


def expected_bybit(events: Sequence[dict[str, Any]]) -> list[tuple]:
    return [
        ("bybit", "bybit", f"{e['s'][:-4]}-{e['s'][-4:]}", e["s"], e["i"], int(e["i"]),
         float(e["p"]), float(e["v"]), e["S"].lower(), e["T"] * 1000)
        for e in events
    ]  # fmt: skip


def expected_okx(rows: Sequence[dict[str, str]]) -> list[tuple]:
    return [
        ("okx", "okx", r["instId"], r["instId"], r["tradeId"], int(r["tradeId"]), float(r["px"]),
         float(r["sz"]), r["side"], int(r["ts"]) * 1000)
        for r in rows
    ]  # fmt: skip


def bitstamp_symbol(pair: str) -> str:
    return f"{pair[:3].upper()}-{pair[3:].upper()}"


def expected_bitstamp(rows: Sequence[dict[str, Any]], pair: str = "btcusd") -> list[tuple]:
    """A live trade event of `pair` (its data carries no pair)."""
    return [
        ("bitstamp", "bitstamp", bitstamp_symbol(pair), pair, str(r["id"]), r["id"],
         float(r["price_str"]), float(r["amount_str"]), "sell" if r["type"] else "buy",
         int(r["microtimestamp"]))
        for r in rows
    ]  # fmt: skip


def refilled_bitstamp(rows: Sequence[dict[str, Any]], pair: str = "btcusd") -> list[tuple]:
    """A trade fetched over REST: Bitstamp's transactions give times to the second only."""
    return [
        (*live[:9], int(r["timestamp"]) * 1_000_000)
        for live, r in zip(expected_bitstamp(rows, pair), rows, strict=True)
    ]


FINNHUB_SYMBOLS = {"BINANCE:BTCUSDT": "BTC-USDT", "BINANCE:ETHUSDT": "ETH-USDT",
                   "COINBASE:BTC-USD": "BTC-USD"}  # fmt: skip


def expected_finnhub(trades: Sequence[dict[str, Any]]) -> list[tuple]:
    """Finnhub trades carry no id: compared with `observed(..., ids=False)`."""
    return [
        ("finnhub", t["s"].split(":")[0].lower(), FINNHUB_SYMBOLS[t["s"]], t["s"], t["p"], t["v"],
         "unknown", t["t"] * 1000)
        for t in trades
    ]  # fmt: skip


TIINGO_PAIRS = {"btcusd": "BTC-USD", "ethusd": "ETH-USD", "ethbtc": "ETH-BTC"}
TIINGO_VENUES = {"gdax": "coinbase"}


def micros(date: str) -> int:
    return round(datetime.fromisoformat(date).timestamp() * 1e6)


def expected_tiingo(trades: Sequence[list[Any]]) -> list[tuple]:
    """Tiingo trades carry no id: compared with `observed(..., ids=False)`."""
    return [
        ("tiingo", TIINGO_VENUES.get(d[3], d[3]), TIINGO_PAIRS[d[1]], d[1], d[5], d[4], "unknown",
         micros(d[2]))
        for d in trades
    ]  # fmt: skip


# -- the venues ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A frame the fake writes as it is: `reason` (a regular expression) is the dead letter it
    must become, None for a frame the source passes over quietly (a notice, a heartbeat)."""

    payload: str | bytes | Callable[[Any], object]
    reason: str | None


@dataclass(frozen=True)
class Refill:
    """How trades lost while disconnected come back over REST, after the reconnect."""

    detail: str  # words the `Gap` event's detail must hold
    replayed: int = 0  # newest trades of a market the exchange resends on resubscribing
    ids: bool = True  # the `Gap` names the first and last missing trade id
    # The catch-up also resends trades seen live (the engine drops them), counting them in the
    # `Gap`'s `recovered`, and reports a `Gap` after any reconnect that it refetched something.
    overlap: bool = False
    rest_requests: Callable[[Any], int] = lambda server: len(server.rest_requests)
    # what a refilled trade must become, when REST gives less than the stream
    refilled: Callable[..., list[tuple]] | None = None


@dataclass(frozen=True)
class Venue:
    """One exchange's feed as the contract drives it."""

    name: str
    fake: Callable[[], FakeExchange]  # its liveness (pings, heartbeats) fast
    build: Callable[[FakeExchange, WsConfig], Source]
    markets: tuple[str, str]  # the fake's spelling
    symbols: tuple[str, str]  # normalized, as `Gap` events name them
    topics: Callable[[Any], set[Any]]  # what one server connection subscribed to
    expected: Callable[..., list[tuple]]  # (trades) or, with `by_market`, (trades, market)
    alive: Callable[[Any], int]  # a count that shows the link was kept alive
    malformed: tuple[Fault, ...]
    ids: bool = True  # trades carry the exchange's trade id
    ws: dict[str, Any] = field(default_factory=dict)  # WsConfig fields besides FAST's
    refill: Refill | None = None  # trades lost while disconnected come back over REST
    live_gaps: bool = False  # a hole in live trade ids is refilled over REST
    secret: str | None = None  # must never show in a dead letter
    rest_429: bool = False  # a REST refill waits out 429 + Retry-After
    by_market: bool = False  # a trade the fake makes does not name its market

    def expect(self, made: Sequence[tuple[str, Any]], *, refilled: bool = False) -> list[tuple]:
        """What the (market, trade) pairs the fake made must become, live or (`refilled`)
        fetched over REST."""
        shape = self.expected
        if refilled and self.refill is not None and self.refill.refilled is not None:
            shape = self.refill.refilled
        if self.by_market:
            return [row for market, trade in made for row in shape([trade], market)]
        return shape([trade for _, trade in made])

    def source(self, server: FakeExchange, **ws: Any) -> Source:
        return self.build(server, replace(FAST, **{**self.ws, **ws}))

    def trade(self, server: Any, market: str) -> Any:
        return server.trade(market)

    def send(self, server: Any, market: str, trades: Sequence[Any]) -> None:
        if isinstance(server, FakeBitstamp):
            server.send(market, *trades)
        else:
            server.send(*trades)

    def publish(self, server: Any, market: str) -> Any:
        made = self.trade(server, market)
        self.send(server, market, [made])
        return made

    def trade_id(self, market: str, trade: Any) -> int:
        """The numeric id (the `seq`) of a trade the fake made."""
        return int(self.expect([(market, trade)])[0][5])

    def __str__(self) -> str:
        return self.name


def _coinbase(stream: str, replayed: int) -> Venue:
    return Venue(
        name=f"coinbase-{stream}",
        fake=lambda: FakeCoinbase(heartbeat_interval=0.05),
        build=lambda s, ws: CoinbaseSource(
            ["BTC-USD", "ETH-USD"],
            url=s.url,
            rest_url=s.rest_url,
            stream=stream,
            ws_config=ws,
            subscribe_interval=0.0,
        ),
        markets=("BTC-USD", "ETH-USD"),
        symbols=("BTC-USD", "ETH-USD"),
        topics=lambda c: c.products,
        expected=expected_coinbase,
        alive=lambda c: c.frames_sent,
        malformed=(
            Fault(
                '{"channel":"market_trades","events":[{"type":"update","trades":[', "invalid JSON"
            ),
            Fault(b"\xff\xfe", "invalid JSON"),
            Fault(
                '{"type":"error","message":"Failed to subscribe"}',
                "error reply from exchange: Failed to subscribe",
            ),
        ),
        # The Exchange feed's `last_match` after subscribing brings back the newest trade.
        refill=Refill("recovered all", replayed, rest_requests=lambda s: len(s.rest_log)),
        live_gaps=True,
        rest_429=True,
    )


BINANCE = Venue(
    name="binance",
    fake=lambda: FakeBinance(ping_interval=0.05),
    build=lambda s, ws: BinanceSource(
        ["BTC-USDT", "ETH-USDT"], url=s.url, rest_url=s.rest_url, ws_config=ws
    ),
    markets=("BTCUSDT", "ETHUSDT"),
    symbols=("BTC-USDT", "ETH-USDT"),
    topics=lambda c: c.streams,
    expected=expected_binance,
    alive=lambda c: c.pongs_received,
    malformed=(
        Fault('{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"', "invalid JSON"),
        Fault(b"\xff\xfe", "invalid JSON"),
        Fault(lambda s: s.send_server_shutdown(), None),  # a notice, not an error
    ),
    refill=Refill("recovered all"),
    live_gaps=True,
    rest_429=True,
)
COINBASE_ADVANCED = _coinbase("advanced", 0)
COINBASE_EXCHANGE = _coinbase("exchange", 1)
KRAKEN = Venue(
    name="kraken",
    # The snapshot on resubscribing holds the newest 2 trades; older ones need REST.
    fake=lambda: FakeKraken(heartbeat_interval=0.05, snapshot_size=2),
    build=lambda s, ws: KrakenSource(
        ["BTC-USD", "ETH-USD"],
        url=s.url,
        rest_url=s.rest_url,
        ws_config=ws,
        app_ping_interval=0.1,
    ),
    markets=("BTC/USD", "ETH/USD"),
    symbols=("BTC-USD", "ETH-USD"),
    topics=lambda c: c.symbols,
    expected=expected_kraken,
    alive=lambda c: c.app_pings,
    malformed=(
        Fault('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"', "invalid JSON"),
        Fault(b"\xff\xfe", "invalid JSON"),
        Fault(
            '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"}]}',
            "bad trade message.*",
        ),
    ),
    refill=Refill("backfilled all", replayed=2),
    live_gaps=True,
    rest_429=True,
)
BYBIT = Venue(
    name="bybit",
    fake=lambda: FakeBybit(),
    build=lambda s, ws: BybitSource(
        ["BTC-USDT", "ETH-USDT"],
        url=s.url,
        rest_url=s.rest_url,
        ws_config=ws,
        app_ping_interval=0.05,
    ),
    markets=("BTCUSDT", "ETHUSDT"),
    symbols=("BTC-USDT", "ETH-USDT"),
    topics=lambda c: c.topics,
    expected=expected_bybit,
    alive=lambda c: c.app_pings,
    malformed=(
        Fault('{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"T"', "invalid JSON"),
        Fault(b"\xff\xfe", "invalid JSON"),
        Fault(
            '{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"T":1}]}',
            "bad trade message.*",
        ),
    ),
    # Bybit's ids are one counter for all symbols: its catch-up refetches by time, no id range.
    refill=Refill("refetched all", ids=False, overlap=True),
    rest_429=True,
)
OKX = Venue(
    name="okx",
    fake=lambda: FakeOkx(),
    build=lambda s, ws: OkxSource(
        ["BTC-USDT", "ETH-USDT"],
        url=s.url,
        rest_url=s.rest_url,
        ws_config=ws,
        connect_interval=0.0,
        ping_after=0.05,
    ),
    markets=("BTC-USDT", "ETH-USDT"),
    symbols=("BTC-USDT", "ETH-USDT"),
    topics=lambda c: c.subscriptions,
    expected=expected_okx,
    alive=lambda c: c.pings,
    malformed=(
        Fault('{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{', "invalid JSON"),
        Fault(b"\xff\xfe", "invalid JSON"),
        Fault(
            '{"event":"error","code":"60012","msg":"Invalid request"}',
            "error reply from exchange: 60012 Invalid request",
        ),
    ),
    refill=Refill("over REST", overlap=True),
    live_gaps=True,
    rest_429=True,
)
BITSTAMP = Venue(
    name="bitstamp",
    fake=lambda: FakeBitstamp(),
    build=lambda s, ws: BitstampSource(
        ["BTC-USD", "ETH-USD"], url=s.url, rest_url=s.rest_url, ws_config=ws, ping_after=0.05
    ),
    markets=("btcusd", "ethusd"),
    symbols=("BTC-USD", "ETH-USD"),
    topics=lambda c: c.channels,
    expected=expected_bitstamp,
    alive=lambda c: c.heartbeats,
    malformed=(
        Fault('{"data":{"id":1,"price":', "invalid JSON"),
        Fault(
            '{"event":"bts:error","channel":"","data":{"code":null,'
            '"message":"Incorrect JSON format."}}',
            r"error reply from exchange: None Incorrect JSON format\.",
        ),
    ),
    refill=Refill("disconnected", overlap=True, refilled=refilled_bitstamp),
    rest_429=True,
    by_market=True,
)
FINNHUB = Venue(
    name="finnhub",
    fake=lambda: FakeFinnhub(TOKEN, ping_interval=0.05),
    build=lambda s, ws: FinnhubSource(
        ["binance:BTC-USDT", "BINANCE:ETHUSDT"], TOKEN, url=s.url, ws_config=ws
    ),
    markets=("BINANCE:BTCUSDT", "BINANCE:ETHUSDT"),
    symbols=("BTC-USDT", "ETH-USDT"),
    topics=lambda c: c.subscriptions,
    expected=expected_finnhub,
    alive=lambda c: c.heartbeats_sent,
    ids=False,
    ws={"ping_interval": 0.1, "ping_timeout": 0.1},
    malformed=(
        Fault('{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":', "invalid JSON"),
        Fault(b"\xff\xfe", "invalid JSON"),
        Fault('{"type":"ping"}', None),
        # a price update (volume 0) is no trade and no error
        Fault('{"type":"trade","data":[{"s":"BINANCE:ETHUSDT","p":5,"t":1,"v":0}]}', None),
        Fault(f'{{"type":"error","msg":"Invalid token {TOKEN}"}}', "error reply from exchange"),
        Fault(
            '{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":-1,"t":1,"v":1}]}', "bad trade:.*"
        ),
    ),
    secret=TOKEN,
)
TIINGO = Venue(
    name="tiingo",
    fake=lambda: FakeTiingo(TOKEN, heartbeat_interval=0.05),
    build=lambda s, ws: TiingoSource(["BTC-USD", "eth/usd"], TOKEN, url=s.url, ws_config=ws),
    markets=("btcusd", "ethusd"),
    symbols=("BTC-USD", "ETH-USD"),
    topics=lambda c: c.subscriptions,
    expected=expected_tiingo,
    alive=lambda c: c.heartbeats_sent,
    ids=False,
    malformed=(
        Fault('{"messageType":"A","service":"crypto_data","data":["T","btcusd"', "invalid JSON"),
        Fault(b"\xff\xfe", "invalid JSON"),
        Fault('{"messageType":"H","response":{"code":200,"message":"HeartBeat"}}', None),
        Fault(lambda s: s.send_quote("btcusd"), None),  # a quote is no trade and no error
        Fault(
            f'{{"messageType":"E","response":{{"code":401,"message":"bad {TOKEN}"}}}}',
            "error reply from exchange",
        ),
        Fault(
            '{"messageType":"A","data":["T","dogeusd","2024-01-01T00:00:00Z","binance",1,2]}',
            "unknown symbol 'dogeusd'",
        ),
        Fault(
            '{"messageType":"A","data":["T","btcusd","2024-01-01T00:00:00Z","binance",0,2]}',
            "bad trade:.*",
        ),
    ),
    secret=TOKEN,
)

VENUES = (
    BINANCE, COINBASE_ADVANCED, COINBASE_EXCHANGE, KRAKEN, BYBIT, OKX, BITSTAMP, FINNHUB, TIINGO,
)  # fmt: skip
