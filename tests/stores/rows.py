"""Trades and candles as the store tests write them (shared by every store's tests)."""

from __future__ import annotations

from tickpipe.records import Candle, Trade

S = 1_000_000
M = 60 * S
T0 = 1_700_000_040 * S  # minute-aligned


def trade(i: int, ts: int, *, exchange="ex", symbol="BTC-USDT", raw="BTCUSDT", trade_id=None,
          price=100.0, size=1.0, side="buy", source="feed") -> Trade:  # fmt: skip
    return Trade(
        source=source, exchange=exchange, symbol=symbol, raw_symbol=raw,
        trade_id=str(i) if trade_id is None else trade_id, seq=i, price=price, size=size,
        side=side, ts=ts, recv_ts=ts + 1234,
    )  # fmt: skip


def candle(start: int, **fields) -> Candle:
    values = dict(
        exchange="ex", symbol="BTC-USDT", interval="1m", start=start, open=1.0, high=2.0,
        low=0.5, close=1.5, volume=3.0, quote_volume=4.5, vwap=1.5, mean_price=1.25, trades=3,
        buy_volume=1.0, sell_volume=2.0, first_seq=10, last_seq=12, final=False, revision=0,
        updated_at=start + 1,
    )  # fmt: skip
    values.update(fields)
    return Candle(**values)
