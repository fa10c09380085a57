"""The one-pass recomputation verify uses equals the plain-Python reference, however the
stored trades are cut into chunks, and hands candles out in key order as soon as they are done."""

from __future__ import annotations

import random

import pytest

from tickpipe.engine.batch import recompute
from tickpipe.engine.windows import parse_window
from tickpipe.records import Trade, TradeBatch

from .reference import assert_candles_equal, batch_candles

S = 1_000_000
T0 = 1_700_000_000 * S


def stored_trades(seed: int) -> list[Trade]:
    """Trades as a store hands them over: by (exchange, symbol), then (ts, seq)."""
    rng = random.Random(seed)
    trades = [
        Trade(
            source="s",
            exchange=ex,
            symbol=sym,
            raw_symbol=sym,
            trade_id=f"{ex}{i}",
            seq=i,
            price=round(rng.uniform(90, 110), 2),
            size=rng.randrange(1, 50) / 7,
            side=rng.choice(["buy", "sell", "unknown"]),
            ts=T0 + rng.randrange(0, 40 * S),
            recv_ts=T0,
        )
        for i in range(600)
        for ex, sym in [rng.choice([("a", "BTC-USDT"), ("a", "ETH-USDT"), ("b", "BTC-USDT")])]
    ]
    return sorted(trades, key=lambda t: (t.exchange, t.symbol, t.ts, t.seq))


def chunks(trades: list[Trade], rows: int) -> list[TradeBatch]:
    return [TradeBatch.from_trades(trades[i : i + rows]) for i in range(0, len(trades), rows)]


@pytest.mark.parametrize("window", ["1s", "5s", "6s/2s", "1m"])
@pytest.mark.parametrize("rows", [1, 7, 250, 10_000])
def test_recomputed_candles_equal_the_reference_whatever_the_chunk_size(
    window: str, rows: int
) -> None:
    trades = stored_trades(rows)
    w = parse_window(window)
    got = [c for done in recompute(chunks(trades, rows), [w]) for c in done[0]]
    keys = [(c.exchange, c.symbol, c.start) for c in got]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(c.final and c.interval == window for c in got)
    expected = batch_candles(trades, [(w.name, w.size, w.slide)])
    assert_candles_equal({(c.exchange, c.symbol, c.interval, c.start): c for c in got}, expected)


def test_a_trade_stored_twice_is_counted_twice() -> None:
    trades = stored_trades(1)[:5]
    twice = sorted([*trades, trades[2]], key=lambda t: (t.exchange, t.symbol, t.ts, t.seq))
    minute = [parse_window("1m")]
    once = sum(c.trades for done in recompute(chunks(trades, 3), minute) for c in done[0])
    again = sum(c.trades for done in recompute(chunks(twice, 3), minute) for c in done[0])
    assert (once, again) == (5, 6)


def test_one_pass_serves_every_window_as_a_pass_each_would() -> None:
    trades = stored_trades(3)
    windows = [parse_window(w) for w in ("1s", "5s", "6s/2s")]
    together = list(recompute(chunks(trades, 50), windows))
    for k, w in enumerate(windows):
        alone = [c for done in recompute(chunks(trades, 50), [w]) for c in done[0]]
        assert [c for done in together for c in done[k]] == alone
