"""Bitstamp WebSocket v2 trade events to trade batches, on bytes alone (no connection needed).

A trade is `{"event": "trade", "channel": "live_trades_btcusd", "data": {"id", "timestamp",
"amount", "price", "type", "microtimestamp", "buy_order_id", "sell_order_id"}}`; `type` is the
taker's side (0 buy, 1 sell) and `microtimestamp` the trade time in µs. Other frames are
control messages: `bts:subscription_succeeded`, `bts:heartbeat` (the answer to ours),
`bts:request_reconnect` (the server goes away soon) and `bts:error`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument, TradeBatch
from tickpipe.sources import parsing
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded, json_object, trade_batch

EXCHANGE = "bitstamp"
CHANNEL_PREFIX = "live_trades_"

_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Micros = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`


class _Data(msgspec.Struct, gc=False):
    id: _Id
    amount: _Positive
    price: _Positive
    type: Literal[0, 1]  # the taker's side: 0 buy, 1 sell
    microtimestamp: _Micros  # a string of µs; strict=False reads it as an int


class _Trade(msgspec.Struct, gc=False, tag_field="event", tag="trade"):
    channel: str
    data: _Data


_decoder = msgspec.json.Decoder(_Trade, strict=False)


class InstrumentIndex(parsing.InstrumentIndex):
    """The instruments of one Bitstamp source and the code of each channel name."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        super().__init__(instruments, key_prefix=CHANNEL_PREFIX)

    exchange = EXCHANGE

    @staticmethod
    def spell(symbol: str) -> str:
        """`BTC-USD` -> `btcusd` (Bitstamp's url_symbol)."""
        return symbol.replace("-", "").lower()


def parse_frames(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str = EXCHANGE
) -> Parsed:
    """Decode trade events into one batch; acks and heartbeats are neither trades nor rejects."""
    try:
        trades = [_decoder.decode(f) for f in frames]
        codes = [index.codes[t.channel] for t in trades]
    except (msgspec.DecodeError, KeyError):
        return _parse_slow(frames, recv_ts, index, source)
    return Parsed(columns([t.data for t in trades], codes, recv_ts, index, source), [])


def columns(
    data: Sequence[_Data], codes: Sequence[int], recv_ts: int, index: InstrumentIndex, source: str
) -> TradeBatch:
    side = taker_side([d.type for d in data])
    ids, prices, sizes = [d.id for d in data], [d.price for d in data], [d.amount for d in data]
    ts = [d.microtimestamp for d in data]
    return trade_batch(source, index.instruments, codes, ids, prices, sizes, side, ts, recv_ts)


def taker_side(types: list[int]) -> np.ndarray:
    """Bitstamp's `type` (0 buy, 1 sell: the taker's side) as `SIDE_*` codes."""
    sell = np.fromiter(types, np.int8, len(types))
    return np.where(sell == 1, np.int8(SIDE_SELL), np.int8(SIDE_BUY))


def _parse_slow(frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str) -> Parsed:
    data: list[_Data] = []
    codes: list[int] = []
    rejects = Rejects()
    for frame, trade in decoded(frames, _decoder, _classify, rejects):
        code = index.codes.get(trade.channel)
        if code is None:
            rejects.append(Reject(frame, f"unknown channel {trade.channel!r}"))
            continue
        data.append(trade.data)
        codes.append(code)
    batch = columns(data, codes, recv_ts, index, source)
    return Parsed(batch, rejects, reconnect=rejects.reconnect)


def _classify(frame: bytes, error: msgspec.DecodeError) -> str:
    """Why a frame is not a trade: '' when it needs no action, 'reconnect' for the server's
    request to reconnect, else the reason to dead-letter it."""
    msg: Any = json_object(frame)
    if isinstance(msg, str):
        return msg
    event = msg.get("event")
    if event in ("bts:subscription_succeeded", "bts:unsubscription_succeeded", "bts:heartbeat"):
        return ""
    if event == "bts:request_reconnect":
        return parsing.RECONNECT
    if event == "bts:error":
        data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
        return f"error reply from exchange: {data.get('code')} {data.get('message', '')}".rstrip()
    if event != "trade":
        return f"unexpected event {event!r}"
    return f"bad trade: {error}"
