"""Bybit v5 public spot `publicTrade` frames (and REST `recent-trade` answers) to trade batches.

Frames are `{"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": ..., "data": [...]}` with
one object per trade: `T` (fill time, ms), `s` (symbol), `S` (side of the taker: Buy/Sell), `v`
(size, a decimal string), `p` (price, a decimal string), `i` (trade id, a string), `BT` (block
trade), plus acks `{"success", "ret_msg", "conn_id", "op"}` to our `subscribe` and `ping`. The
fast path decodes every frame with one msgspec decoder; a batch in which something does not fit
is walked again frame by frame so that only the bad frames are rejected.

Spot trade ids are numeric strings drawn from one counter shared by all symbols, so they order a
symbol's trades but skip values: `seq` is the id where it is a decimal number that fits int64,
else the arrival order, and no gap is inferred from them.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, TradeBatch
from tickpipe.sources import parsing
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded, json_object, trade_batch
from tickpipe.symbols import normalize_symbol

EXCHANGE = "bybit"
TOPIC = "publicTrade"

_Millis = Annotated[int, msgspec.Meta(ge=0, le=(2**63 - 1) // 1000)]  # fits int64 as µs
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_MAX_SEQ = 2**63 - 1


class _Trade(msgspec.Struct, gc=False):
    time: _Millis = msgspec.field(name="T")  # fill time, ms
    symbol: str = msgspec.field(name="s")
    side: Literal["Buy", "Sell"] = msgspec.field(name="S")  # the taker's side
    size: _Positive = msgspec.field(name="v")  # decimal strings; strict=False reads them
    price: _Positive = msgspec.field(name="p")
    id: _Id = msgspec.field(name="i")


class _TradeMessage(msgspec.Struct, gc=False):
    topic: str
    data: list[_Trade]


_decoder = msgspec.json.Decoder(_TradeMessage, strict=False)


def to_bybit(symbol: str) -> str:
    """`BTC-USDT` becomes Bybit's `BTCUSDT`."""
    return normalize_symbol(symbol).replace("-", "")


class InstrumentIndex(parsing.InstrumentIndex):
    """The instruments of one Bybit source and the code of each raw symbol (`BTCUSDT` -> 0)."""

    exchange = EXCHANGE
    spell = staticmethod(to_bybit)  # `BTC-USDT` -> `BTCUSDT`


class ArrivalOrder:
    """Order keys for trades whose id is not a number: counts on from 2**62 so that it never
    meets the numeric ids Bybit spot gives today (about 2.29e18)."""

    def __init__(self) -> None:
        self._next = itertools.count(2**62)

    def __call__(self) -> int:
        return next(self._next)


def _seq(trade_id: str, arrival: ArrivalOrder) -> int:
    if trade_id.isdecimal() and trade_id.isascii() and len(trade_id) <= 19:
        value = int(trade_id)
        if value <= _MAX_SEQ:
            return value
    return arrival()


def parse_frames(
    frames: list[bytes],
    recv_ts: int,
    index: InstrumentIndex,
    arrival: ArrivalOrder,
    source: str = EXCHANGE,
) -> Parsed:
    """Decode `publicTrade` frames into one batch; frames that are not trades are returned as
    rejects, except the acks of our `subscribe` and `ping` requests, which are dropped.

    `recv_ts` (integer microseconds) is stamped on every trade of the batch.
    """
    try:
        trades = [t for m in map(_decoder.decode, frames) for t in m.data]
        codes = [index.codes[t.symbol] for t in trades]
    except (msgspec.DecodeError, KeyError):
        return _parse_slow(frames, recv_ts, index, arrival, source)
    return Parsed(columns(trades, codes, recv_ts, index, arrival, source), [])


def columns(
    trades: Sequence[_Trade],
    codes: list[int],
    recv_ts: int,
    index: InstrumentIndex,
    arrival: ArrivalOrder,
    source: str = EXCHANGE,
) -> TradeBatch:
    """Trades as a batch with every id kept as given (`trade_id`) and `seq` as its order key."""
    n = len(trades)
    seq = [_seq(t.id, arrival) for t in trades]
    prices, sizes = [t.price for t in trades], [t.size for t in trades]
    side = np.fromiter([SIDE_BUY if t.side == "Buy" else SIDE_SELL for t in trades], np.int8, n)
    ts = np.fromiter([t.time for t in trades], np.int64, n) * 1000
    ids = np.array([t.id for t in trades], object) if n else np.empty(0, object)
    instruments = index.instruments
    return trade_batch(source, instruments, codes, seq, prices, sizes, side, ts, recv_ts, ids)


def _parse_slow(
    frames: list[bytes],
    recv_ts: int,
    index: InstrumentIndex,
    arrival: ArrivalOrder,
    source: str,
) -> Parsed:
    trades: list[_Trade] = []
    codes: list[int] = []
    rejects = Rejects()
    for frame, message in decoded(frames, _decoder, _classify, rejects):
        found = [index.codes.get(t.symbol) for t in message.data]
        if None in found:
            symbol = message.data[found.index(None)].symbol
            rejects.append(Reject(frame, f"unknown symbol {symbol!r}"))
            continue
        trades.extend(message.data)
        codes.extend(found)  # type: ignore[arg-type]
    return Parsed(columns(trades, codes, recv_ts, index, arrival, source), rejects)


def _classify(frame: bytes, error: msgspec.DecodeError) -> str:
    """Why a frame is not a trade message: '' for acks that need no action."""
    msg: Any = json_object(frame)
    if isinstance(msg, str):
        return msg
    if "op" in msg and "success" in msg:
        if msg["success"] is True:
            return ""  # ack of subscribe, or the pong to our ping
        return f"{msg['op']} refused: {msg.get('ret_msg', '')}".rstrip(": ")
    topic = msg.get("topic")
    if isinstance(topic, str) and topic.startswith(f"{TOPIC}."):
        return f"bad trade message: {error}"
    return f"unexpected message (topic {topic!r})"


class _RestTrade(msgspec.Struct, gc=False):
    execId: _Id
    symbol: str
    price: _Positive
    size: _Positive
    side: Literal["Buy", "Sell"]
    time: _Millis


class _RestAnswer(msgspec.Struct, gc=False):
    retCode: int
    retMsg: str = ""
    result: dict[str, Any] | None = None


def parse_recent_trades(answer: Any) -> list[_Trade]:
    """The trades of a decoded `GET /v5/market/recent-trade` answer, oldest first.

    ValueError when Bybit reports an error (`retCode` not 0) or an entry does not fit: a
    backfill built on a misread answer would store wrong trades.
    """
    body = msgspec.convert(answer, _RestAnswer, strict=False)
    if body.retCode != 0:
        raise ValueError(f"Bybit answered retCode {body.retCode}: {body.retMsg}")
    if not body.result or not isinstance(body.result.get("list"), list):
        raise ValueError("recent-trade answer has no trade list")
    rows = msgspec.convert(body.result["list"], list[_RestTrade], strict=False)
    trades = [_Trade(t.time, t.symbol, t.side, t.size, t.price, t.execId) for t in rows]
    trades.sort(key=lambda t: t.time)
    return trades
