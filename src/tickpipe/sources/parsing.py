"""What every exchange parser shares: its one result type (`Parsed`), the reject record and
the frame-by-frame path's `Rejects` (drop, reject, or note the server's request to reconnect,
as the parser's classifier says) fed by `decoded`, the batch built from per-trade values
(`trade_batch`), the instrument index, and reading a frame that is not a trade as a plain
JSON object (to say what it is instead).

A parser's fast path decodes a whole list of frames at once and falls back to the frame-by-
frame path only when something does not fit. It maps each frame's raw symbol to an instrument
code with one dict lookup; the index holds those codes. Exchanges differ only in how they spell
a symbol, which each passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Self, TypeVar

import msgspec
import numpy as np

from tickpipe.records import Instrument, TradeBatch
from tickpipe.symbols import normalize_symbol


class Reject(NamedTuple):
    """A frame that carried no usable trade, with the reason (goes to the dead-letter file)."""

    payload: bytes
    reason: str


class Parsed(NamedTuple):
    """What a parser made of a list of frames; every exchange parser returns this.

    Only `batch` and `rejects` are always meaningful; the rest say what some feeds send
    besides trades, and keep a neutral default where a feed has no such thing.
    """

    batch: TradeBatch
    rejects: list[Reject]
    # Frames that carried market data (what the connection's data timer watches); None: as
    # many as the batch has trades.
    data: int | None = None
    # The first trade id each row stands for, where a row aggregates several trades (OKX
    # `trades`); None: each row is one trade.
    first_seq: np.ndarray | None = None
    # (instrument code, last trade id) announced without a trade (Coinbase heartbeats).
    last_ids: Sequence[tuple[int, int]] = ()
    reconnect: bool = False  # the server asked this connection to reconnect

    def data_frames(self) -> int:
        """How many frames carried market data."""
        return len(self.batch) if self.data is None else self.data


def trade_batch(
    source: str,
    instruments: list[Instrument],
    codes: Sequence[int] | int,
    seq: Sequence[int] | np.ndarray,
    price: Sequence[float],
    size: Sequence[float],
    side: np.ndarray,
    ts: Sequence[int] | np.ndarray,
    recv_ts: int,
    trade_id: np.ndarray | None = None,
) -> TradeBatch:
    """The batch of trades a parser gathered as one value per trade of each field: ids (the
    order key), prices, sizes, sides (`SIDE_*`), event times (µs). `codes` is each trade's
    instrument code, or one code for them all."""
    n = len(price)
    return TradeBatch(
        source=source,
        instruments=instruments,
        instrument=np.full(n, codes, np.int32)
        if isinstance(codes, int)
        else np.fromiter(codes, np.int32, n),
        seq=_column(seq, np.int64, n),
        price=np.fromiter(price, np.float64, n),
        size=np.fromiter(size, np.float64, n),
        side=side,
        ts=_column(ts, np.int64, n),
        recv_ts=np.full(n, recv_ts, np.int64),
        trade_id=trade_id,
    )


def _column(values: Sequence[int] | np.ndarray, dtype: type, n: int) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else np.fromiter(values, dtype, n)


_any_json = msgspec.json.Decoder()
T = TypeVar("T")


RECONNECT = "reconnect"  # a classifier's answer for the server's request to reconnect


class Rejects(list[Reject]):
    """The frames a parser's frame-by-frame path refused, and whether the server asked this
    connection to reconnect."""

    reconnect = False

    def refuse(self, frame: bytes, reason: str) -> None:
        """Act on what a classifier said of `frame`: '' drops it (an ack, a notice),
        `RECONNECT` notes the server's request, any other reason rejects it."""
        if reason == RECONNECT:
            self.reconnect = True
        elif reason:
            self.append(Reject(frame, reason))


def decoded(
    frames: Iterable[bytes],
    decoder: msgspec.json.Decoder[T],
    classify: Callable[[bytes, msgspec.DecodeError], str],
    rejects: Rejects,
) -> Iterator[tuple[bytes, T]]:
    """Each frame with its message, for a parser's frame-by-frame path. A frame that does not
    decode is refused with the reason `classify` gives."""
    for frame in frames:
        try:
            message = decoder.decode(frame)
        except msgspec.DecodeError as exc:
            rejects.refuse(frame, classify(frame, exc))
            continue
        yield frame, message


def json_object(frame: bytes) -> dict[str, Any] | str:
    """The frame as a JSON object, or the reason it is not one ("invalid JSON", "not a JSON
    object"): how a parser's classifier starts on a frame its trade decoder refused."""
    try:
        msg = _any_json.decode(frame)
    except msgspec.DecodeError:
        return "invalid JSON"
    return msg if isinstance(msg, dict) else "not a JSON object"


class InstrumentIndex:
    """The instruments of one source and the code of each raw spelling (`BTCUSDT` -> 0)."""

    def __init__(self, instruments: Iterable[Instrument], key_prefix: str = "") -> None:
        self.instruments: list[Instrument] = list(instruments)
        self.codes: dict[str, int] = {
            key_prefix + i.raw_symbol: n for n, i in enumerate(self.instruments)
        }
        if len(self.codes) != len(self.instruments):
            raise ValueError("instruments repeat a raw symbol")

    exchange = ""  # the venue of the instruments (each exchange's index names its own)

    @staticmethod
    def spell(symbol: str) -> str:
        """The exchange's spelling of a normalized symbol (each exchange's index has its own)."""
        return symbol

    @classmethod
    def for_symbols(
        cls,
        symbols: Iterable[str],
        exchange: str | None = None,
        spellings: dict[str, str] | None = None,
    ) -> Self:
        """Instruments for any spelling of `symbols`, each raw symbol from `spellings`
        (normalized -> the exchange's spelling, from its symbol list) or else `spell`."""
        out: dict[str, Instrument] = {}
        for text in symbols:
            symbol = normalize_symbol(text)
            raw = (spellings or {}).get(symbol) or cls.spell(symbol)
            out.setdefault(symbol, Instrument(exchange or cls.exchange, symbol, raw))
        return cls(out.values())
