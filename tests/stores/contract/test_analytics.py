"""The API's analytics, computed from stored candles, equal what the trades give.

The trades are generated here, the real engine makes their candles, the store keeps both; the
expected answers are summed from the generated trades in Python, over the range the store
says it answers for (the asked range widened to whole seconds, the finest interval).
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from stores.rows import T0, M, S, trade
from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.base import OverBudget

WINDOWS = ("1s", "5s", "1m", "5m", "1h", "1m/5s")  # a hopping window too: never summed
INSTRUMENTS = [("ex1", "BTC-USDT"), ("ex1", "ETH-USDT"), ("ex2", "BTC-USDT"), ("ex2", "XRP-USDT")]
SPAN = 80 * M
# Ranges with unaligned edges: across the hour, inside one minute, and one that holds none.
RANGES = [(T0 + 7 * S + 300_000, T0 + 73 * M + 2_500_000), (T0 + 61 * M + 1, T0 + 62 * M - 1),
          (T0 - 10 * M, T0 - 5 * M)]  # fmt: skip


def generated() -> list[Trade]:
    rng = random.Random(14)
    out = []
    for i in range(3000):
        exchange, symbol = rng.choice(INSTRUMENTS)
        out.append(trade(i, T0 + rng.randrange(SPAN), exchange=exchange, symbol=symbol,
                         raw=symbol, price=round(rng.uniform(90, 110), 2),
                         size=round(rng.uniform(0.01, 3), 3),
                         side=rng.choice(["buy", "sell", "unknown"])))  # fmt: skip
    return sorted(out, key=lambda t: (t.ts, t.seq))


@pytest.fixture(scope="module")
def filled(opener):
    """A store holding the generated trades and the engine's candles of them."""
    trades = generated()
    engine = CandleEngine(EngineConfig(windows=tuple(parse_window(w) for w in WINDOWS)))
    out = engine.process(TradeBatch.from_trades(trades), trades[-1].ts)
    candles = [*out.candles, *engine.flush(trades[-1].ts + 2 * 3600 * S)]
    with opener() as store:
        store.write([out.accepted], candles)
        yield store, trades


def _grouped(
    filled, start: int, end: int, key: str, exchange: str | None = None
) -> dict[str, list[Trade]]:
    """The generated trades in the range the store answers for (asked: whole seconds around
    [start, end)), of one `exchange` or all, grouped by the field `key`."""
    store, trades = filled
    lo, hi = store.analytics_range(start, end)
    assert (lo, hi) == (start - start % S, -(-end // S) * S)
    groups: dict[str, list[Trade]] = defaultdict(list)
    for t in trades:
        if lo <= t.ts < hi and exchange in (None, t.exchange):
            groups[getattr(t, key)].append(t)
    return groups


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_top_exchanges_equal_the_trades(filled, start: int, end: int) -> None:
    store, _ = filled
    groups = _grouped(filled, start, end, "exchange")
    expected = sorted(
        ({"exchange": e, "trades": len(g), "quote_volume": sum(t.price * t.size for t in g),
          "symbols": len({t.symbol for t in g})} for e, g in groups.items()),
        key=lambda r: (-r["quote_volume"], r["exchange"]),
    )  # fmt: skip
    got = store.top_exchanges(start, end, "volume", 10)
    assert got == [{**r, "quote_volume": pytest.approx(r["quote_volume"], rel=1e-9)}
                   for r in expected]  # fmt: skip
    by_trades = sorted(expected, key=lambda r: (-r["trades"], r["exchange"]))
    ranked = store.top_exchanges(start, end, "trades", 1)
    assert [r["exchange"] for r in ranked] == [r["exchange"] for r in by_trades[:1]]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_top_tickers_equal_the_trades(filled, start: int, end: int) -> None:
    store, _ = filled
    groups = _grouped(filled, start, end, "symbol")
    got = {r["symbol"]: r for r in store.top_tickers(start, end, "trades", 10)}
    assert set(got) == set(groups)
    for symbol, g in groups.items():
        row = got[symbol]
        assert row["trades"] == len(g)
        assert row["volume"] == pytest.approx(sum(t.size for t in g), rel=1e-9)
        assert row["quote_volume"] == pytest.approx(sum(t.price * t.size for t in g), rel=1e-9)
        exchanges = {t.exchange for t in g}
        assert row["exchanges"] == len(exchanges)
        # Per exchange the first and last trade are exact; across exchanges the first
        # price is one of theirs (candles do not say which trade came first between two).
        firsts = {min((t for t in g if t.exchange == e), key=lambda t: (t.ts, t.seq)).price
                  for e in exchanges}  # fmt: skip
        lasts = {max((t for t in g if t.exchange == e), key=lambda t: (t.ts, t.seq)).price
                 for e in exchanges}  # fmt: skip
        assert row["first_price"] in firsts and row["last_price"] in lasts
        if len(exchanges) == 1:
            assert row["first_price"] == min(g, key=lambda t: (t.ts, t.seq)).price
            assert row["last_price"] == max(g, key=lambda t: (t.ts, t.seq)).price
    counts = [r["trades"] for r in store.top_tickers(start, end, "trades", 10)]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_exchange_breakdown_equals_the_trades(filled, start: int, end: int) -> None:
    store, _ = filled
    groups = _grouped(filled, start, end, "symbol", "ex2")
    mine = [t for g in groups.values() for t in g]
    totals, tickers = store.exchange_breakdown("ex2", start, end)
    quote = sum(t.price * t.size for t in mine)
    assert totals == {"trades": len(mine), "quote_volume": pytest.approx(quote, rel=1e-9),
                      "mean_trade_value": pytest.approx(quote / len(mine), rel=1e-9)
                      if mine else None}  # fmt: skip
    expected = []
    for symbol, g in groups.items():
        q, v = sum(t.price * t.size for t in g), sum(t.size for t in g)
        expected.append({
            "symbol": symbol, "trades": len(g), "trade_share": len(g) / len(mine),
            "open": min(g, key=lambda t: (t.ts, t.seq)).price,
            "close": max(g, key=lambda t: (t.ts, t.seq)).price, "volume": v,
            "quote_volume": q, "volume_share": q / quote, "vwap": q / v,
            "low": min(t.price for t in g), "high": max(t.price for t in g),
            "mean_size": v / len(g),
            "buy_volume": sum(t.size for t in g if t.side == "buy"),
            "sell_volume": sum(t.size for t in g if t.side == "sell"),
        })  # fmt: skip
    expected.sort(key=lambda r: (-r["trades"], r["symbol"]))
    assert tickers == [
        {k: pytest.approx(v, rel=1e-9, abs=1e-9) if isinstance(v, float) else v
         for k, v in r.items()}
        for r in expected
    ]  # fmt: skip


def test_a_read_past_its_budget_stops_and_says_so(filled) -> None:
    store, _ = filled
    start, end = RANGES[0]
    unbounded = store.top_exchanges(start, end, "trades", 10)
    with pytest.raises(OverBudget, match="over the time budget"), store.read_budget(1e-6):
        store.top_exchanges(start, end, "trades", 10)
    with store.read_budget(60.0):
        assert store.top_exchanges(start, end, "trades", 10) == unbounded
    assert unbounded
