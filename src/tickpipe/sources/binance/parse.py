"""Binance spot trade frames to trade batches, on bytes alone (no connection needed).

Frames come from the combined-stream endpoint, `{"stream": "btcusdt@trade", "data": {...}}`,
with `trade` or `aggTrade` events (for an aggregate trade, its id `a` is the sequence).
The fast path decodes every frame with one msgspec decoder into small Structs and builds the
columns with comprehensions; only a batch in which something does not fit (a subscription ack,
an error reply, a malformed frame, an unknown symbol) is walked again frame by frame.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, TradeBatch
from tickpipe.sources import parsing
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded, json_object, trade_batch
from tickpipe.symbols import to_binance

EXCHANGE = "binance"


# Checked while decoding, so a nonsense value rejects its frame instead of reaching the engine.
_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Millis = Annotated[int, msgspec.Meta(ge=0, le=(2**63 - 1) // 1000)]  # fits int64 as µs
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`


class _Trade(msgspec.Struct, gc=False, tag_field="e", tag="trade"):
    # Only the fields tickpipe uses; msgspec skips the rest (E, M, b, a) without building them.
    s: str
    t: _Id  # trade id
    p: _Positive  # Binance sends decimals as strings; strict=False turns "0.001" into a float
    q: _Positive
    T: _Millis  # trade time
    m: bool  # is the buyer the market maker?


class _AggTrade(msgspec.Struct, gc=False, tag_field="e", tag="aggTrade"):
    s: str
    t: _Id = msgspec.field(name="a")  # aggregate trade id, consecutive per symbol like `t`
    p: _Positive
    q: _Positive
    T: _Millis
    m: bool


class _Envelope(msgspec.Struct, gc=False):
    data: _Trade | _AggTrade | None = None


_decoder = msgspec.json.Decoder(_Envelope, strict=False)


class InstrumentIndex(parsing.InstrumentIndex):
    """The instruments of one Binance source and the code of each raw symbol (`BTCUSDT` -> 0)."""

    exchange = EXCHANGE
    spell = staticmethod(to_binance)  # `BTC-USDT` -> `BTCUSDT`


def parse_frames(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str = EXCHANGE
) -> Parsed:
    """Decode combined-stream trade frames into one batch; frames that are not trades are
    returned as rejects, except subscription acks and server notices, which are dropped.

    `recv_ts` (integer microseconds) is stamped on every trade of the batch.
    """
    try:
        data = [_decoder.decode(f).data for f in frames]
        if None in data:  # an ack or a notice: said apart frame by frame
            return _parse_slow(frames, recv_ts, index, source)
        trades = [t for t in data if t is not None]
        codes = [index.codes[t.s] for t in trades]  # KeyError on an unknown symbol
    except (msgspec.DecodeError, KeyError):
        return _parse_slow(frames, recv_ts, index, source)
    return Parsed(_columns(trades, codes, recv_ts, index, source), [])


def _columns(
    trades: list[_Trade | _AggTrade],
    codes: list[int],
    recv_ts: int,
    index: InstrumentIndex,
    source: str,
) -> TradeBatch:
    n = len(trades)
    buyer_is_maker = np.fromiter([t.m for t in trades], np.bool_, n)
    # The buyer was the resting order, so the taker sold.
    side = np.where(buyer_is_maker, np.int8(SIDE_SELL), np.int8(SIDE_BUY))
    ts_ms = np.fromiter([t.T for t in trades], np.int64, n)
    ids, prices, sizes = [t.t for t in trades], [t.p for t in trades], [t.q for t in trades]
    return trade_batch(
        source, index.instruments, codes, ids, prices, sizes, side, ts_ms * 1000, recv_ts
    )


def _parse_slow(frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str) -> Parsed:
    trades: list[_Trade | _AggTrade] = []
    codes: list[int] = []
    rejects = Rejects()
    for frame, envelope in decoded(frames, _decoder, _classify, rejects):
        trade = envelope.data
        if trade is None:
            rejects.refuse(frame, _classify(frame, None))
            continue
        code = index.codes.get(trade.s)
        if code is None:
            rejects.append(Reject(frame, f"unknown symbol {trade.s!r}"))
            continue
        trades.append(trade)
        codes.append(code)
    return Parsed(_columns(trades, codes, recv_ts, index, source), rejects)


def _classify(frame: bytes, error: msgspec.DecodeError | None) -> str:
    """Why a frame without a trade is not one: '' for acks and notices that need no action."""
    msg: Any = json_object(frame)
    if isinstance(msg, str):
        return msg
    if "result" in msg and "id" in msg:
        return ""  # reply to SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS
    if "code" in msg or "error" in msg:
        return "error reply from exchange"
    data = msg.get("data", msg.get("event", msg))
    event = data.get("e") if isinstance(data, dict) else None
    if event == "serverShutdown":
        return ""  # the server closes the connection soon; the connection helper reconnects
    if event not in (None, "trade", "aggTrade"):
        return f"unexpected event {event!r}"
    if error is not None:
        return f"bad trade: {error}"
    return "no trade data"
