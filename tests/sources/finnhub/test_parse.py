"""Finnhub frames become trades on bytes alone: the documented shapes, stable content ids, and
symbol spellings."""

from __future__ import annotations

import pytest

from tickpipe.sources.aggregated import (
    VenueInstruments,
    content_ids,
    normalize_venue,
    redact,
    with_token,
)
from tickpipe.sources.finnhub.parse import FinnhubInstruments, finnhub_symbol, parse_frames
from tickpipe.symbols import SymbolError

# The example of https://finnhub.io/docs/api/websocket-trades (a message may hold several).
DOC = (
    b'{"data":[{"p":7296.89,"s":"BINANCE:BTCUSDT","t":1575526691134,"v":0.011467,"c":null},'
    b'{"p":7291.7,"s":"BINANCE:BTCUSDT","t":1575526691135,"v":0.5,"c":[1]}],"type":"trade"}'
)


def index() -> FinnhubInstruments:
    return FinnhubInstruments.for_symbols(["BTC-USDT", "coinbase:BTC-USD"])


def test_documented_trade_message_becomes_trades_with_venue_and_unknown_side() -> None:
    batch, rejects, data, *_ = parse_frames([DOC, b'{"type":"ping"}'], 42, index(), seq_start=7)
    trades = batch.to_trades()
    assert rejects == [] and data == 1
    assert [(t.exchange, t.symbol, t.raw_symbol, t.price, t.size, t.side, t.ts, t.seq)
            for t in trades] == [
        ("binance", "BTC-USDT", "BINANCE:BTCUSDT", 7296.89, 0.011467, "unknown",
         1575526691134000, 7),
        ("binance", "BTC-USDT", "BINANCE:BTCUSDT", 7291.7, 0.5, "unknown", 1575526691135000, 8),
    ]  # fmt: skip
    assert {t.source for t in trades} == {"finnhub"} and {t.recv_ts for t in trades} == {42}


def test_price_updates_with_zero_volume_are_not_trades() -> None:
    frame = b'{"type":"trade","data":[{"s":"COINBASE:BTC-USD","p":5.0,"t":1,"v":0}]}'
    batch, rejects, data, *_ = parse_frames([frame], 0, index())
    assert len(batch) == 0 and rejects == [] and data == 1


def test_ids_are_stable_across_replays_and_batching_and_distinct_for_repeats() -> None:
    twice = (
        b'{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":1.5,"t":9,"v":2},'
        b'{"s":"BINANCE:BTCUSDT","p":1.5,"t":9,"v":2}]}'
    )
    together = parse_frames([DOC, twice], 0, index()).batch.to_trades()
    apart = [t for f in (DOC, twice) for t in parse_frames([f], 0, index()).batch.to_trades()]
    assert [t.trade_id for t in together] == [t.trade_id for t in apart]
    assert together[2].trade_id != together[3].trade_id  # two identical trades stay two
    assert len({t.trade_id for t in together}) == 4


def test_a_bad_frame_costs_only_itself() -> None:
    frames = [
        DOC,
        b'{"type":"error","msg":"Subscribing to too many symbols"}',
        b'{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":"NaN","t":1,"v":1}]}',
        b'{"type":"trade","data":[{"s":"KRAKEN:XXBTZUSD","p":1,"t":1,"v":1},'
        b'{"s":"BINANCE:BTCUSDT","p":3,"t":2,"v":1}]}',
        b"[1,2]",
        b'{"type":"news","data":[]}',
    ]
    batch, rejects, data, *_ = parse_frames(frames, 0, index())
    assert [t.price for t in batch.to_trades()] == [7296.89, 7291.7, 3.0]
    assert [r.reason for r in rejects] == [
        "error reply from exchange",
        rejects[1].reason,
        "unknown symbol 'KRAKEN:XXBTZUSD'",
        "not a JSON object",
        "unexpected message type 'news'",
    ]
    assert rejects[1].reason.startswith("bad trade:")
    assert data == 2


@pytest.mark.parametrize(
    ("text", "spelled"),
    [
        ("BTC-USDT", [("BINANCE:BTCUSDT", "BTC-USDT")]),
        ("binance:btc/usdt", [("BINANCE:BTCUSDT", "BTC-USDT")]),
        ("BINANCE:BTCUSDT", [("BINANCE:BTCUSDT", "BTC-USDT")]),
        ("coinbase:XBT-USD", [("COINBASE:BTC-USD", "BTC-USD")]),
        ("KRAKEN:XBTUSD", [("KRAKEN:XBTUSD", "BTC-USD")]),  # Finnhub's own spelling kept
    ],
)
def test_symbol_spellings(text: str, spelled: list[tuple[str, str]]) -> None:
    assert finnhub_symbol(text) == spelled


def test_bare_pair_is_subscribed_on_every_venue_given() -> None:
    assert finnhub_symbol("ETH-USD", ["binance", "coinbase"]) == [
        ("BINANCE:ETHUSD", "ETH-USD"),
        ("COINBASE:ETH-USD", "ETH-USD"),
    ]


@pytest.mark.parametrize("text", [":BTC-USDT", "binance:", "bin ance:BTC-USDT", "binance:BTC"])
def test_bad_symbols_are_refused(text: str) -> None:
    with pytest.raises(SymbolError):
        finnhub_symbol(text)


def test_venue_names_are_normalized() -> None:
    assert [normalize_venue(v) for v in ("BINANCE", "gdax", "Coinbase Pro", "OKEx")] == [
        "binance",
        "coinbase",
        "coinbase",
        "okx",
    ]


def test_new_venue_replaces_the_instrument_list_so_old_batches_keep_theirs() -> None:
    venues = VenueInstruments({"btcusd": "BTC-USD"})
    first = venues.code("binance", "btcusd")
    before = venues.instruments
    assert venues.code("gdax", "btcusd") == 1 and venues.code("binance", "btcusd") == first
    assert len(before) == 1 and len(venues.instruments) == 2
    with pytest.raises(KeyError):
        venues.code("binance", "dogeusd")


def test_content_ids_depend_on_every_field() -> None:
    base = ("binance", "BINANCE:BTCUSDT", 1, 2.0, 3.0)
    variants = [(*base[:i], "x", *base[i + 1 :]) for i in range(len(base))]
    ids = content_ids([base, *variants])
    assert len(set(ids)) == len(ids)
    assert content_ids([base]) == content_ids([base])


def test_token_goes_into_the_query_and_redact_removes_every_spelling() -> None:
    url = with_token("wss://ws.finnhub.io?x=1", "a+b/c=")
    assert url == "wss://ws.finnhub.io?x=1&token=a%2Bb%2Fc%3D"
    assert (
        redact(f"failed {url} and a+b/c=", "a+b/c=")
        == "failed wss://ws.finnhub.io?x=1&token=*** and ***"
    )
