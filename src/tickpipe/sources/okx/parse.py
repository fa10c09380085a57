"""OKX v5 trade pushes to trade batches, on bytes alone (no connection needed).

A push is `{"arg": {"channel": "trades-all", "instId": "BTC-USDT"}, "data": [{...}]}` with
string fields `instId`, `tradeId`, `px`, `sz`, `side` (the taker's side), `ts` (ms) and, on the
aggregated `trades` channel, `count`: that push stands for the trades `tradeId - count + 1` to
`tradeId` of one taker order at one price. Other frames are control messages: subscription acks
(`{"event": "subscribe"}`), errors (`{"event": "error", "code", "msg"}`), the text `pong` that
answers our `ping`, and the notice `64008` that the server will close the connection soon.

The fast path decodes every frame with one msgspec decoder into small Structs and builds the
columns with comprehensions; only a batch in which something does not fit is walked again frame
by frame, and only the frames that do not fit are rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, TradeBatch
from tickpipe.sources import parsing
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded, json_object, trade_batch

EXCHANGE = "okx"
NOTICE_RECONNECT = "64008"  # "The connection will soon be closed for a service upgrade."

# Checked while decoding, so a nonsense value rejects its frame instead of reaching the engine.
_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Count = Annotated[int, msgspec.Meta(ge=1, le=2**31)]
_Millis = Annotated[int, msgspec.Meta(ge=0, le=(2**63 - 1) // 1000)]  # fits int64 as µs
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`


class OkxTrade(msgspec.Struct, gc=False):
    """One trade (or one aggregate of a taker order on `trades`) as OKX writes it, WS or REST."""

    instId: str
    tradeId: _Id  # OKX sends it as a string; strict=False reads "130639474" as an int
    px: _Positive
    sz: _Positive
    side: Literal["buy", "sell"]  # the taker's side
    ts: _Millis
    count: _Count = 1  # only on `trades`: how many trades, ending at tradeId, this one stands for


class _Push(msgspec.Struct, gc=False):
    data: list[OkxTrade] | None = None


_decoder = msgspec.json.Decoder(_Push, strict=False)


class InstrumentIndex(parsing.InstrumentIndex):
    """The instruments of one OKX source and the code of each instId (`BTC-USDT` -> 0)."""

    exchange = EXCHANGE  # a spot instId is the normalized symbol itself


def parse_frames(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str = EXCHANGE
) -> Parsed:
    """Decode trade pushes into one batch; acks, pongs and notices are neither trades nor rejects.

    `recv_ts` (integer microseconds) is stamped on every trade of the batch.
    """
    try:
        pushes = [_decoder.decode(f).data for f in frames]
        if None in pushes:  # an ack, a pong or a notice: said apart frame by frame
            return _parse_slow(frames, recv_ts, index, source)
        trades = [t for data in pushes if data is not None for t in data]
        codes = [index.codes[t.instId] for t in trades]
    except (msgspec.DecodeError, KeyError):
        return _parse_slow(frames, recv_ts, index, source)
    batch, first = columns(trades, codes, recv_ts, index, source)
    return Parsed(batch, [], first_seq=first)


def columns(
    trades: Sequence[OkxTrade],
    codes: Sequence[int],
    recv_ts: int,
    index: InstrumentIndex,
    source: str = EXCHANGE,
) -> tuple[TradeBatch, np.ndarray | None]:
    """Trade structs as a batch, and the first trade id of each row when any is an aggregate."""
    n = len(trades)
    seq = np.fromiter([t.tradeId for t in trades], np.int64, n)
    count = np.fromiter([t.count for t in trades], np.int64, n)
    buy = np.fromiter([t.side == "buy" for t in trades], np.bool_, n)
    side = np.where(buy, np.int8(SIDE_BUY), np.int8(SIDE_SELL))
    prices, sizes = [t.px for t in trades], [t.sz for t in trades]
    ts = np.fromiter([t.ts for t in trades], np.int64, n) * 1000
    batch = trade_batch(source, index.instruments, codes, seq, prices, sizes, side, ts, recv_ts)
    first = None if not n or count.max() == 1 else seq - count + 1
    return batch, first


def _parse_slow(frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str) -> Parsed:
    trades: list[OkxTrade] = []
    codes: list[int] = []
    rejects = Rejects()
    for frame, envelope in decoded(frames, _decoder, _classify, rejects):
        data = envelope.data
        if data is None:
            rejects.refuse(frame, _classify(frame, None))
            continue
        unknown = next((t.instId for t in data if t.instId not in index.codes), None)
        if unknown is not None:
            rejects.append(Reject(frame, f"unknown symbol {unknown!r}"))
            continue
        trades.extend(data)
        codes.extend(index.codes[t.instId] for t in data)
    batch, first = columns(trades, codes, recv_ts, index, source)
    return Parsed(batch, rejects, first_seq=first, reconnect=rejects.reconnect)


def _classify(frame: bytes, error: msgspec.DecodeError | None) -> str:
    """Why a frame without trades is not one: '' for frames that need no action, 'reconnect' for
    the server's notice that it closes the connection soon, else the reason to dead-letter it."""
    if frame == b"pong":
        return ""  # the answer to our keep-alive `ping`
    msg: Any = json_object(frame)
    if isinstance(msg, str):
        return msg
    event = msg.get("event")
    if event in ("subscribe", "unsubscribe", "channel-conn-count"):
        return ""
    if event == "notice" and str(msg.get("code")) == NOTICE_RECONNECT:
        return parsing.RECONNECT
    if event == "error":
        return f"error reply from exchange: {msg.get('code')} {msg.get('msg', '')}".rstrip()
    if event is not None:
        return f"unexpected event {event!r}"
    if error is not None:
        return f"bad trade: {error}"
    return "no trade data"
