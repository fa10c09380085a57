"""Tiingo crypto frames to trade batches, on bytes alone (no connection needed).

Tiingo's crypto firehose (https://www.tiingo.com/documentation/websockets/crypto) sends one
update per message, `{"messageType":"A","service":"crypto_data","data":["T","btcusd",
"2019-01-30T18:03:40.056000+00:00","binance",405.0,9.631e-05]}`: update type, ticker, date,
the venue it traded on, last size (base currency), last price. Quotes (`"Q"`, thresholdLevel 2)
are not trades and are skipped; heartbeats (`"H"`) and the subscription ack (`"I"`, with the
subscriptionId) need no action; errors (`"E"`, e.g. a bad token) are dead-lettered.

Tiingo gives no trade id and no side: ids are derived from each message's content
(`content_ids`), seq is arrival order, side is unknown. Tickers are glued and lower-case
(`btcusd`); the normalized symbol comes from the subscription (`BTC-USD` -> `btcusd`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from tickpipe.records import TradeBatch
from tickpipe.sources.aggregated import (
    VenueInstruments,
    classify_by_type,
    content_ids,
    unsided_batch,
)
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded
from tickpipe.symbols import normalize_symbol

SOURCE = "tiingo"

_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class _Trade(msgspec.Struct, gc=False, array_like=True, tag="T"):
    ticker: str
    date: datetime
    exchange: str
    size: _Positive
    price: _Positive


class _Quote(msgspec.Struct, gc=False, array_like=True, tag="Q"):
    ticker: str  # the rest (bid/mid/ask) is not used


class _Update(msgspec.Struct, gc=False, tag_field="messageType", tag="A"):
    data: _Trade | _Quote


class _Heartbeat(msgspec.Struct, gc=False, tag_field="messageType", tag="H"):
    pass


class _Info(msgspec.Struct, gc=False, tag_field="messageType", tag="I"):
    pass


_decoder = msgspec.json.Decoder(_Update | _Heartbeat | _Info, strict=False)


def tiingo_ticker(symbol: str) -> str:
    """`BTC-USD` (or `btc/usd`, `BTCUSD`) becomes Tiingo's `btcusd`."""
    return normalize_symbol(symbol).replace("-", "").lower()


def tickers_for(symbols: Iterable[str]) -> dict[str, str]:
    """Tiingo ticker -> normalized pair for every `--symbol`, in order, without repeats."""
    out: dict[str, str] = {}
    for text in symbols:
        symbol = normalize_symbol(text)
        out.setdefault(symbol.replace("-", "").lower(), symbol)
    return out


def parse_frames(
    frames: list[bytes],
    recv_ts: int,
    index: VenueInstruments,
    seq_start: int = 0,
    source: str = SOURCE,
) -> Parsed:
    """Decode Tiingo frames into one batch whose seq counts on from `seq_start`.

    A trade from a venue not seen before adds an instrument to `index`.
    """
    try:
        messages = [_decoder.decode(f) for f in frames]
        trades = [m.data for m in messages if type(m) is _Update and type(m.data) is _Trade]
        codes = [index.code(t.exchange, t.ticker) for t in trades]
        ts = [(t.date - _EPOCH) // _US for t in trades]  # TypeError on a naive date
        data = sum(type(m) is _Update for m in messages)
    except (msgspec.DecodeError, KeyError, TypeError):
        return _parse_slow(frames, recv_ts, index, seq_start, source)
    return Parsed(_columns(trades, codes, ts, recv_ts, index, seq_start, source), [], data)


def _columns(
    trades: list[_Trade],
    codes: list[int],
    ts: list[int],
    recv_ts: int,
    index: VenueInstruments,
    seq_start: int,
    source: str,
) -> TradeBatch:
    # One trade per message, so each id's occurrence count is 0: a duplicated message repeats it.
    ids = [
        content_ids([(index.instruments[c].exchange, t.ticker, us, t.price, t.size)])[0]
        for t, c, us in zip(trades, codes, ts, strict=True)
    ]
    prices, sizes = [t.price for t in trades], [t.size for t in trades]
    instruments = index.instruments
    return unsided_batch(source, instruments, codes, seq_start, prices, sizes, ts, recv_ts, ids)


def _parse_slow(
    frames: list[bytes], recv_ts: int, index: VenueInstruments, seq_start: int, source: str
) -> Parsed:
    trades: list[_Trade] = []
    codes: list[int] = []
    ts: list[int] = []
    rejects = Rejects()
    data = 0
    for frame, message in decoded(frames, _decoder, _classify, rejects):
        if type(message) is not _Update:
            continue  # heartbeat or subscription ack
        data += 1
        trade = message.data
        if type(trade) is not _Trade:
            continue  # a quote
        if trade.ticker not in index.symbols:
            rejects.append(Reject(frame, f"unknown symbol {trade.ticker!r}"))
            continue
        date = trade.date if trade.date.tzinfo is not None else trade.date.replace(tzinfo=UTC)
        trades.append(trade)
        codes.append(index.code(trade.exchange, trade.ticker))
        ts.append((date - _EPOCH) // _US)
    return Parsed(_columns(trades, codes, ts, recv_ts, index, seq_start, source), rejects, data)


def _classify(frame: bytes, error: msgspec.DecodeError) -> str:
    """Why a frame is not a Tiingo update, heartbeat or ack."""
    return classify_by_type(frame, error, "messageType", "E", ("A", "H", "I"))
