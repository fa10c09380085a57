"""Finnhub trade frames to trade batches, on bytes alone (no connection needed).

Finnhub's WebSocket (https://finnhub.io/docs/api/websocket-trades) sends
`{"type":"trade","data":[{"s":"BINANCE:BTCUSDT","p":7296.89,"t":1575526691134,"v":0.011467,
"c":[...]}]}` (a message may carry several trades, of several symbols), `{"type":"ping"}` to
keep an idle connection open, and `{"type":"error","msg":...}`. Venues that stream no trades
send price updates with `v = 0`; they are not trades and are skipped. Finnhub gives no trade
id and no side: ids are derived from each message's content (`content_ids`), seq is arrival
order, side is unknown.

Symbols are `VENUE:PAIR` in Finnhub's spelling. tickpipe accepts `binance:BTC-USDT` (any
spelling `normalize_symbol` reads for the pair, venue in any case), Finnhub's own
`BINANCE:BTCUSDT`, or a bare pair (`BTC-USDT`), which is subscribed on each venue given.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
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
from tickpipe.symbols import SymbolError, normalize_symbol

SOURCE = "finnhub"
DEFAULT_VENUES = ("binance",)

# How Finnhub spells a pair on venues whose rule is known; others must be written as Finnhub
# spells them (e.g. `KRAKEN:XXBTZUSD`), which `fetch_symbols` lists.
_PAIR_STYLE = {"BINANCE": "", "BINANCEUS": "", "COINBASE": "-"}

_Millis = Annotated[int, msgspec.Meta(ge=0, le=(2**63 - 1) // 1000)]  # fits int64 as µs
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`
_Volume = Annotated[float, msgspec.Meta(ge=0, le=sys.float_info.max)]


class _Tick(msgspec.Struct, gc=False):
    s: str
    p: _Positive
    t: _Millis
    v: _Volume  # 0 for a price update from a venue without a trade stream


class _Trades(msgspec.Struct, gc=False, tag_field="type", tag="trade"):
    data: list[_Tick]


class _Ping(msgspec.Struct, gc=False, tag_field="type", tag="ping"):
    pass


_decoder = msgspec.json.Decoder(_Trades | _Ping, strict=False)


def finnhub_symbol(text: str, venues: Sequence[str] = DEFAULT_VENUES) -> list[tuple[str, str]]:
    """(Finnhub spelling, normalized pair) for one `--symbol`; a bare pair gives one per venue.

    SymbolError names what is wrong and how to write it.
    """
    raw = text.strip()
    if ":" in raw:
        venue, pair = raw.split(":", 1)
        venue = venue.strip().upper()
        if not venue.isalnum() or not pair:
            raise SymbolError(f"finnhub symbol {text!r} is not VENUE:PAIR (e.g. binance:BTC-USDT)")
        return [_spell(venue, pair.strip(), text)]
    return [_spell(v.strip().upper(), raw, text) for v in venues]


def _spell(venue: str, pair: str, text: str) -> tuple[str, str]:
    symbol = normalize_symbol(pair)
    style = _PAIR_STYLE.get(venue)
    if style is None:  # taken as Finnhub's own spelling; Finnhub answers an unknown one
        return f"{venue}:{pair}", symbol
    return f"{venue}:{symbol.replace('-', style)}", symbol


def instruments_for(
    symbols: Iterable[str], venues: Sequence[str] = DEFAULT_VENUES
) -> dict[str, str]:
    """Finnhub spelling -> normalized pair for every `--symbol`, in order, without repeats."""
    out: dict[str, str] = {}
    for text in symbols:
        for raw, symbol in finnhub_symbol(text, venues):
            out.setdefault(raw, symbol)
    return out


class FinnhubInstruments(VenueInstruments):
    """Instruments of a Finnhub source, all known in advance: the venue is in the symbol."""

    def __init__(self, symbols: dict[str, str]) -> None:
        super().__init__(symbols)
        self.add((raw.split(":", 1)[0], raw) for raw in symbols)
        self.by_raw: dict[str, int] = {raw: code for (_, raw), code in self.codes.items()}

    @classmethod
    def for_symbols(
        cls, symbols: Iterable[str], venues: Sequence[str] = DEFAULT_VENUES
    ) -> FinnhubInstruments:
        return cls(instruments_for(symbols, venues))


def parse_frames(
    frames: list[bytes],
    recv_ts: int,
    index: FinnhubInstruments,
    seq_start: int = 0,
    source: str = SOURCE,
) -> Parsed:
    """Decode Finnhub frames into one batch whose seq counts on from `seq_start`.

    Pings and price updates (`v == 0`) carry no trade and are dropped; anything else that is
    not a trade (errors, malformed JSON, unknown symbols) comes back as a reject.
    """
    try:
        messages = [_decoder.decode(f) for f in frames]
        rows = [
            (index.by_raw[t.s], m_no, t)
            for m_no, m in enumerate(messages)
            if type(m) is _Trades
            for t in m.data
            if t.v > 0
        ]
        data = sum(type(m) is _Trades for m in messages)
    except (msgspec.DecodeError, KeyError):
        return _parse_slow(frames, recv_ts, index, seq_start, source)
    return Parsed(_columns(rows, recv_ts, index, seq_start, source), [], data)


def _columns(
    rows: list[tuple[int, int, _Tick]],
    recv_ts: int,
    index: FinnhubInstruments,
    seq_start: int,
    source: str,
) -> TradeBatch:
    n = len(rows)
    ts = [t.t * 1000 for _, _, t in rows]
    ids: list[str] = []
    start = 0
    while start < n:  # ids are derived per message: rows of one message are contiguous
        end = start
        message = rows[start][1]
        while end < n and rows[end][1] == message:
            end += 1
        ids.extend(
            content_ids(
                [
                    (index.instruments[c].exchange, t.s, ts[i], t.p, t.v)
                    for i, (c, _, t) in enumerate(rows[start:end], start)
                ]
            )
        )
        start = end
    codes = [c for c, _, _ in rows]
    prices, sizes = [t.p for _, _, t in rows], [t.v for _, _, t in rows]
    instruments = index.instruments
    return unsided_batch(source, instruments, codes, seq_start, prices, sizes, ts, recv_ts, ids)


def _parse_slow(
    frames: list[bytes], recv_ts: int, index: FinnhubInstruments, seq_start: int, source: str
) -> Parsed:
    rows: list[tuple[int, int, _Tick]] = []
    rejects = Rejects()
    data = 0
    for m_no, (frame, message) in enumerate(decoded(frames, _decoder, _classify, rejects)):
        if type(message) is not _Trades:
            continue  # a ping
        data += 1
        unknown = []
        for tick in message.data:
            code = index.by_raw.get(tick.s)
            if code is None:
                unknown.append(tick.s)
            elif tick.v > 0:
                rows.append((code, m_no, tick))
        if unknown:  # the known trades of the message are kept
            rejects.append(Reject(frame, f"unknown symbol {unknown[0]!r}"))
    return Parsed(_columns(rows, recv_ts, index, seq_start, source), rejects, data)


def _classify(frame: bytes, error: msgspec.DecodeError) -> str:
    """Why a frame is not a trade message."""
    return classify_by_type(frame, error, "type", "error", ("trade", "ping"))
